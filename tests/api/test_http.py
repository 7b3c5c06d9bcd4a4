"""The API over plain HTTP: error shapes, auth, safety limits, the OpenAPI document, the caller's jobs."""

from __future__ import annotations

import asyncio
import base64
import io
import socket

import pytest
import requests
from PIL import Image

from app.api import open_api
from core.errors import InvalidRequest
from jobs.records import JobStatus
from tests.api.conftest import next_event

SMALL = {"prompt": "a circle", "width": 64, "height": 64, "steps": 2, "seed": 1, "sampler_name": "Euler a"}


def post(api, path: str, body=None, **kwargs) -> requests.Response:
    return requests.post(f"{api.url}/sdapi/v1/{path}", json=body, timeout=60, **kwargs)


def get(api, path: str, **kwargs) -> requests.Response:
    return requests.get(f"{api.url}/{path}", timeout=60, **kwargs)


def refused_field(response: requests.Response) -> str:
    """The field a 422 names, in FastAPI's (and A1111's) `detail` shape."""
    assert response.status_code == 422, response.text
    (item,) = response.json()["detail"]
    assert set(item) >= {"loc", "msg", "type"}
    return ".".join(str(part) for part in item["loc"][1:])


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"restore_faces": True}, "restore_faces"),
        ({"alwayson_scripts": {"ADetailer": {"args": []}}}, "alwayson_scripts.ADetailer"),
        (
            {"alwayson_scripts": {"ControlNet": {"args": [{"model": "x", "weight": "y"}]}}},
            "alwayson_scripts.ControlNet.args.0.weight",
        ),
        ({"script_name": "x/y/z plot"}, "script_name"),
        ({"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}, "hr_upscaler"),
        (
            {"override_settings": {"sd_model_checkpoint": "/etc/passwd"}},
            "override_settings.sd_model_checkpoint",
        ),
        ({"override_settings": {"sd_vae": "kl-f8.safetensors"}}, "override_settings.sd_vae"),
        ({"override_settings": {"eta_noise_seed_delta": 31337}}, "override_settings.eta_noise_seed_delta"),
        ({"sampler_name": "Nope"}, "sampler_name"),
        ({"steps": 100_000}, "steps"),
        ({"n_iter": 99}, "n_iter"),
        ({"s_churn": 0.5}, "s_churn"),
        ({"unheard_of": 1}, "unheard_of"),
    ],
)
async def test_what_salon_cannot_do_is_a_422_naming_the_field(api, extra, field):
    response = await asyncio.to_thread(post, api, "txt2img", {**SMALL, **extra})
    assert refused_field(response) == field


async def test_img2img_refusals_name_the_field(api):
    async def field_of(body) -> str:
        return refused_field(await asyncio.to_thread(post, api, "img2img", {**SMALL, **body}))

    assert await field_of({}) == "init_images"
    assert await field_of({"init_images": ["not base64!"]}) == "init_images"
    assert await field_of({"init_images": [base64.b64encode(b"GIF89a nonsense").decode()]}) == "init_images"
    assert await field_of({"init_images": ["http://169.254.169.254/latest"]}) == "init_images"
    png = io.BytesIO()
    Image.new("RGB", (64, 64)).save(png, format="PNG")
    image = base64.b64encode(png.getvalue()).decode()
    assert await field_of({"init_images": [image], "mask": image, "inpainting_fill": 7}) == "inpainting_fill"
    assert await field_of({"init_images": [image], "resize_mode": 9}) == "resize_mode"


async def test_auth_is_basic_and_names_the_caller(serve):
    api = await serve(auth="ann:secret,bob:hunter2")
    assert (await asyncio.to_thread(get, api, "sdapi/v1/samplers")).status_code == 401
    wrong = await asyncio.to_thread(get, api, "sdapi/v1/samplers", auth=("ann", "nope"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Basic"
    assert wrong.json()["detail"] == "Incorrect username or password"
    assert (await asyncio.to_thread(get, api, "sdapi/v1/samplers", auth=("bob", "hunter2"))).ok
    response = await asyncio.to_thread(post, api, "txt2img", SMALL, auth=("ann", "secret"))
    assert response.ok
    (job,) = await api.service.queue.store.recent(5)
    assert (job.owner, job.guild) == ("api:ann", "api")
    assert (job.status, len(response.json()["images"])) == (JobStatus.DONE, 1)


async def test_listening_beyond_loopback_needs_credentials(api_settings):
    with pytest.raises(InvalidRequest, match="only with credentials: add --api-auth"):
        async with open_api(api_settings(), "0.0.0.0", 0):
            pass


async def test_a_body_over_the_limit_is_refused_before_it_is_read(serve):
    api = await serve(api={"max_body_bytes": 4096})
    response = await asyncio.to_thread(post, api, "txt2img", {**SMALL, "prompt": "x" * 10_000})
    assert response.status_code == 413 and "larger than 4096 bytes" in response.json()["detail"]


async def test_a_slow_client_is_dropped(serve):
    api = await serve(api={"read_timeout_s": 0.2})

    def slow() -> bytes:
        with socket.create_connection((api.host, api.port)) as conn:
            conn.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            return conn.recv(4096)

    assert (await asyncio.to_thread(slow)).startswith(b"HTTP/1.1 408")


async def test_no_cors_unless_configured(serve, api):
    plain = await asyncio.to_thread(get, api, "sdapi/v1/samplers", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in plain.headers
    open_to = await serve(api={"cors_origins": ["https://paint.example"]})
    allowed = await asyncio.to_thread(
        get, open_to, "sdapi/v1/samplers", headers={"Origin": "https://paint.example"}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://paint.example"


async def test_openapi_and_docs_are_served(api):
    document = (await asyncio.to_thread(get, api, "openapi.json")).json()
    for path in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/progress", "/sdapi/v1/options",
                 "/sdapi/v1/sd-models", "/sdapi/v1/png-info"):  # fmt: skip
        assert path in document["paths"], path
    assert (await asyncio.to_thread(get, api, "docs")).ok


async def test_a_client_that_disconnects_cancels_its_job(api):
    queue = api.service.queue
    events = queue.subscribe()

    def leave_early() -> None:
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{api.url}/sdapi/v1/txt2img", json={**SMALL, "steps": 150}, timeout=1.5)

    leaving = asyncio.create_task(asyncio.to_thread(leave_early))
    event = await next_event(events, "progress")
    await leaving
    await next_event(events, "cancelled")
    assert (await queue.store.get(event.job_id)).status is JobStatus.CANCELLED


async def test_interrupt_touches_only_the_callers_own_jobs(serve):
    api = await serve(auth="ann:a,bob:b")
    events = api.service.queue.subscribe()
    call = asyncio.create_task(
        asyncio.to_thread(post, api, "txt2img", {**SMALL, "steps": 150}, auth=("ann", "a"))
    )
    event = await next_event(events, "progress")
    assert (await asyncio.to_thread(post, api, "interrupt", auth=("bob", "b"))).json() == {}
    mine = await asyncio.to_thread(get, api, "sdapi/v1/progress", auth=("ann", "a"))
    theirs = await asyncio.to_thread(get, api, "sdapi/v1/progress", auth=("bob", "b"))
    assert mine.json()["state"]["job_count"] == 1 and theirs.json()["state"]["job_count"] == 0
    await asyncio.to_thread(post, api, "skip", auth=("ann", "a"))
    assert (await call).json()["images"] == []
    assert (await api.service.queue.store.get(event.job_id)).status is JobStatus.CANCELLED


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_salon_run_serves_the_api_over_the_bots_queue_when_enabled(api_settings, engine):
    from app.api import api_beside_bot
    from tests.queues import open_queue

    port = _free_port()
    settings = api_settings(api={"enabled": True, "port": port})
    queue = await open_queue(settings, engine_factory=lambda: engine)
    stop = asyncio.Event()
    worker = asyncio.create_task(queue.run(stop=stop))  # the bot runs the worker in its process
    try:
        async with api_beside_bot(settings, queue) as running:
            assert running.url == f"http://127.0.0.1:{port}"
            response = await asyncio.to_thread(post, running, "txt2img", SMALL)
            assert response.ok and len(response.json()["images"]) == 1
        async with api_beside_bot(api_settings(), queue) as absent:
            assert absent is None  # [api] enabled = false: no API
    finally:
        stop.set()
        await worker
        await queue.close()


def test_salon_api_refuses_a_public_address_without_credentials(tmp_path, capsys):
    from cli.main import main

    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    assert main(["--config", str(config), "api", "--host", "0.0.0.0", "--no-worker"]) == 2
    assert "only with credentials: add --api-auth user:password" in capsys.readouterr().err
    assert not (tmp_path / "data" / "queue.db").exists()  # refused before anything opened


async def test_without_a_worker_another_process_runs_the_jobs(serve, api_settings, engine):
    from tests.queues import open_queue

    api = await serve(run_worker=False, queue={"poll_interval_s": 0.05})
    worker_side = await open_queue(
        api_settings(queue={"poll_interval_s": 0.05}), engine_factory=lambda: engine
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(worker_side.run(stop=stop))  # e.g. `salon worker` in the same data folder
    try:
        response = await asyncio.to_thread(post, api, "txt2img", SMALL)
        assert response.ok and len(response.json()["images"]) == 1
    finally:
        stop.set()
        await runner
        await worker_side.close()


async def test_options_refuse_what_salon_cannot_set(api):
    def field_of(values) -> str:
        return refused_field(post(api, "options", values))

    assert (
        await asyncio.to_thread(field_of, {"sd_model_checkpoint": "no-such-model"}) == "sd_model_checkpoint"
    )
    assert await asyncio.to_thread(field_of, {"samples_format": "jpg"}) == "samples_format"
    assert await asyncio.to_thread(field_of, {"not_an_option": 1}) == "not_an_option"
    assert (await asyncio.to_thread(post, api, "options", {"samples_format": "png"})).json() == {}


async def test_the_progress_board_never_makes_the_queue_rank_every_job(serve):
    """/sdapi/v1/progress has no place in line: with only the API's board following every job, a published
    change of places asks the queue for nobody's place (jobs/fair_places.py is not run for the whole queue)."""
    api = await serve(run_worker=False)
    queue = api.service.queue
    asked: list = []
    ranks = queue.positions

    async def spy(wanted=None, *args, **kwargs):
        asked.append(wanted)
        return await ranks(wanted, *args, **kwargs)

    queue.positions = spy
    await queue._publish_positions()
    assert asked == []
    followed = queue.subscribe(7)  # somebody follows one job: only that one is asked for
    await queue._publish_positions()
    queue.unsubscribe(followed)
    assert asked == [{7}]

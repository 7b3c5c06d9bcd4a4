"""The queue end to end on the demo model: events, fairness, cancel, idempotency, batching, shutdown."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from catalog.records import BrowseQuery
from community.settings import CommunitySettings
from core.errors import InvalidRequest
from engine.demo import DEMO_MODEL_NAME
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.requests import GenerationRequest, Img2ImgRequest
from jobs.records import JobKind, JobStatus
from jobs.store import QueueLimit


def req(prompt: str = "a red circle on a blue background", seed: int = 1, **overrides) -> GenerationRequest:
    options = {"width": 64, "height": 64, "steps": 4, "cfg_scale": 5.0, **overrides}
    return GenerationRequest(prompt, seed=seed, **options)


def drain(events: asyncio.Queue) -> list:
    found = []
    while not events.empty():
        found.append(events.get_nowait())
    return found


async def test_a_job_runs_to_done_with_events_and_an_a1111_png(make_queue):
    queue = await make_queue()
    events = queue.subscribe()
    job = await queue.submit(req(), "ann")
    assert job.status is JobStatus.QUEUED and job.model == DEMO_MODEL_NAME
    await queue.run_until_empty()
    seen = drain(events)
    assert [e.kind for e in seen if e.kind != "progress"] == ["queued", "started", "done"]
    assert seen[0].position == 1
    progress = [e for e in seen if e.kind == "progress"]
    assert [e.step for e in progress] == [1, 2, 3, 4] and all(e.total == 4 for e in progress)
    assert [e.step for e in progress if e.preview_png] == [2, 4]  # a preview every 2nd step, as configured
    assert progress[-1].eta_s == 0
    done = await queue.store.get(job.id)
    assert done.status is JobStatus.DONE and len(done.results) == 1 and done.attempts == 1
    info = parse_infotext(read_infotext(done.results[0]))
    assert info.seed == 1 and info.model == DEMO_MODEL_NAME
    # …and it is in the catalog, under the local guild, by its owner, found by its prompt.
    (image_id,) = seen[-1].images
    page = await queue.catalog.search(BrowseQuery("local", keyword="circle"))
    assert [(i.id, i.author, i.path, i.seed, i.job_id) for i in page.images] == [
        (image_id, "ann", done.results[0], 1, job.id)
    ]


async def test_ten_one_and_one_jobs_are_served_in_turns(make_queue):
    queue = await make_queue(max_batch_images=1, max_pending_per_user=20)
    events = queue.subscribe()
    owners = {}
    for owner, count in (("ann", 10), ("bob", 1), ("cy", 1)):
        for i in range(count):
            job = await queue.submit(req(seed=i, steps=2), owner)
            owners[job.id] = owner
    await queue.run_until_empty()
    started = [owners[e.job_id] for e in drain(events) if e.kind == "started"]
    assert started == ["ann", "bob", "cy"] + ["ann"] * 9


async def test_cancel_a_queued_job_and_a_running_one(make_queue):
    queue = await make_queue()
    first = await queue.submit(req(steps=20), "ann")
    second = await queue.submit(req(seed=2, steps=3, width=128), "ann")
    cancelled = await queue.cancel(second.id, requester="ann")
    assert cancelled.status is JobStatus.CANCELLED
    with pytest.raises(InvalidRequest, match="job: job 1 is not yours"):
        await queue.cancel(first.id, requester="bob")
    events = queue.subscribe(first.id)

    async def cancel_when_running() -> None:
        while (await events.get()).kind != "progress":
            pass
        await queue.cancel(first.id, requester="bob", moderator=True)

    await asyncio.gather(queue.run_until_empty(), cancel_when_running())
    stopped = await queue.store.get(first.id)
    assert stopped.status is JobStatus.CANCELLED and stopped.results == ()
    assert (await queue.store.get(second.id)).started_at is None  # never ran


async def test_cancel_from_another_process_stops_the_running_job(make_queue):
    worker_side = await make_queue(poll_interval_s=0.02)
    other_side = await make_queue(poll_interval_s=0.02)  # e.g. `salon cancel` while the bot runs the worker
    job = await other_side.submit(req(steps=100), "ann")
    events = worker_side.subscribe(job.id)
    runner = asyncio.create_task(worker_side.run_until_empty())
    while (await events.get()).kind != "progress":
        pass
    asked = await other_side.cancel(job.id, requester="ann")
    assert asked.status is JobStatus.RUNNING  # asked; the worker stops it at its next step
    await runner
    stopped = await other_side.wait(job.id)
    assert stopped.status is JobStatus.CANCELLED and stopped.results == () and stopped.progress < 1


async def test_a_job_whose_cancel_was_asked_is_not_rerun_after_a_crash(make_queue):
    queue = await make_queue()
    job = await queue.submit(req(), "ann")
    await queue.store.claim([job.id])  # running when the process died…
    await queue.store.request_cancel(job.id)  # …and its owner had asked to cancel it
    await queue.run_until_empty()
    assert (await queue.store.get(job.id)).status is JobStatus.CANCELLED


async def test_same_idempotency_key_is_one_job(make_queue):
    queue = await make_queue()
    first = await queue.submit(req(), "ann", idempotency_key="interaction-42")
    again = await queue.submit(req(seed=99), "ann", idempotency_key="interaction-42")
    assert again.id == first.id and len(await queue.store.queued()) == 1


async def test_per_person_limit_is_a_clear_error(make_queue):
    queue = await make_queue(max_pending_per_user=2)
    await queue.submit(req(), "ann")
    await queue.submit(req(), "ann")
    with pytest.raises(QueueLimit, match="you already have 2 jobs waiting or running"):
        await queue.submit(req(), "ann")
    await queue.submit(req(), "bob")


async def test_random_seeds_are_fixed_when_accepted(make_queue):
    queue = await make_queue()
    job = await queue.submit(req(seed=-1), "ann")
    assert 0 <= job.request["params"]["seed"] < 2**32 - 1
    varied = await queue.submit(req(seed=5, variation_seed=-1, variation_strength=0.2), "ann")
    assert varied.request["params"]["seed"] == 5 and varied.request["params"]["variation_seed"] >= 0


async def test_submit_is_the_one_check_with_the_limits_that_apply(make_queue):
    """The queue checks every request once, against the limits the front end passes (a server's lower
    ones) or else the machine's, and against its sampler table; a refused request leaves no job."""
    queue = await make_queue()
    server = CommunitySettings(max_steps=10, max_size=256).limits(queue.settings.limits)
    with pytest.raises(InvalidRequest, match="steps: 12 is out of range; allowed 1 to 10"):
        await queue.submit(req(steps=12), "ann", limits=server)
    with pytest.raises(InvalidRequest, match="width: 512 is out of range; allowed 64 to 256"):
        await queue.submit(req(steps=2, width=512), "ann", limits=server)
    with pytest.raises(InvalidRequest, match="steps: 500 is out of range; allowed 1 to 150"):
        await queue.submit(req(steps=500), "ann")
    with pytest.raises(InvalidRequest, match="sampler: unknown sampler 'Euler b'"):
        await queue.submit(req(sampler="Euler b"), "ann")
    assert await queue.store.recent() == []
    assert (await queue.submit(req(steps=12), "ann")).request["params"]["steps"] == 12


async def test_waiting_jobs_run_as_one_batch_with_the_same_pixels_as_alone(make_queue, engine):
    queue = await make_queue()
    events = queue.subscribe()
    requests = {
        "ann": req("a red circle on a blue background", 11),
        "bob": req("a small yellow star on the left, purple background", 12, negative_prompt="blurry"),
        "cy": req("a black triangle on an orange background", 13, batch_size=2),
        "dee": req("a green square at the top, white background", 14),
    }
    jobs = {owner: await queue.submit(r, owner) for owner, r in requests.items()}
    await queue.run_until_empty()
    kinds = [e.kind for e in drain(events) if e.kind in ("started", "done")]
    assert kinds == ["started"] * 4 + ["done"] * 4  # one batch
    for owner, request in requests.items():
        done = await queue.store.get(jobs[owner].id)
        alone = engine.txt2img(request)
        assert len(done.results) == len(alone.images)
        for path, generated in zip(done.results, alone.images, strict=True):
            assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(generated.image))


async def test_img2img_input_is_stored_when_accepted(make_queue, tmp_path):
    queue = await make_queue()
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    job = await queue.submit(Img2ImgRequest(req(steps=4), image, denoising_strength=0.5), "ann")
    assert job.kind is JobKind.IMG2IMG
    stored = tmp_path / "data" / "jobs" / "inputs" / job.request["image"]
    assert stored.is_file() and len(stored.stem) == 64  # sha256 of the PNG
    del image
    await queue.run_until_empty()
    assert (await queue.store.get(job.id)).status is JobStatus.DONE


async def test_shutdown_puts_the_running_job_back_without_counting_the_attempt(make_queue):
    queue = await make_queue()
    job = await queue.submit(req(steps=30), "ann")
    events = queue.subscribe(job.id)

    async def stop_when_running() -> None:
        while (await events.get()).kind != "progress":
            pass
        await queue.shutdown()

    await asyncio.gather(queue.run(), stop_when_running())
    interrupted = await queue.store.get(job.id)
    assert interrupted.status is JobStatus.QUEUED and interrupted.attempts == 0
    queue._stopping = False  # the same process starts working again
    await queue.run_until_empty()
    finished = await queue.store.get(job.id)
    assert finished.status is JobStatus.DONE and finished.attempts == 1

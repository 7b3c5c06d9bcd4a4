"""The HTTP API's figures, in one run: `python bench/api.py [--runs 15] [--pollers 50]`.

1. Overhead of the API over the CLI path for one 64×64 demo image (target ≤ 20 ms): the median time of a
   `POST /sdapi/v1/txt2img` to a `salon api` process (HTTP, JSON, base64 PNG, the client decoding it) against
   the median time of the CLI's path in this process (`submit_and_wait` on a queue with its worker, then the
   PNG read), the same request alternately, after a warm-up of both.
2. Requests per second of each list endpoint (one keep-alive client, one request at a time).
3. p50 and p99 of `GET /sdapi/v1/progress` while a job runs and `--pollers` clients poll it, each every
   `--interval` seconds (default 0.25 s: A1111's own page polls once a second; 0 = back to back, a stress
   case that saturates the server's event loop) (target p99 ≤ 50 ms).

The server is a separate process (`python -m cli.main api`), so the clients' work does not share its event
loop; both use the demo model on this machine's device.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # `bench/queue.py` would hide the stdlib queue

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402
from PIL import Image  # noqa: E402

from app.worker import open_queue  # noqa: E402
from bench.catalog import percentile  # noqa: E402
from commands.generation import submit_and_wait  # noqa: E402
from config import load_settings  # noqa: E402
from engine.demo import DEMO_MODEL_NAME  # noqa: E402
from engine.requests import GenerationRequest  # noqa: E402

BODY = {"prompt": "a red circle", "seed": 5, "steps": 4, "width": 64, "height": 64, "cfg_scale": 5.0,
        "sampler_name": "Euler a"}  # fmt: skip
LISTS = ("sd-models", "samplers", "schedulers", "upscalers", "latent-upscale-modes", "loras", "hypernetworks",
         "embeddings", "sd-vae", "prompt-styles", "cmd-flags", "options")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _wait_ready(session: aiohttp.ClientSession, url: str, server: subprocess.Popen) -> None:
    while server.poll() is None:
        try:
            async with session.get(f"{url}/sdapi/v1/progress") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"the API process exited with status {server.returncode}")


async def _api_image(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.post(f"{url}/sdapi/v1/txt2img", json=BODY) as response:
        data = await response.json()
    Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).load()
    return time.perf_counter() - started


async def _cli_image(queue) -> float:
    request = GenerationRequest(BODY["prompt"], sampler="Euler a", steps=4, cfg_scale=5.0, seed=5, width=64,
                                height=64, model=DEMO_MODEL_NAME)  # fmt: skip
    started = time.perf_counter()
    job = await submit_and_wait(queue, request, "cli:bench")
    Image.open(job.results[0]).load()
    return time.perf_counter() - started


async def _list_rates(session: aiohttp.ClientSession, url: str, seconds: float) -> dict[str, float]:
    rates = {}
    for name in LISTS:
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            async with session.get(f"{url}/sdapi/v1/{name}") as response:
                await response.read()
                assert response.status == 200, (name, response.status)
            count += 1
        rates[name] = count / (time.perf_counter() - started)
    return rates


async def _progress_latencies(
    session: aiohttp.ClientSession, url: str, pollers: int, interval: float
) -> tuple[list[float], int, float]:
    begun = time.perf_counter()
    job = asyncio.create_task(session.post(f"{url}/sdapi/v1/txt2img", json={**BODY, "steps": 150}))
    latencies: list[float] = []
    running_seen = 0

    async def poll() -> None:
        nonlocal running_seen
        while not job.done():
            started = time.perf_counter()
            async with session.get(f"{url}/sdapi/v1/progress?skip_current_image=false") as response:
                state = (await response.json())["state"]
            latencies.append(time.perf_counter() - started)
            running_seen += state["sampling_step"] > 0
            if interval:
                await asyncio.sleep(interval)

    await asyncio.gather(*(poll() for _ in range(pollers)))
    (await job).release()
    return latencies, running_seen, time.perf_counter() - begun


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between one poller's polls")
    parser.add_argument("--list-seconds", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        config = root / "salon.toml"
        config.write_text(f'data_dir = "{root / "api-data"}"\ndefault_model = "{DEMO_MODEL_NAME}"\n')
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SALON_QUEUE__MAX_PENDING_PER_USER": "100"}
        server = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--config", str(config), "api", "--port", str(port)],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
        )
        cli_settings = load_settings(None, data_dir=root / "cli-data", default_model=DEMO_MODEL_NAME)
        connector = aiohttp.TCPConnector(limit=args.pollers + 4)
        try:
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                open_queue(cli_settings) as queue,
            ):
                await _wait_ready(session, url, server)
                for _ in range(2):  # warm-up: the model loaded on both sides
                    await _api_image(session, url)
                    await _cli_image(queue)
                api_times, cli_times = [], []
                for _ in range(args.runs):
                    api_times.append(await _api_image(session, url))
                    cli_times.append(await _cli_image(queue))
                api_ms, cli_ms = statistics.median(api_times) * 1e3, statistics.median(cli_times) * 1e3
                print(f"one 64x64 image (median of {args.runs}): API {api_ms:.1f} ms, CLI path {cli_ms:.1f} ms, "
                      f"overhead {api_ms - cli_ms:+.1f} ms (target <= 20 ms)")  # fmt: skip
                for name, rate in (await _list_rates(session, url, args.list_seconds)).items():
                    print(f"GET /sdapi/v1/{name}: {rate:.0f} req/s")
                latencies, running, took = await _progress_latencies(
                    session, url, args.pollers, args.interval
                )
                p50, p99 = percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
                print(f"GET /sdapi/v1/progress, {args.pollers} pollers every {args.interval:g} s during a 150-step "
                      f"job ({took:.1f} s): {len(latencies)} polls ({running} saw it running), p50 {p50:.1f} ms, "
                      f"p99 {p99:.1f} ms (target <= 50 ms)")  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())

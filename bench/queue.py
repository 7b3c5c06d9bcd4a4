"""Queue figures on the demo model, in one run: `python bench/queue.py [--jobs 32]`.

1. Overhead: time from `submit` returning to the job's "started" event with an idle worker, and a whole
   job through the queue against the same request straight on the engine.
2. Throughput: 16 people submitting at once, images per second with dynamic batching (up to 8 images per
   batch) against without (1 per batch), and their ratio.
3. Batched vs solo pixels: 8 requests denoised as one batch against each alone (identical on the CPU by
   construction; on a GPU the kernels may round differently, and this says by how much).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the standard library's
# `queue` module (which torch imports); look for modules from the repository root instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from config import load_settings  # noqa: E402
from engine.requests import GenerationRequest  # noqa: E402
from jobs.worker import in_gpu_thread  # noqa: E402
from tests.queues import open_queue  # noqa: E402

SUBMITTERS = 16


def request(seed: int) -> GenerationRequest:
    return GenerationRequest("a red circle on a blue background", seed=seed, width=64, height=64, steps=20)


async def overhead(engine, repeats: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as data:
        queue = await open_queue(load_settings(None, data_dir=data), engine_factory=lambda: engine)
        stop = asyncio.Event()
        runner = asyncio.create_task(queue.run(stop=stop))
        waits, totals = [], []
        for seed in range(repeats):
            events = queue.subscribe()
            started = time.perf_counter()
            job = await queue.submit(request(seed), "bench")
            submitted = time.perf_counter()
            while (event := await events.get()).kind != "started" or event.job_id != job.id:
                pass
            waits.append(time.perf_counter() - submitted)
            await queue.wait(job.id)
            totals.append(time.perf_counter() - started)
            queue.unsubscribe(events)
        stop.set()
        await runner
        await queue.close()
    direct = []
    for seed in range(repeats):
        started = time.perf_counter()
        await in_gpu_thread(engine.txt2img, request(seed))  # the thread the worker uses (see jobs/worker.py)
        direct.append(time.perf_counter() - started)
    return statistics.median(waits), statistics.median(totals), statistics.median(direct)


async def throughput(engine, jobs: int, batch_images: int) -> float:
    with tempfile.TemporaryDirectory() as data:
        settings = load_settings(
            None, data_dir=data, queue={"max_batch_images": batch_images, "max_pending_per_user": 64}
        )
        queue = await open_queue(settings, engine_factory=lambda: engine)
        stop = asyncio.Event()
        runner = asyncio.create_task(queue.run(stop=stop))
        started = time.perf_counter()

        async def submitter(person: int) -> list[int]:
            return [
                (await queue.submit(request(person * 1000 + i), f"user{person}")).id
                for i in range(jobs // SUBMITTERS)
            ]

        ids = [
            job for batch in await asyncio.gather(*(submitter(p) for p in range(SUBMITTERS))) for job in batch
        ]
        for job_id in ids:
            await queue.wait(job_id)
        elapsed = time.perf_counter() - started
        stop.set()
        await runner
        await queue.close()
    return len(ids) / elapsed


async def batch_vs_solo(engine) -> tuple[int, int, int]:
    import numpy as np

    from engine.requests import RunControl

    requests = [request(7000 + i) for i in range(8)]
    batched = await in_gpu_thread(engine.txt2img_many, requests, [RunControl() for _ in requests])
    identical, worst = 0, 0
    for r, together in zip(requests, batched, strict=True):
        alone = await in_gpu_thread(engine.txt2img, r)
        a = np.asarray(together.images[0].image, dtype=np.int16)
        b = np.asarray(alone.images[0].image, dtype=np.int16)
        identical += int(np.array_equal(a, b))
        worst = max(worst, int(np.abs(a - b).max()))
    return identical, len(requests), worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=32, help="jobs in the throughput test (16 people)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from engine.runner import Engine

    async def warm_engine():
        engine = await in_gpu_thread(Engine, load_settings(None, data_dir=data))
        await in_gpu_thread(engine.txt2img, request(0))  # load the model once, as a running worker has
        return engine

    with tempfile.TemporaryDirectory() as data:
        engine = asyncio.run(warm_engine())
        wait, through_queue, direct = asyncio.run(overhead(engine, args.repeats))
        unbatched = asyncio.run(throughput(engine, args.jobs, 1))
        batched = asyncio.run(throughput(engine, args.jobs, 8))
        identical, compared, worst = asyncio.run(batch_vs_solo(engine))
    print(f"device: {engine.device}, dtype: {engine.dtype}")
    print(f"submit → start with an idle worker (median):      {wait * 1000:.1f} ms")
    print(
        f"one job through the queue / same request direct:  {through_queue:.3f}s / {direct:.3f}s "
        f"(overhead {(through_queue - direct) * 1000:.0f} ms)"
    )
    print(f"{SUBMITTERS} submitters, {args.jobs} jobs, no batching:            {unbatched:.2f} images/s")
    print(f"{SUBMITTERS} submitters, {args.jobs} jobs, batches of up to 8:     {batched:.2f} images/s")
    print(f"ratio batched / unbatched:                         {batched / unbatched:.2f}")
    print(f"batched images identical to solo runs:             {identical}/{compared} (max |Δ| {worst}/255)")


if __name__ == "__main__":
    main()

"""Long jobs run in slices: they yield the GPU to image jobs, resume where they stopped, survive a stop.

The long task here counts steps into a journal file (one line per step it really ran), so the tests can
see that every step ran exactly once across slices, stops and restarts. Training (#8) and animation (#9)
plug into the same interface.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from core.errors import InvalidRequest, JobCancelled
from engine.requests import GenerationRequest, StepProgress
from jobs.long import Slice
from jobs.records import JobKind, JobStatus


class CountingTask:
    """Counts to `steps`, one journal line per step, `step_s` seconds a step; yields when asked."""

    kind = JobKind.TRAIN

    def check(self, params, settings):
        steps = params.get("steps")
        if not isinstance(steps, int) or not 1 <= steps <= 1000:
            raise InvalidRequest("steps", f"{steps!r} is not a whole number from 1 to 1000")
        return {"steps": steps, "step_s": float(params.get("step_s", 0.005)), "journal": params["journal"]}

    def run_slice(self, engine, job, state, workdir, control):
        params = job.request
        done = state["done"] if state else 0
        assert (workdir / "started").exists() == (state is not None)  # files survive between slices
        (workdir / "started").touch()
        with open(params["journal"], "a") as journal:
            while done < params["steps"]:
                if control.run.cancelled():
                    raise JobCancelled()
                time.sleep(params["step_s"])
                done += 1
                journal.write(f"{done}\n")
                journal.flush()
                if control.run.on_step:
                    control.run.on_step(StepProgress("count", done, params["steps"], 0))
                if done < params["steps"] and control.should_yield():
                    return Slice({"done": done}, phase=f"counted {done}", progress=done / params["steps"])
        result = Path(params["journal"]).with_suffix(".done")
        result.write_text(str(done))
        return Slice({"done": done}, done=True, results=(str(result),))


@pytest.fixture(autouse=True)
def counting_task(monkeypatch):
    """The queues the composition root builds in these tests run the counting task as their `train` kind."""
    from jobs.long_kinds import long_tasks

    monkeypatch.setattr("app.worker.long_tasks", lambda: {**long_tasks(), JobKind.TRAIN: CountingTask()})


def journal_steps(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def image(seed: int = 1) -> GenerationRequest:
    return GenerationRequest("a red circle on a blue background", seed=seed, width=64, height=64, steps=2)


async def test_a_long_job_yields_to_an_image_job_and_resumes_where_it_stopped(make_queue, tmp_path):
    queue = await make_queue(slice_s=0.05, poll_interval_s=0.01)
    journal = tmp_path / "count.txt"
    events = queue.subscribe()
    train = await queue.submit_task(JobKind.TRAIN, {"steps": 60, "journal": str(journal)}, "ann")
    picture = await queue.submit(image(), "bob")
    await queue.run_until_empty()

    seen = []
    while not events.empty():
        event = events.get_nowait()
        if event.kind in ("started", "done") or (event.kind == "queued" and event.phase):
            seen.append((event.job_id, event.kind))
    # The training started first (ann's job came first), paused for bob's picture, then finished.
    assert seen[:4] == [
        (train.id, "started"),
        (train.id, "queued"),
        (picture.id, "started"),
        (picture.id, "done"),
    ]
    assert seen[-1] == (train.id, "done")
    assert journal_steps(journal) == list(range(1, 61))  # every step once, none redone after the pause
    finished = await queue.store.get(train.id)
    assert finished.status is JobStatus.DONE and finished.slices >= 1 and finished.attempts == 1
    assert finished.results == (str(journal.with_suffix(".done")),)
    assert not queue.workdir(train.id).exists()  # its between-slice files are gone with the job


async def test_alone_a_long_job_runs_in_one_slice(make_queue, tmp_path):
    queue = await make_queue(slice_s=0.01)
    journal = tmp_path / "count.txt"
    job = await queue.submit_task(JobKind.TRAIN, {"steps": 20, "journal": str(journal)}, "ann")
    await queue.run_until_empty()
    finished = await queue.store.get(job.id)
    assert finished.status is JobStatus.DONE and finished.slices == 0
    assert journal_steps(journal) == list(range(1, 21))


async def test_a_stop_saves_the_slice_and_the_next_worker_resumes_it(make_queue, tmp_path):
    journal = tmp_path / "count.txt"
    first = await make_queue()
    job = await first.submit_task(
        JobKind.TRAIN, {"steps": 200, "step_s": 0.01, "journal": str(journal)}, "ann"
    )
    runner = asyncio.create_task(first.run())
    while len(journal_steps(journal)) < 5:
        await asyncio.sleep(0.01)
    await first.shutdown()
    await runner
    paused = await first.store.get(job.id)
    assert paused.status is JobStatus.QUEUED and paused.attempts == 0 and paused.slices == 1
    assert 5 <= paused.checkpoint["done"] < 200 and paused.checkpoint["done"] == len(journal_steps(journal))
    await first.close()

    second = await make_queue()
    await second.run_until_empty()
    finished = await second.store.get(job.id)
    assert finished.status is JobStatus.DONE and finished.slices == 1
    assert journal_steps(journal) == list(range(1, 201))


async def test_cancel_a_running_long_job_and_a_paused_one(make_queue, tmp_path):
    queue = await make_queue(slice_s=0.01, poll_interval_s=0.01)
    running_journal, paused_journal = tmp_path / "a.txt", tmp_path / "b.txt"
    running = await queue.submit_task(
        JobKind.TRAIN, {"steps": 500, "step_s": 0.01, "journal": str(running_journal)}, "ann"
    )
    runner = asyncio.create_task(queue.run_until_empty())
    while len(journal_steps(running_journal)) < 3:
        await asyncio.sleep(0.01)
    await queue.cancel(running.id, requester="ann")
    await runner
    assert (await queue.store.get(running.id)).status is JobStatus.CANCELLED
    assert len(journal_steps(running_journal)) < 500
    assert not queue.workdir(running.id).exists()

    queue = await make_queue(slice_s=0.01, poll_interval_s=0.01, max_pending_per_user=1)  # a fresh line
    paused = await queue.submit_task(JobKind.TRAIN, {"steps": 50, "journal": str(paused_journal)}, "ann")
    await queue.submit(image(), "bob")  # makes the long job pause after its first slice
    await queue.run_once()
    assert (await queue.store.get(paused.id)).checkpoint is not None
    assert queue.workdir(paused.id).exists()
    cancelled = await queue.cancel(paused.id, requester="ann")
    assert cancelled.status is JobStatus.CANCELLED and not queue.workdir(paused.id).exists()


async def test_long_job_parameters_are_checked_when_submitted(make_queue, tmp_path):
    queue = await make_queue()
    with pytest.raises(InvalidRequest, match="steps: 0 is not a whole number from 1 to 1000"):
        await queue.submit_task(JobKind.TRAIN, {"steps": 0, "journal": str(tmp_path / "x")}, "ann")
    with pytest.raises(InvalidRequest, match="settings: the animation settings are missing"):
        await queue.submit_task(JobKind.ANIMATE, {}, "ann")
    with pytest.raises(InvalidRequest, match="submitted with `submit`"):
        await queue.submit_task(JobKind.IMAGINE, {}, "ann")
    assert await queue.store.queued() == []

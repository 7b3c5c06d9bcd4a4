"""SIGKILL a worker in the middle of training: the next worker resumes from the last saved step and finishes."""

from __future__ import annotations

import asyncio
import json
import random
import signal

from commands.training import training_job
from config import load_settings
from tests.jobs.processes import activity, row, signs_of_life, start_worker, wait_for, wait_for_exit
from tests.queues import open_queue
from tools.demo_model.shapes import Scene, ShapeSpec, render


def test_a_killed_training_resumes_from_its_last_saved_step(tmp_path):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[queue]\npoll_interval_s = 0.1\n')
    settings = load_settings(config)
    rng = random.Random(0)
    scene = Scene((ShapeSpec("star", "green", "center", "large"),), "white")
    images = [(render(scene, rng), "zkw style") for _ in range(2)]
    options = {"steps": 80, "learning_rate": "5e-3", "resolution": 64, "save_every_s": 0.3}

    async def submit() -> int:
        queue = await open_queue(settings)
        try:
            job = training_job(settings, "lora", "crashy", images, "ann", options=options)
            return (await queue.submit_task(job.kind, job.params, "ann")).id
        finally:
            await queue.close()

    job_id = asyncio.run(submit())
    saved_state = settings.data_dir / "jobs" / "work" / str(job_id) / "state" / "loop.json"
    log = tmp_path / "worker.log"
    worker = start_worker(config, log)
    # Waits end on progress (the saved state, the log, the point file), not on a wall-clock budget.
    watch = lambda: (activity(settings.data_dir, log)(), signs_of_life(saved_state))  # noqa: E731

    def saved_at_step_5() -> bool:
        try:
            return json.loads(saved_state.read_text())["step"] >= 5
        except (OSError, ValueError):
            return False  # not written yet (it is replaced atomically, but may not exist)

    wait_for(saved_at_step_5, "a state saved at step 5", watch, worker, log)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    saved_step = json.loads(saved_state.read_text())["step"]
    assert 5 <= saved_step < 80 and row(settings.queue_db, job_id)["status"] == "running"
    wait_for_exit(start_worker(config, log), "the resumed training", watch, log)
    done = row(settings.queue_db, job_id)
    assert done["status"] == "done", log.read_text()[-2000:]
    resumed = [line for line in log.read_text().splitlines() if "training resumes at step" in line]
    assert resumed and int(resumed[0].split("at step ")[1].split()[0]) >= saved_step
    assert (settings.lora_dir / "crashy.safetensors").is_file()

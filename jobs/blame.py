"""Blame for a worker that died: only a job that was running alone when its process died counts the death.

The worker keeps a small file, `worker.point` in the data folder, saying where it is: which jobs it runs, in
which phase, at which step. It is rewritten in place as the work goes on (one `pwrite` of a fixed-size
record per step, no fsync: a SIGKILL keeps the page cache; only a power cut can lose the last write). When
the next worker starts, `JobStore.recover` reads it and judges each job the dead worker left running:

- A batch that died is not blamed: its jobs go back in line, the attempt not counted, and are marked solo so
  that they run alone from then on (jobs/scheduling.py). Whichever of them causes the crash is then found.
- A job that died running alone counts the death, with its point ("txt2img step 7", "starting", "saving").
- It fails once it has died more than `max_attempts` times at the same denoising step, or
  `HARD_CAP_FACTOR × max_attempts` times at any points. A job that causes the crash (the host runs out of
  memory at its size, a native library crashes on its input) dies at the same point every time, while a kill
  from outside lands anywhere; but a job has only a few steps (two outside kills of an 8-step job land on the
  same step one time in eight), hence one death more than `max_attempts`. The other points (starting,
  loading a checkpoint, saving, finishing, an unknown one) last longer than a step, so outside kills land
  there often: deaths there count only towards the cap.
- A long job (training, animation) whose slice ends has made progress: its deaths are forgiven.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

POINT_BYTES = 512  # the point file's fixed size: one pwrite rewrites it whole
HARD_CAP_FACTOR = 3  # deaths at any points that fail a job, in units of max_attempts
LOADING = "loading"  # the phase while a checkpoint loads: "loading <name>"
UNKNOWN = "an unknown point"  # the point file did not name the job (missing, or a disk that failed)


@dataclass(frozen=True)
class Point:
    """Where the worker was: the jobs it ran (claimed together), the phase and the step."""

    jobs: tuple[int, ...]
    phase: str
    step: int = 0

    def label(self) -> str:
        return f"{self.phase} step {self.step}" if self.step else self.phase


@dataclass(frozen=True)
class Verdict:
    """What becomes of a job the dead worker left running."""

    deaths: tuple[str, ...]  # its solo deaths, this one included
    counted: bool  # the attempt counts (it ran alone)
    failed_reason: str | None = None  # set: it fails with this error instead of going back in line


def judge(
    job_id: int,
    deaths: Sequence[str],
    running: Sequence[int],
    point: Point | None,
    max_attempts: int,
) -> Verdict:
    """The verdict for job `job_id`, left running with `running` (all jobs left running) at `point`."""
    named = point is not None and job_id in point.jobs
    alone = len(point.jobs) == 1 if named else len(running) == 1
    if not alone:
        return Verdict(tuple(deaths), counted=False)
    label = point.label() if named else UNKNOWN
    deaths = (*deaths, label)
    same = deaths.count(label)
    if named and point.step and same > max_attempts:  # a denoising step: a precise point
        reason = f"the worker died {same} times at {label} while running this job alone; it was not run again"
        return Verdict(deaths, counted=True, failed_reason=reason)
    if len(deaths) >= HARD_CAP_FACTOR * max_attempts:
        where = ", ".join(dict.fromkeys(deaths[-4:]))
        reason = (
            f"the worker died {len(deaths)} times while running this job alone (last at {where}); "
            "it was not run again"
        )
        return Verdict(deaths, counted=True, failed_reason=reason)
    return Verdict(deaths, counted=True)


class PointFile:
    """The worker's point file. Only the process holding the worker lock writes it; writes never raise."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._jobs: tuple[int, ...] = ()

    def open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning(
                "cannot keep the worker's point in %s (%s): crashes are blamed less precisely", self.path, exc
            )

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def last(self) -> Point | None:
        """What the file says (the point where the previous worker died, before this one writes)."""
        try:
            data = json.loads(self.path.read_bytes().rstrip(b"\0 \n") or b"null")
            return Point(tuple(int(j) for j in data["jobs"]), str(data["phase"]), int(data["step"]))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def begin(self, jobs: Sequence[int], phase: str = "starting") -> None:
        """The worker is about to claim and run `jobs` together."""
        self._jobs = tuple(jobs)
        self.at(phase)

    def at(self, phase: str, step: int = 0) -> None:
        """The running jobs reached `phase` (and `step`); called from the event loop or the GPU thread."""
        if self._fd is None:
            return
        record = json.dumps({"jobs": self._jobs, "phase": phase[:200], "step": step}).encode()
        try:
            os.pwrite(self._fd, record.ljust(POINT_BYTES), 0)
        except OSError:
            pass  # a full disk: the next worker blames less precisely, nothing else depends on it

    def idle(self) -> None:
        self._jobs = ()
        self.at("idle")


class NoPoint(PointFile):
    """For a worker without a data folder lock (tests driving GpuWorker directly): records nothing."""

    def __init__(self) -> None:
        super().__init__(Path(os.devnull))

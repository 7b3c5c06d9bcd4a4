"""Which queued jobs run next: round-robin across people, model affinity within a round, dynamic batching.

Pure functions over job records (no I/O), so the policy is tested exactly:
- People take turns: whoever was served longest ago goes first, and each person's oldest job is theirs.
  Someone with 20 jobs gets one turn per round like someone with 1.
- Model affinity: when the job whose turn it is needs a different model than the loaded one, one other
  person's job for the loaded model may go first, but a person is passed over at most once in a row, so
  model switches are minimised without anyone waiting more than one extra job.
- Long jobs (training, animation) run in slices and come after their owner's image jobs, so a person's
  quick image never waits behind their own training, and others' images wait at most one slice.
- Batching: waiting jobs with the lead job's batch key (same model, size, sampler, steps, CFG…) join its
  batch, taken in turn order, up to the image budget. A job marked solo (a batch it was in died with the
  worker) runs alone, so that a crash it causes is blamed on it only (jobs/blame.py).
- A job that died with the worker while running alone comes after its owner's other jobs (the more deaths,
  the later): a job that crashes the worker does not hold up its owner's others, and an outside kill that
  lands early after each restart does not hit the same job every time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.records import JobRecord

MAX_SKIPS = 1  # times in a row a person's turn may go to someone else's job for the loaded model


def job_images(job: JobRecord) -> int:
    """Images a job produces (batch size × batch count of its request)."""
    params = job.request.get("params", {})
    return int(params.get("batch_size", 1)) * int(params.get("batch_count", 1))


@dataclass
class FairScheduler:
    """Remembers whom it served last, and who was passed over for model affinity."""

    served_at: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    turns: int = 0

    def order(self, queued: Sequence[JobRecord]) -> list[JobRecord]:
        """The order queued jobs would run in, if nothing else arrived and nothing were batched."""
        by_owner: dict[str, deque[JobRecord]] = {}
        for job in sorted(queued, key=lambda j: (j.kind.long, len(j.deaths), j.id)):
            by_owner.setdefault(job.owner, deque()).append(job)
        owners = sorted(
            by_owner, key=lambda o: (self.served_at.get(o, -1), min(job.id for job in by_owner[o]))
        )
        ordered: list[JobRecord] = []
        while owners:
            for owner in list(owners):
                ordered.append(by_owner[owner].popleft())
                if not by_owner[owner]:
                    owners.remove(owner)
        return ordered

    def positions(self, queued: Sequence[JobRecord]) -> dict[int, int]:
        """Each queued job's place in line (1 = next)."""
        return {job.id: place for place, job in enumerate(self.order(queued), start=1)}

    def next_batch(
        self, queued: Sequence[JobRecord], loaded_model: str | None, max_images: int
    ) -> list[JobRecord]:
        """The jobs to run now (empty when nothing waits), and record their owners as served."""
        order = self.order(queued)
        if not order:
            return []
        lead = self._with_affinity(order, loaded_model)
        batch = [lead]
        if lead.batch_key and not lead.solo:
            images = job_images(lead)
            for job in order:
                if (
                    job is not lead
                    and not job.solo
                    and job.batch_key == lead.batch_key
                    and images + job_images(job) <= max_images
                ):
                    batch.append(job)
                    images += job_images(job)
        for job in batch:
            self.turns += 1
            self.served_at[job.owner] = self.turns
            self.skipped.pop(job.owner, None)
        return batch

    def _with_affinity(self, order: list[JobRecord], loaded_model: str | None) -> JobRecord:
        first = order[0]
        if (
            loaded_model is None
            or first.model == loaded_model
            or self.skipped.get(first.owner, 0) >= MAX_SKIPS
        ):
            return first
        heads = {}
        for job in order:
            heads.setdefault(job.owner, job)
        alternative = next((job for job in heads.values() if job.model == loaded_model), None)
        if alternative is None:
            return first
        self.skipped[first.owner] = self.skipped.get(first.owner, 0) + 1
        return alternative

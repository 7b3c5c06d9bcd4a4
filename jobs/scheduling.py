"""Which queued jobs run next: round-robin across people, model affinity within a round, dynamic batching.

Pure functions over job records (no I/O), so the policy is tested exactly. The queue's run loop does not call
them on the queue itself: both stores compute the same order in SQL (jobs/fair_sql.py), and property tests
compare the two over random queues (tests/jobs/test_fair_sql.py, tests/pg/test_fair_sql.py). This module is
the rule they are held to, and `Choice.batch` (filling the image budget) is the part SQL leaves to Python.
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from jobs.records import JobRecord

MAX_SKIPS = 1  # times in a row a person's turn may go to someone else's job for the loaded model


def job_images(job: JobRecord) -> int:
    """Images a job produces (batch size × batch count of its request)."""
    return request_images(job.request)


def request_images(request: dict) -> int:
    """Images a job's stored request produces (batch size × batch count)."""
    params = request.get("params", {})
    return int(params.get("batch_size", 1)) * int(params.get("batch_count", 1))


def line_key(job: JobRecord) -> tuple[bool, int, int]:
    """Where a job stands in its owner's line: image jobs before long ones, fewer deaths first, then oldest."""
    return (job.kind.long, len(job.deaths), job.id)


@dataclass(frozen=True)
class Candidates:
    """Queued jobs (all, or the part the pick needs) with what orders them as in the whole queue."""

    jobs: Sequence[JobRecord]
    rounds: Mapping[int, int]  # job id → its place in its owner's line (1 = the owner's next job)
    first_ids: Mapping[str, int]  # owner → the id of their oldest queued job


def whole(queued: Sequence[JobRecord]) -> Candidates:
    """The whole queue as candidates."""
    rounds: dict[int, int] = {}
    first_ids: dict[str, int] = {}
    places: dict[str, int] = {}
    for job in sorted(queued, key=line_key):
        places[job.owner] = rounds[job.id] = places.get(job.owner, 0) + 1
        first_ids[job.owner] = min(first_ids.get(job.owner, job.id), job.id)
    return Candidates(list(queued), rounds, first_ids)


@dataclass(frozen=True)
class Choice:
    """A possible next batch: its lead, the waiting jobs that may join it (in turn order, each fitting the
    budget beside the lead alone), and whose turn it takes for model affinity (None: nobody's)."""

    lead: JobRecord
    mates: tuple[JobRecord, ...]
    passed_over: str | None = None

    def batch(self, max_images: int, available=None) -> list[JobRecord]:
        """The lead and the mates that fit the budget, taken in turn order (only those in `available`)."""
        batch = [self.lead]
        images = job_images(self.lead)
        for job in self.mates:
            if (available is None or job.id in available) and images + job_images(job) <= max_images:
                batch.append(job)
                images += job_images(job)
        return batch


@dataclass
class FairScheduler:
    """Remembers whom it served last, and who was passed over for model affinity."""

    served_at: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    passed_over: str | None = None  # whose turn the last batch took for model affinity, if anyone's

    def order(self, queued: Sequence[JobRecord] | Candidates) -> list[JobRecord]:
        """The order queued jobs would run in, if nothing else arrived and nothing were batched: round by
        round, each person's next job, people in the order of whom was served longest ago (then oldest)."""
        lines = queued if isinstance(queued, Candidates) else whole(queued)
        owners = sorted(lines.first_ids, key=lambda o: (self.served_at.get(o, -1), lines.first_ids[o]))
        rank = {owner: place for place, owner in enumerate(owners)}
        return sorted(lines.jobs, key=lambda job: (lines.rounds[job.id], rank[job.owner]))

    def positions(self, queued: Sequence[JobRecord]) -> dict[int, int]:
        """Each queued job's place in line (1 = next)."""
        return {job.id: place for place, job in enumerate(self.order(queued), start=1)}

    def choices(
        self,
        queued: Sequence[JobRecord] | Candidates,
        loaded_model: str | None,
        max_images: int,
        count: int = 1,
    ) -> list[Choice]:
        """Up to `count` possible next batches, best first: the fair pick, then (for a worker that finds the
        fair pick's lead taken by another worker meanwhile) the next leads in turn order. Changes nothing."""
        order = self.order(queued)
        if not order:
            return []
        mates_by_key: dict[str, list[JobRecord]] = {}
        for job in order:
            if job.batch_key and not job.solo:
                mates_by_key.setdefault(job.batch_key, []).append(job)
        leads: list[tuple[JobRecord, str | None]] = []
        alternative = self._affinity(order, loaded_model)
        if alternative is not None:
            leads.append((alternative, order[0].owner))
        leads += [(job, None) for job in order[: count + 1] if job is not alternative]
        choices = []
        for lead, passed_over in leads[:count]:
            mates: tuple[JobRecord, ...] = ()
            if lead.batch_key and not lead.solo:
                room = max_images - job_images(lead)
                mates = tuple(
                    job for job in mates_by_key[lead.batch_key] if job is not lead and job_images(job) <= room
                )
            choices.append(Choice(lead, mates, passed_over))
        return choices

    def next_batch(
        self, queued: Sequence[JobRecord] | Candidates, loaded_model: str | None, max_images: int
    ) -> list[JobRecord]:
        """The jobs to run now (empty when nothing waits), and record their owners as served."""
        self.passed_over = None
        choices = self.choices(queued, loaded_model, max_images)
        if not choices:
            return []
        batch = choices[0].batch(max_images)
        self.served(batch, choices[0].passed_over)
        return batch

    def served(self, batch: Sequence[JobRecord], passed_over: str | None) -> None:
        """Record a batch as run: its owners were served, and `passed_over` was passed over for it."""
        if passed_over is not None:
            self.skipped[passed_over] = self.skipped.get(passed_over, 0) + 1
        self.passed_over = passed_over
        for job in batch:
            self.turns += 1
            self.served_at[job.owner] = self.turns
            self.skipped.pop(job.owner, None)

    def _affinity(self, order: list[JobRecord], loaded_model: str | None) -> JobRecord | None:
        """Another person's head job for the loaded model, when it may go before the first in line."""
        first = order[0]
        if (
            loaded_model is None
            or first.model == loaded_model
            or self.skipped.get(first.owner, 0) >= MAX_SKIPS
        ):
            return None
        heads = {}
        for job in order:
            heads.setdefault(job.owner, job)
        return next((job for job in heads.values() if job.model == loaded_model), None)

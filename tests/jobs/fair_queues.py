"""Random queues and scheduler states (Hypothesis strategies) for the property tests that hold the stores' SQL
order to the rule of jobs/scheduling.py (tests/jobs/test_fair_sql.py, tests/pg/test_fair_sql.py)."""

from __future__ import annotations

from hypothesis import strategies as st

from jobs.records import JobKind, JobRecord, JobStatus
from jobs.scheduling import FairScheduler

LIMITS = {"max_pending_per_user": 1000, "max_queued": 1000}

OWNERS = ["ann", "bob", "cy", "dee"]
KEYS = ["", "k1", "k2"]
MODELS = ["m1", "m2"]


def record(
    job_id: int, owner: str, kind: JobKind, key: str, images: int, solo: bool, deaths: int, model: str
):
    return JobRecord(
        id=job_id,
        kind=kind,
        owner=owner,
        guild=None,
        channel=None,
        request={"params": {"batch_size": images, "batch_count": 1}},
        status=JobStatus.QUEUED,
        phase="",
        progress=0.0,
        created_at=0.0,
        started_at=None,
        finished_at=None,
        error=None,
        results=(),
        idempotency_key=None,
        attempts=0,
        batch_key=key,
        model=model,
        solo=solo,
        deaths=tuple({"at": "step"} for _ in range(deaths)),
    )


job_specs = st.tuples(
    st.sampled_from(OWNERS),
    st.sampled_from([JobKind.IMAGINE, JobKind.IMAGINE, JobKind.IMG2IMG, JobKind.TRAIN]),
    st.sampled_from(KEYS),
    st.integers(1, 5),
    st.booleans(),
    st.integers(0, 2),
    st.sampled_from(MODELS),
)


@st.composite
def queues(draw):
    specs = draw(st.lists(job_specs, max_size=40))
    ids = sorted(draw(st.sets(st.integers(1, 1000), min_size=len(specs), max_size=len(specs))))
    return [record(job_id, *spec) for job_id, spec in zip(ids, specs, strict=True)]


@st.composite
def schedulers(draw):
    served = draw(st.dictionaries(st.sampled_from(OWNERS), st.integers(0, 20)))
    skipped = draw(st.dictionaries(st.sampled_from(OWNERS), st.integers(0, 1)))
    return FairScheduler(served_at=dict(served), skipped=dict(skipped))

"""The scheduling policy, exactly: turns across people, model affinity with a bound, batching by key."""

from __future__ import annotations

from jobs.records import JobKind, JobRecord
from jobs.scheduling import FairScheduler, job_images
from tests.jobs.fair_queues import record

_ids = iter(range(1, 10_000))


def job(owner: str, model: str = "m", key: str = "", images: int = 1) -> JobRecord:
    return record(next(_ids), owner, JobKind.IMAGINE, key, images, False, 0, model)


def drain(
    scheduler: FairScheduler, queued: list[JobRecord], loaded: str | None = "m", budget: int = 1
) -> list:
    """Run the scheduler to the end; the list of batches as owner names."""
    served = []
    waiting = list(queued)
    while batch := scheduler.next_batch(waiting, loaded, budget):
        served.append([j.owner for j in batch])
        waiting = [j for j in waiting if j not in batch]
        loaded = batch[0].model
    return served


def test_three_people_with_ten_one_and_one_jobs_take_turns():
    queued = [job("ann") for _ in range(10)] + [job("bob"), job("cy")]
    order = [batch[0] for batch in drain(FairScheduler(), queued)]
    assert order == ["ann", "bob", "cy"] + ["ann"] * 9


def test_someone_arriving_later_goes_before_the_busy_persons_next_job():
    scheduler = FairScheduler()
    waiting = [job("ann") for _ in range(5)]
    first = scheduler.next_batch(waiting, "m", 1)
    waiting.remove(first[0])
    waiting.append(job("bob"))
    assert scheduler.next_batch(waiting, "m", 1)[0].owner == "bob"


def test_positions_follow_the_turn_order():
    queued = [job("ann"), job("ann"), job("bob")]
    positions = FairScheduler().positions(queued)
    assert [positions[j.id] for j in queued] == [1, 3, 2]


def test_loaded_model_goes_first_but_nobody_is_passed_over_twice():
    queued = [job("ann", model="other"), job("bob", model="m"), job("cy", model="m"), job("bob", model="m")]
    batches = drain(FairScheduler(), queued, loaded="m")
    # bob's job for the loaded model goes before ann's; then ann's turn can no longer be given away.
    assert [b[0] for b in batches] == ["bob", "ann", "cy", "bob"]


def test_batches_gather_compatible_jobs_in_turn_order_within_the_image_budget():
    queued = [job("ann", key="k") for _ in range(4)] + [
        job("bob", key="k"),
        job("cy", key="other"),
        job("dee", key="k", images=2),
    ]
    batches = drain(FairScheduler(), queued, budget=4)
    assert batches[0] == ["ann", "bob", "dee"]  # 1 + 1 + 2 images: one turn each, in turn order
    assert sorted(sum(batches, [])) == sorted(j.owner for j in queued)
    assert job_images(job("x", images=3)) == 3


def test_jobs_without_a_batch_key_run_alone():
    queued = [job("ann"), job("bob")]
    assert drain(FairScheduler(), queued, budget=8) == [["ann"], ["bob"]]


def test_a_solo_job_is_never_batched_and_a_crashed_one_waits_behind_its_owners_others():
    """Issue 18, item 2: a job whose batch died runs alone; one that died alone comes after its owner's others."""
    import dataclasses

    first, second, third = job("ann", key="k"), job("ann", key="k"), job("ann", key="k")
    solo = dataclasses.replace(first, solo=True)
    assert [j.id for j in FairScheduler().next_batch([solo, second, third], "m", 8)] == [first.id]
    alone = dataclasses.replace(third, solo=True)
    assert [j.id for j in FairScheduler().next_batch([first, second, alone], "m", 8)] == [first.id, second.id]
    crashed = dataclasses.replace(first, solo=True, deaths=("txt2img step 3",))
    assert [j.id for j in FairScheduler().order([crashed, second, third])] == [second.id, third.id, first.id]

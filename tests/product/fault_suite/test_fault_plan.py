"""The fault plan is a function of the seed (so a failing seed replays), and it deals every kind."""

from __future__ import annotations

import random
from collections import Counter

from tests.product.fault_suite import faults


def plans(seed: int, runs: int) -> list[faults.RunPlan]:
    rng, deck = random.Random(seed), list[str]()
    return [faults.draw(rng, deck) for _ in range(runs)]


def describe(plan: faults.RunPlan) -> tuple[object, ...]:
    return (
        tuple(plan.kinds),
        tuple((r.kind, r.endpoint, r.times, r.skip, r.delay, r.items) for r in plan.comms_rules),
        tuple((f.target, f.kind, f.times, f.skip) for f in plan.aws_faults),
        plan.budget_seconds,
        plan.overlap,
        tuple(plan.owners),
    )


def test_same_seed_same_plan() -> None:
    assert [describe(p) for p in plans(42, 60)] == [describe(p) for p in plans(42, 60)]
    assert [describe(p) for p in plans(42, 60)] != [describe(p) for p in plans(43, 60)]


def test_every_kind_is_dealt_within_a_short_run() -> None:
    dealt = {kind for plan in plans(5, 40) for kind in plan.kinds}
    assert dealt == set(faults.ALL_KINDS)


def test_each_rule_knows_its_kind_and_some_runs_are_quiet() -> None:
    drawn = plans(9, 100)
    for plan in drawn:
        assert len(plan.owners) == len(plan.comms_rules) + len(plan.aws_faults)
        assert set(plan.owners) <= set(plan.kinds)
    assert any(plan.quiet for plan in drawn)


def test_a_planned_fault_that_never_fired_is_named() -> None:
    """Before issue 13 nothing noticed that faults aimed at TransactWriteItems (a call the poller never
    makes) never fired; the suite now fails on any planned kind whose rules never answered a request."""
    planned = Counter({"checkpoint_write_fails": 3, "comms_429": 2, "overlap": 1})
    assert faults.never_fired(planned, Counter({"comms_429": 4})) == ["checkpoint_write_fails"]
    assert faults.never_fired(planned, Counter({"comms_429": 1, "checkpoint_write_fails": 2})) == []


def test_aws_faults_aim_only_at_calls_the_poller_makes() -> None:
    targets = {f.target for plan in plans(5, 400) for f in plan.aws_faults}
    # The poller reads its checkpoint through the lease's UpdateItem and writes state with conditional
    # TransactWriteItems/UpdateItem (the version protocol): it makes no GetItem call (only the dry run
    # does) and no BatchWriteItem outside forgetting departed operations.
    assert not targets & {faults.DYNAMODB + "GetItem", faults.DYNAMODB + "BatchWriteItem"}

"""What goes wrong in each run of the fault suite: drawn from one seeded RNG, so a seed replays the run.

A :class:`RunPlan` lists the faults of one poller run; :func:`apply` arms them on the simulator (Comms API
side) and on the AWS fault proxy (moto side). Faults that shape the invocation itself (a short time budget,
two overlapping invocations) are flags the suite reads.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from benchmarks.support import AwsFault, AwsFaultProxy
from comms_sim import FaultRule, SimulatorServer
from comms_sim.faults import FaultKind

DYNAMODB: Final = "DynamoDB_20120810."
PUT_EVENTS: Final = "AWSEvents.PutEvents"

COMMS_KINDS: Final = (
    "comms_429",
    "comms_503",
    "comms_500",
    "comms_timeout",
    "comms_malformed_json",
    "comms_bad_items",
)
TRUST_KINDS: Final = ("comms_bad_date", "comms_future_updated_at", "comms_oversize", "comms_slow_body")
"""Answers the client must not believe or wait for (contract section 6). Each aims at the run's first
request, so a run planned with one alone always meets it (the suite asserts that it fired)."""
FAR_FUTURE_SECONDS: Final = 30 * 365 * 86_400
"""Beyond the local stack's MaxClockSkewSeconds (20 years: the simulator plays in the past)."""
OVERSIZE_BYTES: Final = 5 * 1024 * 1024  # over the client's default 4 MB cap
AWS_KINDS: Final = (
    "dynamodb_throttle",
    "put_events_partial",
    "put_events_throttle",
    "state_write_fails_after_publish",
    "checkpoint_write_fails",
)
RUN_KINDS: Final = ("time_budget", "overlap")
ALL_KINDS: Final = COMMS_KINDS + TRUST_KINDS + AWS_KINDS + RUN_KINDS


@dataclass
class RunPlan:
    kinds: list[str] = field(default_factory=list)
    comms_rules: list[FaultRule] = field(default_factory=list)
    aws_faults: list[AwsFault] = field(default_factory=list)
    budget_seconds: float | None = None  # remaining time the context reports beyond the safety margin
    overlap: bool = False
    owners: list[str] = field(default_factory=list)  # the kind of each rule, in the order they were made

    @property
    def quiet(self) -> bool:
        return not self.kinds


def _comms(kind: str, rng: random.Random, plan: RunPlan) -> None:
    # Every run lists; fetches happen only for operations that left the active set.
    endpoint = rng.choice(("list_operations", "list_operations", "*"))
    skip = rng.randint(0, 2)  # a run makes about 3 list requests
    if kind in ("comms_429", "comms_503"):
        # Mostly absorbed by the client's retries; sometimes more than it will try (the listing fails).
        times = rng.choice((1, 2, 6))
        status: FaultKind = "429" if kind == "comms_429" else "503"
        plan.comms_rules.append(
            FaultRule(kind=status, endpoint=endpoint, times=times, skip=skip, retry_after="0")
        )
    elif kind == "comms_500":
        plan.comms_rules.append(FaultRule(kind="500", endpoint=endpoint, times=rng.randint(1, 2), skip=skip))
    elif kind == "comms_timeout":
        # The client's read timeout follows the run's remaining budget: a short budget and a slower answer.
        plan.comms_rules.append(FaultRule(kind="slow", endpoint=endpoint, times=1, skip=skip, delay=2.5))
        plan.budget_seconds = 1.5
    elif kind == "comms_malformed_json":
        plan.comms_rules.append(FaultRule(kind="malformed_json", endpoint=endpoint, times=1, skip=skip))
    elif kind == "comms_bad_items":
        plan.comms_rules.append(
            FaultRule(kind="bad_items", endpoint=endpoint, times=rng.randint(1, 3), items=rng.randint(1, 3))
        )


def _trust(kind: str, rng: random.Random, plan: RunPlan) -> None:
    first = "list_operations"
    if kind == "comms_bad_date":
        date = rng.choice(("2099-01-01T00:00:00Z", "1999-01-01T00:00:00Z"))
        plan.comms_rules.append(FaultRule(kind="bad_date", endpoint=first, times=1, date=date))
    elif kind == "comms_future_updated_at":
        plan.comms_rules.append(
            FaultRule(
                kind="bad_items",
                endpoint=first,
                times=1,
                mutation="future_updated_at",
                ahead=FAR_FUTURE_SECONDS,
                items=rng.randint(1, 3),
            )
        )
    elif kind == "comms_oversize":
        plan.comms_rules.append(FaultRule(kind="oversize", endpoint=first, times=1, size=OVERSIZE_BYTES))
    elif kind == "comms_slow_body":
        # A byte every half second never trips a read timeout; the run's deadline must stop it.
        plan.comms_rules.append(FaultRule(kind="drip", endpoint=first, times=1, delay=0.5))
        plan.budget_seconds = 1.5


def _aws(kind: str, rng: random.Random, plan: RunPlan) -> None:
    if kind == "dynamodb_throttle":
        # Only calls every run makes: the active index's Query (once) and the lease's and checkpoint's
        # UpdateItem. A fault aimed at a call a run may not make (state writes when nothing changed;
        # GetItem, which only the dry run uses) would not fire, and the suite fails on a kind never fired.
        call = rng.choice(("Query", "UpdateItem"))
        skip = 0 if call == "Query" else rng.randint(0, 1)
        # botocore makes 3 attempts: up to 2 throttles are absorbed, more fail the call.
        plan.aws_faults.append(
            AwsFault(target=DYNAMODB + call, kind="throttle", times=rng.choice((1, 2, 4)), skip=skip)
        )
    elif kind == "put_events_partial":
        salt = rng.randrange(1 << 30)
        plan.aws_faults.append(
            AwsFault(
                target=PUT_EVENTS,
                kind="fail_entries",
                times=rng.randint(1, 4),
                # Deterministic per entry content and seed, so a replay fails the same entries.
                entries=lambda index, entry: (
                    zlib.crc32(f"{salt}:{index}:{entry.get('Detail', '')}".encode()) % 2 == 0
                ),
            )
        )
    elif kind == "put_events_throttle":
        plan.aws_faults.append(AwsFault(target=PUT_EVENTS, kind="throttle", times=rng.choice((1, 2, 5))))
    elif kind == "state_write_fails_after_publish":
        # The write that follows a publish settles the claims (contract §4, the version protocol): it
        # happens, and the caller is told it failed, more often than botocore retries. A settle of one
        # operation is an UpdateItem, of several a TransactWriteItems. (Refusing it outright leaves claims
        # that lapse only after the writer's deadline; the integration tests cover that with a moved clock.)
        for call in ("TransactWriteItems", "UpdateItem"):
            plan.aws_faults.append(
                AwsFault(
                    target=DYNAMODB + call, kind="fail_after_forward", times=4, body_contains=b"REMOVE #claim"
                )
            )
    elif kind == "checkpoint_write_fails":
        # The checkpoint is written by an UpdateItem after the lease's (skip=1).
        failure = rng.choice(("fail_after_forward", "500"))
        plan.aws_faults.append(AwsFault(target=DYNAMODB + "UpdateItem", kind=failure, times=4, skip=1))


def draw(rng: random.Random, deck: list[str], *, quiet_share: float = 0.4) -> RunPlan:
    """The faults of one run. ``deck`` (kept by the caller) deals every kind once, shuffled, before any
    kind comes again, so even a short run injects each kind; a second kind is sometimes added at random."""
    plan = RunPlan()
    if rng.random() < quiet_share:
        return plan
    if not deck:
        deck.extend(rng.sample(ALL_KINDS, len(ALL_KINDS)))
    kinds = [deck.pop()]
    if rng.random() < 0.3:
        kinds.append(rng.choice([k for k in ALL_KINDS if k != kinds[0]]))
    for kind in kinds:
        plan.kinds.append(kind)
        rules, aws = len(plan.comms_rules), len(plan.aws_faults)
        if kind in COMMS_KINDS:
            _comms(kind, rng, plan)
        elif kind in TRUST_KINDS:
            _trust(kind, rng, plan)
        elif kind in AWS_KINDS:
            _aws(kind, rng, plan)
        elif kind == "time_budget":
            plan.budget_seconds = rng.uniform(0.0, 1.5)
        elif kind == "overlap":
            plan.overlap = True
        plan.owners += [kind] * (len(plan.comms_rules) - rules + len(plan.aws_faults) - aws)
    return plan


def apply(plan: RunPlan, simulator: SimulatorServer, proxy: AwsFaultProxy) -> None:
    for rule in plan.comms_rules:
        simulator.faults.add(rule)
    for fault in plan.aws_faults:
        proxy.add(fault)


def clear(plan: RunPlan, simulator: SimulatorServer, proxy: AwsFaultProxy) -> Counter[str]:
    """Disarm everything; returns how many times each kind's rules actually fired (a rule whose request
    never came, say after the run stopped early, did not)."""
    simulator.faults.clear()
    proxy.clear()
    fired: Counter[str] = Counter()
    rules: list[FaultRule | AwsFault] = [*plan.comms_rules, *plan.aws_faults]
    for kind, rule in zip(plan.owners, rules, strict=True):
        fired[kind] += int(rule.fired)
    return fired


def targets_seen(plan: RunPlan) -> Counter[str]:
    """How many requests each AWS fault's target received while it was armed (0: the code never made that
    call in this run)."""
    seen: Counter[str] = Counter()
    for fault in plan.aws_faults:
        seen[fault.target] += fault.seen
    return seen


def never_fired(planned: Counter[str], fired: Counter[str]) -> list[str]:
    """The kinds planned at least once whose rules never answered a request over the whole suite (the run
    kinds, a time budget and an overlap, have no rules)."""
    return sorted(kind for kind in planned if kind not in RUN_KINDS and not fired[kind])

"""Large scenarios: a steady-state week of operations, as a benchmark sees the API.

``python -m comms_sim.generate --operations 100000 --days 7 --out week.json``

The scenario's ``now`` is the end of the week, so on any clock the server shows
``n_operations`` operations created over the last ``days`` days (retention drops each one
exactly 7 days after creation). Arrivals are uniform; each operation may wait SCHEDULED,
processes in ticks, sometimes stalls or is canceled, and gets late deliveries/opens after
COMPLETED. Durations and tick sizes are derived from two targets (Little's law):

* ``active``: operations SCHEDULED or PROCESSING at ``now`` (mean active time = active / rate);
* ``changes_per_minute``: versions appearing per simulated minute, over all operations.

How the active time is spent is the ``shape`` (see :data:`SHAPES`): in ``scheduled`` half the
operations wait SCHEDULED for hours before processing (sends scheduled ahead), in ``on-arrival``
every operation starts processing when it is created and stays PROCESSING longer.

Another ``future_hours`` of arrivals at the same rate follow ``now`` (not counted in
``n_operations``), so the steady state holds while a benchmark advances the clock.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from comms_sim.ids import operation_id
from comms_sim.scenario import Scenario
from comms_sim.timeline import COUNTINGS, Counting, SendPlan, Timeline

_LATE_OFFSETS: Final = (300, 1800, 7200, 28800)  # after completion: 5m, 30m, 2h, 8h
_MEAN_LATE_TICKS: Final = 2.0


@dataclass(frozen=True)
class Shape:
    """How operations spend their active time (SCHEDULED or PROCESSING)."""

    scheduled_share: float  # of the operations, those that wait SCHEDULED before processing
    processing_share: float  # of the mean active time, the part spent PROCESSING

    def __post_init__(self) -> None:
        if not 0 <= self.scheduled_share <= 1 or not 0 < self.processing_share <= 1:
            raise ValueError("need 0 <= scheduled_share <= 1 and 0 < processing_share <= 1")
        if self.scheduled_share == 0 and self.processing_share != 1:
            raise ValueError("with no operation waiting SCHEDULED, processing_share must be 1")


SHAPES: Final = {
    "scheduled": Shape(scheduled_share=0.5, processing_share=0.3),
    "on-arrival": Shape(scheduled_share=0.0, processing_share=1.0),
}
DEFAULT_SHAPE: Final = "scheduled"


def generate_scenario(
    *,
    n_operations: int = 100_000,
    days: float = 7,
    active: int = 1000,
    changes_per_minute: float = 100,
    seed: int = 0,
    future_hours: float = 24,
    counting: Counting = "cumulative",
    shape: str | Shape = DEFAULT_SHAPE,
) -> Scenario:
    if isinstance(shape, str):
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r} (one of {', '.join(SHAPES)})")
        shape = SHAPES[shape]
    shape_name = next((name for name, known in SHAPES.items() if known == shape), str(shape))
    if n_operations <= 0 or days <= 0 or days > 7:
        raise ValueError("need n_operations > 0 and 0 < days <= 7 (older operations are past retention)")
    rng = random.Random(seed)
    span = round(days * 86400)
    rate = n_operations / span  # arrivals per second
    mean_active = max(active, 1) / rate
    mean_processing = shape.processing_share * mean_active
    mean_wait = (
        (1 - shape.processing_share) * mean_active / shape.scheduled_share if shape.scheduled_share else 0.0
    )
    versions_per_op = changes_per_minute / (60 * rate)
    ticks = max(1.0, versions_per_op - 1 - shape.scheduled_share - _MEAN_LATE_TICKS)

    n_future = round(rate * future_hours * 3600)
    created = sorted(span - rng.random() * span for _ in range(n_operations))
    created += sorted(span + rng.random() * future_hours * 3600 for _ in range(n_future))
    operations: list[Timeline] = [
        _operation(
            rng,
            index=index,
            created=round(at),
            seed=seed,
            scheduled_share=shape.scheduled_share,
            mean_wait=mean_wait,
            mean_processing=mean_processing,
            ticks=ticks,
            counting=counting,
        )
        for index, at in enumerate(created)
    ]
    return Scenario(
        operations=operations,
        name=f"generated-{n_operations}-ops-{days:g}d",
        description=(
            f"{n_operations} operations over {days:g} days (+{n_future} in the next {future_hours:g} h), "
            f"~{active} active at now, ~{changes_per_minute:g} versions per minute, seed {seed}"
            + ("" if shape_name == DEFAULT_SHAPE else f", shape {shape_name}")
        ),
        now=span,
        counting=counting,
        seed=seed,
    )


def _operation(
    rng: random.Random,
    *,
    index: int,
    created: int,
    seed: int,
    scheduled_share: float,
    mean_wait: float,
    mean_processing: float,
    ticks: float,
    counting: Counting,
) -> SendPlan:
    total = max(1, min(200_000, round(rng.lognormvariate(math.log(800), 1.3))))
    waits = rng.random() < scheduled_share
    start = created + (min(round(rng.expovariate(1 / mean_wait)), 2 * 86400) if waits else 0)
    duration = max(1, round(mean_processing * rng.uniform(0.5, 1.5)))
    n_ticks = max(1, math.floor(ticks) + (rng.random() < ticks % 1))
    step = max(1, math.ceil(duration / n_ticks))

    roll = rng.random()
    failure_rate = (
        rng.uniform(0, 0.01)
        if roll < 0.9
        else rng.uniform(0.01, 0.05)
        if roll < 0.98
        else rng.uniform(0.08, 0.25)
    )
    failed = int(total * failure_rate)
    undelivered = int(total * rng.uniform(0, 0.02))
    late = _LATE_OFFSETS[: rng.choice((0, 1, 2, 3, 4))]
    late_delivered = int((total - failed - undelivered) * rng.uniform(0, 0.01)) if late else 0
    opened = int((total - failed - undelivered - late_delivered) * rng.uniform(0.05, 0.5))

    cancel = stall_at = stall_for = None
    fate = rng.random()
    if waits and start > created and fate < 0.02:
        cancel = created + round((start - created) * rng.uniform(0.1, 0.9))
    elif fate < 0.025:
        cancel = start + round(duration * rng.uniform(0.1, 0.9))
    elif fate < 0.03 and duration > 1:
        stall_at = start + round((duration - 1) * rng.uniform(0.2, 0.8))
        stall_for = None if fate < 0.0252 else round(rng.uniform(1800, 7200))  # a few never resume
    return SendPlan(
        id=operation_id(f"generated:{seed}:{index}"),
        name=f"gen-{index}",
        created=created,
        total=total,
        start=start,
        duration=duration,
        step=step,
        failed=failed,
        undelivered=undelivered,
        late_delivered=late_delivered,
        opened=opened,
        late=late,
        cancel=cancel,
        stall_at=stall_at,
        stall_for=stall_for,
        counting=counting,
    )


def main(argv: Sequence[str] | None = None) -> int:
    # No defaults here: an option left out keeps generate_scenario's default.
    parser = argparse.ArgumentParser(
        prog="python -m comms_sim.generate",
        description=__doc__.split("\n\n")[0],
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--operations", dest="n_operations", type=int, metavar="N")
    parser.add_argument("--days", type=float)
    parser.add_argument("--active", type=int, help="operations SCHEDULED/PROCESSING at now")
    parser.add_argument("--changes-per-minute", type=float)
    parser.add_argument("--future-hours", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--shape", choices=tuple(SHAPES), help="how the active time is spent")
    parser.add_argument("--counting", choices=COUNTINGS)
    parser.add_argument("--out", type=Path, required=True, help=".json (fast to load) or .yaml")
    options = vars(parser.parse_args(argv))
    out: Path = options.pop("out")
    scenario = generate_scenario(**options)
    scenario.dump(out)
    print(f"wrote {out}: {scenario.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

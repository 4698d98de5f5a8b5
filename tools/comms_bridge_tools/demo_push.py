"""The demo's push path (``make demo ARGS=--push``): the simulator's Event Streams deliveries go into the
stack's Kinesis stream (moto), :class:`KinesisPump` plays the event source mapping and the stream consumer
handler publishes; the poll keeps running as the reconciliation. Per status transition the demo then
shows how long after the API change its event reached the bus, on the path that published it, and when
the poll alone would have seen it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from comms_bridge_tools.kinesis_events import KinesisPump
from comms_bridge_tools.lambda_runtime import LambdaFunction
from comms_sim import ManualClock, SimulatorServer
from comms_sim.event_streams import Delivery, DeliveryFaults, Transition, all_transitions, plan_deliveries

BATCH_WINDOW_SECONDS: Final = 1  # the template's MaximumBatchingWindowInSeconds


@dataclass
class PushPath:
    kinesis: Any
    stream_name: str
    function: LambdaFunction
    clock: ManualClock
    found: list[Transition]
    pending: list[Delivery]
    dropped: set[tuple[str, str]]
    pump: KinesisPump = field(init=False)

    def __post_init__(self) -> None:
        self.pump = KinesisPump(
            self.kinesis, self.stream_name, lambda event: self.function.invoke(event).result or {}
        )

    @classmethod
    def plan(
        cls,
        sim: SimulatorServer,
        clock: ManualClock,
        *,
        kinesis: Any,
        stream_name: str,
        function: LambdaFunction,
        until: datetime,
        faults: DeliveryFaults,
    ) -> PushPath:
        # Every account's sink writes into the stack's one stream (each delivery names its account).
        found = all_transitions(sim, clock.now(), until)
        planned = plan_deliveries(found, faults)
        delivered = {(d.transition.operation_id, d.transition.status) for d in planned}
        dropped = {(t.operation_id, t.status) for t in found} - delivered
        return cls(kinesis, stream_name, function, clock, found, planned, dropped)

    def run_until(self, until: datetime, drain: Callable[[datetime], None]) -> None:
        """Deliver what falls due before ``until``: each group one batching window after its first record,
        then hand the bus's new events to ``drain`` (at the API clock of that moment)."""
        while self.pending:
            at = self.pending[0].due + timedelta(seconds=BATCH_WINDOW_SECONDS)
            if at >= until:
                return
            self.clock.set(max(self.clock.now(), at))
            due = [d for d in self.pending if d.due <= self.clock.now()]
            self.pending = self.pending[len(due) :]
            self.kinesis.put_records(
                StreamName=self.stream_name,
                Records=[{"Data": d.data, "PartitionKey": d.partition_key} for d in due],
            )
            self.pump.pump()
            drain(self.clock.now())

    def report(
        self,
        arrivals: dict[tuple[str, str], tuple[datetime, str]],
        polls: Sequence[datetime],
        label: Callable[[str], str],
    ) -> list[str]:
        """One line per transition: the path that put its event on the bus and after how long; when the
        poll alone would have seen it."""
        lines = []
        for t in self.found:
            if t.status == "CANCELED":
                continue
            arrival = arrivals.get((t.operation_id, t.status))
            next_poll = next((p for p in polls if p >= t.at), None)
            poll_text = "no later poll" if next_poll is None else f"next poll +{_seconds(next_poll - t.at)}"
            if arrival is None:
                bus = "never on the bus (superseded before the next poll)"
            else:
                bus = f"{arrival[1]} +{_seconds(arrival[0] - t.at)} on the bus"
            push = "push dropped" if (t.operation_id, t.status) in self.dropped else "push delivered"
            lines.append(
                f"{label(t.operation_id):<16} {t.status:<10} at {t.at:%H:%M:%S}Z: {bus}; {push}; {poll_text}"
            )
        return lines


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.1f} s"

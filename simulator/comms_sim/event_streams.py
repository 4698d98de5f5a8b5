"""Twilio Event Streams as the simulator plays it: one ``com.twilio.comms-api.operation.<status>`` delivery
per status transition of an operation, the way a Kinesis sink writes it (one CloudEvents JSON object per
record, ``data`` = ``{"operation_id": ...}``; reference notes §7 and §9).

Event Streams is at-least-once and unordered, and a sink can lose deliveries when it is misconfigured or
down; :class:`DeliveryFaults` plays all of that, seeded: a delay after the change, random extra delay
(which reorders), duplicates, drops. Stdlib only: putting the records into a Kinesis stream is the
caller's business (``comms_bridge_tools.kinesis_events``); the simulator only says what Twilio would
write and when (API clock). ``CANCELED`` has no documented event type: it is not delivered.

Each delivery names the account of its operation, where Twilio names the account of a resource: in the
``source`` resource path (``/v1/Accounts/AC.../Emails/Operations/{id}``); ``data`` stays as the schema has it
(``{"operation_id"}`` only, ``additionalProperties: false``). ``DeliveryFaults.account_in`` moves it into
``data`` (``account_sid``) or leaves it out, for consumers tested against either reading.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal

from comms_sim.timefmt import format_ts

if TYPE_CHECKING:
    from comms_sim.server import SimulatorServer

EVENT_TYPE: Final = "com.twilio.comms-api.operation.{}"
DELIVERED_STATUSES: Final = ("SCHEDULED", "PROCESSING", "COMPLETED")
SCHEMA: Final = "https://events-schemas.twilio.com/CommsApi.Operation{}/2"
AccountPlace = Literal["source", "data", "none"]
ACCOUNT_PLACES: Final = ("source", "data", "none")


@dataclass(frozen=True)
class DeliveryFaults:
    """What Twilio's delivery does to the deliveries.

    ``delay_seconds``: from the change (its ``updatedAt``) to the record in the stream.
    ``reorder_seconds``: up to this much more, at random per delivery (so later changes can arrive first).
    ``duplicate_share``: the share of deliveries sent twice (the copy up to ``reorder_seconds`` later).
    ``drop_share``: the share never delivered. ``data_as_string``: ``data`` as JSON text (Twilio's
    Kinesis example) instead of an object. ``account_in``: where the operation's account is named
    (``source``, ``data`` as ``account_sid``, or ``none``)."""

    delay_seconds: float = 2.0
    reorder_seconds: float = 0.0
    duplicate_share: float = 0.0
    drop_share: float = 0.0
    seed: int = 0
    data_as_string: bool = False
    account_in: AccountPlace = "source"

    def __post_init__(self) -> None:
        if self.account_in not in ACCOUNT_PLACES:
            raise ValueError(f"account_in must be one of {ACCOUNT_PLACES}, not {self.account_in!r}")
        for name in ("duplicate_share", "drop_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.delay_seconds < 0 or self.reorder_seconds < 0:
            raise ValueError("delays cannot be negative")


@dataclass(frozen=True)
class Transition:
    """Ground truth: ``operation_id`` (of ``account_sid``) entered ``status`` at ``at`` (``updatedAt``)."""

    at: datetime
    operation_id: str
    name: str
    status: str
    account_sid: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One record Twilio writes: when (``due``, API clock), for which transition, and the bytes."""

    due: datetime
    transition: Transition
    event_id: str
    data: bytes
    duplicate: bool = False

    @property
    def partition_key(self) -> str:
        return self.transition.operation_id


def transitions(
    sim: SimulatorServer, since: datetime | None, until: datetime, *, account: str | None = None
) -> list[Transition]:
    """Every status an operation of ``account`` (default: the first) entered in ``(since, until]``, oldest
    first: the first version of an operation enters its status; a later version whose status differs from
    the version before enters it."""
    sid = sim.account(account).sid
    found: list[Transition] = []
    last: dict[str, str | None] = {}
    lookback = None if since is None else since - timedelta(days=8)
    for entry in sim.history_between(lookback, until, account=sid):
        previous = last.get(entry.operation_id)
        last[entry.operation_id] = entry.status
        if entry.status == previous or (since is not None and entry.time <= since):
            continue
        found.append(Transition(entry.time, entry.operation_id, entry.name, entry.status, sid))
    return found


def all_transitions(sim: SimulatorServer, since: datetime | None, until: datetime) -> list[Transition]:
    """:func:`transitions` of every account the simulator serves, merged by time (one sink per account,
    all writing into one stream)."""
    found = [t for account in sim.accounts for t in transitions(sim, since, until, account=account.sid)]
    found.sort(key=lambda t: (t.at, t.account_sid or "", t.operation_id))
    return found


def plan_deliveries(found: list[Transition], faults: DeliveryFaults) -> list[Delivery]:
    """What the sink writes for ``found`` under ``faults``, in the order it arrives (by ``due``)."""
    rng = random.Random(faults.seed)
    deliveries: list[Delivery] = []
    for number, transition in enumerate(found):
        if transition.status not in DELIVERED_STATUSES:
            continue
        dropped = rng.random() < faults.drop_share
        copies = 2 if rng.random() < faults.duplicate_share else 1
        extra = [rng.uniform(0, faults.reorder_seconds) for _ in range(copies)]
        if dropped:
            continue
        event_id = f"EZ{number:032x}"
        data = cloud_event(
            transition, event_id, data_as_string=faults.data_as_string, account_in=faults.account_in
        )
        for copy, jitter in enumerate(sorted(extra)):
            due = transition.at + timedelta(seconds=faults.delay_seconds + jitter)
            deliveries.append(Delivery(due, transition, event_id, data, duplicate=copy > 0))
    deliveries.sort(key=lambda d: (d.due, d.event_id, d.duplicate))
    return deliveries


def cloud_event(
    transition: Transition, event_id: str, *, data_as_string: bool, account_in: AccountPlace = "source"
) -> bytes:
    status = transition.status.lower()
    account = transition.account_sid
    payload = {"operation_id": transition.operation_id}
    if account is not None and account_in == "data":
        payload["account_sid"] = account
    source = f"/v1/Emails/Operations/{transition.operation_id}"
    if account is not None and account_in == "source":
        source = f"/v1/Accounts/{account}/Emails/Operations/{transition.operation_id}"
    envelope = {
        "specversion": "1.0",
        "type": EVENT_TYPE.format(status),
        "source": source,
        "id": event_id,
        "dataschema": SCHEMA.format(status.capitalize()),
        "datacontenttype": "application/json",
        "time": format_ts(int(transition.at.timestamp())),
        "data": json.dumps(payload) if data_as_string else payload,
    }
    return json.dumps(envelope).encode()

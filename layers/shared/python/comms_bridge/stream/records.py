"""What one Kinesis record of a Twilio Event Streams sink holds (contract §7): pure parsing, no I/O.

A record's data is one CloudEvents JSON object whose ``data`` is an object or a JSON-encoded string (the
Kinesis sink's test event sends a string, webhook examples an object; both are read). Only three kinds
matter: an ``operation.*`` event (its ``data.operation_id`` says which operation to fetch; its type and
time are hints, never published), the sink's test event (its ``test_id`` validates the sink), and
everything else, skipped with a reason.

The account a record belongs to (docs/many-accounts.md): an ``AC...`` SID in ``data.account_sid`` or
``data.accountSid``, else the envelope's ``id`` when it is one (the sink's test event carries the account
there), else one inside ``source`` (Twilio's resource paths name it, ``/Accounts/AC.../...``); None when
the record names none. The stream runtime routes by it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from comms_bridge.comms.models import is_operation_id

OPERATION_EVENT_PREFIX: Final = "com.twilio.comms-api.operation."
OPERATION_EVENT_TYPES: Final = frozenset(
    OPERATION_EVENT_PREFIX + name for name in ("scheduled", "processing", "completed")
)
TEST_EVENT_TYPE: Final = "com.twilio.eventstreams.test-event"
ACCOUNT_SID: Final = re.compile(r"AC[0-9a-fA-F]{32}")
MAX_TEST_ID_CHARS: Final = 200
"""A test id is a UUID; anything much longer is not one, and is not stored."""


class SkipReason(StrEnum):
    """Why a record was skipped; each has its own metric (``StreamSkipped`` + the value in CamelCase)."""

    UNDECODABLE = "undecodable"  # not UTF-8 JSON, not an object, no string ``type``, bad ``data``
    OTHER_TYPE = "other-type"  # a type this consumer does not act on
    INVALID_ID = "invalid-id"  # an operation event whose ``operation_id`` is missing or not an id
    INVALID_TEST_ID = "invalid-test-id"  # a test event without a usable ``test_id``
    UNKNOWN_OPERATION = "unknown-operation"  # the API answered 404 for the id (decided after the fetch)
    MALFORMED_OPERATION = "malformed-operation"  # the API answered with an invalid operation
    UNWATCHED_ACCOUNT = "unwatched-account"  # the record's account is not one the stack watches
    NO_ACCOUNT = "no-account"  # the record names no account and the stack watches several
    UNAUTHORIZED = "unauthorized"  # the account's credentials were refused (401/403)

    @property
    def metric(self) -> str:
        return "StreamSkipped" + "".join(part.capitalize() for part in self.value.split("-"))


@dataclass(frozen=True)
class OperationEvent:
    """``operation.scheduled|processing|completed`` for ``operation_id``; ``time`` as the event gave it."""

    sequence: str
    type: str
    operation_id: str
    time: str | None
    account_sid: str | None = None


@dataclass(frozen=True)
class SinkTestEvent:
    sequence: str
    test_id: str
    time: str | None
    account_sid: str | None = None


@dataclass(frozen=True)
class Skipped:
    sequence: str
    reason: SkipReason
    type: str | None
    detail: str


StreamRecord = OperationEvent | SinkTestEvent | Skipped


def parse_record(sequence: str, data: bytes) -> StreamRecord:
    """One record's data (already base64-decoded) as what it asks of the consumer."""
    try:
        envelope = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Skipped(sequence, SkipReason.UNDECODABLE, None, "data is not UTF-8 JSON")
    if not isinstance(envelope, dict):
        return Skipped(sequence, SkipReason.UNDECODABLE, None, "data is not a JSON object")
    kind = envelope.get("type")
    if not isinstance(kind, str):
        return Skipped(sequence, SkipReason.UNDECODABLE, None, "no string 'type'")
    time = envelope.get("time") if isinstance(envelope.get("time"), str) else None
    if kind not in OPERATION_EVENT_TYPES and kind != TEST_EVENT_TYPE:
        return Skipped(sequence, SkipReason.OTHER_TYPE, kind[:200], "a type this consumer does not act on")
    payload = _payload(envelope.get("data"))
    if payload is None:
        return Skipped(
            sequence, SkipReason.UNDECODABLE, kind, "'data' is neither an object nor JSON text of one"
        )
    if kind == TEST_EVENT_TYPE:
        test_id = payload.get("test_id")
        if not isinstance(test_id, str) or not test_id or len(test_id) > MAX_TEST_ID_CHARS:
            return Skipped(sequence, SkipReason.INVALID_TEST_ID, kind, "no usable 'test_id'")
        return SinkTestEvent(sequence, test_id, time, account_of(envelope, payload))
    operation_id = payload.get("operation_id")
    if not isinstance(operation_id, str) or not is_operation_id(operation_id):
        return Skipped(
            sequence, SkipReason.INVALID_ID, kind, "'operation_id' is missing or not an operation id"
        )
    return OperationEvent(sequence, kind, operation_id, time, account_of(envelope, payload))


def account_of(envelope: dict[str, Any], payload: dict[str, Any]) -> str | None:
    """The ``AC...`` SID the record names: its data's, else its ``id``, else the one in its ``source``."""
    for value in (payload.get("account_sid"), payload.get("accountSid"), envelope.get("id")):
        if isinstance(value, str) and ACCOUNT_SID.fullmatch(value):
            return value
    source = envelope.get("source")
    found = ACCOUNT_SID.search(source) if isinstance(source, str) else None
    return found.group(0) if found else None


def _payload(data: Any) -> dict[str, Any] | None:
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    return data if isinstance(data, dict) else None

"""What a demo run produced (events, alerts, per-operation records), and the recorder that takes each
event and alert as it comes off the bus: checks it, files it under its operation and shows it on the
timeline."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from comms_bridge.events.detail_types import DetailType
from comms_bridge_tools import demo_accounts
from comms_bridge_tools.timeline import AlertView, Timeline, TimelineEvent


@dataclass(frozen=True)
class AlertRecord:
    at: str
    channel: str  # "slack" or "sns"
    operation_id: str | None
    title: str
    body: str


@dataclass
class OperationRecord:
    name: str
    operation_id: str
    status_path: list[str] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    stats_after_terminal: int = 0

    def observe(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        self.events[detail_type] += 1
        status = detail.get("status")
        if detail_type == DetailType.STATUS_CHANGED and isinstance(status, str):
            if not self.status_path and detail.get("previousStatus"):
                self.status_path.append(str(detail["previousStatus"]))
            self.status_path.append(status)
        if detail_type == DetailType.STATS_CHANGED and detail.get("terminal"):
            self.stats_after_terminal += 1

    @property
    def final_status(self) -> str | None:
        return self.status_path[-1] if self.status_path else None


@dataclass
class DemoResult:
    scenario: str
    polls: int = 0
    wall_seconds: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)
    operations: dict[str, OperationRecord] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    invocations: Counter[str] = field(default_factory=Counter)
    handler_log: str | None = None
    push_lines: list[str] = field(default_factory=list)  # with --push: one line per status change

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "scenario": self.scenario,
            "polls": self.polls,
            "wallSeconds": round(self.wall_seconds, 2),
            "problems": self.problems,
            "invocations": dict(self.invocations),
            "push": self.push_lines,
            "operations": [
                {
                    "name": record.name,
                    "operationId": record.operation_id,
                    "statusPath": record.status_path,
                    "events": dict(record.events),
                    "alerts": dict(record.alerts),
                }
                for record in self.operations.values()
            ],
            "events": [
                {
                    "detailType": event["detail-type"],
                    "source": event["source"],
                    "operationId": event["detail"].get("operationId"),
                    "status": event["detail"].get("status"),
                    "previousStatus": event["detail"].get("previousStatus"),
                    "eventKey": event["detail"].get("eventKey"),
                    "detail": event["detail"],
                }
                for event in self.events
            ],
            "alerts": [
                {
                    "at": alert.at,
                    "channel": alert.channel,
                    "operationId": alert.operation_id,
                    "title": alert.title,
                    "body": alert.body,
                }
                for alert in self.alerts
            ],
            "handlerLog": self.handler_log,
        }


class _SchemaCheck:
    """The detail-type JSON Schemas of the layer, applied to every event that crossed the bus as the tests
    apply them (tests/support/schemas.py): they are draft-04, the only draft the schema registry takes."""

    def __init__(self) -> None:
        import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415 -- a dev dependency

        from comms_bridge.events.schemas import load_schema  # noqa: PLC0415

        self._jsonschema = jsonschema
        self._load = load_schema
        self._validators: dict[str, Any] = {}

    def errors(self, detail_type: str, detail: Mapping[str, Any]) -> list[str]:
        if detail_type not in self._validators:
            try:
                schema = self._load(detail_type)
            except (ValueError, OSError):
                return [f"no schema for detail-type {detail_type!r}"]
            draft4 = self._jsonschema.Draft4Validator
            self._validators[detail_type] = draft4(schema, format_checker=draft4.FORMAT_CHECKER)
        return [error.message for error in self._validators[detail_type].iter_errors(dict(detail))]


def clock_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%H:%M")


def _event_time(event: Mapping[str, Any], fallback: datetime) -> str:
    observed = event.get("detail", {}).get("observedAt")
    if isinstance(observed, str):
        with contextlib.suppress(ValueError):
            return clock_text(datetime.fromisoformat(observed.replace("Z", "+00:00")))
    return clock_text(fallback)


class DemoRecorder:
    """Files every event and alert of a run into ``result`` and onto the timeline.

    ``path`` names how the events now arriving got to the bus ("poll" or "push"); ``arrivals`` keeps, per
    (operation, status), when and by which path its Status Changed event first arrived."""

    def __init__(
        self,
        result: DemoResult,
        names: Mapping[str, str],
        owners: Mapping[str, demo_accounts.AccountOperation],
        timeline: Timeline,
    ) -> None:
        self.result = result
        self.names = names
        self.owners = owners
        self.timeline = timeline
        self.arrivals: dict[tuple[str, str], tuple[datetime, str]] = {}  # (op, status) -> first on the bus
        self.path = "poll"
        self._schemas = _SchemaCheck()

    def label(self, operation_id: str | None) -> str:
        if operation_id is None:
            return "?"
        return self.names.get(operation_id, operation_id[-8:])

    def event(self, event: dict[str, Any], now: datetime) -> None:
        detail_type = str(event.get("detail-type"))
        detail = event.get("detail") or {}
        operation_id = detail.get("operationId")
        self.result.events.append(event)
        for problem in self._schemas.errors(detail_type, detail):
            self.result.problems.append(
                f"{detail_type} for {self.label(operation_id)} breaks its schema: {problem}"
            )
        crossed = demo_accounts.crossed(detail, self.owners)
        if crossed is not None:
            self.result.problems.append(crossed)
        record = self.result.operations.get(str(operation_id))
        if record is not None:
            record.observe(detail_type, detail)
        if detail_type == "Email Operation Status Changed":
            self.arrivals.setdefault((str(operation_id), str(detail.get("status"))), (now, self.path))
        self.timeline.event(
            TimelineEvent(
                at=_event_time(event, now),
                detail_type=detail_type,
                operation=self.label(operation_id),
                detail=detail,
            )
        )

    def alert(self, alert: AlertRecord) -> None:
        self.result.alerts.append(alert)
        record = self.result.operations.get(str(alert.operation_id))
        if record is not None:
            record.alerts[alert.channel] += 1
        self.timeline.alert(
            AlertView(
                at=alert.at,
                channel=alert.channel,
                operation=self.label(alert.operation_id),
                title=alert.title,
                body=alert.body,
            )
        )

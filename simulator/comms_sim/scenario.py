"""Scenarios: a list of operation timelines read from YAML or JSON data files.

Times in a scenario file are offsets from the scenario's anchor (``30s``, ``5m``, ``-2d``,
``1h30m``, or plain seconds), or RFC 3339 instants when the file sets ``start``. The anchor
is ``start`` if the file sets it, otherwise the simulator clock's time at server start minus
``now`` (so a generated week can end at "now" on any clock). See docs/simulator.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import yaml

from comms_sim.error_catalog import validate_weights
from comms_sim.ids import is_operation_id, operation_id
from comms_sim.timefmt import epoch, format_ts, parse_duration, parse_rfc3339, to_datetime
from comms_sim.timeline import (
    COUNTINGS,
    STAT_NAMES,
    STATUSES,
    Counting,
    Keyframe,
    KeyframeTimeline,
    SendPlan,
    Timeline,
)

_SEND_KEYS: Final = frozenset(
    {
        "name", "id", "created", "total", "recipients", "start", "duration", "step", "failed",
        "undelivered", "late_delivered", "opened", "early_open_fraction", "late", "cancel", "stall",
        "retries", "errors",
    }
)  # fmt: skip
_KEYFRAME_KEYS: Final = frozenset({"name", "id", "created", "versions", "errors"})
# Where the pytest fixture's ManualClock starts: a fixed Monday morning, the same timestamps every run.
STORY_START: Final = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)

_TOP_KEYS: Final = frozenset({"name", "description", "start", "now", "counting", "seed", "operations"})


def scenarios_dir() -> Path:
    """The repository's ``scenarios/`` folder (``COMMS_SIM_SCENARIOS`` overrides it)."""
    override = os.environ.get("COMMS_SIM_SCENARIOS")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "scenarios"


@dataclass
class Scenario:
    operations: list[Timeline]
    name: str = "scenario"
    description: str = ""
    start: datetime | None = None
    now: int = 0  # where a default clock starts, as an offset from the anchor
    counting: Counting = "cumulative"
    seed: int = 0
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for timeline in self.operations:
            if timeline.id in seen:
                raise ValueError(f"duplicate operation id {timeline.id}")
            seen.add(timeline.id)

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Scenario:
        source = Path(path)
        text = source.read_text(encoding="utf-8")
        data = json.loads(text) if source.suffix == ".json" else yaml.load(text, Loader=yaml.CSafeLoader)
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a scenario is a mapping with an 'operations' list")
        scenario = cls.from_dict(data)
        scenario.source = source
        return scenario

    @classmethod
    def story(cls) -> Scenario:
        """scenarios/story.yaml: every status, a high-failure send, a stall, late opens."""
        return cls.load(scenarios_dir() / "story.yaml")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise ValueError(f"unknown scenario keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
        start = None if data.get("start") is None else to_datetime(data["start"])
        counting = data.get("counting", "cumulative")
        if counting not in COUNTINGS:
            raise ValueError(f"counting must be one of {COUNTINGS}, not {counting!r}")
        seed = int(data.get("seed", 0))
        operations = data.get("operations")
        if not isinstance(operations, list):
            raise ValueError("a scenario needs an 'operations' list")
        timelines = [
            _timeline(spec, index, start=start, seed=seed, counting=counting)
            for index, spec in enumerate(operations)
        ]
        return cls(
            operations=timelines,
            name=str(data.get("name", "scenario")),
            description=str(data.get("description", "")),
            start=start,
            now=parse_duration(data.get("now", 0)),
            counting=counting,
            seed=seed,
        )

    @classmethod
    def generate(
        cls,
        *,
        n_operations: int = 100_000,
        days: float = 7,
        active: int = 1000,
        changes_per_minute: float = 100,
        seed: int = 0,
        future_hours: float = 24,
        counting: Counting = "cumulative",
        shape: str = "scheduled",
    ) -> Scenario:
        """A steady-state week ending at the scenario's ``now``; see ``comms_sim.generate``."""
        from comms_sim.generate import generate_scenario  # noqa: PLC0415 -- generate imports this module

        return generate_scenario(
            n_operations=n_operations,
            days=days,
            active=active,
            changes_per_minute=changes_per_minute,
            seed=seed,
            future_hours=future_hours,
            counting=counting,
            shape=shape,
        )

    # -- writing ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        if self.start is not None:
            data["start"] = format_ts(epoch(self.start))
        data.update({"now": self.now, "counting": self.counting, "seed": self.seed})
        data["operations"] = [_spec(timeline) for timeline in self.operations]
        return data

    def dump(self, path: str | os.PathLike[str]) -> Path:
        """Write as JSON (``.json``, fast to load for 100k operations) or YAML (anything else)."""
        target = Path(path)
        if target.suffix == ".json":
            target.write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n", encoding="utf-8")
        else:
            target.write_text(
                yaml.dump(self.to_dict(), Dumper=yaml.CSafeDumper, sort_keys=False), encoding="utf-8"
            )
        return target

    def __repr__(self) -> str:
        return f"Scenario(name={self.name!r}, operations={len(self.operations)})"


# -- parsing of one operation -----------------------------------------------------------------------


def _time(value: object, start: datetime | None, what: str) -> int:
    """An offset (duration) or, with an anchored scenario, an RFC 3339 instant; scenario seconds."""
    if isinstance(value, datetime) or (isinstance(value, str) and "T" in value.upper() and ":" in value):
        if start is None:
            raise ValueError(f"{what}: an absolute time needs the scenario's 'start'")
        instant = to_datetime(value) if isinstance(value, datetime) else parse_rfc3339(value)
        return epoch(instant) - epoch(start)
    return parse_duration(value)


def _int(spec: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"'{key}' must be an integer, not {value!r}")
    return value


def _weights(spec: Mapping[str, Any]) -> dict[int, int] | None:
    raw = spec.get("errors")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError("'errors' maps error codes to weights, e.g. {62001: 3, 62004: 1}")
    return validate_weights({int(code): int(weight) for code, weight in raw.items()})


def _timeline(spec: object, index: int, *, start: datetime | None, seed: int, counting: Counting) -> Timeline:
    if not isinstance(spec, Mapping):
        raise ValueError(f"operation #{index} is not a mapping")
    name = str(spec.get("name", f"op{index}"))
    try:
        op_id = str(spec.get("id") or operation_id(f"{seed}:{index}:{name}"))
        if not is_operation_id(op_id):
            raise ValueError(f"id {op_id!r} does not match the documented pattern")
        created = _time(spec.get("created", 0), start, "created")
        if "versions" in spec:
            _check_keys(spec, _KEYFRAME_KEYS)
            return KeyframeTimeline(
                id=op_id,
                name=name,
                created=created,
                frames=[_keyframe(frame, start) for frame in spec["versions"]],
                error_weights=_weights(spec),
            )
        _check_keys(spec, _SEND_KEYS)
        stall = spec.get("stall") or {}
        if not isinstance(stall, Mapping) or set(stall) - {"at", "for"}:
            raise ValueError("'stall' is {at: TIME, for: DURATION or null (forever)}")
        return SendPlan(
            id=op_id,
            name=name,
            created=created,
            total=_int(spec, "total"),
            recipients=spec.get("recipients"),
            start=None if spec.get("start") is None else _time(spec["start"], start, "start"),
            duration=parse_duration(spec.get("duration", 60)),
            step=parse_duration(spec.get("step", 10)),
            failed=_int(spec, "failed"),
            undelivered=_int(spec, "undelivered"),
            late_delivered=_int(spec, "late_delivered"),
            opened=_int(spec, "opened"),
            early_open_fraction=float(spec.get("early_open_fraction", 0.3)),
            late=[parse_duration(offset) for offset in spec.get("late") or ()],
            cancel=None if spec.get("cancel") is None else _time(spec["cancel"], start, "cancel"),
            stall_at=None if stall.get("at") is None else _time(stall["at"], start, "stall.at"),
            stall_for=None if stall.get("for") is None else parse_duration(stall["for"]),
            retries=_int(spec, "retries"),
            error_weights=_weights(spec),
            counting=counting,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"operation #{index} ({name}): {exc}") from exc


def _check_keys(spec: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _keyframe(frame: object, start: datetime | None) -> Keyframe:
    if not isinstance(frame, Mapping) or set(frame) - {"at", "status", "stats", "updatedAt"}:
        raise ValueError("a version is {at, status, stats, updatedAt?}")
    status = frame.get("status")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    stats = frame.get("stats") or {}
    if not isinstance(stats, Mapping) or set(stats) - set(STAT_NAMES):
        raise ValueError(f"stats keys must be among {STAT_NAMES}")
    updated = frame.get("updatedAt")
    return Keyframe(
        at=_time(frame.get("at", 0), start, "at"),
        status=cast(str, status),
        stats={str(key): int(value) for key, value in stats.items()},
        updated=None if updated is None else _time(updated, start, "updatedAt"),
    )


def _spec(timeline: Timeline) -> dict[str, Any]:
    """A timeline back to its file form (scenario seconds as plain integers)."""
    spec: dict[str, Any] = {"name": timeline.name, "id": timeline.id, "created": timeline.created}
    if isinstance(timeline, KeyframeTimeline):
        spec["versions"] = [
            {"at": f.at, "status": f.status, "stats": dict(f.stats)}
            | ({} if f.updated is None else {"updatedAt": f.updated})
            for f in timeline.frames
        ]
    elif isinstance(timeline, SendPlan):
        spec.update(
            total=timeline.total,
            start=timeline.start,
            duration=timeline.duration,
            step=timeline.step,
        )
        optional: Sequence[tuple[str, Any, Any]] = (
            ("recipients", timeline.recipients, timeline.total),
            ("failed", timeline.failed, 0),
            ("undelivered", timeline.undelivered, 0),
            ("late_delivered", timeline.late_delivered, 0),
            ("opened", timeline.opened, 0),
            ("late", list(timeline.late), []),
            ("cancel", timeline.cancel, None),
            ("retries", timeline.retries, 0),
        )
        spec.update({key: value for key, value, default in optional if value != default})
        if timeline.opened:
            spec["early_open_fraction"] = round(timeline.early_opened / timeline.opened, 6)
        if timeline.stall_at is not None:
            spec["stall"] = {"at": timeline.stall_at, "for": timeline.stall_for}
    if timeline.error_weights:
        spec["errors"] = dict(timeline.error_weights)
    return spec


_Loaded = TypeVar("_Loaded")


class ScenarioError(Exception):
    """A scenario file that cannot be played: the message is one line naming the file and what is wrong."""


def load_scenario(path: str | Path) -> Scenario:
    """The scenario at ``path``, or a :class:`ScenarioError` for a missing or unreadable file, bad YAML or a
    bad value (for the simulator's and the demo's command lines: one line, never a traceback)."""
    return read_or_explain(path, Scenario.load)


def read_or_explain(path: str | Path, load: Callable[[str | Path], _Loaded]) -> _Loaded:
    """``load(path)``, its failures turned into one-line :class:`ScenarioError` messages naming the file."""
    name = str(path)
    try:
        return load(path)
    except FileNotFoundError:
        raise ScenarioError(f"{name}: no such scenario file") from None
    except OSError as exc:
        raise ScenarioError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ScenarioError(f"{name}: not valid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{name}: not valid YAML: {exc}") from None
    except (ValueError, TypeError) as exc:
        message = " ".join(str(exc).split())
        raise ScenarioError(message if message.startswith(name) else f"{name}: {message}") from None

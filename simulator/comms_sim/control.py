"""``/_sim/*``: drive a standalone simulator from another process (same Basic auth as the API).

* ``GET /_sim/state`` -- clock, anchor, scenario, counters, and each account with its own counters
* ``POST /_sim/clock`` ``{"advance": 60}`` or ``{"set": "2026-01-05T10:00:00Z"}`` (ManualClock only, else 409)
* ``POST /_sim/faults`` ``{"kind": "429", "endpoint": "list_operations", "times": 2}`` (add ``"account":
  "AC..."`` to fault one account only), ``GET``, ``DELETE`` (``?account=AC...``: that account's rules only)
* ``GET /_sim/operations`` -- ground truth now; ``GET /_sim/history?since=...&until=...``; both take
  ``?account=AC...`` (default: the first account)
* ``POST /_sim/reset-log``

Control calls are not counted in the request log or the counters. Any account's credentials may use them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from comms_sim.clock import ManualClock
from comms_sim.faults import FaultRule
from comms_sim.timefmt import epoch, format_ts, parse_rfc3339

if TYPE_CHECKING:
    from comms_sim.server import SimulatorServer

# What a client may set: every field of a rule but its counters.
_RULE_FIELDS: Final = frozenset(rule_field.name for rule_field in fields(FaultRule)) - {"seen", "fired"}


def handle_control(
    sim: SimulatorServer, method: str, path: str, query: str, body: bytes
) -> tuple[int, dict[str, Any] | list[Any]]:
    try:
        payload: Any = json.loads(body) if body.strip() else {}
    except ValueError:
        return 400, {"error": "the body is not JSON"}
    route = (method, path)
    params = {name: values[-1] for name, values in parse_qs(query).items()}
    account = _account(sim, params.get("account"))
    if account == "":
        return 404, {"error": f"no account {params.get('account')!r} in this simulator"}
    if route == ("GET", "/_sim/state"):
        return 200, _state(sim)
    if route == ("POST", "/_sim/clock"):
        return _clock(sim, payload)
    if route == ("POST", "/_sim/faults"):
        if not isinstance(payload, dict) or set(payload) - _RULE_FIELDS:
            return 400, {"error": f"a fault rule has the fields {sorted(_RULE_FIELDS)}"}
        if payload.get("account") is not None:
            payload["account"] = _account(sim, str(payload["account"]))
            if not payload["account"]:
                return 404, {"error": "no such account in this simulator"}
        try:
            rule = sim.faults.add(FaultRule(**payload))
        except (TypeError, ValueError) as exc:
            return 400, {"error": str(exc)}
        return 201, asdict(rule)
    if route == ("GET", "/_sim/faults"):
        return 200, [asdict(rule) for rule in sim.faults]
    if route == ("DELETE", "/_sim/faults"):
        removed = sim.faults.clear(account)
        return 200, {"faults": len(sim.faults), "removed": removed}
    if route == ("POST", "/_sim/reset-log"):
        sim.reset_log()
        return 200, {"counters": {}}
    if route == ("GET", "/_sim/operations"):
        return 200, sim.operations(account=account)
    if route == ("GET", "/_sim/history"):
        try:
            since = parse_rfc3339(params["since"]) if "since" in params else None
            until = parse_rfc3339(params["until"]) if "until" in params else None
        except ValueError as exc:
            return 400, {"error": str(exc)}
        return 200, [
            {"time": entry.updated_at, "operationId": entry.operation_id, "name": entry.name,
             "status": entry.status, "stats": dict(entry.stats)}
            for entry in sim.history_between(since, until, account=account)
        ]  # fmt: skip
    return 404, {"error": f"no control route {method} {path}"}


def _clock(sim: SimulatorServer, payload: Any) -> tuple[int, dict[str, Any]]:
    if not isinstance(sim.clock, ManualClock):
        return 409, {"error": f"the simulator runs on {sim.clock!r}; start it with --manual"}
    if not isinstance(payload, dict) or not ({"advance", "set"} & set(payload)):
        return 400, {"error": 'send {"advance": seconds} or {"set": "RFC 3339"}'}
    try:
        if "set" in payload:
            sim.clock.set(parse_rfc3339(str(payload["set"])))
        if "advance" in payload:
            sim.clock.advance(float(payload["advance"]))
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
    return 200, _state(sim)


def _account(sim: SimulatorServer, given: str | None) -> str | None:
    """The SID of the account ``given`` names (its SID or name); None: none given; "": an unknown one."""
    if given is None:
        return None
    try:
        return sim.account(given).sid
    except KeyError:
        return ""


def _state(sim: SimulatorServer) -> dict[str, Any]:
    return {
        "now": format_ts(epoch(sim.now())),
        "anchor": format_ts(epoch(sim.anchor)),
        "clock": repr(sim.clock),
        "scenario": sim.scenario.name,
        "operations": len(sim.scenario.operations),
        "counters": sim.counters,
        "accounts": [
            {"sid": account.sid, "name": account.name, "scenario": account.scenario.name,
             "operations": len(account.scenario.operations), "anchor": format_ts(epoch(account.anchor)),
             "counters": sim.account_counters(account.sid)}
            for account in sim.accounts
        ],
    }  # fmt: skip

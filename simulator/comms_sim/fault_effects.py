"""What fired fault rules do to an answer the API computed: replace it by an error status, break items,
shuffle, truncate or pad the body, or name another ``Date``. The rules themselves live in ``faults``."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from typing import Final

from comms_sim.api import (
    CODE_INTERNAL,
    CODE_TOO_MANY,
    CODE_UNAUTHORIZED,
    CODE_UNAVAILABLE,
    ApiResult,
    error_envelope,
)
from comms_sim.faults import (
    CLOCK_MUTATIONS,
    ERROR_MUTATIONS,
    MUTATIONS,
    FaultInjector,
    FaultRule,
    break_error_item,
    break_operation,
    dumps,
    malformed_body,
    padded,
)
from comms_sim.timefmt import epoch, format_ts, http_date, parse_rfc3339

_STATUS_RULES: Final = {
    "401": (401, CODE_UNAUTHORIZED),
    "429": (429, CODE_TOO_MANY),
    "503": (503, CODE_UNAVAILABLE),
    "500": (500, CODE_INTERNAL),
}


def apply_faults(faults: FaultInjector, result: ApiResult, fired: list[FaultRule], now: int) -> bytes:
    """The body to send for ``result`` once the ``fired`` rules acted on it (``result`` is changed too)."""
    delay = sum(rule.delay for rule in fired if rule.kind == "slow")
    if delay > 0:
        time.sleep(delay)
    status_rule = next((rule for rule in fired if rule.kind in _STATUS_RULES), None)
    if status_rule is not None:
        status, code = _STATUS_RULES[status_rule.kind]
        result.status, result.body, result.items_key = status, error_envelope(code), None
        result.headers = {}
        if status == 401:
            result.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return result.encode()
        retry_after = _retry_after(status_rule, now)
        if status != 500 and retry_after is not None:
            result.headers["Retry-After"] = retry_after
        return result.encode()
    if result.status != 200:
        return result.encode()
    malformed = None
    for rule in fired:
        if rule.kind == "shuffle":
            faults.shuffle(result.items)
        elif rule.kind == "bad_items":
            _break_items(faults, result, rule, now)
        elif rule.kind == "malformed_json":
            malformed = rule
    body = result.encode()
    if malformed is not None:
        body = malformed_body(body, malformed.mutation or "truncated")
    for rule in fired:
        if rule.kind == "oversize":
            body = padded(body, rule.size)
    return body


def bad_date(fired: list[FaultRule], now: int) -> int | None:
    """The ``Date`` a bad_date rule sends instead of the API clock (None: no such rule fired)."""
    rule = next((rule for rule in fired if rule.kind == "bad_date"), None)
    if rule is None or rule.date is None:
        return None
    if isinstance(rule.date, datetime):
        return epoch(rule.date)
    if isinstance(rule.date, int | float):
        return now + math.ceil(rule.date)
    if _is_number(rule.date):
        return now + math.ceil(float(rule.date))
    return epoch(parse_rfc3339(rule.date))


def _break_items(faults: FaultInjector, result: ApiResult, rule: FaultRule, now: int) -> None:
    future = format_ts(now + math.ceil(rule.ahead))
    operations = MUTATIONS + CLOCK_MUTATIONS
    if result.items_key is None:  # fetch: the operation itself
        item = json.loads(dumps(result.body))
        result.body = break_operation(item, _mutation(faults, rule, operations), future=future)
        return
    is_errors = result.items_key == "errors"
    for index in faults.pick(len(result.items), rule.items):
        item = json.loads(result.items[index])
        if is_errors:
            broken = break_error_item(item, _mutation(faults, rule, ERROR_MUTATIONS))
        else:
            broken = break_operation(item, _mutation(faults, rule, operations), future=future)
        result.items[index] = dumps(broken)


def _mutation(faults: FaultInjector, rule: FaultRule, options: tuple[str, ...]) -> str:
    if rule.mutation in options:
        return rule.mutation
    # Drawn among the schema violations only: a future date is asked for by name.
    return faults.choice(tuple(option for option in options if option not in CLOCK_MUTATIONS))


def _retry_after(rule: FaultRule, now: int) -> str | None:
    value = rule.retry_after
    if value is None:
        return None
    if isinstance(value, datetime):
        return http_date(epoch(value))
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        seconds = max(0, math.ceil(float(value)))
        return http_date(now + seconds) if rule.retry_after_date else str(seconds)
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

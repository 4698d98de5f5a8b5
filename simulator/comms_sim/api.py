"""The Email Operations endpoints as a pure function: (method, path, query, auth, now) -> result.

No sockets here, so the HTTP layer stays thin and faults can be applied to a structured
result (items still separate) before it is encoded.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs

from comms_sim.store import OperationStore
from comms_sim.timefmt import epoch, parse_rfc3339
from comms_sim.timeline import STATUSES

PAGE_SIZE_DEFAULT: Final = 50
PAGE_SIZE_MAX: Final = 1000
INFO_URL: Final = "https://www.twilio.com/docs/api/errors/{code}"

# Twilio's own codes where it has them (20003, 20404, 20429); the 400 code is the simulator's choice.
CODE_INVALID_PARAMETER: Final = 20001
CODE_UNAUTHORIZED: Final = 20003
CODE_NOT_FOUND: Final = 20404
CODE_METHOD: Final = 20405
CODE_TOO_MANY: Final = 20429
CODE_INTERNAL: Final = 20500
CODE_UNAVAILABLE: Final = 20503

MESSAGES: Final = {
    CODE_UNAUTHORIZED: "Authentication failed: missing or invalid credentials.",
    CODE_NOT_FOUND: "The resource was not found.",
    CODE_METHOD: "Method not allowed.",
    CODE_TOO_MANY: "Too many requests. Please retry according to the Retry-After response header.",
    CODE_INTERNAL: "An internal server error occurred.",
    CODE_UNAVAILABLE: (
        "The service is temporarily unavailable. Please retry according to the Retry-After response header."
    ),
}

_OPERATION_PATH: Final = re.compile(r"^/v1/Emails/Operations/([^/]+)$")
_ERRORS_PATH: Final = re.compile(r"^/v1/Emails/Operations/([^/]+)/Errors$")
_LIST_PARAMS: Final = ("startDate", "endDate", "status", "pageSize", "pageToken")
_PAGE_PARAMS: Final = ("pageSize", "pageToken")


@dataclass
class ApiResult:
    """A response before encoding: either ``body`` or a list (``items_key``, ``items``, ``pagination``)."""

    status: int
    endpoint: str
    body: Any = None
    items_key: str | None = None
    items: list[str] = field(default_factory=list)  # compact JSON fragments
    pagination: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.items_key is not None:
            pagination = json.dumps(self.pagination, separators=(",", ":"))
            text = f'{{"{self.items_key}":[{",".join(self.items)}],"pagination":{pagination}}}'
            return text.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


def error_envelope(code: int, message: str | None = None, context: str = "null") -> dict[str, Any]:
    return {"errors": [error_item(code, message or MESSAGES[code], context)]}


def error_item(code: int, message: str, context: str = "null") -> dict[str, Any]:
    return {"code": code, "message": message, "infoUrl": INFO_URL.format(code=code), "context": context}


def error_result(status: int, endpoint: str, code: int, message: str | None = None) -> ApiResult:
    return ApiResult(status, endpoint, body=error_envelope(code, message))


def endpoint_of(path: str) -> str:
    if path == "/v1/Emails/Operations":
        return "list_operations"
    if _ERRORS_PATH.match(path):
        return "list_errors"
    if _OPERATION_PATH.match(path):
        return "fetch_operation"
    return "unknown"


# -- page tokens --------------------------------------------------------------------------------------


def encode_token(payload: Mapping[str, Any]) -> str:
    """Opaque to clients: base64url of a small JSON document (as Twilio's look), no padding."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) and payload.get("v") == 1 else None


# -- the API -----------------------------------------------------------------------------------------


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(username, password) of an HTTP Basic ``Authorization`` header; None if it is not one."""
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        username, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username, password


def basic_username(authorization: str | None) -> str | None:
    pair = basic_credentials(authorization)
    return None if pair is None else pair[0]


class Problems:
    """Every problem of a request, reported together (the API lists as many as it can at once)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, message: str, context: str) -> None:
        self.items.append(error_item(CODE_INVALID_PARAMETER, message, context))

    def result(self, endpoint: str) -> ApiResult:
        return ApiResult(400, endpoint, body={"errors": self.items})


class EmailOperationsApi:
    def __init__(self, store: OperationStore, credentials: Mapping[str, str]) -> None:
        self.store = store
        self._credentials = dict(credentials)

    def set_credential(self, username: str, secret: str) -> None:
        self._credentials[username] = secret

    def authorized(self, authorization: str | None) -> bool:
        pair = basic_credentials(authorization)
        if pair is None:
            return False
        expected = self._credentials.get(pair[0])
        return expected is not None and hmac.compare_digest(expected.encode(), pair[1].encode())

    def handle(self, method: str, path: str, query: str, authorization: str | None, now: int) -> ApiResult:
        """``now``: epoch seconds of the API clock."""
        endpoint = endpoint_of(path)
        if not self.authorized(authorization):
            return ApiResult(
                401,
                endpoint,
                body=error_envelope(CODE_UNAUTHORIZED),
                headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
        if endpoint == "unknown":
            return error_result(404, endpoint, CODE_NOT_FOUND)
        if method != "GET":
            return ApiResult(405, endpoint, body=error_envelope(CODE_METHOD), headers={"Allow": "GET"})
        params = parse_qs(query, keep_blank_values=True)
        t = now - self.store.anchor
        if endpoint == "list_operations":
            return self._list(params, t)
        match = _ERRORS_PATH.match(path) or _OPERATION_PATH.match(path)
        assert match is not None
        if endpoint == "list_errors":
            return self._errors(match[1], params, t)
        return self._fetch(match[1], params, t)

    # -- endpoints ------------------------------------------------------------------------------------

    def _fetch(self, operation_id: str, params: dict[str, list[str]], t: int) -> ApiResult:
        problems = Problems()
        _single_values(params, (), problems)
        if problems.items:
            return problems.result("fetch_operation")
        rendered = self.store.get(operation_id, t)
        if rendered is None:
            return error_result(404, "fetch_operation", CODE_NOT_FOUND)
        return ApiResult(200, "fetch_operation", body=rendered.item)

    def _list(self, params: dict[str, list[str]], t: int) -> ApiResult:
        problems = Problems()
        values = _single_values(params, _LIST_PARAMS, problems)
        size = _page_size(values.get("pageSize"), problems)
        state = _list_state(values.get("pageToken"), problems)
        filters, bounds = _list_filters(values, state, problems)
        status = filters.get("status")
        if problems.items:
            return problems.result("list_operations")
        if size is None:
            size = int(state.get("n", PAGE_SIZE_DEFAULT))
        anchor = self.store.anchor
        cursor = None if state.get("c") is None else (int(state["c"]), str(state["i"]))
        found, next_cursor = self.store.page(
            t,
            start=bounds["startDate"] - anchor if "startDate" in bounds else None,
            end=bounds["endDate"] - anchor if "endDate" in bounds else None,
            status=status,
            cursor=cursor,
            size=size,
        )

        def token_for(position: tuple[int, str] | None) -> str:
            payload: dict[str, Any] = {"v": 1, "k": "ops", "f": filters, "n": size}
            if position is not None:
                payload.update(c=position[0], i=position[1])
            return encode_token(payload)

        return ApiResult(
            200,
            "list_operations",
            items_key="operations",
            items=[rendered.fragment for rendered in found],
            pagination={
                "next": None if next_cursor is None else token_for(next_cursor),
                "self": token_for(cursor),
            },
        )

    def _errors(self, operation_id: str, params: dict[str, list[str]], t: int) -> ApiResult:
        problems = Problems()
        values = _single_values(params, _PAGE_PARAMS, problems)
        size = _page_size(values.get("pageSize"), problems)
        offset = 0
        token = values.get("pageToken")
        if token is not None:
            decoded = decode_token(token)
            if decoded is None or decoded.get("k") != "err" or decoded.get("o") != operation_id:
                problems.add(f"Invalid pageToken '{token}'.", "pageToken")
            else:
                offset = int(decoded.get("x", 0))
                size = size if size is not None else int(decoded.get("n", PAGE_SIZE_DEFAULT))
        if problems.items:
            return problems.result("list_errors")
        size = size if size is not None else PAGE_SIZE_DEFAULT
        found = self.store.errors(operation_id, t, offset, size)
        if found is None:
            return error_result(404, "list_errors", CODE_NOT_FOUND)
        records, available = found

        def token_for(position: int) -> str:
            return encode_token({"v": 1, "k": "err", "o": operation_id, "x": position, "n": size})

        stop = offset + len(records)
        return ApiResult(
            200,
            "list_errors",
            items_key="errors",
            items=[json.dumps(record.to_api_dict(), separators=(",", ":")) for record in records],
            pagination={"next": token_for(stop) if stop < available else None, "self": token_for(offset)},
        )


def _list_state(token: str | None, problems: Problems) -> dict[str, Any]:
    """What a listing's pageToken carries (filters, page size, cursor); nothing without one or a bad one."""
    if token is None:
        return {}
    decoded = decode_token(token)
    if decoded is None or decoded.get("k") != "ops":
        problems.add(f"Invalid pageToken '{token}'.", "pageToken")
        return {}
    return decoded


def _list_filters(
    values: Mapping[str, str], state: Mapping[str, Any], problems: Problems
) -> tuple[dict[str, Any], dict[str, int]]:
    """A listing's filters and its date bounds (epoch seconds), each bad one reported to ``problems``."""
    filters: dict[str, Any] = dict(state.get("f") or {})
    # Filters given with the request win over those carried by the token.
    filters.update({name: values[name] for name in ("startDate", "endDate", "status") if name in values})
    bounds: dict[str, int] = {}
    for name in ("startDate", "endDate"):
        if name in filters:
            try:
                bounds[name] = epoch(parse_rfc3339(str(filters[name])))
            except ValueError:
                problems.add(
                    f"Invalid {name} '{filters[name]}': expected an RFC 3339 date-time such as "
                    "2024-06-20T10:15:30Z.",
                    name,
                )
    if "startDate" in bounds and "endDate" in bounds and bounds["endDate"] <= bounds["startDate"]:
        problems.add("endDate must be later than startDate.", "endDate")
    status = filters.get("status")
    if status is not None and status not in STATUSES:
        problems.add(f"Invalid status '{status}': expected one of {', '.join(STATUSES)}.", "status")
    return filters, bounds


def _single_values(
    params: dict[str, list[str]], allowed: tuple[str, ...], problems: Problems
) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, given in params.items():
        if name not in allowed:
            expected = ", ".join(allowed) if allowed else "none"
            problems.add(f"Unknown query parameter '{name}' (accepted: {expected}).", name)
        elif len(given) > 1:
            problems.add(f"Query parameter '{name}' was given {len(given)} times; give it once.", name)
        else:
            values[name] = given[0]
    return values


def _page_size(raw: str | None, problems: Problems) -> int | None:
    if raw is None:
        return None
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= PAGE_SIZE_MAX or not raw.strip().isdigit():
        problems.add(f"Invalid pageSize '{raw}': expected an integer from 1 to {PAGE_SIZE_MAX}.", "pageSize")
        return None
    return size

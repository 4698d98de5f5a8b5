"""The simulator as an HTTP server on loopback (stdlib ``ThreadingHTTPServer`` in a background thread)."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

from comms_sim.accounts import AccountSpec, check_unique
from comms_sim.api import (
    CODE_INTERNAL,
    CODE_TOO_MANY,
    CODE_UNAUTHORIZED,
    CODE_UNAVAILABLE,
    ApiResult,
    EmailOperationsApi,
    basic_username,
    error_envelope,
)
from comms_sim.clock import Clock, ManualClock
from comms_sim.control import handle_control
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
from comms_sim.scenario import Scenario
from comms_sim.store import OperationStore
from comms_sim.timefmt import epoch, format_ts, from_epoch, http_date, parse_rfc3339

DEFAULT_ACCOUNT_SID: Final = "AC" + "51" * 16
DEFAULT_AUTH_TOKEN: Final = "sim-auth-token-0000000000000000"  # noqa: S105 -- a local fake
DEFAULT_API_KEY_SID: Final = "SK" + "51" * 16
DEFAULT_API_KEY_SECRET: Final = "sim-api-key-secret-000000000000"  # noqa: S105 -- a local fake
DEFAULT_CREDENTIALS: Final = {
    DEFAULT_ACCOUNT_SID: DEFAULT_AUTH_TOKEN,
    DEFAULT_API_KEY_SID: DEFAULT_API_KEY_SECRET,
}

_STATUS_RULES: Final = {
    "401": (401, CODE_UNAUTHORIZED),
    "429": (429, CODE_TOO_MANY),
    "503": (503, CODE_UNAVAILABLE),
    "500": (500, CODE_INTERNAL),
}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the simulator saw it. ``at`` is the API clock; ``query`` never holds credentials."""

    at: datetime
    method: str
    path: str
    query: str
    endpoint: str
    status: int
    faults: tuple[str, ...]
    account: str | None = None  # the account the credentials named (None: no known username)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """Ground truth: one version of one operation (``time`` = when it appeared = its ``updatedAt``)."""

    time: datetime
    operation_id: str
    name: str
    status: str
    stats: Mapping[str, int]
    updated_at: str


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator: SimulatorServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client hung up mid-request (timeouts, stop()): nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a benchmark's 100 pages reuse one connection
    server_version = "comms-sim"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    server: _HttpServer
    api_now: int | None = None  # the instant the response was computed for; the Date header repeats it
    date_header: int | None = None  # a bad_date fault's Date instead

    def setup(self) -> None:
        super().setup()
        self.server.simulator._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.simulator._track(self.connection, add=False)

    def do_GET(self) -> None:
        self.server.simulator._serve(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header is the API clock, not the machine's: clients take "now" from it.
        if self.date_header is not None:
            return http_date(self.date_header)
        return http_date(
            self.api_now if self.api_now is not None else epoch(self.server.simulator.clock.now())
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log replaces stderr noise


class SimAccount:
    """One account the simulator serves: its credentials, its operations and its own request counters."""

    def __init__(
        self, sid: str, scenario: Scenario, credentials: Mapping[str, str], anchor: int, name: str
    ) -> None:
        self.sid = sid
        self.name = name
        self.scenario = scenario
        self.credentials = dict(credentials)
        self.store = OperationStore(scenario.operations, anchor)
        self.api = EmailOperationsApi(self.store, self.credentials)
        self.counters: Counter[str] = Counter()

    @property
    def auth_token(self) -> str:
        return self.credentials[self.sid]

    @property
    def anchor(self) -> datetime:
        return from_epoch(self.store.anchor)

    def set_credential(self, username: str, secret: str) -> None:
        self.credentials[username] = secret
        self.api.set_credential(username, secret)

    def env(self, base_url: str) -> dict[str, str]:
        return {
            "COMMS_API_BASE_URL": base_url,
            "TWILIO_ACCOUNT_SID": self.sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
        }

    def __repr__(self) -> str:
        return f"SimAccount({self.name!r}, {self.sid}, {self.scenario!r})"


class SimulatorServer:
    """A stateful Email Operations API on ``http://127.0.0.1:PORT/v1`` (docs/simulator.md).

    One account by default (``scenario`` + ``credentials``); with ``accounts``, several, each with its own
    credentials and scenario, a request served by the account its Basic-auth username belongs to. The
    attributes and methods without an ``account`` argument speak of the first account."""

    def __init__(
        self,
        scenario: Scenario | str | Path | None = None,
        *,
        clock: Clock | None = None,
        credentials: Mapping[str, str] | None = None,
        accounts: Sequence[AccountSpec] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        log_limit: int = 100_000,
        echo: bool = False,
    ) -> None:
        if accounts is not None:
            if scenario is not None or credentials is not None:
                raise ValueError("pass either accounts, or a scenario and its credentials")
            check_unique(accounts)
        else:
            given = dict(DEFAULT_CREDENTIALS if credentials is None else credentials)
            if not given:
                raise ValueError("at least one username/secret pair is needed")
            if scenario is None:
                scenario = Scenario.story()
            elif not isinstance(scenario, Scenario):
                scenario = Scenario.load(scenario)
        first = accounts[0].scenario if accounts is not None else scenario
        assert isinstance(first, Scenario)
        if clock is None:
            start = None if first.start is None else from_epoch(epoch(first.start) + first.now)
            clock = ManualClock(start)
        self.clock: Clock = clock
        self._accounts: dict[str, SimAccount] = {}
        if accounts is None:
            assert isinstance(scenario, Scenario)
            sid = next((user for user in given if user.startswith("AC")), next(iter(given)))
            self._add(sid, scenario, given, sid)
        else:
            for spec in accounts:
                self._add(spec.sid, spec.scenario, spec.credentials, spec.name)
        self._by_username = {
            user: account for account in self._accounts.values() for user in account.credentials
        }
        default = next(iter(self._accounts.values()))
        self.scenario = default.scenario
        self.anchor = default.anchor
        self.store = default.store
        self.api = default.api
        self.credentials = default.credentials
        self.faults = FaultInjector(seed)
        self.host = host
        self.echo = echo
        self._requested_port = port
        self._port: int | None = None  # kept after stop(): a stopped simulator refuses connections there
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._log: deque[RequestRecord] = deque(maxlen=log_limit)
        self._counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    def _add(self, sid: str, scenario: Scenario, credentials: Mapping[str, str], name: str) -> None:
        start = scenario.start
        anchor = epoch(start) if start is not None else epoch(self.clock.now()) - scenario.now
        self._accounts[sid] = SimAccount(sid, scenario, credentials, anchor, name)

    # -- accounts -----------------------------------------------------------------------------------

    @property
    def accounts(self) -> list[SimAccount]:
        """Every account served, the first (the default of the methods without ``account``) first."""
        return list(self._accounts.values())

    def account(self, sid: str | None = None) -> SimAccount:
        """The account with this SID (or name); the first one for None. KeyError for an unknown one."""
        if sid is None:
            return next(iter(self._accounts.values()))
        found = self._accounts.get(sid) or next((a for a in self._accounts.values() if a.name == sid), None)
        if found is None:
            raise KeyError(f"no account {sid!r} in this simulator")
        return found

    def account_of(self, authorization: str | None) -> SimAccount | None:
        """The account a Basic ``Authorization`` header names (its username), authenticated or not."""
        username = basic_username(authorization)
        return None if username is None else self._by_username.get(username)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            return self
        self.warm()
        httpd = _HttpServer((self.host, self._requested_port), _Handler)
        httpd.simulator = self
        self._httpd = httpd
        self._port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="comms-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # idle keep-alive connections would otherwise go on answering
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator was never started; call start()")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API root, as ``COMMS_API_BASE_URL`` takes it: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    @property
    def account_sid(self) -> str:
        return next(
            (user for user in self.credentials if user.startswith("AC")), next(iter(self.credentials))
        )

    @property
    def auth_token(self) -> str:
        return self.credentials[self.account_sid]

    def rotate_credential(self, secret: str, username: str | None = None) -> None:
        """From now on ``username`` (the first account by default; an Account SID or an API key of any
        account) authenticates with ``secret`` only, as after a rotation in the Twilio console."""
        name = username or self.account_sid
        account = self._by_username.get(name)
        if account is None:
            raise KeyError(f"no account has the username {name!r}")
        account.set_credential(name, secret)

    def env(self, account: str | None = None) -> dict[str, str]:
        """Environment for a handler under test: API root and Account SID + Auth Token (of ``account``)."""
        if account is None:
            return {
                "COMMS_API_BASE_URL": self.base_url,
                "TWILIO_ACCOUNT_SID": self.account_sid,
                "TWILIO_AUTH_TOKEN": self.auth_token,
            }
        return self.account(account).env(self.base_url)

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "stopped"
        return f"SimulatorServer({self.scenario!r}, {where}, clock={self.clock!r})"

    # -- clock --------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def manual_clock(self) -> ManualClock:
        if not isinstance(self.clock, ManualClock):
            raise TypeError(f"the simulator runs on {self.clock!r}, not a ManualClock")
        return self.clock

    def advance(self, seconds: float) -> datetime:
        """Move a ManualClock forward (shorthand for ``sim.manual_clock.advance``)."""
        return self.manual_clock.advance(seconds)

    def _t(self, at: datetime | None = None, store: OperationStore | None = None) -> int:
        return epoch(self.clock.now() if at is None else at) - (store or self.store).anchor

    def warm(self) -> int:
        """Render every visible operation once, so the first listing costs what later ones do."""
        return sum(
            sum(1 for _ in account.store.iter_visible(self._t(store=account.store)))
            for account in self._accounts.values()
        )

    # -- ground truth -------------------------------------------------------------------------------

    def operations(self, at: datetime | None = None, *, account: str | None = None) -> list[dict[str, Any]]:
        """Every operation the API shows at ``at`` (default: now), as API dicts, oldest first."""
        store = self.account(account).store
        return [dict(rendered.item) for rendered in store.iter_visible(self._t(at, store))]

    def operation(
        self, operation_id: str, at: datetime | None = None, *, account: str | None = None
    ) -> dict[str, Any] | None:
        store = self.account(account).store
        rendered = store.get(operation_id, self._t(at, store))
        return None if rendered is None else dict(rendered.item)

    def operation_id(self, name: str, *, account: str | None = None) -> str:
        """The id of a scenario operation by its ``name`` (story names: newsletter, high-failure, ...)."""
        scenario = self.account(account).scenario
        for timeline in scenario.operations:
            if timeline.name == name:
                return timeline.id
        raise KeyError(f"no operation named {name!r} in {scenario.name}")

    def errors(
        self, operation_id: str, at: datetime | None = None, *, account: str | None = None
    ) -> list[dict[str, Any]]:
        """Every error record of an operation at ``at`` (what the Errors endpoint would list)."""
        store = self.account(account).store
        found = store.errors(operation_id, self._t(at, store), 0, sys.maxsize)
        return [] if found is None else [record.to_api_dict() for record in found[0]]

    def history_between(
        self, since: datetime | None = None, until: datetime | None = None, *, account: str | None = None
    ) -> list[HistoryEntry]:
        """Every version that appeared in ``(since, until]`` (default: everything up to now), by time."""
        store = self.account(account).store
        hi = self._t(until, store)
        lo = None if since is None else self._t(since, store)
        anchor = store.anchor
        entries = [
            HistoryEntry(
                time=from_epoch(anchor + version.time),
                operation_id=timeline.id,
                name=timeline.name,
                status=version.status,
                stats=version.stats,
                updated_at=format_ts(anchor + version.time),
            )
            for timeline, version in store.versions(lo, hi)
        ]
        entries.sort(key=lambda entry: (entry.time, entry.operation_id))
        return entries

    @property
    def history(self) -> list[HistoryEntry]:
        """Every version of every operation up to now (O(versions): use ``history_between`` for 100k)."""
        return self.history_between()

    def history_of(
        self, operation_id: str, until: datetime | None = None, *, account: str | None = None
    ) -> list[HistoryEntry]:
        history = self.history_between(until=until, account=account)
        return [entry for entry in history if entry.operation_id == operation_id]

    # -- request log --------------------------------------------------------------------------------

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    @property
    def counters(self) -> dict[str, int]:
        """Requests per endpoint (``list_operations``, ``fetch_operation``, ``list_errors``, ``unknown``),
        per status (``status_200``, ``status_429`` ...), per fault (``fault_429`` ...), and ``total``."""
        with self._lock:
            return dict(self._counters)

    def account_counters(self, account: str | None = None) -> dict[str, int]:
        """``counters`` of the requests authenticated as ``account`` (its SID or one of its API keys)."""
        with self._lock:
            return dict(self.account(account).counters)

    def count(self, endpoint: str) -> int:
        with self._lock:
            return self._counters[endpoint]

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._counters.clear()
            for account in self._accounts.values():
                account.counters.clear()

    def _record(self, record: RequestRecord) -> None:
        keys = ["total", record.endpoint, f"status_{record.status}", *(f"fault_{f}" for f in record.faults)]
        with self._lock:
            self._log.append(record)
            self._counters.update(keys)
            if record.account is not None:
                self._accounts[record.account].counters.update(keys)
        if self.echo:
            print(
                f"{format_ts(epoch(record.at))} {record.method} {record.path}"
                f"{'?' + record.query if record.query else ''} -> {record.status}"
                f"{' [' + ','.join(record.faults) + ']' if record.faults else ''}",
                flush=True,
            )

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    # -- serving ------------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        if self._httpd is None:
            handler.close_connection = True
            return
        split = urlsplit(handler.path)
        path = split.path.rstrip("/") or "/"
        # Always consume a request body: on a keep-alive connection it would be read as the next request.
        body_in = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        handler.api_now = handler.date_header = None
        if path.startswith("/_sim/"):
            self._serve_control(handler, path, split.query, body_in)
            return
        now = handler.api_now = epoch(self.clock.now())
        authorization = handler.headers.get("Authorization")
        account = self.account_of(authorization)
        # An unknown username gets the first account's 401: the same answer as a wrong secret.
        api = self.api if account is None else account.api
        result = api.handle(handler.command, path, split.query, authorization, now)
        fired: list[FaultRule] = []
        if result.status != 401:
            fired = self.faults.select(result.endpoint, None if account is None else account.sid)
        body = self._apply_faults(result, fired, now)
        handler.date_header = _bad_date(fired, now)
        drip = max((rule.delay for rule in fired if rule.kind == "drip"), default=0.0)
        # Recorded before the response leaves: a client that got its answer always finds it counted.
        self._record(
            RequestRecord(
                at=from_epoch(now),
                method=handler.command,
                path=path,
                query=split.query,
                endpoint=result.endpoint,
                status=result.status,
                faults=tuple(rule.kind for rule in fired),
                account=None if account is None else account.sid,
            )
        )
        _respond(handler, result.status, body, result.headers, drip=drip)

    def _serve_control(self, handler: _Handler, path: str, query: str, body_in: bytes) -> None:
        status: int
        payload: dict[str, Any] | list[Any]
        account = self.account_of(handler.headers.get("Authorization"))
        if account is None or not account.api.authorized(handler.headers.get("Authorization")):
            status, payload = 401, error_envelope(CODE_UNAUTHORIZED)
        else:
            status, payload = handle_control(self, handler.command, path, query, body_in)
        _respond(handler, status, json.dumps(payload, separators=(",", ":"), default=str).encode(), {})

    def _apply_faults(self, result: ApiResult, fired: list[FaultRule], now: int) -> bytes:
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
                self.faults.shuffle(result.items)
            elif rule.kind == "bad_items":
                self._break_items(result, rule, now)
            elif rule.kind == "malformed_json":
                malformed = rule
        body = result.encode()
        if malformed is not None:
            body = malformed_body(body, malformed.mutation or "truncated")
        for rule in fired:
            if rule.kind == "oversize":
                body = padded(body, rule.size)
        return body

    def _break_items(self, result: ApiResult, rule: FaultRule, now: int) -> None:
        future = format_ts(now + math.ceil(rule.ahead))
        operations = MUTATIONS + CLOCK_MUTATIONS
        if result.items_key is None:  # fetch: the operation itself
            item = json.loads(dumps(result.body))
            result.body = break_operation(item, self._mutation(rule, operations), future=future)
            return
        is_errors = result.items_key == "errors"
        for index in self.faults.pick(len(result.items), rule.items):
            item = json.loads(result.items[index])
            if is_errors:
                broken = break_error_item(item, self._mutation(rule, ERROR_MUTATIONS))
            else:
                broken = break_operation(item, self._mutation(rule, operations), future=future)
            result.items[index] = dumps(broken)

    def _mutation(self, rule: FaultRule, options: tuple[str, ...]) -> str:
        if rule.mutation in options:
            return rule.mutation
        # Drawn among the schema violations only: a future date is asked for by name.
        return self.faults.choice(tuple(option for option in options if option not in CLOCK_MUTATIONS))


def _respond(
    handler: _Handler, status: int, body: bytes, headers: Mapping[str, str], *, drip: float = 0.0
) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if drip <= 0:
            handler.wfile.write(body)
            return
        handler.wfile.flush()
        for index in range(len(body)):  # a drip: one byte, then a pause, until the client gives up
            handler.wfile.write(body[index : index + 1])
            handler.wfile.flush()
            if handler.server.simulator._httpd is None:
                handler.close_connection = True
                return
            time.sleep(drip)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True  # the client gave up (a timeout against a slow fault): not an error


def _bad_date(fired: list[FaultRule], now: int) -> int | None:
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

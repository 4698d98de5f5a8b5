"""The simulator as an HTTP server on loopback (stdlib ``ThreadingHTTPServer`` in a background thread)."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

from comms_sim.accounts import AccountSpec, check_unique
from comms_sim.api import CODE_UNAUTHORIZED, error_envelope
from comms_sim.clock import Clock, ManualClock
from comms_sim.control import handle_control
from comms_sim.fault_effects import apply_faults, bad_date
from comms_sim.faults import FaultInjector, FaultRule
from comms_sim.request_log import RequestLog, RequestRecord
from comms_sim.scenario import Scenario
from comms_sim.sim_account import AccountRegistry, HistoryEntry, SimAccount
from comms_sim.timefmt import epoch, format_ts, from_epoch, http_date

# HistoryEntry, RequestRecord and SimAccount now live beside the accounts and the request log; this module
# still hands them on, as callers have always imported them from here.
__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_API_KEY_SECRET",
    "DEFAULT_API_KEY_SID",
    "DEFAULT_AUTH_TOKEN",
    "DEFAULT_CREDENTIALS",
    "HistoryEntry",
    "RequestRecord",
    "SimAccount",
    "SimulatorServer",
]

DEFAULT_ACCOUNT_SID: Final = "AC" + "51" * 16
DEFAULT_AUTH_TOKEN: Final = "sim-auth-token-0000000000000000"  # noqa: S105 -- a local fake
DEFAULT_API_KEY_SID: Final = "SK" + "51" * 16
DEFAULT_API_KEY_SECRET: Final = "sim-api-key-secret-000000000000"  # noqa: S105 -- a local fake
DEFAULT_CREDENTIALS: Final = {
    DEFAULT_ACCOUNT_SID: DEFAULT_AUTH_TOKEN,
    DEFAULT_API_KEY_SID: DEFAULT_API_KEY_SECRET,
}


@dataclass(frozen=True, slots=True)
class _Answer:
    """What the API says to one request, faults applied, before it is written to the connection."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    now: int  # the API clock it was computed for
    date: int | None  # a bad_date fault's Date instead
    drip: float  # seconds between bytes (a drip fault); 0: all at once


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator: SimulatorServer

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client hung up mid-request (timeouts, stop()): nothing to report
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def hang_up(self) -> None:
        """Close every open connection: idle keep-alive ones would otherwise go on answering."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


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
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:
        simulator = self.server.simulator
        if simulator._httpd is None:
            self.close_connection = True
            return
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        # Always consume a request body: on a keep-alive connection it would be read as the next request.
        body_in = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.api_now = self.date_header = None
        if path.startswith("/_sim/"):
            self._control(path, split.query, body_in)
            return
        answer = simulator._answer(self.command, path, split.query, self.headers.get("Authorization"))
        self.api_now, self.date_header = answer.now, answer.date
        _respond(self, answer.status, answer.body, answer.headers, drip=answer.drip)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _control(self, path: str, query: str, body_in: bytes) -> None:
        status: int
        payload: dict[str, Any] | list[Any]
        simulator = self.server.simulator
        authorization = self.headers.get("Authorization")
        account = simulator.account_of(authorization)
        if account is None or not account.api.authorized(authorization):
            status, payload = 401, error_envelope(CODE_UNAUTHORIZED)
        else:
            status, payload = handle_control(simulator, self.command, path, query, body_in)
        _respond(self, status, json.dumps(payload, separators=(",", ":"), default=str).encode(), {})

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header is the API clock, not the machine's: clients take "now" from it.
        if self.date_header is not None:
            return http_date(self.date_header)
        return http_date(
            self.api_now if self.api_now is not None else epoch(self.server.simulator.clock.now())
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log replaces stderr noise


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
        planned = _planned_accounts(scenario, credentials, accounts)
        if clock is None:
            first = planned[0][1]
            start = None if first.start is None else from_epoch(epoch(first.start) + first.now)
            clock = ManualClock(start)
        self.clock: Clock = clock
        self._accounts = AccountRegistry(
            SimAccount.playing(sid, played, given, name, clock) for sid, played, given, name in planned
        )
        default = self._accounts.get()
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
        self._requests = RequestLog(log_limit, {account.sid: account.counters for account in self._accounts})

    # -- accounts -----------------------------------------------------------------------------------

    @property
    def accounts(self) -> list[SimAccount]:
        """Every account served, the first (the default of the methods without ``account``) first."""
        return list(self._accounts)

    def account(self, sid: str | None = None) -> SimAccount:
        """The account with this SID (or name); the first one for None. KeyError for an unknown one."""
        return self._accounts.get(sid)

    def account_of(self, authorization: str | None) -> SimAccount | None:
        """The account a Basic ``Authorization`` header names (its username), authenticated or not."""
        return self._accounts.of(authorization)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            return self
        self.warm()
        httpd = _HttpServer((self.host, self._requested_port))
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
        httpd.hang_up()
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
        account = self._accounts.with_username(name)
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

    def _epoch(self, at: datetime | None) -> int:
        return epoch(self.clock.now() if at is None else at)

    def warm(self) -> int:
        """Render every visible operation once, so the first listing costs what later ones do."""
        return sum(account.visible_count(self._epoch(None)) for account in self._accounts)

    # -- ground truth -------------------------------------------------------------------------------

    def operations(self, at: datetime | None = None, *, account: str | None = None) -> list[dict[str, Any]]:
        """Every operation the API shows at ``at`` (default: now), as API dicts, oldest first."""
        return self.account(account).operations(self._epoch(at))

    def operation(
        self, operation_id: str, at: datetime | None = None, *, account: str | None = None
    ) -> dict[str, Any] | None:
        return self.account(account).operation(operation_id, self._epoch(at))

    def operation_id(self, name: str, *, account: str | None = None) -> str:
        """The id of a scenario operation by its ``name`` (story names: newsletter, high-failure, ...)."""
        return self.account(account).operation_id(name)

    def errors(
        self, operation_id: str, at: datetime | None = None, *, account: str | None = None
    ) -> list[dict[str, Any]]:
        """Every error record of an operation at ``at`` (what the Errors endpoint would list)."""
        return self.account(account).errors(operation_id, self._epoch(at))

    def history_between(
        self, since: datetime | None = None, until: datetime | None = None, *, account: str | None = None
    ) -> list[HistoryEntry]:
        """Every version that appeared in ``(since, until]`` (default: everything up to now), by time."""
        return self.account(account).history_between(
            None if since is None else epoch(since), self._epoch(until)
        )

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
        return self._requests.records()

    @property
    def counters(self) -> dict[str, int]:
        """Requests per endpoint (``list_operations``, ``fetch_operation``, ``list_errors``, ``unknown``),
        per status (``status_200``, ``status_429`` ...), per fault (``fault_429`` ...), and ``total``."""
        return self._requests.counters()

    def account_counters(self, account: str | None = None) -> dict[str, int]:
        """``counters`` of the requests authenticated as ``account`` (its SID or one of its API keys)."""
        return self._requests.counters(self.account(account).sid)

    def count(self, endpoint: str) -> int:
        return self._requests.count(endpoint)

    def reset_log(self) -> None:
        self._requests.reset()

    def _record(self, record: RequestRecord) -> None:
        self._requests.add(record)
        if self.echo:
            print(
                f"{format_ts(epoch(record.at))} {record.method} {record.path}"
                f"{'?' + record.query if record.query else ''} -> {record.status}"
                f"{' [' + ','.join(record.faults) + ']' if record.faults else ''}",
                flush=True,
            )

    # -- serving ------------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, query: str, authorization: str | None) -> _Answer:
        now = epoch(self.clock.now())
        account = self.account_of(authorization)
        # An unknown username gets the first account's 401: the same answer as a wrong secret.
        api = self.api if account is None else account.api
        result = api.handle(method, path, query, authorization, now)
        fired: list[FaultRule] = []
        if result.status != 401:
            fired = self.faults.select(result.endpoint, None if account is None else account.sid)
        body = apply_faults(self.faults, result, fired, now)
        date = bad_date(fired, now)
        drip = max((rule.delay for rule in fired if rule.kind == "drip"), default=0.0)
        # Recorded before the response leaves: a client that got its answer always finds it counted.
        self._record(
            RequestRecord(
                at=from_epoch(now),
                method=method,
                path=path,
                query=query,
                endpoint=result.endpoint,
                status=result.status,
                faults=tuple(rule.kind for rule in fired),
                account=None if account is None else account.sid,
            )
        )
        return _Answer(result.status, body, result.headers, now, date, drip)


def _planned_accounts(
    scenario: Scenario | str | Path | None,
    credentials: Mapping[str, str] | None,
    accounts: Sequence[AccountSpec] | None,
) -> list[tuple[str, Scenario, Mapping[str, str], str]]:
    """(sid, scenario, credentials, name) of each account to serve: the ``accounts``, or one account of
    ``scenario`` (default: the story) whose SID is the first ``AC`` username of ``credentials``."""
    if accounts is not None:
        if scenario is not None or credentials is not None:
            raise ValueError("pass either accounts, or a scenario and its credentials")
        check_unique(accounts)
        return [(spec.sid, spec.scenario, spec.credentials, spec.name) for spec in accounts]
    given = dict(DEFAULT_CREDENTIALS if credentials is None else credentials)
    if not given:
        raise ValueError("at least one username/secret pair is needed")
    if scenario is None:
        scenario = Scenario.story()
    elif not isinstance(scenario, Scenario):
        scenario = Scenario.load(scenario)
    sid = next((user for user in given if user.startswith("AC")), next(iter(given)))
    return [(sid, scenario, given, sid)]


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

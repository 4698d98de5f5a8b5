"""The Comms client over real HTTP on loopback.

Two kinds of servers: the Comms simulator (comms_sim) for realistic traffic and its fault injection, and a
tiny purpose-built ``ScriptedServer`` (http.server) for what a well-behaved simulator cannot produce: a
repeated page token, a 401/403 without JSON, a redirect, a response without a ``Date`` header.
Waiting is injected (``sleep=sleeps.append``): the tests check how long the client would wait, they never
wait themselves.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from comms_bridge.aws.secrets import load_credentials
from comms_bridge.comms.client import USER_AGENT, CommsClient, RetryPolicy
from comms_bridge.comms.credentials import CommsCredentials, CredentialsError
from comms_bridge.comms.exceptions import (
    CommsApiError,
    CommsBadRequest,
    CommsForbidden,
    CommsMalformedResponse,
    CommsNotFound,
    CommsServerError,
    CommsThrottled,
    CommsTransportError,
    CommsUnauthorized,
    InvalidOperationId,
    PaginationLoopError,
)
from comms_bridge.comms.models import OperationsPage, OperationStatus, parse_timestamp
from comms_bridge.settings import Settings
from comms_sim import (
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    FaultRule,
    ManualClock,
    Scenario,
    SimulatorServer,
)
from comms_sim.faults import MUTATIONS

pytestmark = pytest.mark.integration

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "tok-SECRET-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
API_KEY_SID = "SK" + "fedcba9876543210" * 2
API_KEY_SECRET = "key-SECRET-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"
TOKEN_CREDS = CommsCredentials.from_auth_token(ACCOUNT_SID, AUTH_TOKEN)
KEY_CREDS = CommsCredentials.from_api_key(ACCOUNT_SID, API_KEY_SID, API_KEY_SECRET)

API_NOW = datetime(2024, 6, 20, 10, 15, 30, tzinfo=UTC)  # the API clock: far from the local clock
OP_ID = "comms_operation_01h9krwprkeee8fzqspvwy6nq8"
STATS = dict.fromkeys(
    ("total", "recipients", "attempts", "scheduled", "queued", "sent", "delivered", "opened"), 3
) | {"undelivered": 0, "failed": 0, "canceled": 0}


def operation(op_id: str = OP_ID, status: str = "COMPLETED") -> dict[str, Any]:
    return {
        "id": op_id,
        "status": status,
        "stats": dict(STATS),
        "createdAt": "2024-06-20T10:00:00Z",
        "updatedAt": "2024-06-20T10:05:00Z",
    }


def op_id(n: int) -> str:
    return f"comms_operation_0{n:025d}"


def http_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def envelope(code: int, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "infoUrl": "https://x", "context": "null"}]}


# -- a purpose-built loopback server -------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)
    date: datetime | None = API_NOW  # None: no Date header at all
    delay: float = 0.0


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class ScriptedServer:
    """Answers each request with the next ``Reply`` of a script (or from a function of the request)."""

    def __init__(self, script: list[Reply] | Callable[[Seen], Reply]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                request = Seen(parts.path, parse_qs(parts.query), dict(self.headers.items()))
                reply = outer._next(request)
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body
                if isinstance(body, (dict, list)):
                    body = json.dumps(body)
                data = body.encode() if isinstance(body, str) else (body or b"")
                try:
                    self.send_response_only(reply.status)
                    if reply.date is not None:
                        self.send_header("Date", http_date(reply.date))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (read timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _next(self, request: Seen) -> Reply:
        with self._lock:
            self.seen.append(request)
            if callable(self.script):
                return self.script(request)
            if not self.script:
                return Reply(500, {"errors": [{"code": 0, "message": "script exhausted"}]})
            return self.script.pop(0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: list[Reply] | Callable[[Seen], Reply]) -> ScriptedServer:
        server = ScriptedServer(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


def client_for(server: ScriptedServer | str, sleeps: list[float] | None = None, **kwargs: Any) -> CommsClient:
    base_url = server if isinstance(server, str) else server.base_url
    kwargs.setdefault("credentials", TOKEN_CREDS)
    kwargs.setdefault("rng", lambda: 0.5)
    return CommsClient(base_url, sleep=(sleeps.append if sleeps is not None else _no_sleep), **kwargs)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected wait of {seconds}s")


def page_body(ops: list[Any], next_token: str | None, self_token: str = "self") -> dict[str, Any]:
    return {"operations": ops, "pagination": {"next": next_token, "self": self_token}}


# -- requests as sent ----------------------------------------------------------------------------------


def test_request_carries_basic_auth_user_agent_and_rfc3339_query(serve):
    server = serve([Reply(body=page_body([operation()], None))])
    client = client_for(server)
    start = datetime(2024, 6, 20, 12, 15, 30, 999, tzinfo=timezone(timedelta(hours=2)))
    pages = list(
        client.list_operations(
            start_date=start, end_date=API_NOW, status=OperationStatus.PROCESSING, page_size=250
        )
    )
    assert [op.id for op in pages[0].operations] == [OP_ID]
    (request,) = server.seen
    assert request.path == "/v1/Emails/Operations"
    assert request.query == {
        "startDate": ["2024-06-20T10:15:30Z"],
        "endDate": ["2024-06-20T10:15:30Z"],
        "status": ["PROCESSING"],
        "pageSize": ["250"],
    }
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.headers["User-Agent"] == USER_AGENT


def test_api_key_credentials_are_used_for_basic_auth(serve):
    server = serve([Reply(body=operation())])
    client_for(server, credentials=KEY_CREDS).fetch_operation(OP_ID)
    expected = base64.b64encode(f"{API_KEY_SID}:{API_KEY_SECRET}".encode()).decode()
    assert server.seen[0].headers["Authorization"] == f"Basic {expected}"


def test_fetch_records_the_api_clock_and_counts_requests(serve):
    server = serve([Reply(body=operation()), Reply(body=operation(), date=API_NOW + timedelta(seconds=42))])
    client = client_for(server, clock=lambda: datetime(2030, 1, 1, tzinfo=UTC))
    assert client.now() == datetime(2030, 1, 1, tzinfo=UTC)
    fetched = client.fetch_operation(OP_ID)
    assert fetched.id == OP_ID
    assert server.seen[0].path == f"/v1/Emails/Operations/{OP_ID}"
    assert client.server_time == API_NOW
    assert client.now() == API_NOW
    client.fetch_operation(OP_ID)
    assert client.now() == API_NOW + timedelta(seconds=42)
    assert client.request_count == 2
    assert client.request_counts == {"fetch_operation": 2}


def test_without_a_date_header_now_is_the_local_clock(serve):
    local = datetime(2030, 1, 1, tzinfo=UTC)
    server = serve([Reply(body=operation(), date=None)])
    client = client_for(server, clock=lambda: local)
    client.fetch_operation(OP_ID)
    assert client.server_time is None
    assert client.now() == local


def test_invalid_id_never_reaches_the_server(serve):
    server = serve([])
    client = client_for(server)
    for bad in ("../Operations", "comms_operation_x?a=1", f"{OP_ID}/Errors", "comms_operation_" + "z" * 26):
        with pytest.raises(InvalidOperationId):
            client.fetch_operation(bad)
        with pytest.raises(InvalidOperationId):
            client.list_operation_errors(bad, max_items=1)
    assert server.seen == []
    assert client.request_count == 0


# -- pagination ----------------------------------------------------------------------------------------


def test_follows_next_until_null_repeating_the_filters(serve):
    server = serve(
        [
            Reply(body=page_body([operation(op_id(1))], "t1", "t0")),
            Reply(body=page_body([operation(op_id(2)), operation(op_id(3))], "t2", "t1")),
            Reply(body=page_body([], None, "t2")),
        ]
    )
    client = client_for(server)
    pages = list(client.list_operations(status=OperationStatus.COMPLETED, page_size=2))
    assert [[op.id for op in p.operations] for p in pages] == [[op_id(1)], [op_id(2), op_id(3)], []]
    assert [r.query.get("pageToken") for r in server.seen] == [None, ["t1"], ["t2"]]
    assert all(r.query["status"] == ["COMPLETED"] and r.query["pageSize"] == ["2"] for r in server.seen)
    assert client.request_counts == {"list_operations": 3}


def test_iteration_is_lazy(serve):
    server = serve([Reply(body=page_body([], "t1")), Reply(body=page_body([], None))])
    pages = client_for(server).list_operations()
    assert server.seen == []
    next(pages)
    assert len(server.seen) == 1


def test_a_repeated_page_token_stops_with_pagination_loop_error(serve):
    server = serve(
        [
            Reply(body=page_body([operation(op_id(1))], "A", "first")),
            Reply(body=page_body([operation(op_id(2))], "B", "A")),
            Reply(body=page_body([operation(op_id(3))], "A", "B")),  # hands back A again
        ]
    )
    got: list[str] = []
    with pytest.raises(PaginationLoopError) as info:
        for page in client_for(server).list_operations():
            got.extend(op.id for op in page.operations)
    assert got == [op_id(1), op_id(2)]  # the looping page is not yielded
    assert info.value.token == "A"
    assert info.value.pages == 3
    assert "already given" in str(info.value)
    assert len(server.seen) == 3


def test_next_equal_to_the_pages_own_self_token_is_a_loop(serve):
    server = serve([Reply(body=page_body([], "same", "same"))])
    with pytest.raises(PaginationLoopError):
        list(client_for(server).list_operations())


def test_a_page_with_bad_items_is_not_an_error(serve, caplog):
    broken = operation(op_id(2))
    broken["stats"]["failed"] = "5"
    missing = operation(op_id(3))
    del missing["stats"]
    server = serve([Reply(body=page_body([operation(op_id(1)), broken, missing, "junk"], None))])
    with caplog.at_level(logging.WARNING, logger="comms_bridge.comms.client"):
        (page,) = list(client_for(server).list_operations())
    assert [op.id for op in page.operations] == [op_id(1)]
    assert [(s.index, s.item_id) for s in page.skipped] == [(1, op_id(2)), (2, op_id(3)), (3, None)]
    assert "3 malformed item(s)" in caplog.text


# -- errors of the operation -----------------------------------------------------------------------------


def errors_body(codes: list[int], next_token: str | None) -> dict[str, Any]:
    items = [{"code": c, "message": f"m{c}", "emailId": None, "recipient": "r@x.org"} for c in codes]
    return {"errors": items, "pagination": {"next": next_token, "self": "s"}}


def test_operation_errors_stop_at_max_items(serve):
    server = serve(
        [
            Reply(body=errors_body([1, 2, 3], "e1")),
            Reply(body=errors_body([4, 5, 6], "e2")),
            Reply(body=errors_body([7], None)),
        ]
    )
    pages = client_for(server).list_operation_errors(OP_ID, max_items=5, page_size=3)
    codes = [e.code for page in pages for e in page.errors]
    assert codes == [1, 2, 3, 4, 5]
    assert pages.items_read == 5
    assert pages.truncated
    assert [r.path for r in server.seen] == [f"/v1/Emails/Operations/{OP_ID}/Errors"] * 2
    # The second request asks only for what is still needed.
    assert [r.query["pageSize"] for r in server.seen] == [["3"], ["2"]]
    assert server.seen[1].query["pageToken"] == ["e1"]


def test_operation_errors_read_to_the_end_are_not_truncated(serve):
    server = serve([Reply(body=errors_body([1, 2], "e1")), Reply(body=errors_body([3], None))])
    pages = client_for(server).list_operation_errors(OP_ID, max_items=10)
    assert [e.code for page in pages for e in page.errors] == [1, 2, 3]
    assert (pages.items_read, pages.truncated) == (3, False)


def test_operation_errors_cut_short_when_the_api_ignores_page_size(serve):
    body = errors_body(list(range(10)), None)
    body["errors"][2] = "not an object"
    server = serve([Reply(body=body)])
    pages = client_for(server).list_operation_errors(OP_ID, max_items=4, page_size=50)
    (page,) = list(pages)
    assert server.seen[0].query["pageSize"] == ["4"]
    assert [e.code for e in page.errors] == [0, 1, 3]
    assert [s.index for s in page.skipped] == [2]
    assert (pages.items_read, pages.truncated) == (4, True)


def test_errors_list_and_error_envelope_are_told_apart_by_status(serve):
    # Both bodies are keyed "errors": a 404 envelope must not read as an empty list of errors.
    server = serve([Reply(404, envelope(20404, "The resource was not found."))])
    with pytest.raises(CommsNotFound) as info:
        list(client_for(server).list_operation_errors(OP_ID, max_items=10))
    assert (info.value.code, info.value.message) == (20404, "The resource was not found.")


# -- error statuses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, CommsBadRequest), (401, CommsUnauthorized), (403, CommsForbidden), (404, CommsNotFound)],
)
def test_client_errors_carry_twilio_code_and_message_and_are_not_retried(serve, status, cls):
    server = serve([Reply(status, envelope(20000 + status, f"problem {status}"))])
    client = client_for(server)
    with pytest.raises(cls) as info:
        client.fetch_operation(OP_ID)
    assert (info.value.status, info.value.code, info.value.message) == (
        status,
        20000 + status,
        f"problem {status}",
    )
    assert f"Twilio error {20000 + status}" in str(info.value)
    assert client.request_count == 1
    assert client.server_time == API_NOW  # error responses carry the API clock too


def test_bad_request_keeps_every_listed_problem(serve):
    body = {
        "errors": [{"code": 20001, "message": "pageSize too big"}, {"code": 20002, "message": "bad status"}]
    }
    server = serve([Reply(400, body)])
    with pytest.raises(CommsBadRequest) as info:
        list(client_for(server).list_operations())
    assert [e.code for e in info.value.errors] == [20001, 20002]
    assert info.value.code == 20001


@pytest.mark.parametrize(
    ("status", "cls", "body"),
    [
        (401, CommsUnauthorized, "Unauthorized"),
        (403, CommsForbidden, "<html><body>Forbidden</body></html>"),
        (404, CommsNotFound, b"\xff\xfe not utf-8"),
        (401, CommsUnauthorized, ""),
        (403, CommsForbidden, {"unexpected": "shape"}),
    ],
)
def test_error_status_without_a_json_envelope(serve, status, cls, body):
    server = serve([Reply(status, body, headers={"Content-Type": "text/html"})])
    with pytest.raises(cls) as info:
        client_for(server).fetch_operation(OP_ID)
    assert (info.value.status, info.value.code, info.value.message) == (status, None, None)


def test_500_is_not_retried(serve):
    server = serve([Reply(500, envelope(20500, "Internal error")), Reply(body=operation())])
    client = client_for(server)
    with pytest.raises(CommsServerError) as info:
        client.fetch_operation(OP_ID)
    assert (info.value.status, info.value.code) == (500, 20500)
    assert len(server.seen) == 1


def test_redirects_are_not_followed(serve):
    target = serve([Reply(body=operation())])
    server = serve([Reply(302, "", headers={"Location": f"{target.base_url}/Emails/Operations/{OP_ID}"})])
    with pytest.raises(CommsApiError) as info:
        client_for(server).fetch_operation(OP_ID)
    assert info.value.status == 302
    assert target.seen == []  # the credentials never went anywhere else


@pytest.mark.parametrize(
    "body",
    ["{not json", "", "null", '{"operations": "many", "pagination": {}}', '{"operations": []}', "[1, 2]"],
)
def test_malformed_list_response(serve, body):
    server = serve([Reply(body=body)])
    client = client_for(server)
    with pytest.raises(CommsMalformedResponse):
        list(client.list_operations())
    assert client.request_count == 1


def test_malformed_fetch_response(serve):
    bad = operation()
    del bad["stats"]
    server = serve([Reply(body=bad), Reply(body=operation(op_id(9)))])
    client = client_for(server)
    with pytest.raises(CommsMalformedResponse, match="stats"):
        client.fetch_operation(OP_ID)
    with pytest.raises(CommsMalformedResponse, match="different operation"):
        client.fetch_operation(OP_ID)


# -- throttling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_throttle_is_retried_after_retry_after_seconds(serve, status):
    server = serve(
        [Reply(status, envelope(20429, "Too many requests"), {"Retry-After": "2"}), Reply(body=operation())]
    )
    sleeps: list[float] = []
    client = client_for(server, sleeps)
    assert client.fetch_operation(OP_ID).id == OP_ID
    assert len(sleeps) == 1
    assert 2.0 <= sleeps[0] <= 2.0 + RetryPolicy().retry_after_jitter
    assert client.request_count == 2


def test_retry_after_http_date_is_measured_on_the_api_clock(serve):
    # The API's clock is in 2024, the local clock is not: the wait is Retry-After minus the response Date.
    server = serve(
        [
            Reply(429, "", {"Retry-After": http_date(API_NOW + timedelta(seconds=7))}),
            Reply(body=operation()),
        ]
    )
    sleeps: list[float] = []
    client_for(server, sleeps, rng=lambda: 0.0).fetch_operation(OP_ID)
    assert sleeps == [7.0]


def test_throttle_without_retry_after_backs_off_exponentially_with_jitter(serve):
    server = serve([Reply(503, "") for _ in range(3)] + [Reply(body=operation())])
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=4, backoff_base=1.0, backoff_cap=3.0)
    client_for(server, sleeps, retry=policy, rng=lambda: 1.0).fetch_operation(OP_ID)
    assert sleeps == [1.0, 2.0, 3.0]  # capped at 3


def test_throttle_gives_up_after_max_attempts(serve):
    server = serve(lambda request: Reply(429, envelope(20429, "Too many requests"), {"Retry-After": "1"}))
    sleeps: list[float] = []
    client = client_for(server, sleeps, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(CommsThrottled) as info:
        client.fetch_operation(OP_ID)
    assert (info.value.status, info.value.code, info.value.attempts, info.value.retry_after) == (
        429,
        20429,
        3,
        1.0,
    )
    assert len(sleeps) == 2
    assert client.request_count == 3


def test_throttle_never_waits_past_the_callers_deadline(serve):
    server = serve(lambda request: Reply(429, "", {"Retry-After": "3"}))
    sleeps: list[float] = []
    budget = 10.0
    client = client_for(
        server, sleeps, retry=RetryPolicy(max_attempts=100), deadline=lambda: budget - sum(sleeps)
    )
    with pytest.raises(CommsThrottled, match="deadline"):
        client.fetch_operation(OP_ID)
    assert sum(sleeps) <= budget - RetryPolicy().min_request_time
    assert len(sleeps) == 2  # a third wait of 3.5 s would not leave a second for the request


def test_retry_after_longer_than_the_deadline_is_not_waited_for(serve):
    server = serve([Reply(503, "", {"Retry-After": "30"}), Reply(body=operation())])
    client = client_for(server, [], deadline=lambda: 20.0)
    with pytest.raises(CommsThrottled) as info:
        client.fetch_operation(OP_ID)
    assert info.value.retry_after == 30.0
    assert len(server.seen) == 1


def test_retry_after_beyond_the_policy_limit_is_not_waited_for(serve):
    server = serve([Reply(429, "", {"Retry-After": "3600"}), Reply(body=operation())])
    with pytest.raises(CommsThrottled, match="exceeds"):
        client_for(server, []).fetch_operation(OP_ID)


def test_throttle_in_the_middle_of_pagination_resumes_the_same_page(serve):
    server = serve(
        [
            Reply(body=page_body([operation(op_id(1))], "t1")),
            Reply(429, "", {"Retry-After": "0"}),
            Reply(body=page_body([operation(op_id(2))], None)),
        ]
    )
    sleeps: list[float] = []
    pages = list(client_for(server, sleeps).list_operations())
    assert [p.operations[0].id for p in pages] == [op_id(1), op_id(2)]
    assert [r.query.get("pageToken") for r in server.seen] == [None, ["t1"], ["t1"]]
    assert len(sleeps) == 1


# -- transport -----------------------------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_connection_refused_is_retried_then_transport_error():
    sleeps: list[float] = []
    client = client_for(closed_port_url(), sleeps, retry=RetryPolicy(transport_attempts=3))
    with pytest.raises(CommsTransportError) as info:
        client.fetch_operation(OP_ID)
    assert info.value.attempts == 3
    assert info.value.status is None
    assert len(sleeps) == 2
    assert client.request_count == 3
    assert info.value.__cause__ is None  # the requests exception (with its headers) is not chained


def test_read_timeout_is_retried(serve):
    server = serve([Reply(body=operation(), delay=1.0), Reply(body=operation())])
    sleeps: list[float] = []
    client = client_for(server, sleeps, read_timeout=0.2)
    assert client.fetch_operation(OP_ID).id == OP_ID
    assert len(sleeps) == 1
    assert len(server.seen) == 2


def test_transport_retry_respects_the_deadline():
    sleeps: list[float] = []
    client = client_for(closed_port_url(), sleeps, deadline=lambda: 0.5)
    with pytest.raises(CommsTransportError, match="deadline"):
        client.fetch_operation(OP_ID)
    assert sleeps == []


# -- secrets ---------------------------------------------------------------------------------------------


def secret_forms(creds: CommsCredentials) -> list[str]:
    basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    return [creds.password, basic]


@pytest.mark.parametrize("creds", [TOKEN_CREDS, KEY_CREDS], ids=["auth_token", "api_key"])
def test_secrets_never_appear_in_logs_exceptions_or_reprs(serve, caplog, creds):
    echo = f"invalid credentials {creds.password}"  # a server that echoes the secret back
    server = serve(
        [
            Reply(401, envelope(20003, echo)),
            Reply(403, "Forbidden"),
            Reply(429, envelope(20429, echo), {"Retry-After": "0"}),
            Reply(429, envelope(20429, echo), {"Retry-After": "0"}),
            Reply(500, envelope(20500, echo)),
            Reply(body="{broken"),
            Reply(body=page_body([operation()], "A", "A")),
            Reply(body=operation(), delay=1.0),
        ]
    )
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        policy = RetryPolicy(max_attempts=2, transport_attempts=1)
        client = client_for(server, [], credentials=creds, read_timeout=0.2, retry=policy)
        texts += [repr(client), str(client), repr(creds), str(creds), repr(client.__dict__)]
        fetch: Callable[[], object] = lambda: client.fetch_operation(OP_ID)  # noqa: E731
        listing: Callable[[], object] = lambda: list(client.list_operations())  # noqa: E731
        for call in (fetch, fetch, fetch, fetch, listing, listing, fetch):
            with pytest.raises(CommsApiError) as info:
                call()
            texts += [str(info.value), repr(info.value), str(info.value.message), repr(info.value.errors)]
        transport = client_for(
            closed_port_url(), [], credentials=creds, retry=RetryPolicy(transport_attempts=1)
        )
        with pytest.raises(CommsTransportError) as transport_info:
            transport.fetch_operation(OP_ID)
        texts += [str(transport_info.value), repr(transport_info.value)]
    assert len(server.seen) == 8
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.__dict__) for record in caplog.records]
    assert any(r.name.startswith("comms_bridge.comms.") for r in caplog.records)
    for text in texts:
        for secret in secret_forms(creds):
            assert secret not in text


# -- against the Comms simulator -------------------------------------------------------------------------

SIM_START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
MANY = 57


@pytest.fixture(scope="module")
def story_server() -> Iterator[SimulatorServer]:
    """The shipped story on a ManualClock, 30 minutes in (every status present, errors recorded)."""
    with SimulatorServer(Scenario.story(), clock=ManualClock(SIM_START)) as simulator:
        simulator.advance(30 * 60)
        yield simulator


def many_scenario() -> Scenario:
    """57 small operations, one created per minute over the last hour."""
    operations = [
        {"name": f"op{i}", "created": f"-{i}m", "total": 10, "duration": "1m", "step": "30s", "failed": i % 3}
        for i in range(MANY)
    ]
    return Scenario.from_dict({"name": "many", "operations": operations})


@pytest.fixture(scope="module")
def many_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(many_scenario(), clock=ManualClock(SIM_START)) as simulator:
        yield simulator


@pytest.fixture
def many_alone() -> Iterator[SimulatorServer]:
    """Its own server, for slow faults: a response the client gave up on is still being served after the
    test and would land in the next test's request log."""
    with SimulatorServer(many_scenario(), clock=ManualClock(SIM_START)) as simulator:
        yield simulator


def _fresh(simulator: SimulatorServer) -> SimulatorServer:
    # One server per module (starting and stopping one per test costs more than all the tests): each test
    # gets it without faults and with empty counters.
    simulator.faults.clear()
    simulator.faults.reseed(0)
    simulator.reset_log()
    return simulator


@pytest.fixture
def story(story_server: SimulatorServer) -> SimulatorServer:
    return _fresh(story_server)


@pytest.fixture
def many(many_server: SimulatorServer) -> SimulatorServer:
    return _fresh(many_server)


def settled(sim: SimulatorServer, client: CommsClient) -> dict[str, int]:
    """The simulator's counters once it has recorded every request the client made.

    The simulator writes its log entry just after the response, so right after the client has its last
    answer the entry may not be there yet.
    """
    give_up = time.monotonic() + 5
    while sim.counters.get("total", 0) < client.request_count and time.monotonic() < give_up:
        time.sleep(0.01)
    return sim.counters


def sim_client(sim: SimulatorServer, sleeps: list[float] | None = None, **kwargs: Any) -> CommsClient:
    kwargs.setdefault("credentials", CommsCredentials.from_auth_token(sim.account_sid, sim.auth_token))
    return client_for(sim.base_url, sleeps, **kwargs)


def listed(client: CommsClient, **kwargs: Any) -> tuple[list[OperationsPage], list[dict[str, Any]]]:
    pages = list(client.list_operations(**kwargs))
    return pages, [op.to_api_dict() for page in pages for op in page.operations]


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items}


def test_sim_pagination_across_many_shuffled_pages_matches_ground_truth(many):
    many.faults.add(FaultRule(kind="shuffle", endpoint="list_operations"))
    client = sim_client(many)
    pages, operations = listed(client, page_size=5)
    assert len(pages) == -(-MANY // 5)
    assert len(operations) == MANY  # no duplicates, nothing lost, whatever the order inside a page
    assert by_id(operations) == by_id(many.operations())
    assert all(not page.skipped for page in pages)
    counters = settled(many, client)
    assert client.request_count == counters["list_operations"] == len(pages)
    assert counters["fault_shuffle"] == len(pages)


def test_sim_filters_by_status_and_created_window(story):
    client = sim_client(story)
    truth = story.operations()
    for status in OperationStatus:
        _, operations = listed(client, status=status, page_size=2)
        assert by_id(operations) == {op["id"]: op for op in truth if op["status"] == status.value}
    # Bounds between two operations' createdAt, so inclusive or exclusive makes no difference.
    start, end = SIM_START - timedelta(days=2), SIM_START + timedelta(minutes=1, seconds=30)
    pages, operations = listed(client, start_date=start, end_date=end, page_size=1)
    expected = {op["id"] for op in truth if start < parse_timestamp(op["createdAt"]) < end}
    assert 0 < len(expected) < len(truth)
    assert {op["id"] for op in operations} == expected
    settled(story, client)
    assert story.request_log[-len(pages)].query.startswith(
        "pageSize=1&startDate=2026-01-03T09%3A00%3A00Z&endDate="
    )


def test_sim_fetch_matches_ground_truth_and_takes_the_api_clock(story):
    client = sim_client(story)
    for truth in story.operations():
        assert client.fetch_operation(truth["id"]).to_api_dict() == truth
    assert client.server_time == story.now()
    before = story.now()
    story.advance(90)
    client.fetch_operation(story.operation_id("newsletter"))
    assert client.now() == story.now() == before + timedelta(seconds=90)


def test_sim_unknown_and_expired_operations_are_not_found(story):
    client = sim_client(story)
    for operation_id in ("comms_operation_01h9krwprkeee8fzqspvwy6nq8", story.operation_id("archived")):
        with pytest.raises(CommsNotFound) as info:
            client.fetch_operation(operation_id)
        assert (info.value.status, info.value.code) == (404, 20404)


def test_sim_id_guard_keeps_bad_ids_off_the_wire(story):
    client = sim_client(story)
    with pytest.raises(InvalidOperationId):
        client.fetch_operation("comms_operation_NOT-A-VALID-ID")
    with pytest.raises(InvalidOperationId):
        client.list_operation_errors("../../Operations", max_items=5)
    assert story.counters.get("total", 0) == 0


def test_sim_api_key_credentials(story):
    creds = CommsCredentials.from_api_key(story.account_sid, DEFAULT_API_KEY_SID, DEFAULT_API_KEY_SECRET)
    assert len(listed(sim_client(story, credentials=creds))[1]) == len(story.operations())


def test_sim_wrong_credentials_are_unauthorized_and_not_echoed(story):
    wrong = CommsCredentials.from_auth_token(story.account_sid, "wrong-token-SECRET-value")
    client = sim_client(story, credentials=wrong)
    with pytest.raises(CommsUnauthorized) as info:
        list(client.list_operations())
    assert (info.value.status, info.value.code) == (401, 20003)
    assert "wrong-token-SECRET-value" not in str(info.value) + repr(info.value) + repr(client)
    assert client.request_count == 1


def test_sim_operation_errors_up_to_max_items(story):
    client = sim_client(story)
    operation_id = story.operation_id("high-failure")
    truth = story.errors(operation_id)
    assert len(truth) > 50
    pages = client.list_operation_errors(operation_id, max_items=50, page_size=20)
    read = [error for page in pages for error in page.errors]
    assert len(read) == pages.items_read == 50
    assert pages.truncated
    assert [(e.code, e.email_id) for e in read] == [(t["code"], t.get("emailId")) for t in truth[:50]]
    # 20 + 20 + 10: the last page asks only for what is still missing.
    assert settled(story, client)["list_errors"] == 3

    everything = client.list_operation_errors(operation_id, max_items=10_000, page_size=1000)
    assert sum(len(page.errors) for page in everything) == len(truth)
    assert not everything.truncated


@pytest.mark.parametrize("kind", ["429", "503"])
def test_sim_throttle_retried_after_retry_after_seconds(many, kind):
    many.faults.add(FaultRule(kind=kind, endpoint="list_operations", times=2, skip=1, retry_after="1"))
    sleeps: list[float] = []
    client = sim_client(many, sleeps)
    _, operations = listed(client, page_size=10)
    assert by_id(operations) == by_id(many.operations())
    assert len(sleeps) == 2
    assert all(1.0 <= s <= 1.0 + RetryPolicy().retry_after_jitter for s in sleeps)
    counters = settled(many, client)
    assert counters[f"status_{kind}"] == 2
    assert client.request_count == counters["total"]


def test_sim_retry_after_http_date_uses_the_api_clock(many):
    # The simulator's clock is months away from the machine's: only its Date header makes the wait right.
    many.faults.add(
        FaultRule(kind="503", endpoint="fetch_operation", times=1, retry_after=5, retry_after_date=True)
    )
    sleeps: list[float] = []
    client = sim_client(many, sleeps, rng=lambda: 0.0)
    client.fetch_operation(many.operation_id("op1"))
    assert sleeps == [5.0]


def test_sim_throttle_exhausted(many):
    many.faults.add(FaultRule(kind="429", endpoint="*", retry_after="1"))
    sleeps: list[float] = []
    client = sim_client(many, sleeps, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(CommsThrottled) as info:
        list(client.list_operations())
    assert (info.value.status, info.value.code, info.value.attempts) == (429, 20429, 3)
    assert settled(many, client)["total"] == 3
    assert len(sleeps) == 2


def test_sim_throttle_respects_the_deadline(many):
    many.faults.add(FaultRule(kind="503", endpoint="*", retry_after="2"))
    sleeps: list[float] = []
    client = sim_client(many, sleeps, retry=RetryPolicy(max_attempts=50), deadline=lambda: 9.0 - sum(sleeps))
    with pytest.raises(CommsThrottled, match="deadline"):
        client.fetch_operation(many.operation_id("op1"))
    assert sum(sleeps) <= 9.0 - RetryPolicy().min_request_time


def test_sim_500_is_not_retried(many):
    many.faults.add(FaultRule(kind="500", endpoint="list_operations", times=1))
    client = sim_client(many)
    with pytest.raises(CommsServerError) as info:
        list(client.list_operations())
    assert (info.value.status, info.value.code) == (500, 20500)
    assert settled(many, client)["total"] == 1


def test_sim_slow_response_times_out_and_is_retried(many_alone):
    many_alone.faults.add(FaultRule(kind="slow", endpoint="fetch_operation", times=1, delay=0.6))
    sleeps: list[float] = []
    client = sim_client(many_alone, sleeps, read_timeout=0.2)
    assert client.fetch_operation(many_alone.operation_id("op2")).id == many_alone.operation_id("op2")
    assert len(sleeps) == 1
    assert client.request_count == 2


def test_sim_slow_every_time_ends_in_transport_error(many_alone):
    many_alone.faults.add(FaultRule(kind="slow", endpoint="fetch_operation", delay=0.4))
    client = sim_client(many_alone, [], read_timeout=0.1, retry=RetryPolicy(transport_attempts=2))
    with pytest.raises(CommsTransportError, match="timeout"):
        client.fetch_operation(many_alone.operation_id("op2"))
    assert client.request_count == 2


@pytest.mark.parametrize("mutation", ["truncated", "html", "empty"])
@pytest.mark.parametrize("endpoint", ["list_operations", "fetch_operation", "list_errors"])
def test_sim_malformed_json(story, mutation, endpoint):
    story.faults.add(FaultRule(kind="malformed_json", endpoint=endpoint, times=1, mutation=mutation))
    client = sim_client(story)
    operation_id = story.operation_id("high-failure")
    calls = {
        "list_operations": lambda: list(client.list_operations()),
        "fetch_operation": lambda: client.fetch_operation(operation_id),
        "list_errors": lambda: list(client.list_operation_errors(operation_id, max_items=10)),
    }
    with pytest.raises(CommsMalformedResponse):
        calls[endpoint]()
    assert client.request_count == 1
    calls[endpoint]()  # the next answer is fine again


def test_sim_bad_items_are_skipped_not_fatal(many):
    many.faults.add(FaultRule(kind="bad_items", endpoint="list_operations", items=2))
    pages, operations = listed(sim_client(many), page_size=10)
    skipped = [s for page in pages for s in page.skipped]
    assert len(skipped) == 2 * len(pages)
    assert all(s.reason for s in skipped)
    assert len(operations) == MANY - len(skipped)
    assert by_id(operations).items() <= by_id(many.operations()).items()


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_sim_each_bad_item_kind(many, mutation):
    many.faults.add(
        FaultRule(kind="bad_items", endpoint="list_operations", items=1, mutation=mutation, times=1)
    )
    pages, operations = listed(sim_client(many), page_size=MANY)
    assert len(pages[0].skipped) == 1
    assert len(operations) == MANY - 1


def test_sim_bad_fetched_operation_is_malformed(many):
    many.faults.add(
        FaultRule(kind="bad_items", endpoint="fetch_operation", times=1, mutation="string_counter")
    )
    with pytest.raises(CommsMalformedResponse, match=r"stats\.total"):
        sim_client(many).fetch_operation(many.operation_id("op4"))


def test_sim_bad_error_items_are_skipped(story):
    story.faults.add(FaultRule(kind="bad_items", endpoint="list_errors", items=3, times=1))
    operation_id = story.operation_id("high-failure")
    pages = sim_client(story).list_operation_errors(operation_id, max_items=20, page_size=20)
    (page,) = list(pages)  # skipped items count as read: 20 items, one page
    assert (len(page.errors), len(page.skipped)) == (17, 3)
    assert all(s.reason for s in page.skipped)
    assert (pages.items_read, pages.truncated) == (20, True)


def test_sim_every_fault_at_once_still_lists_everything(many_alone):
    # Light chaos: retries and shuffles must neither lose nor duplicate an operation.
    for kind in ("429", "503", "shuffle"):
        many_alone.faults.add(
            FaultRule(kind=kind, endpoint="list_operations", probability=0.3, retry_after="0")
        )
    many_alone.faults.add(FaultRule(kind="slow", endpoint="list_operations", probability=0.1, delay=0.3))
    sleeps: list[float] = []
    client = sim_client(
        many_alone, sleeps, read_timeout=0.15, retry=RetryPolicy(max_attempts=20, transport_attempts=20)
    )
    _, operations = listed(client, page_size=4)
    assert len(operations) == MANY
    assert by_id(operations) == by_id(many_alone.operations())
    assert client.request_count >= many_alone.counters["list_operations"]


def test_sim_secrets_stay_out_of_logs(story, caplog):
    operation_id = story.operation_id("high-failure")
    token_creds = CommsCredentials.from_auth_token(story.account_sid, story.auth_token)
    key_creds = CommsCredentials.from_api_key(story.account_sid, DEFAULT_API_KEY_SID, DEFAULT_API_KEY_SECRET)
    story.faults.add(FaultRule(kind="429", times=2, retry_after="0"))
    story.faults.add(FaultRule(kind="bad_items", endpoint="list_operations", items=2, times=1))
    story.faults.add(FaultRule(kind="malformed_json", endpoint="list_errors", times=1))
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for creds in (token_creds, key_creds):
            client = sim_client(story, [], credentials=creds)
            texts += [repr(client), repr(creds), str(creds)]
            list(client.list_operations(page_size=2))
            client.fetch_operation(operation_id)
            try:
                list(client.list_operation_errors(operation_id, max_items=5))
            except CommsMalformedResponse as exc:
                texts += [str(exc), repr(exc)]
        wrong = CommsCredentials.from_auth_token(story.account_sid, DEFAULT_API_KEY_SECRET)
        with pytest.raises(CommsUnauthorized) as info:
            sim_client(story, credentials=wrong).fetch_operation(operation_id)
        texts += [str(info.value), repr(info.value)]
    texts += [record.getMessage() for record in caplog.records] + [repr(vars(r)) for r in caplog.records]
    assert any(
        r.name.startswith("comms_bridge.comms.") and r.levelno == logging.WARNING for r in caplog.records
    )
    for creds in (token_creds, key_creds):
        for secret in secret_forms(creds):
            assert not any(secret in text for text in texts)


# -- credentials from Secrets Manager (moto server), then used against the simulator ---------------------


def test_credentials_from_secrets_manager_work_against_the_simulator(aws_env, story):
    client = boto3.client("secretsmanager")
    good = client.create_secret(
        Name=f"twilio-{uuid.uuid4()}",
        SecretString=json.dumps(
            {
                "accountSid": story.account_sid,
                "apiKeySid": DEFAULT_API_KEY_SID,
                "apiKeySecret": DEFAULT_API_KEY_SECRET,
            }
        ),
    )["ARN"]
    not_json = client.create_secret(Name=f"twilio-{uuid.uuid4()}", SecretString=f"{DEFAULT_API_KEY_SECRET}")[
        "ARN"
    ]

    creds = load_credentials(Settings(twilio_secret_arn=good))
    assert (creds.username, creds.kind) == (DEFAULT_API_KEY_SID, "api_key")
    assert sim_client(story, credentials=creds).fetch_operation(story.operation_id("newsletter"))

    with pytest.raises(CredentialsError, match="not valid JSON") as info:
        load_credentials(Settings(twilio_secret_arn=not_json))
    assert DEFAULT_API_KEY_SECRET not in str(info.value)
    with pytest.raises(CredentialsError, match="ResourceNotFoundException"):
        load_credentials(Settings(twilio_secret_arn=good + "-missing"))

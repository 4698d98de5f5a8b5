"""A loopback reverse proxy in front of the moto server that injects AWS faults by rule and counts calls.

Point ``AWS_ENDPOINT_URL`` at ``proxy.endpoint_url`` and every SDK call goes through it. A rule matches
the ``X-Amz-Target`` header (``DynamoDB_20120810.BatchWriteItem``, ``AWSEvents.PutEvents``) or, for the
services on the query protocol, the service and ``Action`` (``sns.Publish``), and answers:

* ``throttle``: 400 with the service's throttling error (DynamoDB: ProvisionedThroughputExceededException,
  others: ThrottlingException), without forwarding;
* ``500``: 500 InternalServerError, without forwarding;
* ``fail_entries`` (PutEvents): the chosen entries are taken out of the request (they are really not put),
  the rest is forwarded, and the answer reports the chosen ones failed (``ErrorCode``/``ErrorMessage``,
  ``FailedEntryCount``), exactly like a partial failure of EventBridge;
* ``unprocessed`` (BatchWriteItem/BatchGetItem): nothing is forwarded, everything comes back as
  ``UnprocessedItems``/``UnprocessedKeys``;
* ``fail_after_forward``: forward, then answer 500 anyway (the call's effect happened, the caller does
  not know it);
* ``refuse``: ``status`` with the error ``error_code`` (``AuthorizationError``, 403: a permanent refusal),
  without forwarding.
* ``transaction_conflict`` (TransactWriteItems): nothing is forwarded, the transaction comes back
  cancelled with a ``TransactionConflict`` reason for each of its actions (another transaction was
  writing one of its items).

``calls`` counts requests per target (faulted ones included); ``entries`` counts the items/entries of
batch calls and transactions, for cost figures; ``event_keys`` counts the ``eventKey`` of every PutEvents
entry sent (by ``operationId``), so a benchmark can tell an event published twice from one never published.
An ``observer`` (the benchmarks' capacity meter) sees
every forwarded request before it goes and its answer after.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs

import requests

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-encoding",
    "content-length",
    "host",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
}


@dataclass
class AwsFault:
    target: str
    # throttle | 500 | unprocessed | fail_entries | fail_after_forward | refuse | transaction_conflict
    kind: str
    times: int | None = 1
    skip: int = 0
    entries: Callable[[int, dict[str, Any]], bool] | None = None  # (index, entry) -> fail it?
    error_code: str = "InternalFailure"
    error_message: str = "injected by aws_fault_proxy"
    status: int = 400  # of a ``refuse``
    body_contains: bytes | None = None  # only requests whose body holds this (one kind of write)
    seen: int = 0
    fired: int = 0

    def take(self, target: str, body: bytes = b"") -> bool:
        if target != self.target:
            return False
        if self.body_contains is not None and self.body_contains not in body:
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


class Observer(Protocol):
    def before(self, target: str, body: bytes) -> Callable[[int, bytes], None] | None:
        """Called before a request is forwarded; what it returns is called with the status and body."""


@dataclass
class _State:
    upstream: str
    observer: Observer | None = None
    rules: list[AwsFault] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    entries: Counter[str] = field(default_factory=Counter)
    event_keys: Counter[tuple[str, str]] = field(default_factory=Counter)  # (operationId, eventKey)
    lock: threading.Lock = field(default_factory=threading.Lock)
    session: requests.Session = field(default_factory=requests.Session)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, each call waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target", "") or _query_target(
            self.headers.get("Authorization", ""), body
        )
        with state.lock:
            state.calls[target] += 1
            state.entries[target] += _count_entries(target, body)
            if target.endswith("PutEvents"):
                state.event_keys.update(_event_keys(body))
            rule = next((r for r in state.rules if r.take(target, body)), None)
        if rule is None:
            self._forward(body, target=target)
        elif rule.kind == "throttle":
            self._error(400, _throttle_type(target), "Rate exceeded (injected)", target)
        elif rule.kind == "500":
            self._error(500, "InternalServerError", "Internal server error (injected)", target)
        elif rule.kind == "refuse":
            self._error(rule.status, rule.error_code, rule.error_message, target)
        elif rule.kind == "fail_after_forward":
            self._forward(body, send=False)
            self._error(500, "InternalServerError", "Internal server error after the write (injected)")
        elif rule.kind == "unprocessed":
            self._unprocessed(target, body)
        elif rule.kind == "fail_entries":
            self._fail_entries(body, rule)
        elif rule.kind == "transaction_conflict":
            actions = len(json.loads(body).get("TransactItems", []))
            reasons = [{"Code": "TransactionConflict", "Message": "injected"}] * actions
            payload = json.dumps(
                {
                    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                    "Message": "Transaction cancelled (injected) [TransactionConflict]",
                    "CancellationReasons": reasons,
                }
            ).encode()
            self._send(400, payload, {"Content-Type": "application/x-amz-json-1.0"})
        else:
            raise ValueError(f"unknown fault kind {rule.kind}")

    def _upstream(self, body: bytes) -> requests.Response:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        return self.server.state.session.request(
            self.command, self.server.state.upstream + self.path, data=body, headers=headers, timeout=60
        )

    def _forward(self, body: bytes, *, send: bool = True, target: str = "") -> None:
        observer = self.server.state.observer
        answered = observer.before(target, body) if observer is not None else None
        response = self._upstream(body)
        if answered is not None:
            answered(response.status_code, response.content)
        if send:
            headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
            self._send(response.status_code, response.content, headers)

    def _fail_entries(self, body: bytes, rule: AwsFault) -> None:
        request = json.loads(body)
        entries = request.get("Entries", [])
        chosen = [rule.entries(i, e) if rule.entries else True for i, e in enumerate(entries)]
        kept = [e for e, fail in zip(entries, chosen, strict=True) if not fail]
        results: list[dict[str, Any]] = []
        forwarded: list[dict[str, Any]] = []
        if kept:
            response = self._upstream(json.dumps({**request, "Entries": kept}).encode())
            forwarded = list(response.json().get("Entries", []))
        for fail in chosen:
            if fail:
                results.append({"ErrorCode": rule.error_code, "ErrorMessage": rule.error_message})
            else:
                results.append(forwarded.pop(0))
        failed = sum(1 for r in results if "ErrorCode" in r)
        payload = json.dumps({"FailedEntryCount": failed, "Entries": results}).encode()
        self._send(200, payload, {"Content-Type": "application/x-amz-json-1.1"})

    def _unprocessed(self, target: str, body: bytes) -> None:
        request = json.loads(body)
        key = "UnprocessedKeys" if target.endswith("BatchGetItem") else "UnprocessedItems"
        answer: dict[str, Any] = {key: request.get("RequestItems", {})}
        if key == "UnprocessedKeys":
            answer["Responses"] = {table: [] for table in request.get("RequestItems", {})}
        self._send(200, json.dumps(answer).encode(), {"Content-Type": "application/x-amz-json-1.0"})

    def _error(self, status: int, error_type: str, message: str, target: str = "") -> None:
        if target.startswith(tuple(f"{service}." for service in _QUERY_SERVICES)):
            xml = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{error_type}</Code><Message>{message}"
                "</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
            )
            self._send(status, xml.encode(), {"Content-Type": "text/xml"})
            return
        payload = json.dumps({"__type": error_type, "message": message}).encode()
        self._send(
            status, payload, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": error_type}
        )

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


_QUERY_SERVICES = ("sns", "sqs", "sts")


def _query_target(authorization: str, body: bytes) -> str:
    """``sns.Publish`` for a query-protocol call: the service from the signature's credential scope, the
    action from the form body."""
    match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request", authorization)
    if not match or not body:
        return ""
    action = parse_qs(body.decode("utf-8", errors="replace")).get("Action", [""])[0]
    return f"{match.group(1)}.{action}" if action else ""


def _throttle_type(target: str) -> str:
    if target.startswith("DynamoDB_"):
        return "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
    if target.startswith("sns."):
        return "Throttled"
    return "ThrottlingException"


def _count_entries(target: str, body: bytes) -> int:
    if not body or not target.endswith(("PutEvents", "BatchWriteItem", "BatchGetItem", "TransactWriteItems")):
        return 0
    try:
        payload = json.loads(body)
    except ValueError:
        return 0
    if target.endswith("PutEvents"):
        return len(payload.get("Entries", []))
    if target.endswith("TransactWriteItems"):
        return len(payload.get("TransactItems", []))
    requests_by_table = payload.get("RequestItems", {})
    if target.endswith("BatchGetItem"):
        return sum(len(spec.get("Keys", [])) for spec in requests_by_table.values())
    return sum(len(items) for items in requests_by_table.values())


def _event_keys(body: bytes) -> list[tuple[str, str]]:
    """(operationId, eventKey) of each PutEvents entry whose Detail carries an eventKey."""
    try:
        entries = json.loads(body).get("Entries", [])
    except ValueError:
        return []
    found = []
    for entry in entries:
        try:
            detail = json.loads(entry.get("Detail") or "{}")
        except ValueError:
            continue
        if isinstance(detail, dict) and "eventKey" in detail:
            found.append((str(detail.get("operationId", "")), str(detail["eventKey"])))
    return found


class AwsFaultProxy:
    def __init__(self, upstream: str) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State(upstream=upstream.rstrip("/"))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-fault-proxy", daemon=True
        )

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def calls(self) -> Counter[str]:
        return self._server.state.calls

    @property
    def entries(self) -> Counter[str]:
        return self._server.state.entries

    @property
    def event_keys(self) -> Counter[tuple[str, str]]:
        return self._server.state.event_keys

    def observe(self, observer: Observer | None) -> None:
        self._server.state.observer = observer

    def add(self, fault: AwsFault) -> AwsFault:
        with self._server.state.lock:
            self._server.state.rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._server.state.lock:
            self._server.state.rules.clear()

    def reset_counts(self) -> None:
        with self._server.state.lock:
            self._server.state.calls.clear()
            self._server.state.entries.clear()
            self._server.state.event_keys.clear()

    def start(self) -> AwsFaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

"""A stand-in for a Slack incoming webhook on loopback: records every post, can misbehave on purpose.

    with SlackReceiver() as slack:
        slack.script("429", "ok")          # first post: 429 + Retry-After, second: 200 "ok"
        ... post to slack.url ...
        slack.posts                        # every request, in order, with its parsed JSON body
        slack.take()                       # the JSON bodies posted since the last take (the demo's feed)

Behaviours, consumed one per request (then ``ok`` forever): ``ok`` (200 "ok"), ``429`` (Retry-After
``retry_after`` seconds), ``500`` (the post is recorded as accepted: Slack may well have posted it),
``400`` (``invalid_payload``), ``hang`` (answers only after ``hang_seconds``, past the client's timeout).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

WEBHOOK_PATH = "/services/T000TEST/B000TEST/s3cr3t-w3bh00k-t0k3n"


@dataclass(frozen=True)
class SlackPost:
    path: str
    body: Any
    answered: str

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return list(self.body.get("blocks", [])) if isinstance(self.body, dict) else []


class SlackReceiver:
    def __init__(self, *, retry_after: str = "1", hang_seconds: float = 3.0) -> None:
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.posts: list[SlackPost] = []
        self._taken = 0
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{WEBHOOK_PATH}"

    def script(self, *behaviours: str) -> None:
        with self._lock:
            self._script.extend(behaviours)

    @property
    def delivered(self) -> list[SlackPost]:
        """Posts Slack would (or may) have shown: 200 and 500 answers, and hung requests."""
        return [post for post in self.posts if post.answered in ("ok", "500", "hang")]

    def take(self) -> list[dict[str, Any]]:
        """The JSON object bodies posted since the last call, in order."""
        with self._lock:
            new, self._taken = self.posts[self._taken :], len(self.posts)
        return [post.body for post in new if isinstance(post.body, dict)]

    def _next(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else "ok"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", errors="replace")
                behaviour = receiver._next()
                with receiver._lock:
                    receiver.posts.append(SlackPost(path=self.path, body=body, answered=behaviour))
                if self.path != WEBHOOK_PATH:
                    self._answer(404, "no_service")
                elif behaviour == "429":
                    self._answer(429, "rate_limited", {"Retry-After": receiver.retry_after})
                elif behaviour == "500":
                    self._answer(500, "internal_error")
                elif behaviour == "400":
                    self._answer(400, "invalid_payload")
                elif behaviour == "hang":
                    receiver._release.wait(receiver.hang_seconds)
                    self._answer(200, "ok")
                else:
                    self._answer(200, "ok")

            def _answer(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
                payload = text.encode()
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    return  # the client gave up (timeout) and closed the connection

        return Handler

    def start(self) -> SlackReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SlackReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

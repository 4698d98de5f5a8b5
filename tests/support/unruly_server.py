"""A loopback HTTP server for what a well-behaved API never does: bodies far larger than any page,
bodies sent without a length (chunked), bodies dripped a byte at a time, ``Date`` headers from another
year. Counts what it sent, so a test sees how much of a body a client waited for."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CHUNK = 1024 * 1024


@dataclass
class Unruly:
    """One answer: ``head``, then ``filler`` ``repeat`` times, then ``tail`` (a valid 60 MB JSON body
    costs the server one filler of memory). ``chunked``: no Content-Length; ``drip``: seconds between
    single bytes."""

    head: bytes
    filler: bytes = b""
    repeat: int = 0
    tail: bytes = b""
    status: int = 200
    chunked: bool = False
    drip: float = 0.0
    date: datetime | None = None

    @property
    def size(self) -> int:
        return len(self.head) + len(self.filler) * self.repeat + len(self.tail)


@dataclass
class Sent:
    """What the server sent for one request (``complete``: the whole body)."""

    body_bytes: int = 0
    complete: bool = False


@dataclass
class UnrulyServer:
    answer: Unruly
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                record = Sent()
                outer.sent.append(record)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    outer._answer(self, record)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._stopped = False

    def _answer(self, handler: BaseHTTPRequestHandler, record: Sent) -> None:
        answer = self.answer
        handler.send_response_only(answer.status)
        handler.send_header("Content-Type", "application/json")
        if answer.date is not None:
            handler.send_header("Date", format_datetime(answer.date, usegmt=True))
        if answer.chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Content-Length", str(answer.size))
        handler.end_headers()
        for piece in self._pieces(answer):
            if self._stopped:
                return
            data = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if answer.chunked else piece
            handler.wfile.write(data)
            handler.wfile.flush()
            record.body_bytes += len(piece)
            if answer.drip:
                time.sleep(answer.drip)
        if answer.chunked:
            handler.wfile.write(b"0\r\n\r\n")
        record.complete = True

    @staticmethod
    def _pieces(answer: Unruly) -> Iterator[bytes]:
        parts = (answer.head, *([answer.filler] * answer.repeat), answer.tail)
        step = 1 if answer.drip else _CHUNK
        for part in parts:
            for start in range(0, len(part), step):
                yield part[start : start + step]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> UnrulyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()

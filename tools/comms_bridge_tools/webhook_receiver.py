"""A Slack incoming-webhook stand-in on loopback: it keeps every JSON payload posted to it.

Slack answers a webhook with ``200 ok``; so does this receiver, for any path, so the webhook URL (the
secret the errors function reads) can carry a path like the real ones do.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """``start()``, give ``url`` to the sender, read ``take()`` (payloads received since the last take)."""

    def __init__(self, path: str = "/services/T000DEMO/B000DEMO/demo") -> None:
        self.path = path
        self._payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    payload = json.loads(raw)
                except ValueError:
                    self._answer(400, b"invalid_payload")
                    return
                with receiver._lock:
                    receiver._payloads.append(
                        payload if isinstance(payload, dict) else {"text": str(payload)}
                    )
                self._answer(200, b"ok")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            taken, self._payloads = self._payloads, []
        return taken

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

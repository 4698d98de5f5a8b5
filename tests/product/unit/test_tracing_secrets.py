"""With tracing on (EnableTracing=true), no secret-bearing URL reaches X-Ray (contract §6). Before, the
Powertools Tracer patched ``requests`` and the Slack webhook URL, whose path is the secret, was recorded in
every trace of the errors function.

X-Ray patching is global and cannot be undone, so each case runs in its own interpreter: the function's
observability built as in Lambda (``LAMBDA_TASK_ROOT`` set, ``POWERTOOLS_TRACE_DISABLED=false``), one POST
to a local "webhook" inside a segment, and the emitted segments captured instead of sent to a daemon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SECRET_PATH = "/services/T0SECRET/B0SECRET/XyZsEcReTtOkEn"

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import requests
    from aws_xray_sdk.core import patch, xray_recorder
    from aws_xray_sdk.core.context import Context

    from comms_bridge import observability

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    class Capture:
        def __init__(self):
            self.sent = []

        def send_entity(self, entity):
            self.sent.append(entity.serialize())

        def set_daemon_address(self, address):
            pass

    built = observability.build("errors")
    if sys.argv[1] == "also-patch-requests":  # the control: what patching requests records
        patch(["requests"])
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    capture = Capture()
    xray_recorder.configure(context=Context(), emitter=capture, sampling=False)
    xray_recorder.begin_segment("errors")
    with xray_recorder.in_subsegment("botocore-is-traced"):
        pass
    url = f"http://127.0.0.1:{server.server_address[1]}{sys.argv[2]}"
    assert requests.post(url, json={"text": "hi"}, timeout=5).status_code == 200
    xray_recorder.end_segment()
    server.shutdown()
    from aws_xray_sdk.core import patcher
    print(json.dumps({"tracer_disabled": built.tracer.disabled, "patched": sorted(patcher._PATCHED_MODULES),
                      "segments": capture.sent}))
    """
)


def traced(mode: str) -> dict[str, object]:
    env = {
        **os.environ,
        "LAMBDA_TASK_ROOT": str(ROOT),
        "POWERTOOLS_TRACE_DISABLED": "false",
        "POWERTOOLS_SERVICE_NAME": "errors",
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "shared" / "python"), str(ROOT)]),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, SECRET_PATH],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_tracing_on_keeps_the_webhook_url_out_of_x_ray() -> None:
    result = traced("as-deployed")
    assert result["tracer_disabled"] is False, "tracing is on, as with EnableTracing=true"
    assert "botocore" in result["patched"], "AWS calls are still traced"  # type: ignore[operator]
    assert "requests" not in result["patched"]  # type: ignore[operator]
    segments = "".join(result["segments"])  # type: ignore[arg-type]
    assert "botocore-is-traced" in segments, "the segment was emitted"
    assert "B0SECRET" not in segments and "XyZsEcReTtOkEn" not in segments


def test_the_check_would_see_a_patched_requests() -> None:
    """The control: with ``requests`` patched (as the Tracer did by default), the URL is in the trace."""
    segments = "".join(traced("also-patch-requests")["segments"])  # type: ignore[arg-type]
    assert "XyZsEcReTtOkEn" in segments

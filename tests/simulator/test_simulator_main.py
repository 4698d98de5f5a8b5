"""``python -m comms_sim``: each mistake in its command line or scenario is one line on stderr and exit
status 2, never a traceback; SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _sim(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comms_sim", "--quiet", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("content", "argv", "expected"),
    [
        (None, [], "{path}: no such scenario file"),
        ("name: x\nbogus: 1\noperations: []\n", [], "{path}: unknown scenario keys ['bogus']"),
        ("name: [x\n", [], "{path}: not valid YAML at line 2, column 1"),
        ("", ["--start", "yesterday"], "--start 'yesterday' is not an RFC 3339 time"),
        ("", ["--manual", "--start", "2024-13-01T00:00:00Z"], "--start '2024-13-01T00:00:00Z' is not"),
        ("", ["--speed", "-1"], "--speed must be a positive number"),
    ],
    ids=["missing-file", "unknown-key", "bad-yaml", "bad-start", "bad-start-manual", "bad-speed"],
)
def test_each_mistake_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, argv: list[str], expected: str
) -> None:
    path = tmp_path / "scenario.yaml"
    if content:
        path.write_text(content)
    scenario = [] if content == "" else ["--scenario", str(path)]  # "": the default scenario (the story)
    completed = _sim(*scenario, "--port", "0", *argv)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert completed.stderr.startswith("comms-sim: ")
    assert expected.format(path=path) in completed.stderr


def test_a_port_in_use_is_one_line_and_exit_2(busy_port: int) -> None:
    completed = _sim("--port", str(busy_port))
    assert completed.returncode == 2
    assert completed.stderr == (
        f"comms-sim: port {busy_port} on 127.0.0.1 is in use: stop what uses it, or pass --port 0 for any "
        "free port\n"
    )


def test_sigterm_stops_it_cleanly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "comms_sim", "--quiet", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Ctrl-C to stop" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert err == ""

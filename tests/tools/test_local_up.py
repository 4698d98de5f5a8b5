"""``make local``: the simulator and moto provisioned from template.yaml as the demo does, export lines that
make the CLI work by copy and paste, Ctrl-C stopping everything; a port in use is one line and exit 2."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from comms_bridge_tools import local_up
from comms_bridge_tools.moto_server import MotoServer

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

LOCAL_UP = [sys.executable, "-u", "-m", "comms_bridge_tools.local_up"]


def _clean_env() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "TWILIO_", "COMMS_", "STATE_", "EVENT_"))
    }


def _exports(lines: list[str]) -> dict[str, str]:
    """What a shell makes of the printed lines (``unset`` and ``export NAME=value``)."""
    env: dict[str, str] = {}
    for line in lines:
        match = re.fullmatch(r"export ([A-Z_]+)=(.*)", line)
        if match:
            (env[match.group(1)],) = shlex.split(match.group(2))
    return env


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "comms_bridge_tools.cli", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def local_stack_process() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "comms_bridge_tools.local_up",
            "--simulator-port",
            "0",
            "--moto-port",
            "0",
        ],
        cwd=REPO,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Ctrl-C"):
            break
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def test_the_printed_exports_run_the_cli_and_ctrl_c_stops_everything(
    local_stack_process: tuple[subprocess.Popen[str], list[str]],
) -> None:
    process, lines = local_stack_process
    assert lines[0].startswith("comms-bridge local stack up in "), lines
    assert "provisioned from template.yaml" in lines[0]
    assert "unset AWS_PROFILE" in lines
    exported = _exports(lines)
    assert exported["EVENT_BUS_NAME"] == "comms-bridge"
    assert exported["STATE_TABLE_NAME"] == "comms-bridge-StateTable"
    assert exported["TWILIO_SECRET_ARN"].startswith("arn:aws:secretsmanager:us-east-1:")

    env = {**_clean_env(), **exported}
    dry = _cli(env, "poll", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would be published to bus 'comms-bridge'; nothing was written" in dry.stdout
    run = _cli(env, "poll")
    assert run.returncode == 0, run.stderr
    assert "published 0 event(s) to bus 'comms-bridge'" in run.stdout  # the baseline
    shown = _cli(env, "checkpoint", "show")
    assert "bootstrapped   True" in shown.stdout

    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopped: simulator and moto server shut down" in out
    assert "Traceback" not in err
    endpoint = exported["AWS_ENDPOINT_URL"]
    port = int(endpoint.rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.mark.parametrize("option", ["--simulator-port", "--moto-port"])
def test_a_port_in_use_is_one_line_and_exit_2(option: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        other = "--moto-port" if option == "--simulator-port" else "--simulator-port"
        completed = subprocess.run(
            [*LOCAL_UP, option, str(port), other, "0"],
            cwd=REPO,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
    assert f"make local: port {port} (" in completed.stderr
    assert f"is in use: stop what uses it, or pass {option} PORT" in completed.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--start", "tomorrow"], "make local: --start 'tomorrow' is not an RFC 3339 time"),
        (["--scenario", "no-such.yaml"], "make local: no-such.yaml: no such scenario file"),
        (["--speed", "0"], "make local: --speed must be a positive number"),
    ],
)
def test_other_mistakes_are_one_line_and_exit_2(argv: list[str], expected: str) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "comms_bridge_tools.local_up",
            "--simulator-port",
            "0",
            "--moto-port",
            "0",
            *argv,
        ],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith(expected) and completed.stderr.count("\n") == 1, completed.stderr


def test_default_parameters_provision_a_poller_without_reserved_concurrency(aws_env: MotoServer) -> None:
    """The stack as the demo and make local provision it: template defaults, only the API root and secrets
    from outside; the poller reserves no concurrency, so a new account's quota of 10 is no obstacle."""
    stack = local_up.provision(
        boto3.session.Session(),
        prefix=f"defaults-{uuid.uuid4().hex[:6]}",
        api_base_url="http://127.0.0.1:1/v1",
    )
    assert stack.parameters["ReservePollerConcurrency"] == "false"
    assert stack.function_properties("PollerFunction", ["ReservedConcurrentExecutions", "Timeout"]) == {
        "Timeout": stack.function_properties("PollerFunction", ["Timeout"])["Timeout"]
    }

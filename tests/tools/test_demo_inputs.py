"""``make demo`` as a person meets it: each mistake in its input is one line on stderr and exit status 2
(never a traceback), a run that passed ends with "Next:" and leaves no log file behind, and a scenario that
only a baseline sees says so. Each run is a subprocess started as ``make demo`` starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

BASELINE_ONLY = """\
name: all-baseline
now: 0s
operations:
  - name: yesterday
    created: -1d
    total: 300
    duration: 10m
    step: 1m
"""


def _demo(*argv: str, tmp: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT")}
    env.update(NO_COLOR="1", TMPDIR=str(tmp))  # the handler log goes to tmp: the test sees what is left
    return subprocess.run(
        [sys.executable, "-m", "comms_bridge_tools.demo", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _scenario(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such scenario file"),
        ("name: x\nbogus: 1\noperations: []\n", "unknown scenario keys ['bogus']; allowed: ["),
        ("name: [x\n", "not valid YAML at line 2, column 1: did not find expected ',' or ']'"),
        ("- just\n- a list\n", "a scenario is a mapping with an 'operations' list"),
        ("operations:\n  - name: a\n    created: soon\n", "operation #0 (a):"),
        ("directory", "cannot read it (Is a directory)"),
    ],
    ids=["missing-file", "unknown-key", "bad-yaml", "not-a-mapping", "bad-value", "a-directory"],
)
def test_a_bad_scenario_is_one_line_and_exit_2(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "scenario.yaml"
    if content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    completed = _demo("--scenario", str(path), "--fast", tmp=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert completed.stderr.startswith(f"demo: {path}")
    assert expected in completed.stderr
    assert completed.stdout == ""
    assert not list(tmp_path.glob("comms-bridge-demo-*.log"))


def test_a_bad_option_is_exit_2_without_a_traceback(tmp_path: Path) -> None:
    completed = _demo("--speed", "0", tmp=tmp_path)
    assert completed.returncode == 2
    assert "--speed must be positive" in completed.stderr and "Traceback" not in completed.stderr


def test_ctrl_c_stops_the_run_with_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT")}
    env.update(NO_COLOR="1", TMPDIR=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "comms_bridge_tools.demo", "--speed", "60"],  # slow: minutes of polls
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:  # wait until the polls run, then press Ctrl-C
        if line.startswith("  schedule"):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert err == "demo: interrupted; the simulator and moto server are stopped\n"
    assert not list(tmp_path.glob("comms-bridge-demo-*.log"))


def test_a_passing_run_says_what_next_and_removes_its_log(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, BASELINE_ONLY)
    completed = _demo("--scenario", str(scenario), "--fast", tmp=tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]
    out = completed.stdout
    # The scenario has nothing but operations the first poll records silently: the demo says why it is quiet.
    assert "Every operation of this scenario exists before the first poll: a baseline" in " ".join(
        out.split()
    )
    next_steps = out[out.index("\nNext:") :]
    assert "make deploy" in next_steps and "make local" in next_steps and "--scenario" in next_steps
    assert "handler logs" not in out
    assert not list(tmp_path.glob("comms-bridge-demo-*.log"))

    kept = _demo("--scenario", str(scenario), "--fast", "--keep-logs", tmp=tmp_path)
    assert kept.returncode == 0
    (log,) = tmp_path.glob("comms-bridge-demo-*.log")
    assert f"handler logs (Powertools JSON): {log}" in kept.stdout.replace("\n", "")
    assert log.read_text().strip()

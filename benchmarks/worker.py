"""The "Lambda" process of the benchmark: the handler runs here, alone, so its memory and CPU are not
mixed with the simulator's and moto's (those serve from the parent process).

Protocol, one JSON object per line: the first line on stdin is
``{"function": "poller", "environment": {...}, "log": "path"}``; then each line is a command,
``{"load": true}`` (the cold start alone), ``{"invoke": <event>, "timeout_seconds": 60, "trace": true}``
or ``{"exit": true}``, answered on the
original stdout by ``{"ok", "error", "result", "wall_seconds", "peak_memory_bytes", "cold"}``. The
handler's own output (Powertools logs go to stdout) is redirected to the log file.

With ``BENCH_PROFILE=<folder>`` in the environment, every untraced invocation runs under cProfile and
leaves ``<folder>/invoke-<n>.prof`` (read it with ``python -m pstats``); the figures of a profiled run are
slower than the handler alone and only good for finding where the time goes.
"""

from __future__ import annotations

import cProfile
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.support import lambda_function


def _max_rss_bytes() -> int:
    """The process's resident high-water mark so far, imports included. VmHWM, not ru_maxrss: the latter
    survives exec and would report the parent's size (the simulator and moto live there)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _profiled(invoke: Any, event: Any, number: int) -> Any:
    """``invoke(event)``, under cProfile when ``BENCH_PROFILE`` names a folder for the profiles."""
    folder = os.environ.get("BENCH_PROFILE")
    if not folder:
        return invoke(event)
    profile = cProfile.Profile(time.process_time)  # CPU time: other processes on the machine do not count
    try:
        return profile.runcall(invoke, event)
    finally:
        Path(folder).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(Path(folder) / f"invoke-{number:04d}.prof")


def _serve(setup: dict[str, Any], commands: Any, answer: Any) -> None:
    invocations = 0
    with open(setup["log"], "a", encoding="utf-8") as log:
        # Everything the handler prints goes to the log; the protocol keeps the real stdout.
        os.dup2(log.fileno(), 1)
        function = lambda_function(setup["function"], environment=setup["environment"], output=log)
        for line in commands:
            command = json.loads(line)
            if command.get("exit"):
                return
            if command.get("load"):
                # The cold start on its own, so the first invocation's figures are the run's alone.
                started = time.perf_counter()
                with function._inside():
                    function._module = function._load()
                reply: dict[str, Any] = {"ok": True, "wall_seconds": time.perf_counter() - started}
                answer.write(json.dumps(reply) + "\n")
                answer.flush()
                continue
            function.timeout_seconds = float(command.get("timeout_seconds", 60))
            trace = bool(command.get("trace", True))
            cold = not function.loaded
            if trace:
                tracemalloc.start()
                tracemalloc.reset_peak()
            started, cpu_started = time.perf_counter(), time.process_time()
            invocations += 1
            if trace:
                invocation = function.invoke(command["invoke"])
            else:
                invocation = _profiled(function.invoke, command["invoke"], invocations)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            peak = tracemalloc.get_traced_memory()[1] if trace else 0
            if trace:
                tracemalloc.stop()
            log.flush()
            reply = {
                "ok": invocation.ok,
                "error": invocation.error,
                "result": invocation.result,
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "max_rss_bytes": _max_rss_bytes(),
                "peak_memory_bytes": peak,
                "cold": cold,
            }
            answer.write(json.dumps(reply) + "\n")
            answer.flush()


def main() -> int:
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    setup = json.loads(sys.stdin.readline())
    _serve(setup, sys.stdin, answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m comms_sim --scenario scenarios/story.yaml --port 8765 [--speed 60]``: run it standalone.

``--scenario`` may be an accounts file (several accounts, each with its own story: comms_sim.accounts), and
``--accounts N`` serves N accounts playing the scenario, each under its own SID and operation ids."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from comms_sim import accounts as accounts_module
from comms_sim import scenario as scenario_module
from comms_sim.accounts import AccountSpec
from comms_sim.clock import AcceleratedClock, Clock, ManualClock, RealClock
from comms_sim.faults import FaultRule
from comms_sim.scenario import Scenario, scenarios_dir
from comms_sim.server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, SimulatorServer
from comms_sim.timefmt import epoch, format_ts

_FLOAT_FIELDS = {"probability", "delay", "ahead"}
_INT_FIELDS = {"times", "skip", "items", "size"}


def parse_fault(text: str) -> FaultRule:
    """``kind=429,endpoint=list_operations,times=3,retry_after=2`` -> FaultRule."""
    fields: dict[str, Any] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"fault part {part!r} is not key=value")
        key = key.strip()
        if key in _FLOAT_FIELDS:
            fields[key] = float(value)
        elif key in _INT_FIELDS:
            fields[key] = int(value)
        elif key == "retry_after_date":
            fields[key] = value.lower() in ("1", "true", "yes")
        else:
            fields[key] = value
    try:
        return FaultRule(**fields)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comms_sim", description=__doc__)
    parser.add_argument(
        "--scenario", default=str(scenarios_dir() / "story.yaml"), help="YAML or JSON scenario"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    parser.add_argument("--speed", type=float, default=None, help="simulated seconds per real second")
    parser.add_argument("--start", default=None, help="clock start (RFC 3339); default: now")
    parser.add_argument(
        "--manual", action="store_true", help="a ManualClock: time moves only by POST /_sim/clock"
    )
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID, help="the (first) account's SID")
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN, help="the (first) account's Auth Token")
    parser.add_argument(
        "--accounts", type=int, default=None, metavar="N",
        help="serve N accounts playing the scenario: the first as --account-sid, the others under SIDs and "
        "operation ids of their own (an accounts file names its accounts instead)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    parser.add_argument(
        "--fault", type=parse_fault, action="append", default=[], metavar="kind=K,endpoint=E,...",
        help="add a fault rule (repeatable), e.g. kind=429,endpoint=list_operations,probability=0.1",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="do not print each request")
    return parser


class UsageError(Exception):
    """A mistake in the command line or the scenario file: printed as one line, exit status 2."""


def load_scenario(path: str) -> Scenario:
    """The scenario, or a ``UsageError`` naming the file and what is wrong with it."""
    try:
        return scenario_module.load_scenario(path)
    except scenario_module.ScenarioError as exc:
        raise UsageError(str(exc)) from None


def load_accounts(args: argparse.Namespace) -> list[AccountSpec] | None:
    """The accounts to serve, or None for the single account of ``--account-sid`` (the default)."""
    try:
        setup = accounts_module.load_setup(args.scenario)
    except scenario_module.ScenarioError as exc:
        raise UsageError(str(exc)) from None
    if isinstance(setup, list):
        if args.accounts is not None:
            raise UsageError(f"{args.scenario} names its accounts: leave out --accounts")
        return setup
    if args.accounts is None:
        return None
    try:
        first = AccountSpec(args.account_sid, setup, auth_token=args.auth_token, name="account-1")
        return accounts_module.copies(setup, args.accounts, first)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def make_clock(args: argparse.Namespace) -> Clock:
    if args.speed is not None and args.speed <= 0:
        raise UsageError(f"--speed must be a positive number, not {args.speed}")
    try:
        if args.manual:
            return ManualClock(args.start)
        if args.speed is not None or args.start is not None:
            return AcceleratedClock(args.start, args.speed or 1.0)
    except ValueError:
        raise UsageError(
            f"--start {args.start!r} is not an RFC 3339 time; use e.g. 2024-06-20T10:00:00Z"
        ) from None
    return RealClock()


def start(args: argparse.Namespace) -> SimulatorServer:
    accounts = load_accounts(args)
    clock = make_clock(args)
    common: dict[str, Any] = {"host": args.host, "port": args.port, "seed": args.seed, "echo": not args.quiet}
    if accounts is None:
        scenario = load_scenario(args.scenario)
        simulator = SimulatorServer(
            scenario, clock=clock, credentials={args.account_sid: args.auth_token}, **common
        )
    else:
        simulator = SimulatorServer(clock=clock, accounts=accounts, **common)
    for rule in args.fault:
        simulator.faults.add(rule)
    try:
        simulator.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            free = "pass --port 0 for any free port"
            raise UsageError(
                f"port {args.port} on {args.host} is in use: stop what uses it, or {free}"
            ) from None
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    print(banner(simulator, clock), flush=True)
    return simulator


def banner(simulator: SimulatorServer, clock: Clock) -> str:
    """What to paste to reach the simulator: one block for one account, a line per account for several."""
    scenario = simulator.scenario
    lines = [
        f"comms-sim: scenario {scenario.name!r} ({len(scenario.operations)} operations)"
        f" at {simulator.base_url}",
        f"  clock {clock!r}, now {format_ts(epoch(clock.now()))},"
        f" anchor {format_ts(epoch(simulator.anchor))}",
        f"  export COMMS_API_BASE_URL={simulator.base_url}",
        f"  export TWILIO_ACCOUNT_SID={simulator.account_sid}",
        f"  export TWILIO_AUTH_TOKEN={simulator.auth_token}",
        f"  curl -u \"$TWILIO_ACCOUNT_SID:$TWILIO_AUTH_TOKEN\" {simulator.base_url}/Emails/Operations",
    ]  # fmt: skip
    if len(simulator.accounts) > 1:
        lines[0] = f"comms-sim: {len(simulator.accounts)} accounts at {simulator.base_url}"
        lines.append("  (the exports name the first account; each account authenticates with its own SID)")
        lines.extend(
            f"  account {account.name!r}: {account.sid} token {account.auth_token}, scenario "
            f"{account.scenario.name!r} ({len(account.scenario.operations)} operations)"
            for account in simulator.accounts
        )
    lines.append("  Ctrl-C to stop")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 after Ctrl-C or SIGTERM; 2 for a mistake in the arguments or the scenario (one line on
    stderr, no traceback)."""
    args = build_parser().parse_args(argv)
    simulator: SimulatorServer | None = None
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        simulator = start(args)
        stopped.wait()
    except UsageError as exc:
        print(f"comms-sim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if simulator is None:
            print("comms-sim: interrupted before it started", file=sys.stderr)
            return 2
    finally:
        if simulator is not None:
            simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make local``: the Comms API simulator and moto server, provisioned from ``template.yaml`` exactly as the
demo provisions them, left running for the ``comms-bridge`` CLI until Ctrl-C.

It prints the ``export`` lines that point the CLI (or any AWS SDK) at them, so the session of docs/cli.md
can be reproduced by copy and paste. Ports are fixed (8765 for the simulator, 5000 for moto, both on
loopback) so the lines stay valid across restarts; a port in use is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import boto3

from comms_bridge_tools import local_stack
from comms_bridge_tools.lambda_runtime import REPO_ROOT
from comms_bridge_tools.moto_server import MotoServer

if TYPE_CHECKING:
    from comms_sim import SimulatorServer
    from comms_sim.accounts import AccountSpec
    from comms_sim.scenario import Scenario

STORY: Final = REPO_ROOT / "scenarios" / "story.yaml"
LOOPBACK: Final = "127.0.0.1"
DEFAULT_SIMULATOR_PORT: Final = 8765
DEFAULT_MOTO_PORT: Final = 5000
# API-clock seconds per wall second: the story's first hour plays in a minute.
DEFAULT_SPEED: Final = 60.0
LOCAL_PREFIX: Final = "comms-bridge"
LOCAL_ACCOUNT_SID: Final = "AC" + "d3" * 16
LOCAL_AUTH_TOKEN: Final = "demo-auth-token-" + "0" * 16


class LocalUpError(Exception):
    """A mistake the user can fix (a port in use, a bad option or scenario): one line, exit status 2."""


def provision(
    session_or_env: boto3.session.Session | Mapping[str, str],
    *,
    prefix: str,
    api_base_url: str,
    slack_webhook_url: str | None = None,
    parameters: Mapping[str, str] | None = None,
    accounts: Sequence[Mapping[str, str]] | None = None,
) -> local_stack.LocalStack:
    """The stack as the demo and ``make local`` build it in moto: the template's defaults, and only what a
    deployment gets from outside set here (where the API is, and the secrets). ``accounts``: the secret
    of each watched account (``TwilioSecretArns``); None: the one local account (``TwilioSecretArn``)."""
    if accounts is not None:
        return local_stack.LocalStack.provision(
            session_or_env,
            prefix=prefix,
            # Every account in the list; TwilioSecretArn (the single-account form) stays empty.
            parameters={"CommsApiBaseUrl": api_base_url, "TwilioSecretArn": "", **(parameters or {})},
            twilio_secrets=accounts,
            slack_webhook_url=slack_webhook_url,
        )
    return local_stack.LocalStack.provision(
        session_or_env,
        prefix=prefix,
        parameters={"CommsApiBaseUrl": api_base_url, **(parameters or {})},
        twilio_secret={"accountSid": LOCAL_ACCOUNT_SID, "authToken": LOCAL_AUTH_TOKEN},
        slack_webhook_url=slack_webhook_url,
    )


def check_port_free(host: str, port: int, *, what: str, option: str) -> None:
    """Fail early, with the port and the option to change it, instead of a server that never starts."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves bind: a port left in TIME_WAIT by a previous run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LocalUpError(
                    f"port {port} ({what}) is in use: stop what uses it, or pass {option} PORT"
                ) from None
            raise LocalUpError(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}") from None


def export_lines(
    aws_env: Mapping[str, str], stack: local_stack.LocalStack, *, api_base_url: str
) -> list[str]:
    """What to paste into a shell: the AWS SDK pointed at moto, the CLI at the simulator and the stack."""
    arns = local_stack.twilio_secret_arns(stack)
    secrets = {"TWILIO_SECRET_ARN": arns[0]} if len(arns) == 1 else {"TWILIO_SECRET_ARNS": ",".join(arns)}
    values = {
        **aws_env,
        "COMMS_API_BASE_URL": api_base_url,
        **secrets,
        "STATE_TABLE_NAME": stack.state_table_name,
        "EVENT_BUS_NAME": stack.bus_name,
        "EVENT_SOURCE": stack.event_source,
    }
    # A profile would take precedence over the keys above in the SDK's credential chain.
    lines = ["unset AWS_PROFILE"]
    lines.extend(f"export {name}={shlex.quote(value)}" for name, value in values.items())
    return lines


@dataclass
class LocalStackServers:
    simulator: SimulatorServer
    moto: MotoServer
    stack: local_stack.LocalStack


@contextlib.contextmanager
def running(
    scenario: Scenario,
    *,
    speed: float,
    start: str | None,
    simulator_port: int,
    moto_port: int,
    accounts: Sequence[AccountSpec] | None = None,
) -> Iterator[LocalStackServers]:
    """Both servers started and the stack provisioned; everything stopped on the way out."""
    from comms_sim import AcceleratedClock, SimulatorServer  # noqa: PLC0415 -- keeps --help fast

    check_port_free(LOOPBACK, simulator_port, what="the Comms API simulator", option="--simulator-port")
    check_port_free(LOOPBACK, moto_port, what="moto server", option="--moto-port")
    try:
        clock = AcceleratedClock(start, speed)
    except ValueError:
        example = "2026-01-05T09:00:00Z"
        raise LocalUpError(f"--start {start!r} is not an RFC 3339 time; use e.g. {example}") from None
    with contextlib.ExitStack() as stack:
        if accounts is None:
            simulator = SimulatorServer(
                scenario, clock=clock, credentials={LOCAL_ACCOUNT_SID: LOCAL_AUTH_TOKEN}, port=simulator_port
            ).start()
        else:
            simulator = SimulatorServer(accounts=accounts, clock=clock, port=simulator_port).start()
        stack.callback(simulator.stop)
        moto = MotoServer(port=moto_port).start()
        stack.callback(moto.stop)
        secrets = None if accounts is None else [
            {"accountSid": spec.sid, "authToken": spec.auth_token} for spec in accounts
        ]  # fmt: skip
        provisioned = provision(
            moto.env(), prefix=LOCAL_PREFIX, api_base_url=simulator.base_url, accounts=secrets
        )
        yield LocalStackServers(simulator=simulator, moto=moto, stack=provisioned)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make local",
        description=(
            "Start the Comms API simulator and moto server, provision template.yaml in moto as the demo "
            "does, print the export lines for the comms-bridge CLI, and keep running until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--scenario", type=Path, default=STORY, help="scenario or accounts file (default: the story)"
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=None,
        metavar="N",
        help="watch N Twilio accounts (2: the story and scenarios/storefront.yaml), each with its own secret",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help="API-clock seconds per wall-clock second (default: %(default)s, a minute per second)",
    )
    parser.add_argument("--start", default=None, help="the API clock's start, RFC 3339 (default: now)")
    parser.add_argument("--simulator-port", type=int, default=DEFAULT_SIMULATOR_PORT, metavar="PORT")
    parser.add_argument("--moto-port", type=int, default=DEFAULT_MOTO_PORT, metavar="PORT")
    return parser


def serve(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> None:
    """Start, print the exports, wait for ``stop`` (set by Ctrl-C or SIGTERM), stop everything."""
    from comms_bridge_tools.demo import DemoInputError, load_accounts, load_scenario  # noqa: PLC0415

    if args.speed <= 0:
        raise LocalUpError(f"--speed must be a positive number, not {args.speed}")
    try:
        accounts = load_accounts(args.scenario, args.accounts)
        scenario = load_scenario(args.scenario) if accounts is None else accounts[0].scenario
    except DemoInputError as exc:
        raise LocalUpError(str(exc)) from None
    began = time.perf_counter()
    with running(
        scenario,
        speed=args.speed,
        start=args.start,
        simulator_port=args.simulator_port,
        moto_port=args.moto_port,
        accounts=accounts,
    ) as servers:
        elapsed = time.perf_counter() - began
        playing = f"'{scenario.name}'" if accounts is None else f"{len(accounts)} accounts' stories"
        out.write(
            f"comms-bridge local stack up in {elapsed:.1f} s: simulator {servers.simulator.base_url} playing "
            f"{playing} (x{args.speed:g}), moto server {servers.moto.endpoint_url}, stack "
            f"'{servers.stack.prefix}' provisioned from template.yaml.\n"
            "Paste these lines into another shell, then run .venv/bin/comms-bridge poll --dry-run:\n\n"
        )
        lines = export_lines(servers.moto.env(), servers.stack, api_base_url=servers.simulator.base_url)
        out.write("\n".join(lines) + "\n")
        if accounts is not None:
            out.write(
                "\nAccounts (pick one with --account, e.g. comms-bridge checkpoint show --account AC...):\n"
            )
            for spec in accounts:
                out.write(f"  {spec.name:<12} {spec.sid}  scenario '{spec.scenario.name}'\n")
        out.write("\nCtrl-C stops both servers.\n")
        out.flush()
        stop.wait()
    out.write("stopped: simulator and moto server shut down\n")


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """0 after Ctrl-C or SIGTERM; 2 for a mistake the user can fix (one line on stderr)."""
    args = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (a background job, a test).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        serve(args, stream, stop)
    except LocalUpError as exc:
        sys.stderr.write(f"make local: {exc}\n")
        return 2
    except KeyboardInterrupt:
        # Raised wherever the main thread was: the context managers above have stopped both servers.
        stream.write("stopped: simulator and moto server shut down\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

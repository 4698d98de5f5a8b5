"""``comms-bridge``: the operator's command line.

It talks to whatever the environment points at, exactly as the poller does: the Comms API root
(``COMMS_API_BASE_URL``), the AWS account of the current profile (or ``AWS_ENDPOINT_URL``), the state table
(``STATE_TABLE_NAME``) and the bus (``EVENT_BUS_NAME``). Credentials come only from the environment
(``TWILIO_ACCOUNT_SID``/``TWILIO_AUTH_TOKEN``) or Secrets Manager (``TWILIO_SECRET_ARN``), never from the
command line.

    comms-bridge poll [--dry-run] [--json]     one poller run (dry: print the events, write nothing)
    comms-bridge checkpoint show [--json]      the poller's checkpoint
    comms-bridge checkpoint reset [--yes]      delete it (the next run bootstraps again)
    comms-bridge operations list [--json]      operations tracked as not yet terminal
    comms-bridge stream validate --sink DG...  validate the Event Streams sink (stream_cli.py)
    comms-bridge stream status [--json]        Event Streams records received, iterator age

Each takes ``--account AC...``: the account whose runs, state and records it is about. It is needed only when
the stack watches several accounts (``TWILIO_SECRET_ARNS``); with one, that one is meant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TextIO

from comms_bridge_tools.cli_accounts import AccountError, Selected, add_account_option, select
from comms_bridge_tools.lambda_runtime import LambdaContext
from comms_bridge_tools.stream_cli import StreamCliError, add_stream_commands

if TYPE_CHECKING:
    from comms_bridge.poller.runtime import PollerRuntime
    from comms_bridge.poller.state_store import DynamoStateStore

DEFAULT_TIME_BUDGET: Final = 60.0
HELP_WIDTH: Final = 88
OPERATION_ID_WIDTH: Final = 42  # comms_operation_ + 26 characters
ENVIRONMENT_HELP: Final = """\
environment:
  COMMS_API_BASE_URL   Comms API root (default https://comms.twilio.com/v1; http:// only for loopback)
  TWILIO_SECRET_ARN    Secrets Manager secret with the Twilio credentials, or else
  TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
  TWILIO_SECRET_ARNS   the watched accounts' secrets, comma-separated (then pick one with --account)
  TWILIO_SECRET_ARN_PREFIX, TWILIO_SECRET_NAMES   accounts listed by name (TwilioSecretNames)
  STATE_TABLE_NAME     the stack's state table (output StateTableName)
  EVENT_BUS_NAME       the stack's bus (output EventBusName; poll refuses to publish without it)
  EVENT_SOURCE         default twilio.comms
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL   as for any AWS SDK (the secret is read in its ARN's region)
"""


class CliError(Exception):
    """A problem the operator can fix (configuration, confirmation); printed without a stack trace."""


def _deadline(seconds: float) -> LambdaContext:
    """What a run reads its time budget from, as in Lambda: here ``--time-budget`` from now."""
    return LambdaContext(
        function_name="comms-bridge-cli",
        invoked_function_arn="",
        memory_limit_in_mb=0,
        deadline=time.monotonic() + seconds,
    )


# -- wiring ------------------------------------------------------------------------------------------


def _runtime() -> PollerRuntime:
    from comms_bridge.poller.runtime import PollerRuntime  # noqa: PLC0415 -- keeps --help instant

    return PollerRuntime.from_env()


def _store(runtime: PollerRuntime, account: Selected) -> DynamoStateStore:
    from comms_bridge.poller.state_store import DynamoStateStore  # noqa: PLC0415

    return DynamoStateStore(
        runtime.dynamodb,
        table_name=runtime.config.require_state_table(),
        account_sid=account.account_sid,
    )


def _print_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2, default=str) + "\n")


# -- commands ----------------------------------------------------------------------------------------


def cmd_poll(args: argparse.Namespace, out: TextIO) -> int:
    from comms_bridge.poller.dry_run import dry_run  # noqa: PLC0415

    if not args.dry_run and not os.environ.get("EVENT_BUS_NAME"):
        # The poller's default is the account's default bus; from a laptop that is rarely what was meant.
        raise CliError(
            "EVENT_BUS_NAME is not set: set it to the stack's bus (output EventBusName) before publishing "
            "(EVENT_BUS_NAME=default to publish to the account's default bus)"
        )
    runtime = _runtime()
    account = select(runtime, args.account)
    deadline = _deadline(args.time_budget)
    events: list[dict[str, Any]] = []
    if args.dry_run:
        result, recorded = dry_run(runtime, deadline, secret_arn=account.secret_arn)
        summary = {"accountSid": account.account_sid, **result.as_dict()}
        events = [{"detail-type": event.detail_type, "detail": dict(event.detail)} for event in recorded]
    else:
        summary = runtime.run(deadline, secret_arn=account.secret_arn)
    if args.json:
        _print_json(out, {"dryRun": args.dry_run, "summary": summary, "events": events})
    else:
        _render_poll(out, summary, events, dry_run=args.dry_run, bus=runtime.config.event_bus_name)
    return 0 if summary.get("status") in ("complete", "contended") else 1


def _render_poll(
    out: TextIO, summary: dict[str, Any], events: list[dict[str, Any]], *, dry_run: bool, bus: str
) -> None:
    from comms_bridge_tools.timeline import TimelineEvent, format_event_line, make_console  # noqa: PLC0415

    console = make_console(file=out)
    if dry_run:
        unset = "" if os.environ.get("EVENT_BUS_NAME") else " (EVENT_BUS_NAME is not set: a real run refuses)"
        console.print(
            f"dry run: {len(events)} event(s) would be published to bus '{bus}'{unset}; nothing was written"
        )
        for event in events:
            detail = event["detail"]
            console.print(
                format_event_line(
                    TimelineEvent(
                        at=str(detail.get("observedAt", ""))[11:16],
                        detail_type=event["detail-type"],
                        operation=str(detail.get("operationId", "?")),
                        detail=detail,
                    ),
                    operation_width=OPERATION_ID_WIDTH,
                ),
                soft_wrap=True,
            )
    else:
        console.print(f"published {summary.get('events_published', 0)} event(s) to bus '{bus}'")
    keys = (
        "accountSid",
        "status",
        "operations_seen",
        "changes_detected",
        "comms_requests",
        "duration_ms",
        "bootstrapped",
    )
    console.print("run: " + ", ".join(f"{key}={summary.get(key)}" for key in keys))
    for error in summary.get("errors") or []:
        console.print(f"error: {error}")


def cmd_checkpoint_show(args: argparse.Namespace, out: TextIO) -> int:
    runtime = _runtime()
    store = _store(runtime, select(runtime, args.account))
    checkpoint = store.load_checkpoint()
    if checkpoint is None:
        if args.json:
            _print_json(out, None)
        else:
            out.write(
                f"no checkpoint for {store.account_sid} in {store.table_name} (the next run bootstraps)\n"
            )
        return 0
    document = checkpoint.model_dump(mode="json", by_alias=True)
    if args.json:
        _print_json(out, document)
        return 0
    out.write(f"checkpoint of {store.account_sid} in {store.table_name}\n")
    out.write(f"  bootstrapped   {checkpoint.bootstrapped}\n")
    out.write(f"  seen through   {checkpoint.seen_through or '-'}\n")
    out.write(f"  last run at    {checkpoint.last_run_at or '-'}\n")
    out.write(f"  hour buckets   {len(checkpoint.buckets)} tracked\n")
    from comms_bridge.poller.discovery import RecentVersions  # noqa: PLC0415

    remembered = len(RecentVersions.from_stored(checkpoint.recent))
    out.write(f"  recent         {remembered} version(s) remembered for the lookback\n")
    return 0


def cmd_checkpoint_reset(args: argparse.Namespace, out: TextIO) -> int:
    runtime = _runtime()
    store = _store(runtime, select(runtime, args.account))
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("refusing to reset without confirmation: pass --yes")
        answer = input(f"Delete the checkpoint of {store.account_sid} in {store.table_name}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.write("left as it was\n")
            return 1
    existed = store.load_checkpoint() is not None
    # Unconditional: a run holding the lease right now writes its checkpoint after this, which is as good.
    runtime.dynamodb.delete_item(TableName=store.table_name, Key=store.checkpoint_key())
    if existed:
        out.write("checkpoint deleted: the next run bootstraps again (recorded states are kept)\n")
    else:
        out.write("there was no checkpoint\n")
    return 0


def cmd_operations_list(args: argparse.Namespace, out: TextIO) -> int:
    runtime = _runtime()
    store = _store(runtime, select(runtime, args.account))
    tracked = sorted(store.active_index().values(), key=lambda state: state.created_at)
    if args.json:
        _print_json(out, [state.model_dump(mode="json") for state in tracked])
        return 0
    if not tracked:
        out.write("no operations tracked as SCHEDULED or PROCESSING\n")
        return 0
    out.write(f"{'operation':<46} {'status':<11} {'sent':>9} {'total':>9} {'failed':>7}  updated\n")
    for state in tracked:
        stats = state.stats
        out.write(
            f"{state.operation_id:<46} {state.status.value:<11} {stats.sent:>9,} {stats.total:>9,} "
            f"{stats.failed:>7,}  {state.updated_at}\n"
        )
    return 0


# -- parser ------------------------------------------------------------------------------------------


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    handler: Callable[[argparse.Namespace, TextIO], int],
) -> argparse.ArgumentParser:
    """A leaf command: its description wrapped here (the raw formatter keeps the environment table as
    written), the environment table as its epilog."""
    parser = commands.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, width=HELP_WIDTH),
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    add_account_option(parser)  # every leaf reads or writes one account's runs, state or records
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comms-bridge",
        description="Operate a comms-bridge deployment (or the local stack) from the command line.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_poll(commands)
    _add_checkpoint(commands)
    _add_operations(commands)
    add_stream_commands(commands, _command, _runtime)
    return parser


def _add_poll(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    poll = _command(
        commands,
        "poll",
        help="run the poller once against the configured endpoints",
        description=(
            "Run the poller once, as the scheduled Lambda does: list the operations, publish the changes, "
            "store the state and move the checkpoint. With --dry-run nothing is published or written: the "
            "events that would be published are printed."
        ),
        handler=cmd_poll,
    )
    poll.add_argument("--dry-run", action="store_true", help="print the events; publish and write nothing")
    poll.add_argument(
        "--time-budget",
        type=float,
        default=DEFAULT_TIME_BUDGET,
        metavar="SECONDS",
        help="stop starting new work after this long, like the Lambda timeout (default: %(default)s)",
    )
    poll.add_argument("--json", action="store_true", help="machine-readable output")


def _add_checkpoint(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    checkpoint = commands.add_parser(
        "checkpoint", help="show or reset the poller's checkpoint", description="The poller's checkpoint."
    )
    checkpoint_commands = checkpoint.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = _command(
        checkpoint_commands,
        "show",
        help="print the checkpoint",
        description="Print the checkpoint of the configured account: watermark, last run, buckets.",
        handler=cmd_checkpoint_show,
    )
    show.add_argument("--json", action="store_true", help="the stored document as JSON")
    reset = _command(
        checkpoint_commands,
        "reset",
        help="delete the checkpoint",
        description=(
            "Delete the checkpoint. The next run bootstraps again: it lists the whole retention window. "
            "Operations already recorded keep their state, so nothing is published twice; operations it sees "
            "for the first time are handled as BOOTSTRAP_MODE says (baseline: recorded without an event)."
        ),
        handler=cmd_checkpoint_reset,
    )
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _add_operations(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    operations = commands.add_parser(
        "operations", help="list tracked operations", description="Operations the poller tracks."
    )
    operation_commands = operations.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = _command(
        operation_commands,
        "list",
        help="operations tracked as SCHEDULED or PROCESSING",
        description="List the operations the poller tracks as not yet terminal, oldest first.",
        handler=cmd_operations_list,
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from comms_bridge.comms.exceptions import CommsApiError  # noqa: PLC0415
    from comms_bridge.settings import SettingsError  # noqa: PLC0415

    stream = out if out is not None else sys.stdout
    try:
        code: int = args.handler(args, stream)
    except (CliError, StreamCliError, AccountError, SettingsError, CommsApiError) as exc:
        sys.stderr.write(f"comms-bridge: {exc}\n")
        return 2
    except ClientError as exc:
        sys.stderr.write(f"comms-bridge: {describe_client_error(exc)}\n")
        return 2
    except BotoCoreError as exc:
        from comms_bridge.aws.errors import describe_failure  # noqa: PLC0415

        sys.stderr.write(f"comms-bridge: AWS: {describe_failure(exc)}\n")
        return 2
    return code


_TABLE_OPERATIONS: Final = frozenset(
    {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem"}
    | {"TransactWriteItems", "TransactGetItems", "DescribeTable"}
)


def describe_client_error(exc: Any) -> str:
    """An AWS error as the thing to fix: a table or bus that does not exist is named, with the variable
    that points at it and the region it was looked up in."""
    from comms_bridge.aws.errors import describe_failure, error_code  # noqa: PLC0415

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "the profile's region"
    if error_code(exc) == "ResourceNotFoundException":
        if exc.operation_name in _TABLE_OPERATIONS:
            table = os.environ.get("STATE_TABLE_NAME", "")
            return (
                f"table '{table}' not found in {region}: set STATE_TABLE_NAME to the stack's StateTableName "
                "output, and AWS_REGION to the stack's region"
            )
        if exc.operation_name == "PutEvents":
            bus = os.environ.get("EVENT_BUS_NAME", "default")
            return (
                f"event bus '{bus}' not found in {region}: set EVENT_BUS_NAME to the stack's EventBusName "
                "output, and AWS_REGION to the stack's region"
            )
    return f"AWS {exc.operation_name}: {describe_failure(exc)}"


if __name__ == "__main__":
    sys.exit(main())

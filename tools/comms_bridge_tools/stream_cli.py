"""``comms-bridge stream ...``: onboarding and watching the Event Streams push path.

    comms-bridge stream validate --sink DG...   validate the sink with the test id the consumer recorded
    comms-bridge stream status [--json]         last events received per type, the consumer's iterator age

``validate`` reads the latest sink test event's ``test_id`` from the state table (the stream consumer
records it, contract §7) and calls Twilio's Sink Validate endpoint
(``POST https://events.twilio.com/v1/Sinks/{DG...}/Validate``, ``TestId=...``) with the same credentials as
the poller. ``EVENTS_API_BASE_URL`` points it elsewhere (https, or http on loopback: a local fake).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TextIO

from comms_bridge_tools.cli_accounts import Selected, select

if TYPE_CHECKING:
    from comms_bridge.poller.runtime import PollerRuntime
    from comms_bridge.stream.ledger import DynamoStreamLedger

EVENTS_API_BASE_URL: Final = "https://events.twilio.com/v1"
SINK_SID: Final = re.compile(r"^DG[0-9a-fA-F]{32}$")
ITERATOR_AGE_WINDOW: Final = timedelta(minutes=15)

Handler = Callable[[argparse.Namespace, TextIO], int]


class StreamCliError(Exception):
    """A problem the operator can fix; the CLI prints it without a stack trace."""


def _ledger(runtime: PollerRuntime, account: Selected) -> DynamoStreamLedger:
    from comms_bridge.stream.ledger import DynamoStreamLedger  # noqa: PLC0415 -- keeps --help instant

    return DynamoStreamLedger(
        runtime.dynamodb, table_name=runtime.config.require_state_table(), account_sid=account.account_sid
    )


def _events_api_root() -> str:
    from comms_bridge.settings import check_secure_url  # noqa: PLC0415

    root = os.environ.get("EVENTS_API_BASE_URL") or EVENTS_API_BASE_URL
    return check_secure_url(root, what="EVENTS_API_BASE_URL").rstrip("/")


def cmd_stream_validate(args: argparse.Namespace, out: TextIO, runtime: PollerRuntime) -> int:
    import requests  # noqa: PLC0415

    from comms_bridge.aws.secrets import load_credentials  # noqa: PLC0415

    sink = str(args.sink)
    if not SINK_SID.fullmatch(sink):
        raise StreamCliError("--sink must be a Sink SID: DG followed by 32 hex digits")
    account = select(runtime, args.account)
    test = _ledger(runtime, account).latest_test_event()
    if test is None:
        raise StreamCliError(
            "no sink test event recorded yet: run `twilio api:events:v1:sinks:test:create --sid "
            f"{sink}` and wait until the stream consumer has read it (comms-bridge stream status)"
        )
    credentials = load_credentials(runtime.config, secret_arn=account.secret_arn)
    try:
        response = requests.post(
            f"{_events_api_root()}/Sinks/{sink}/Validate",
            data={"TestId": test.test_id},
            auth=(credentials.username, credentials.password),
            timeout=10,
        )
    except requests.RequestException as exc:
        raise StreamCliError(f"Sink Validate could not be reached: {type(exc).__name__}") from None
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        body = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    if response.status_code in (200, 201):
        out.write(
            f"sink {sink}: validated with test id {test.test_id} (received {test.received_at}); "
            f"Twilio answered {body.get('result', 'valid')}\n"
        )
        return 0
    message = str(body.get("message") or response.reason)[:300]
    raise StreamCliError(
        f"Sink Validate refused test id {test.test_id} (HTTP {response.status_code}: {message}); a later "
        "Test call invalidates earlier test ids: run the test again and validate the new one"
    )


def cmd_stream_status(args: argparse.Namespace, out: TextIO, runtime: PollerRuntime) -> int:
    seen = sorted(_ledger(runtime, select(runtime, args.account)).types_seen(), key=lambda t: t.type)
    age = _iterator_age_ms(args.function)
    if args.json:
        rows = [
            {
                "type": t.type,
                "count": t.count,
                "lastReceivedAt": t.received_at,
                "lastEventTime": t.last_event_time,
                "lastOperationId": t.last_operation_id,
            }
            for t in seen
        ]
        out.write(json.dumps({"types": rows, "iteratorAgeMs": age}, indent=2) + "\n")
        return 0
    if not seen:
        out.write("no Event Streams records received yet\n")
    for t in seen:
        last = f", last {t.last_operation_id}" if t.last_operation_id else ""
        out.write(f"{t.type:<45} {t.count:>8} received, latest at {t.received_at}{last}\n")
    if age is None:
        out.write("iterator age: no data (set --function or STREAM_FUNCTION_NAME; none in the last 15 min)\n")
    else:
        out.write(f"iterator age: {age / 1000:.1f} s (maximum over the last 15 minutes)\n")
    return 0


def _iterator_age_ms(function_name: str | None) -> float | None:
    """Lambda's ``IteratorAge`` of the consumer: how far behind the stream it reads."""
    if not function_name:
        return None
    import boto3  # noqa: PLC0415

    now = datetime.now(UTC)
    response = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="IteratorAge",
        Dimensions=[{"Name": "FunctionName", "Value": function_name}],
        StartTime=now - ITERATOR_AGE_WINDOW,
        EndTime=now,
        Period=60,
        Statistics=["Maximum"],
    )
    points = [float(p["Maximum"]) for p in response.get("Datapoints", [])]
    return max(points) if points else None


def add_stream_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[..., argparse.ArgumentParser],
    runtime: Callable[[], PollerRuntime],
) -> None:
    """``command``: the CLI's leaf-command builder; ``runtime``: how it builds the poller's runtime."""

    def bound(handler: Callable[[argparse.Namespace, TextIO, PollerRuntime], int]) -> Handler:
        return lambda args, out: handler(args, out, runtime())

    stream = commands.add_parser(
        "stream",
        help="onboard and watch the Event Streams push path",
        description="The Event Streams push path (EnableEventStreams=true).",
    )
    stream_commands = stream.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = command(
        stream_commands,
        "validate",
        help="validate a Kinesis sink with the recorded test id",
        description=(
            "Read the test id of the latest sink test event the stream consumer recorded and send it to "
            "Twilio's Sink Validate endpoint, which makes the sink active. Run `twilio "
            "api:events:v1:sinks:test:create --sid DG...` first."
        ),
        handler=bound(cmd_stream_validate),
    )
    validate.add_argument("--sink", required=True, metavar="DG...", help="the Sink SID")
    status = command(
        stream_commands,
        "status",
        help="last events received per type and the iterator age",
        description=(
            "Show, per Event Streams type, how many records the consumer received and the latest one, and "
            "the consumer's iterator age (how far behind the stream it reads) from CloudWatch."
        ),
        handler=bound(cmd_stream_status),
    )
    status.add_argument(
        "--function",
        default=os.environ.get("STREAM_FUNCTION_NAME"),
        metavar="NAME",
        help="the stream consumer function (output StreamFunctionName; default $STREAM_FUNCTION_NAME)",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")

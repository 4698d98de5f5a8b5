"""The Event Streams consumer (functions/stream/app.py) against the simulator and a moto Kinesis stream,
invoked with real Kinesis event shapes: each record kind, duplicates within and across batches, a fetch 500
as a batch item failure, the push path racing the poll on one operation, and the sink test event recorded
and validated through ``comms-bridge stream validate`` against a fake Sink Validate endpoint."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from comms_bridge_tools import cli
from comms_bridge_tools.kinesis_events import cloud_event, operation_event, sink_test_event
from comms_bridge_tools.local_stack import LocalStack
from comms_bridge_tools.moto_server import MotoServer
from comms_sim import STORY_START, FaultRule, ManualClock, Scenario, SimulatorServer
from comms_sim.event_streams import DeliveryFaults, plan_deliveries, transitions
from tests.support.stream_harness import StreamHarness, make_stream_harness, stream_stack

pytestmark = pytest.mark.integration
__all__ = ["stream_stack"]  # the module fixture, used below

STATUS = "Email Operation Status Changed"


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    account = "AC" + uuid.uuid4().hex
    clock = ManualClock(STORY_START + timedelta(hours=1))
    with SimulatorServer(Scenario.story(), clock=clock, credentials={account: uuid.uuid4().hex}) as server:
        yield server


@pytest.fixture
def harness(
    stream_stack: LocalStack, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, sim: SimulatorServer
) -> Iterator[StreamHarness]:
    # BOOTSTRAP_MODE=emit: a first sighting by the push path is announced without a poller bootstrap first.
    yield from make_stream_harness(stream_stack, monkeypatch, sim, moto_server.env(), BOOTSTRAP_MODE="emit")


def visible(sim: SimulatorServer) -> list[dict[str, Any]]:
    return [op for op in sim.operations() if op["status"] in ("SCHEDULED", "PROCESSING", "COMPLETED")]


def pushed(op: dict[str, Any], *, as_string: bool = False) -> bytes:
    if as_string:
        return cloud_event(
            f"com.twilio.comms-api.operation.{op['status'].lower()}",
            {"operation_id": op["id"]},
            time=op["updatedAt"],
            event_id="EV" + uuid.uuid4().hex,
            data_as_string=True,
        )
    return operation_event(op["status"], op["id"], time=op["updatedAt"], event_id="EV" + uuid.uuid4().hex)


def failures(harness: StreamHarness) -> list[str]:
    return [f["itemIdentifier"] for r in harness.pump.responses for f in r.get("batchItemFailures", [])]


def test_the_template_stream_is_provisioned_encrypted_on_demand(stream_stack: LocalStack) -> None:
    summary = stream_stack.client("kinesis").describe_stream_summary(StreamName=stream_stack.stream_name())
    description = summary["StreamDescriptionSummary"]
    assert description["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    assert description["EncryptionType"] == "KMS"


def test_each_record_kind_through_kinesis(harness: StreamHarness) -> None:
    first, second = visible(harness.simulator)[:2]
    harness.put(
        [
            pushed(first),
            pushed(second, as_string=True),
            sink_test_event(
                "95001c1e-1111", account_sid=harness.simulator.account_sid, time=first["updatedAt"]
            ),
            cloud_event("com.twilio.voice.call.ringing", {}, time="t", event_id="e", data_as_string=False),
            b"\x00 not json",
            b'{"type": "com.twilio.comms-api.operation.completed", "data": {"operation_id": "nope"}}',
        ]
    )
    assert harness.pump.pump() == 6
    assert failures(harness) == []
    events = harness.drain()
    assert sorted((e["detail"]["operationId"], e["detail"]["status"]) for e in events) == sorted(
        (op["id"], op["status"]) for op in (first, second)
    )
    assert all(e["detail-type"] == STATUS and e["detail"]["previousStatus"] is None for e in events)
    recorded = harness.state_item("TEST_EVENT")
    assert recorded is not None and recorded["testId"]["S"] == "95001c1e-1111"
    assert harness.simulator.count("fetch_operation") == 2


def test_duplicates_within_and_across_batches_publish_once(harness: StreamHarness) -> None:
    op = visible(harness.simulator)[0]
    # One partition key (the sink's records of one operation share a shard): one batch.
    harness.put([pushed(op)] * 3, [op["id"]] * 3)
    harness.pump.pump()
    assert harness.simulator.count("fetch_operation") == 1, "one fetch per distinct id per batch"
    harness.put([pushed(op)] * 2, [op["id"]] * 2)
    harness.pump.pump()
    events = harness.drain()
    assert len(events) == 1 and failures(harness) == []
    assert harness.simulator.count("fetch_operation") == 2


def test_a_fetch_500_is_a_batch_item_failure_and_the_retry_publishes(harness: StreamHarness) -> None:
    op, other = visible(harness.simulator)[:2]
    harness.simulator.faults.add(FaultRule(kind="500", endpoint="fetch_operation", times=1))
    harness.put([pushed(op), pushed(other)], ["one-shard"] * 2)
    assert harness.pump.pump() == 0, "the first record failed: nothing done yet on this shard"
    assert len(failures(harness)) == 1
    assert [e["detail"]["operationId"] for e in harness.drain()] == [other["id"]]
    assert harness.pump.pump() == 2, "retried from the failed record"
    assert [e["detail"]["operationId"] for e in harness.drain()] == [op["id"]]
    assert not harness.pump.given_up


def test_push_and_poll_racing_lose_nothing_and_publish_each_change_under_one_key(
    harness: StreamHarness,
) -> None:
    """An hour of the story: deliveries with 20 % dropped, 20 % duplicated, order shuffled, pumped every
    10 s, the poll every minute in between. Every status entered is published, each change once."""
    sim = harness.simulator
    clock = sim.manual_clock
    start = clock.now()
    polls = [start]
    harness.poll()  # the poller's bootstrap (emit mode here) comes first, as on a deployed stack
    end = start + timedelta(hours=1)
    found = transitions(sim, start, end)
    deliveries = plan_deliveries(
        found,
        DeliveryFaults(delay_seconds=2, reorder_seconds=90, duplicate_share=0.2, drop_share=0.2, seed=14),
    )
    pending = list(deliveries)
    while clock.now() < end:
        clock.advance(10)
        due = [d for d in pending if d.due <= clock.now()]
        pending = [d for d in pending if d.due > clock.now()]
        if due:
            harness.put([d.data for d in due], [d.partition_key for d in due])
            harness.pump.pump()
        if int((clock.now() - start).total_seconds()) % 60 == 0:
            polls.append(clock.now())
            harness.poll()
    events = harness.drain()
    published = Counter(
        (e["detail"]["operationId"], e["detail"]["status"]) for e in events if e["detail-type"] == STATUS
    )
    # Lost = a status the poll alone would have published: still the operation's status at the next poll.
    observable = set()
    for t in found:
        next_poll = next((p for p in polls if p >= t.at), None)
        current = None if next_poll is None else sim.operation(t.operation_id, at=next_poll)
        if current is not None and current["status"] == t.status:
            observable.add((t.operation_id, t.status))
    assert found and observable and observable <= set(published), observable - set(published)
    assert max(published.values()) == 1, "a change published twice"
    keys = Counter(e["detail"]["eventKey"] for e in events)
    assert max(keys.values()) == 1
    assert len(deliveries) < len(found) + sum(d.duplicate for d in deliveries), "some deliveries were dropped"
    assert failures(harness) == []


class FakeSinkValidate:
    """Twilio's Sink Validate endpoint: 201 for the test id it expects, 400 otherwise."""

    def __init__(self, expected_test_id: str) -> None:
        self.expected = expected_test_id
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = parse_qs(body)
                fake.requests.append((self.path, form, self.headers.get("Authorization")))
                ok = form.get("TestId") == [fake.expected]
                payload = {"result": "valid"} if ok else {"code": 20001, "message": "Invalid TestId"}
                data = json.dumps(payload).encode()
                self.send_response(201 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def stop(self) -> None:
        self.server.shutdown()


def test_the_sink_test_event_is_recorded_and_validated_through_the_cli(
    harness: StreamHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = "DG" + "ab" * 16
    fake = FakeSinkValidate("95001c1e-2222")
    monkeypatch.setenv("EVENTS_API_BASE_URL", fake.url)
    try:
        out = io.StringIO()
        assert cli.main(["stream", "validate", "--sink", sink], out=out) == 2, "nothing recorded yet"
        assert "no sink test event recorded yet" in capsys.readouterr().err
        account = harness.simulator.account_sid
        harness.put([sink_test_event("95001c1e-1111", account_sid=account, time="2026-01-01T00:00:00Z")])
        harness.put([sink_test_event("95001c1e-2222", account_sid=account, time="2026-01-01T00:00:01Z")])
        harness.pump.pump()
        assert harness.drain() == [], "a test event publishes nothing"
        assert cli.main(["stream", "validate", "--sink", sink], out=out) == 0
        assert "validated with test id 95001c1e-2222" in out.getvalue()
        path, form, auth = fake.requests[-1]
        assert path == f"/v1/Sinks/{sink}/Validate" and form == {"TestId": ["95001c1e-2222"]}
        assert auth is not None and auth.startswith("Basic ")
        fake.expected = "something-else"
        assert cli.main(["stream", "validate", "--sink", sink], out=out) == 2
        assert (
            "Sink Validate refused test id 95001c1e-2222 (HTTP 400: Invalid TestId)"
            in capsys.readouterr().err
        )
        status = io.StringIO()
        assert cli.main(["stream", "status", "--json"], out=status) == 0
        rows = {row["type"]: row for row in json.loads(status.getvalue())["types"]}
        assert rows["com.twilio.eventstreams.test-event"]["count"] >= 1
    finally:
        fake.stop()

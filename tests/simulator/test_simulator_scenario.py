"""Scenario files, retention, the generator, and the API's page tokens and validation (no server)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from comms_sim import (
    RETENTION_SECONDS,
    AcceleratedClock,
    ManualClock,
    RealClock,
    Scenario,
    SimulatorServer,
    scenarios_dir,
)
from comms_sim.accounts import load_setup
from comms_sim.api import EmailOperationsApi, decode_token, encode_token
from comms_sim.generate import main as generate_main
from comms_sim.ids import is_operation_id
from comms_sim.store import OperationStore
from comms_sim.timefmt import parse_duration
from comms_sim.timeline import SendPlan

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
AUTH = "Basic " + base64.b64encode(b"ACuser:secret").decode()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90), ("90", 90), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("-8d", -691200), ("6d23h50m", 604200)],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_story_covers_every_status_and_a_high_failure_send() -> None:
    story = Scenario.story()
    names = {op.name for op in story.operations}
    assert {"newsletter", "transactional", "high-failure", "canceled", "stalled", "late-opens"} <= names
    sim = SimulatorServer(story, clock=ManualClock(NOW))
    seen: set[str] = set()
    for minutes in range(0, 61, 5):
        seen |= {op["status"] for op in sim.operations(NOW + timedelta(minutes=minutes))}
    assert seen == {"SCHEDULED", "PROCESSING", "COMPLETED", "CANCELED"}
    high = sim.operation(sim.operation_id("high-failure"), NOW + timedelta(hours=1))
    assert high is not None
    assert high["status"] == "COMPLETED"
    assert (high["stats"]["failed"], high["stats"]["total"]) == (120, 1000)


def test_retention_drops_operations_seven_days_after_creation() -> None:
    send = SendPlan(id="comms_operation_01h9krwprkeee8fzqspvwy6nq8", created=0, total=1, duration=1, step=1)
    store = OperationStore([send], anchor=0)
    assert store.get(send.id, -1) is None  # not created yet
    assert store.get(send.id, 0) is not None
    assert store.get(send.id, RETENTION_SECONDS - 1) is not None
    assert store.get(send.id, RETENTION_SECONDS) is None
    assert list(store.iter_visible(RETENTION_SECONDS)) == []


def test_story_expiring_operation_leaves_the_list_after_ten_minutes() -> None:
    sim = SimulatorServer(Scenario.story(), clock=ManualClock(NOW))
    expiring = sim.operation_id("expiring")
    assert sim.operation(expiring) is not None
    assert sim.operation(sim.operation_id("archived")) is None
    sim.advance(600)
    assert sim.operation(expiring) is None
    assert expiring not in {op["id"] for op in sim.operations()}
    assert any(entry.operation_id == expiring for entry in sim.history)  # ground truth keeps it


def test_scenario_validation_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("operations:\n  - name: x\n    total: 5\n    colour: red\n")
    with pytest.raises(ValueError, match="colour"):
        Scenario.load(bad)
    bad.write_text("operations:\n  - name: x\n    total: 5\n    created: 2024-01-01T00:00:00Z\n")
    with pytest.raises(ValueError, match="needs the scenario's 'start'"):
        Scenario.load(bad)


def test_generated_scenario_round_trips_through_json(tmp_path: Path) -> None:
    scenario = Scenario.generate(n_operations=500, days=2, active=20, changes_per_minute=5, seed=3)
    loaded = Scenario.load(scenario.dump(tmp_path / "small.json"))
    clock = ManualClock(NOW)
    original = SimulatorServer(scenario, clock=clock)
    again = SimulatorServer(loaded, clock=clock)
    for hours in (0, 1, 6, 30):
        at = NOW + timedelta(hours=hours)
        assert original.operations(at) == again.operations(at)


def test_generator_cli_writes_a_loadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen.yaml"
    assert generate_main(["--operations", "200", "--days", "1", "--active", "10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "200 operations" in printed
    # Options left out keep the generator's defaults.
    assert Scenario.generate(n_operations=200, days=1, active=10).description in printed
    assert len(Scenario.load(out).operations) >= 200


def test_generator_steady_state() -> None:
    """Counts, spread, active operations and changes per minute follow the targets (scaled down 5x)."""
    n, active, per_minute = 20_000, 200, 20
    scenario = Scenario.generate(
        n_operations=n, days=7, active=active, changes_per_minute=per_minute, seed=11
    )
    assert all(is_operation_id(op.id) for op in scenario.operations)
    assert len({op.id for op in scenario.operations}) == len(scenario.operations)
    sim = SimulatorServer(scenario, clock=ManualClock(NOW))
    visible = sim.operations()
    assert len(visible) == n
    per_day = Counter(
        (datetime.fromisoformat(op["createdAt"]) - (NOW - timedelta(days=7))).days for op in visible
    )
    assert all(abs(count - n / 7) < 0.1 * n / 7 for count in per_day.values())
    statuses = Counter(op["status"] for op in visible)
    assert 0.75 * active < statuses["SCHEDULED"] + statuses["PROCESSING"] < 1.25 * active
    assert statuses["COMPLETED"] > 0.9 * n
    assert statuses["CANCELED"] > 0
    changes = sim.history_between(NOW, NOW + timedelta(minutes=60))
    assert 0.75 * per_minute < len(changes) / 60 < 1.25 * per_minute
    assert (
        Scenario.generate(n_operations=50, seed=1).to_dict()
        == Scenario.generate(n_operations=50, seed=1).to_dict()
    )


# -- page tokens and validation, against the API object without a server ------------------------------


def api_for(scenario: Scenario) -> tuple[EmailOperationsApi, int]:
    sim = SimulatorServer(scenario, clock=ManualClock(NOW), credentials={"ACuser": "secret"})
    return sim.api, int(NOW.timestamp())


def test_page_tokens_are_opaque_base64() -> None:
    api, now = api_for(Scenario.story())
    result = api.handle("GET", "/v1/Emails/Operations", "pageSize=2", AUTH, now)
    token = result.pagination["next"]
    assert token is not None
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["v"] == 1
    assert decode_token(encode_token({"v": 1, "k": "ops"})) == {"v": 1, "k": "ops"}
    for garbage in ("not-a-token", "eyJ2IjoyfQ", encode_token({"v": 1, "k": "err", "o": "x"})):
        bad = api.handle("GET", "/v1/Emails/Operations", f"pageToken={garbage}", AUTH, now)
        assert bad.status == 400
        assert bad.body["errors"][0]["context"] == "pageToken"


def test_token_of_one_operation_is_rejected_for_another() -> None:
    api, now = api_for(Scenario.story())
    sim_ids = [timeline.id for timeline in Scenario.story().operations]
    token = encode_token({"v": 1, "k": "err", "o": sim_ids[0], "x": 0, "n": 10})
    result = api.handle("GET", f"/v1/Emails/Operations/{sim_ids[1]}/Errors", f"pageToken={token}", AUTH, now)
    assert result.status == 400


def test_scenarios_dir_holds_the_story_and_doc_fixtures() -> None:
    names = {path.name for path in scenarios_dir().glob("*.yaml")}
    assert {"story.yaml", "doc-fetch-operation.yaml", "doc-list-operations.yaml"} <= names
    for path in scenarios_dir().glob("*.yaml"):
        load_setup(path)  # a scenario, or an accounts file naming scenarios beside it


def test_the_docs_example_scenario_loads() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text()
    section = page.split("## Writing a scenario file", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    scenario = Scenario.from_dict(yaml.safe_load(block))
    sim = SimulatorServer(scenario)
    statuses = {
        op["status"] for hours in (0, 30) for op in sim.operations(sim.now() + timedelta(hours=hours))
    }
    assert statuses == {"COMPLETED", "CANCELED"}


_SMALL_WEEK = Scenario.generate(n_operations=400, days=2, active=40, changes_per_minute=10, seed=5)


@settings(max_examples=40, deadline=None)
@given(
    page_size=st.integers(1, 120),
    status=st.sampled_from([None, "SCHEDULED", "PROCESSING", "COMPLETED", "CANCELED"]),
    window=st.tuples(st.integers(0, 50), st.integers(0, 50)),
    minutes_later=st.integers(0, 600),
)
def test_walking_pages_yields_exactly_the_filtered_truth(
    page_size: int, status: str | None, window: tuple[int, int], minutes_later: int
) -> None:
    at = NOW + timedelta(minutes=minutes_later)
    sim = SimulatorServer(_SMALL_WEEK, clock=ManualClock(at), credentials={"ACuser": "secret"})
    low, high = sorted(window)
    start = (NOW - timedelta(hours=high)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (NOW - timedelta(hours=low) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query: dict[str, object] = {"pageSize": page_size, "startDate": start, "endDate": end}
    if status:
        query["status"] = status
    now = int(at.timestamp())
    walked: list[dict[str, object]] = []
    params = urlencode(query)
    for _ in range(1000):
        result = sim.api.handle("GET", "/v1/Emails/Operations", params, AUTH, now)
        assert result.status == 200, result.body
        assert len(result.items) <= page_size
        walked += [json.loads(item) for item in result.items]
        token = result.pagination["next"]
        if token is None:
            break
        assert result.items, "a next token is never handed out for an empty page"
        params = urlencode({"pageToken": token})
    expected = [
        op
        for op in sim.operations()
        if start <= str(op["createdAt"]) <= end and (status is None or op["status"] == status)
    ]
    assert walked == expected


def test_story_ids_are_stable() -> None:
    """Sample events and README examples quote the story's ids: deriving them differently breaks those."""
    ids = {op.name: op.id for op in Scenario.story().operations}
    assert ids["high-failure"] == "comms_operation_52yfjxxdab954gq5z2zza5sv9a"
    assert ids["newsletter"] == "comms_operation_5enwt99pk6c284n9me7tmw3phs"
    assert all(is_operation_id(op_id) for op_id in ids.values())


def test_clocks() -> None:
    manual = ManualClock("2026-01-05T09:00:00Z")
    assert manual.advance(90) == NOW + timedelta(seconds=90)
    assert manual.set(NOW - timedelta(days=1)) == NOW - timedelta(days=1)  # backwards is allowed via set()
    with pytest.raises(ValueError, match="forward"):
        manual.advance(-1)
    fast = AcceleratedClock(NOW, speed=3600)
    assert fast.now() >= NOW
    assert RealClock().now().tzinfo is not None
    with pytest.raises(ValueError, match="speed"):
        AcceleratedClock(NOW, speed=0)

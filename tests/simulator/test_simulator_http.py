"""The simulator over real HTTP on loopback: shapes, filters, pagination, errors, faults, doc fidelity."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from comms_sim import STORY_START, FaultRule, ManualClock, Scenario, SimulatorServer, scenarios_dir

pytestmark = pytest.mark.integration

STAT_KEYS = [
    "total", "recipients", "attempts", "queued", "sent", "scheduled",
    "delivered", "opened", "undelivered", "failed", "canceled",
]  # fmt: skip


@pytest.fixture
def sim(comms_simulator: SimulatorServer) -> SimulatorServer:
    comms_simulator.advance(8 * 60)  # every story operation exists and most are moving
    return comms_simulator


@pytest.fixture
def http(sim: SimulatorServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = (sim.account_sid, sim.auth_token)
        yield session


def list_ops(http: requests.Session, sim: SimulatorServer, **params: Any) -> requests.Response:
    return http.get(f"{sim.base_url}/Emails/Operations", params=params, timeout=10)


def walk(http: requests.Session, sim: SimulatorServer, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = None
    while True:
        response = list_ops(http, sim, **params, **({"pageToken": token} if token else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["operations"]
        token = body["pagination"]["next"]
        if token is None:
            return items


# -- shapes, pagination, filters ------------------------------------------------------------------------


def test_list_shape_and_default_page_size(sim: SimulatorServer, http: requests.Session) -> None:
    response = list_ops(http, sim)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["operations", "pagination"]
    assert set(body["pagination"]) == {"next", "self"}
    assert body["pagination"]["next"] is None
    assert isinstance(body["pagination"]["self"], str)
    assert body["operations"] == sim.operations()
    for op in body["operations"]:
        assert list(op) == ["id", "status", "stats", "createdAt", "updatedAt"]
        assert list(op["stats"]) == STAT_KEYS
        assert all(type(value) is int for value in op["stats"].values())
        datetime.strptime(op["updatedAt"], "%Y-%m-%dT%H:%M:%SZ")


def test_pagination_walks_every_operation_once_and_self_refetches(
    sim: SimulatorServer, http: requests.Session
) -> None:
    assert walk(http, sim, pageSize=2) == sim.operations()
    first = list_ops(http, sim, pageSize=3).json()
    second = list_ops(http, sim, pageToken=first["pagination"]["next"]).json()
    assert len(second["operations"]) == 3  # the token remembers pageSize
    again = list_ops(http, sim, pageToken=second["pagination"]["self"]).json()
    assert again == second
    assert first["pagination"]["next"] != second["pagination"]["next"]


def test_default_page_size_is_50_and_max_is_1000(comms_simulator_factory: Any) -> None:
    sim = comms_simulator_factory(Scenario.generate(n_operations=1200, days=1, active=20, seed=2))
    with requests.Session() as http:
        http.auth = (sim.account_sid, sim.auth_token)
        assert len(list_ops(http, sim).json()["operations"]) == 50
        assert len(list_ops(http, sim, pageSize=1000).json()["operations"]) == 1000
        assert len(walk(http, sim, pageSize=1000)) == 1200


def test_filters_on_created_at_and_status(sim: SimulatorServer, http: requests.Session) -> None:
    truth = sim.operations()
    start, end = "2026-01-05T09:01:00Z", "2026-01-05T09:03:00Z"
    window = walk(http, sim, startDate=start, endDate=end)
    assert window == [op for op in truth if start <= op["createdAt"] <= end]
    assert len(window) == 4
    for status in ("SCHEDULED", "PROCESSING", "COMPLETED", "CANCELED"):
        assert walk(http, sim, status=status, pageSize=1) == [op for op in truth if op["status"] == status]
    offset = walk(http, sim, startDate="2026-01-05T10:01:00+01:00")  # offsets are honoured
    assert offset == [op for op in truth if op["createdAt"] >= "2026-01-05T09:01:00Z"]


def test_filters_travel_in_the_token(sim: SimulatorServer, http: requests.Session) -> None:
    first = list_ops(http, sim, status="COMPLETED", pageSize=1).json()
    rest = list_ops(http, sim, pageToken=first["pagination"]["next"], pageSize=100).json()
    assert {op["status"] for op in rest["operations"]} == {"COMPLETED"}


def test_operations_evolve_with_the_clock(sim: SimulatorServer, http: requests.Session) -> None:
    op_id = sim.operation_id("newsletter")
    before = http.get(f"{sim.base_url}/Emails/Operations/{op_id}", timeout=10).json()
    sim.advance(3600)
    after = http.get(f"{sim.base_url}/Emails/Operations/{op_id}", timeout=10).json()
    assert before["status"] == after["status"] == "COMPLETED"
    assert after["stats"]["opened"] > before["stats"]["opened"]  # opens keep arriving after COMPLETED
    assert after["updatedAt"] > before["updatedAt"]
    stalled = sim.operation(sim.operation_id("stalled"))
    assert stalled is not None
    assert (stalled["status"], stalled["updatedAt"]) == ("PROCESSING", "2026-01-05T09:06:00Z")


def test_date_header_is_the_simulator_clock(sim: SimulatorServer, http: requests.Session) -> None:
    response = list_ops(http, sim)
    assert parsedate_to_datetime(response.headers["Date"]) == STORY_START + timedelta(minutes=8)
    sim.advance(86400)
    response = http.get(
        f"{sim.base_url}/Emails/Operations/comms_operation_01h9krwprkeee8fzqspvwy6nq8", timeout=10
    )
    assert response.status_code == 404
    assert parsedate_to_datetime(response.headers["Date"]) == STORY_START + timedelta(days=1, minutes=8)


# -- errors endpoint ---------------------------------------------------------------------------------------


def test_errors_are_paginated_and_match_failed(sim: SimulatorServer, http: requests.Session) -> None:
    sim.advance(3600)
    op_id = sim.operation_id("high-failure")
    url = f"{sim.base_url}/Emails/Operations/{op_id}/Errors"
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"pageSize": 50}
    while True:
        body = http.get(url, params=params, timeout=10).json()
        assert set(body) == {"errors", "pagination"}
        items += body["errors"]
        if body["pagination"]["next"] is None:
            break
        params = {"pageToken": body["pagination"]["next"]}
    assert len(items) == 120 == sim.operation(op_id)["stats"]["failed"]  # type: ignore[index]
    assert items == sim.errors(op_id)
    assert Counter(item["code"] for item in items) == {62001: 60, 62004: 30, 62006: 20, 62007: 10}
    assert all(set(item) == {"code", "message", "emailId", "recipient"} for item in items)
    assert all(item["emailId"].startswith("comms_email_") for item in items)
    clean = http.get(f"{sim.base_url}/Emails/Operations/{sim.operation_id('newsletter')}/Errors", timeout=10)
    assert clean.json() == {
        "errors": [],
        "pagination": {"next": None, "self": clean.json()["pagination"]["self"]},
    }


def test_errors_grow_while_processing(comms_simulator: SimulatorServer, http: requests.Session) -> None:
    sim = comms_simulator
    sim.manual_clock.set(STORY_START + timedelta(minutes=4))  # high-failure is half-way
    op_id = sim.operation_id("high-failure")
    url = f"{sim.base_url}/Emails/Operations/{op_id}/Errors"
    early = http.get(url, params={"pageSize": 1000}, timeout=10).json()["errors"]
    assert 0 < len(early) < 120
    sim.advance(600)
    late = http.get(url, params={"pageSize": 1000}, timeout=10).json()["errors"]
    assert late[: len(early)] == early


# -- 400 / 401 / 404 ---------------------------------------------------------------------------------------


def test_bad_parameters_list_every_problem(sim: SimulatorServer, http: requests.Session) -> None:
    response = http.get(
        f"{sim.base_url}/Emails/Operations",
        params={
            "pageSize": "0",
            "status": "DONE",
            "startDate": "yesterday",
            "endDate": "2024-13-01",
            "colour": "x",
        },
        timeout=10,
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert sorted(error["context"] for error in errors) == [
        "colour",
        "endDate",
        "pageSize",
        "startDate",
        "status",
    ]
    for error in errors:
        assert set(error) == {"code", "message", "infoUrl", "context"}
        assert error["code"] == 20001
        assert error["infoUrl"] == "https://www.twilio.com/docs/api/errors/20001"
    for params in (
        {"pageSize": "1001"},
        {"pageSize": "ten"},
        {"pageSize": ["1", "2"]},
        {"startDate": "2026-01-05T10:00:00Z", "endDate": "2026-01-05T09:00:00Z"},
        {"startDate": "2026-01-05"},
    ):
        assert list_ops(http, sim, **params).status_code == 400, params
    assert (
        http.get(f"{sim.base_url}/Emails/Operations/x/Errors", params={"status": "X"}, timeout=10).status_code
        == 400
    )


@pytest.mark.parametrize("auth", [None, ("AC51515151515151515151515151515151", "wrong"), ("ACnobody", "x")])
def test_bad_credentials_get_401(sim: SimulatorServer, auth: tuple[str, str] | None) -> None:
    response = requests.get(f"{sim.base_url}/Emails/Operations", auth=auth, timeout=10)
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == 20003
    assert "WWW-Authenticate" in response.headers
    assert sim.auth_token not in response.text


def test_api_key_credentials_work(sim: SimulatorServer) -> None:
    from comms_sim import DEFAULT_API_KEY_SECRET, DEFAULT_API_KEY_SID  # noqa: PLC0415

    response = requests.get(
        f"{sim.base_url}/Emails/Operations", auth=(DEFAULT_API_KEY_SID, DEFAULT_API_KEY_SECRET), timeout=10
    )
    assert response.status_code == 200


def test_unknown_and_expired_ids_get_404(sim: SimulatorServer, http: requests.Session) -> None:
    for op_id in ("comms_operation_01h9krwprkeee8fzqspvwy6nq8", sim.operation_id("archived"), "nonsense"):
        for suffix in ("", "/Errors"):
            response = http.get(f"{sim.base_url}/Emails/Operations/{op_id}{suffix}", timeout=10)
            assert response.status_code == 404
            assert response.json() == {
                "errors": [
                    {
                        "code": 20404,
                        "message": "The resource was not found.",
                        "infoUrl": "https://www.twilio.com/docs/api/errors/20404",
                        "context": "null",
                    }
                ]
            }
    assert http.get(f"{sim.base_url}/Emails", timeout=10).status_code == 404
    assert http.post(f"{sim.base_url}/Emails/Operations", timeout=10).status_code == 405


# -- faults --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status", "code"), [("429", 429, 20429), ("503", 503, 20503)])
def test_throttle_faults_carry_retry_after(
    sim: SimulatorServer, http: requests.Session, kind: str, status: int, code: int
) -> None:
    sim.faults.add(FaultRule(kind=kind, endpoint="list_operations", times=2, retry_after="3"))  # type: ignore[arg-type]
    for _ in range(2):
        response = list_ops(http, sim)
        assert response.status_code == status
        assert response.headers["Retry-After"] == "3"
        assert response.json()["errors"][0]["code"] == code
    assert list_ops(http, sim).status_code == 200
    assert sim.counters[f"fault_{kind}"] == 2


def test_retry_after_as_http_date_uses_the_api_clock(sim: SimulatorServer, http: requests.Session) -> None:
    sim.faults.add(FaultRule(kind="429", times=1, retry_after=30, retry_after_date=True))
    response = list_ops(http, sim)
    assert parsedate_to_datetime(response.headers["Retry-After"]) == sim.now() + timedelta(seconds=30)


def test_500_fault_and_endpoint_scoping(sim: SimulatorServer, http: requests.Session) -> None:
    sim.faults.add(FaultRule(kind="500", endpoint="fetch_operation"))
    assert list_ops(http, sim).status_code == 200
    response = http.get(f"{sim.base_url}/Emails/Operations/{sim.operation_id('newsletter')}", timeout=10)
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    assert response.json()["errors"][0]["code"] == 20500


def test_skip_and_probability_are_deterministic(sim: SimulatorServer, http: requests.Session) -> None:
    rule = sim.faults.add(kind="503", endpoint="list_operations", skip=2, times=1)
    assert [list_ops(http, sim).status_code for _ in range(4)] == [200, 200, 503, 200]
    assert (rule.seen, rule.fired) == (3, 1)
    sim.faults.clear()

    def run() -> list[int]:
        sim.faults.clear()
        sim.faults.reseed(7)
        sim.faults.add(kind="429", probability=0.5)
        return [list_ops(http, sim).status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert 0 < first.count(429) < 20


def test_slow_fault_delays_but_answers(sim: SimulatorServer, http: requests.Session) -> None:
    sim.faults.add(kind="slow", delay=0.2, times=1)
    assert list_ops(http, sim).status_code == 200
    assert sim.request_log[-1].faults == ("slow",)
    sim.faults.add(kind="slow", delay=1.0, times=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(f"{sim.base_url}/Emails/Operations", timeout=0.3)
    assert sim.request_log[-1].faults == ("slow",)


@pytest.mark.parametrize("mutation", ["truncated", "html", "empty"])
def test_malformed_json(sim: SimulatorServer, http: requests.Session, mutation: str) -> None:
    sim.faults.add(kind="malformed_json", mutation=mutation, times=1)
    response = list_ops(http, sim)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


@pytest.mark.parametrize(
    ("mutation", "check"),
    [
        ("drop_stats", lambda item: "stats" not in item),
        ("bad_id", lambda item: item["id"] == "comms_operation_NOT-A-VALID-ID"),
        ("string_counter", lambda item: isinstance(item["stats"]["total"], str)),
        ("missing_updated_at", lambda item: "updatedAt" not in item),
        ("bad_status", lambda item: item["status"] == "EXPLODED"),
        ("not_an_object", lambda item: isinstance(item, str)),
    ],
)
def test_bad_items_break_chosen_items_only(
    sim: SimulatorServer, http: requests.Session, mutation: str, check: Any
) -> None:
    truth = sim.operations()
    sim.faults.add(kind="bad_items", endpoint="list_operations", mutation=mutation, items=2, times=1)
    items = list_ops(http, sim).json()["operations"]
    broken = [index for index, item in enumerate(items) if item != truth[index]]
    assert len(broken) == 2
    assert all(check(items[index]) for index in broken)


def test_bad_items_on_fetch_and_errors(sim: SimulatorServer, http: requests.Session) -> None:
    sim.advance(3600)
    op_id = sim.operation_id("high-failure")
    sim.faults.add(kind="bad_items", endpoint="fetch_operation", mutation="drop_stats", times=1)
    assert "stats" not in http.get(f"{sim.base_url}/Emails/Operations/{op_id}", timeout=10).json()
    sim.faults.add(kind="bad_items", endpoint="list_errors", mutation="string_code", times=1)
    errors = http.get(f"{sim.base_url}/Emails/Operations/{op_id}/Errors", timeout=10).json()["errors"]
    assert sum(isinstance(item["code"], str) for item in errors) == 1


def test_future_updated_at_dates_a_valid_item_after_the_api_clock(
    sim: SimulatorServer, http: requests.Session
) -> None:
    truth = sim.operations()
    sim.faults.add(
        kind="bad_items", endpoint="list_operations", mutation="future_updated_at", ahead=86_400, times=1
    )
    items = list_ops(http, sim).json()["operations"]
    (broken,) = [item for index, item in enumerate(items) if item != truth[index]]
    assert broken["updatedAt"] == (sim.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {k: v for k, v in broken.items() if k != "updatedAt"} == {
        k: v for k, v in truth[items.index(broken)].items() if k != "updatedAt"
    }
    # Never drawn at random: it is a valid item, only its date is wrong.
    assert not FaultRule(kind="bad_items").mutation


@pytest.mark.parametrize("date", ["2099-01-01T00:00:00Z", -7200.0])
def test_bad_date_changes_the_date_header_only(
    sim: SimulatorServer, http: requests.Session, date: str | float
) -> None:
    sim.faults.add(kind="bad_date", date=date, times=1)
    response = list_ops(http, sim)
    assert response.status_code == 200 and response.json()["operations"] == sim.operations()
    sent = parsedate_to_datetime(response.headers["Date"])
    expected = (
        datetime(2099, 1, 1, tzinfo=sent.tzinfo) if isinstance(date, str) else sim.now() - timedelta(hours=2)
    )
    assert sent == expected
    assert sim.request_log[-1].faults == ("bad_date",)
    assert parsedate_to_datetime(list_ops(http, sim).headers["Date"]) == sim.now()


def test_oversize_pads_a_valid_body(sim: SimulatorServer, http: requests.Session) -> None:
    sim.faults.add(kind="oversize", size=300_000, times=1)
    response = list_ops(http, sim)
    assert len(response.content) >= 300_000
    assert response.json()["operations"] == sim.operations()
    op_id = sim.operations()[0]["id"]
    sim.faults.add(kind="oversize", endpoint="fetch_operation", size=5_000, times=1)
    fetched = http.get(f"{sim.base_url}/Emails/Operations/{op_id}", timeout=10)
    assert len(fetched.content) >= 5_000 and fetched.json()["id"] == op_id


def test_drip_sends_the_body_a_byte_at_a_time(sim: SimulatorServer, http: requests.Session) -> None:
    sim.faults.add(kind="drip", delay=0.2, times=1)
    with http.get(f"{sim.base_url}/Emails/Operations", params={"pageSize": 1}, stream=True, timeout=5) as r:
        assert r.status_code == 200 and int(r.headers["Content-Length"]) > 100
        assert r.raw.read1(4096) == b"{"  # one byte is all there is so far
        assert r.raw.read1(4096) == b'"'  # and the next comes later
    sim.faults.add(kind="drip", delay=0.5, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):  # read timeout mid-body
        http.get(f"{sim.base_url}/Emails/Operations", params={"pageSize": 1}, timeout=0.2).content  # noqa: B018
    assert sim.request_log[-1].faults == ("drip",)


@pytest.mark.parametrize(
    "rule",
    [{"kind": "bad_date"}, {"kind": "oversize"}, {"kind": "drip"}, {"kind": "oversize", "size": 0}],
)
def test_clock_and_size_rules_need_their_field(rule: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultRule(**rule)


def test_shuffle_reorders_each_page(sim: SimulatorServer, http: requests.Session) -> None:
    truth = sim.operations()
    sim.faults.add(kind="shuffle")
    orders = [[op["id"] for op in list_ops(http, sim).json()["operations"]] for _ in range(5)]
    assert all(sorted(order) == sorted(op["id"] for op in truth) for order in orders)
    assert any(order != [op["id"] for op in truth] for order in orders)
    assert sorted(op["id"] for op in walk(http, sim, pageSize=3)) == sorted(op["id"] for op in truth)


def test_request_log_and_counters(sim: SimulatorServer, http: requests.Session) -> None:
    sim.reset_log()
    list_ops(http, sim, pageSize=5)
    http.get(f"{sim.base_url}/Emails/Operations/{sim.operation_id('newsletter')}", timeout=10)
    http.get(f"{sim.base_url}/Emails/Operations/{sim.operation_id('newsletter')}/Errors", timeout=10)
    requests.get(f"{sim.base_url}/Emails/Operations", timeout=10)
    counters = sim.counters
    assert counters["total"] == 4
    assert (counters["list_operations"], counters["fetch_operation"], counters["list_errors"]) == (2, 1, 1)
    assert (counters["status_200"], counters["status_401"]) == (3, 1)
    assert sim.request_log[0].query == "pageSize=5"
    assert sim.request_log[0].at == sim.now()
    sim.reset_log()
    assert sim.counters == {}
    assert sim.request_log == []


# -- ground truth ---------------------------------------------------------------------------------------


def test_history_is_every_version_the_api_showed(sim: SimulatorServer, http: requests.Session) -> None:
    op_id = sim.operation_id("high-failure")
    observed: list[dict[str, Any]] = []
    for _ in range(30):
        op = http.get(f"{sim.base_url}/Emails/Operations/{op_id}", timeout=10).json()
        if not observed or observed[-1] != op:
            observed.append(op)
        sim.advance(30)
    history = [(entry.status, dict(entry.stats), entry.updated_at) for entry in sim.history_of(op_id)]
    seen = [(op["status"], op["stats"], op["updatedAt"]) for op in observed]
    assert all(version in history for version in seen)
    assert history[-1] == seen[-1]
    assert [entry.time for entry in sim.history] == sorted(entry.time for entry in sim.history)


# -- documentation fidelity ------------------------------------------------------------------------------

FETCHOP_EXAMPLE = {
    "id": "comms_operation_01h9krwprkeee8fzqspvwy6nq8",
    "status": "COMPLETED",
    "stats": {
        "total": 3, "recipients": 3, "attempts": 3, "queued": 0, "sent": 3, "scheduled": 0,
        "delivered": 3, "opened": 2, "undelivered": 0, "failed": 0, "canceled": 0,
    },
    "createdAt": "2024-04-10T09:15:00Z",
    "updatedAt": "2024-04-10T09:45:00Z",
}  # fmt: skip

LISTOP_EXAMPLE = [
    {
        "id": "comms_operation_01h9krwprkeee8fzqspvwy6nq8",
        "status": "COMPLETED",
        "stats": {
            "total": 5, "recipients": 5, "attempts": 5, "queued": 0, "sent": 5, "scheduled": 0,
            "delivered": 5, "opened": 3, "undelivered": 0, "failed": 0, "canceled": 0,
        },
        "createdAt": "2024-06-20T10:15:30Z",
        "updatedAt": "2024-06-20T10:20:00Z",
    },
    {
        "id": "comms_operation_01h9krwprkeee8fzqspvwy6nq9",
        "status": "SCHEDULED",
        "stats": {
            "total": 3, "recipients": 3, "attempts": 0, "queued": 0, "sent": 0, "scheduled": 3,
            "delivered": 0, "opened": 0, "undelivered": 0, "failed": 0, "canceled": 0,
        },
        "createdAt": "2024-06-21T08:00:00Z",
        "updatedAt": "2024-06-21T08:05:00Z",
    },
]  # fmt: skip


def test_fetch_matches_the_documentation_example(comms_simulator_factory: Any) -> None:
    sim = comms_simulator_factory(scenarios_dir() / "doc-fetch-operation.yaml")
    response = requests.get(
        f"{sim.base_url}/Emails/Operations/{FETCHOP_EXAMPLE['id']}",
        auth=(sim.account_sid, sim.auth_token),
        timeout=10,
    )
    assert response.status_code == 200
    body = response.json()
    assert list(body) == list(FETCHOP_EXAMPLE)
    for field, value in FETCHOP_EXAMPLE.items():
        assert body[field] == value, field
    assert json.dumps(body) == json.dumps(FETCHOP_EXAMPLE)  # same keys in the same order


def test_list_matches_the_documentation_example(comms_simulator_factory: Any) -> None:
    sim = comms_simulator_factory(scenarios_dir() / "doc-list-operations.yaml")
    response = requests.get(
        f"{sim.base_url}/Emails/Operations", auth=(sim.account_sid, sim.auth_token), timeout=10
    )
    body = response.json()
    assert json.dumps(body["operations"]) == json.dumps(LISTOP_EXAMPLE)
    assert body["pagination"]["next"] is None
    assert isinstance(body["pagination"]["self"], str)


# -- lifecycle and the standalone CLI ---------------------------------------------------------------


def test_stop_closes_keep_alive_connections() -> None:
    sim = SimulatorServer(Scenario.story(), clock=ManualClock(STORY_START)).start()
    with requests.Session() as http:
        http.auth = (sim.account_sid, sim.auth_token)
        assert list_ops(http, sim).status_code == 200
        sim.stop()
        with pytest.raises(requests.exceptions.ConnectionError):
            list_ops(http, sim)


def test_cli_prints_url_and_credentials_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "comms_sim", "--port", "0", "--speed", "60", "--quiet",
         "--account-sid", "ACcli", "--auth-token", "cli-token", "--fault", "kind=503,times=1"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        base_url = lines[0].rsplit(" at ", 1)[1].strip()
        assert "export TWILIO_ACCOUNT_SID=ACcli" in "".join(lines)
        assert (
            requests.get(f"{base_url}/Emails/Operations", auth=("ACcli", "cli-token"), timeout=10).status_code
            == 503
        )
        response = requests.get(f"{base_url}/Emails/Operations", auth=("ACcli", "cli-token"), timeout=10)
        assert response.status_code == 200
        assert len(response.json()["operations"]) >= 3
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_control_endpoints_drive_a_simulator_from_outside(
    sim: SimulatorServer, http: requests.Session
) -> None:
    state = http.post(f"{sim.url}/_sim/clock", json={"advance": 600}, timeout=10).json()
    assert state["now"] == "2026-01-05T09:18:00Z"
    assert sim.now() == STORY_START + timedelta(minutes=18)
    http.post(f"{sim.url}/_sim/clock", json={"set": "2026-01-05T09:20:00Z"}, timeout=10)
    assert sim.now() == STORY_START + timedelta(minutes=20)
    created = http.post(
        f"{sim.url}/_sim/faults", json={"kind": "503", "times": 1, "retry_after": "2"}, timeout=10
    )
    assert created.status_code == 201
    assert list_ops(http, sim).status_code == 503
    assert http.post(f"{sim.url}/_sim/faults", json={"kind": "teapot"}, timeout=10).status_code == 400
    assert http.get(f"{sim.url}/_sim/operations", timeout=10).json() == sim.operations()
    history = http.get(f"{sim.url}/_sim/history", params={"since": "2026-01-05T09:15:00Z"}, timeout=10).json()
    assert len(history) == len(sim.history_between(STORY_START + timedelta(minutes=15)))
    assert http.delete(f"{sim.url}/_sim/faults", timeout=10).status_code == 200
    assert len(sim.faults) == 0
    assert http.get(f"{sim.url}/_sim/state", timeout=10).json()["counters"] == sim.counters
    assert requests.get(f"{sim.url}/_sim/state", timeout=10).status_code == 401
    assert http.post(f"{sim.url}/_sim/reset-log", timeout=10).json() == {"counters": {}}
    assert sim.counters == {}


def test_a_request_body_does_not_poison_keep_alive(sim: SimulatorServer, http: requests.Session) -> None:
    assert http.post(f"{sim.base_url}/Emails/Operations", data="x" * 5000, timeout=10).status_code == 405
    assert list_ops(http, sim).status_code == 200

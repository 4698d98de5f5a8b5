"""Several accounts in one simulator: each sees its own operations with its own credentials, faults aimed
at one account leave the others alone, the control routes and the command line know the accounts, and
Event Streams deliveries name each operation's account."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from comms_sim import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    STORY_START,
    FaultRule,
    ManualClock,
    Scenario,
    SimulatorServer,
    scenarios_dir,
)
from comms_sim.accounts import (
    AccountSpec,
    account_sid,
    accounts_from_dict,
    copies,
    load_accounts,
    load_setup,
    reidentified,
)
from comms_sim.event_streams import DeliveryFaults, all_transitions, plan_deliveries, transitions
from comms_sim.scenario import ScenarioError

pytestmark = pytest.mark.integration

TWO_ACCOUNTS = scenarios_dir() / "two-accounts.yaml"


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(accounts=load_accounts(TWO_ACCOUNTS), clock=ManualClock(STORY_START)) as server:
        server.advance(8 * 60)
        yield server


def _get(sim: SimulatorServer, user: str, secret: str, path: str = "/Emails/Operations") -> requests.Response:
    params = {"pageSize": 1000} if path == "/Emails/Operations" else {}
    return requests.get(f"{sim.base_url}{path}", auth=(user, secret), params=params, timeout=10)


def _ids(response: requests.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {op["id"] for op in response.json()["operations"]}


def test_each_account_lists_its_own_operations(sim: SimulatorServer) -> None:
    acme, globex = sim.accounts
    assert (acme.name, globex.name) == ("acme", "globex")
    acme_ids = _ids(_get(sim, acme.sid, acme.auth_token))
    globex_ids = _ids(_get(sim, globex.sid, globex.auth_token))
    assert acme_ids == {op["id"] for op in sim.operations(account="acme")}
    assert globex_ids == {op["id"] for op in sim.operations(account=globex.sid)}
    assert acme_ids and globex_ids and not acme_ids & globex_ids
    # Another account's operation is not found, as in Twilio.
    foreign = next(iter(globex_ids))
    assert _get(sim, acme.sid, acme.auth_token, f"/Emails/Operations/{foreign}").status_code == 404
    assert _get(sim, globex.sid, globex.auth_token, f"/Emails/Operations/{foreign}").status_code == 200


def test_an_api_key_belongs_to_its_account(sim: SimulatorServer) -> None:
    acme = sim.account("acme")
    key, secret = next((k, v) for k, v in acme.credentials.items() if k.startswith("SK"))
    assert _ids(_get(sim, key, secret)) == {op["id"] for op in sim.operations(account="acme")}
    assert sim.account_counters("acme")["total"] == 1


@pytest.mark.parametrize("who", ["other-account-secret", "unknown-user", "default-credentials"])
def test_credentials_of_nobody_get_401(sim: SimulatorServer, who: str) -> None:
    acme, globex = sim.accounts
    user, secret = {
        "other-account-secret": (acme.sid, globex.auth_token),
        "unknown-user": ("AC" + "9" * 32, acme.auth_token),
        "default-credentials": (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN),
    }[who]
    response = _get(sim, user, secret)
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == 20003


def test_a_401_fault_for_one_account_leaves_the_other_alone(sim: SimulatorServer) -> None:
    acme, globex = sim.accounts
    sim.faults.add(FaultRule(kind="401", account=acme.sid))
    for _ in range(3):
        refused = _get(sim, acme.sid, acme.auth_token)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
        assert refused.json()["errors"][0]["code"] == 20003
        assert _get(sim, globex.sid, globex.auth_token).status_code == 200
    assert sim.account_counters(acme.sid)["status_401"] == 3
    assert sim.account_counters(globex.sid) == {"total": 3, "list_operations": 3, "status_200": 3}
    assert [record.account for record in sim.request_log[:2]] == [acme.sid, globex.sid]


def test_a_429_storm_for_one_account_leaves_the_other_alone(sim: SimulatorServer) -> None:
    acme, globex = sim.accounts
    sim.faults.add(FaultRule(kind="429", account=globex.sid, retry_after="30"))
    storm = [_get(sim, globex.sid, globex.auth_token) for _ in range(4)]
    assert {response.status_code for response in storm} == {429}
    assert storm[0].headers["Retry-After"] == "30"
    assert _get(sim, acme.sid, acme.auth_token).status_code == 200
    assert sim.account_counters(globex.sid)["fault_429"] == 4
    assert "fault_429" not in sim.account_counters(acme.sid)
    assert sim.counters["fault_429"] == 4


def test_a_fault_rule_refuses_an_account_that_is_no_sid() -> None:
    with pytest.raises(ValueError, match="not an Account SID"):
        FaultRule(kind="401", account="acme")


def _control(sim: SimulatorServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    acme = sim.account("acme")
    return requests.request(
        method, f"{sim.url}/_sim/{path}", auth=(acme.sid, acme.auth_token), timeout=10, **kwargs
    )


def test_control_routes_fault_one_account_and_show_each(sim: SimulatorServer) -> None:
    acme, globex = sim.accounts
    added = _control(sim, "POST", "faults", json={"kind": "401", "account": "globex"})
    assert added.status_code == 201 and added.json()["account"] == globex.sid
    _control(sim, "POST", "faults", json={"kind": "429", "account": acme.sid, "endpoint": "fetch_operation"})
    assert _get(sim, globex.sid, globex.auth_token).status_code == 401
    state = _control(sim, "GET", "state").json()
    assert [(a["name"], a["sid"], a["scenario"]) for a in state["accounts"]] == [
        ("acme", acme.sid, "story"),
        ("globex", globex.sid, "storefront"),
    ]
    assert state["accounts"][1]["counters"]["status_401"] == 1
    assert _control(sim, "GET", "operations", params={"account": "globex"}).json() == sim.operations(
        account="globex"
    )
    history = _control(sim, "GET", "history", params={"account": globex.sid}).json()
    assert {entry["operationId"] for entry in history} <= {op.id for op in globex.scenario.operations}
    cleared = _control(sim, "DELETE", "faults", params={"account": globex.sid}).json()
    assert cleared == {"faults": 1, "removed": 1}
    assert _get(sim, globex.sid, globex.auth_token).status_code == 200
    assert [rule["account"] for rule in _control(sim, "GET", "faults").json()] == [acme.sid]
    unknown = "AC" + "9" * 32
    assert _control(sim, "GET", "operations", params={"account": unknown}).status_code == 404
    assert _control(sim, "POST", "faults", json={"kind": "401", "account": unknown}).status_code == 404


def test_the_second_account_authorizes_the_control_routes(sim: SimulatorServer) -> None:
    globex = sim.account("globex")
    response = requests.get(f"{sim.url}/_sim/state", auth=(globex.sid, globex.auth_token), timeout=10)
    assert response.status_code == 200


def test_one_account_by_default_and_with_given_credentials(comms_simulator: SimulatorServer) -> None:
    (only,) = comms_simulator.accounts
    assert only.sid == comms_simulator.account_sid
    assert comms_simulator.account() is only
    assert comms_simulator.env() == comms_simulator.env(only.sid)
    # The default API key belongs to the one account.
    assert set(only.credentials) == {comms_simulator.account_sid, "SK" + "51" * 16}


def test_rotation_is_per_account(sim: SimulatorServer) -> None:
    acme, globex = sim.accounts
    sim.rotate_credential("rotated-secret", globex.sid)
    assert _get(sim, globex.sid, "rotated-secret").status_code == 200
    assert _get(sim, acme.sid, acme.auth_token).status_code == 200
    with pytest.raises(KeyError):
        sim.rotate_credential("x", "AC" + "9" * 32)


def test_scenario_and_accounts_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either accounts"):
        SimulatorServer(Scenario.story(), accounts=load_accounts(TWO_ACCOUNTS))


# -- accounts files ------------------------------------------------------------------------------------


def test_accounts_file_derives_what_it_leaves_out(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text("name: one\noperations: [{name: a, total: 1}]\n")
    specs = accounts_from_dict(
        {
            "accounts": [
                {"name": "first", "scenario": "one.yaml"},
                {"name": "second", "scenario": {"name": "inline", "operations": []}},
            ]
        },
        tmp_path,
    )
    assert [spec.sid for spec in specs] == [account_sid("first"), account_sid("second")]
    assert specs[0].auth_token and specs[0].auth_token != specs[1].auth_token
    assert [spec.scenario.name for spec in specs] == ["one", "inline"]


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ([{"name": "a", "scenario": {"operations": []}, "bogus": 1}], "unknown keys ['bogus']"),
        ([{"name": "a", "sid": "ACnothex", "scenario": {"operations": []}}], "not AC followed by"),
        (
            [{"name": "a", "scenario": {"operations": []}}, {"name": "a", "scenario": {"operations": []}}],
            "used by two accounts",
        ),
        ([{"name": "a", "scenario": 3}], "'scenario' is a scenario file"),
        ([{"name": "a", "apiKeys": {"SKx": "s"}, "scenario": {"operations": []}}], "API key 'SKx'"),
        ([], "non-empty list"),
    ],
    ids=["unknown-key", "bad-sid", "duplicate", "bad-scenario", "bad-key", "empty"],
)
def test_accounts_file_mistakes_are_named(accounts: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        accounts_from_dict({"accounts": accounts})


def test_load_setup_reads_either_kind_and_explains_in_one_line(tmp_path: Path) -> None:
    assert isinstance(load_setup(scenarios_dir() / "story.yaml"), Scenario)
    assert [spec.name for spec in load_setup(TWO_ACCOUNTS)] == ["acme", "globex"]  # type: ignore[union-attr]
    broken = tmp_path / "broken.yaml"
    broken.write_text("accounts:\n  - {name: a, scenario: missing.yaml}\n")
    with pytest.raises(ScenarioError, match="account #0 \\(a\\)") as caught:
        load_setup(broken)
    assert "\n" not in str(caught.value)


def test_copies_play_the_same_story_under_their_own_ids() -> None:
    story = Scenario.story()
    first, second = copies(story, 2)
    assert [op.id for op in first.scenario.operations] == [op.id for op in story.operations]
    assert not {op.id for op in second.scenario.operations} & {op.id for op in story.operations}
    assert (
        reidentified(story, "x").to_dict()["operations"][3]["total"]
        == story.to_dict()["operations"][3]["total"]
    )
    with SimulatorServer(accounts=[first, second], clock=ManualClock(STORY_START)) as sim:
        sim.advance(600)
        shapes = [
            sorted((op["status"], json.dumps(op["stats"])) for op in sim.operations(account=a.sid))
            for a in sim.accounts
        ]
        assert shapes[0] == shapes[1]


# -- Event Streams ---------------------------------------------------------------------------------------


def test_deliveries_name_their_account_in_the_source(sim: SimulatorServer) -> None:
    until = STORY_START + timedelta(hours=1)
    found = all_transitions(sim, None, until)
    assert {t.account_sid for t in found} == {a.sid for a in sim.accounts}
    assert [t.at for t in found] == sorted(t.at for t in found)
    for account in sim.accounts:
        own = transitions(sim, None, until, account=account.sid)
        assert {t.operation_id for t in own} <= {op.id for op in account.scenario.operations}
    deliveries = plan_deliveries(found, DeliveryFaults())
    assert len({d.event_id for d in deliveries}) == len(deliveries)
    for delivery in deliveries:
        envelope = json.loads(delivery.data)
        account, operation = delivery.transition.account_sid, delivery.transition.operation_id
        assert envelope["source"] == f"/v1/Accounts/{account}/Emails/Operations/{operation}"
        assert envelope["data"] == {"operation_id": operation}  # the schema's only field


@pytest.mark.parametrize("place", ["data", "none"])
def test_deliveries_can_name_the_account_in_data_or_nowhere(sim: SimulatorServer, place: Any) -> None:
    found = all_transitions(sim, None, STORY_START + timedelta(hours=1))
    envelope = json.loads(plan_deliveries(found, DeliveryFaults(account_in=place))[0].data)
    assert "Accounts" not in envelope["source"]
    expected = {"operation_id": found[0].operation_id}
    if place == "data":
        expected["account_sid"] = str(found[0].account_sid)
    assert envelope["data"] == expected
    with pytest.raises(ValueError, match="account_in"):
        DeliveryFaults(account_in="header")  # type: ignore[arg-type]


# -- the command line --------------------------------------------------------------------------------------


def _first_lines(argv: list[str]) -> str:
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "comms_sim", "--quiet", "--port", "0", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C to stop" in line:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    return "".join(lines)


def test_command_line_serves_an_accounts_file_and_copies() -> None:
    banner = _first_lines(["--scenario", str(TWO_ACCOUNTS)])
    assert "comms-sim: 2 accounts at http://127.0.0.1:" in banner
    assert "account 'acme': AC0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a" in banner
    assert "scenario 'storefront'" in banner
    copied = _first_lines(["--accounts", "3", "--account-sid", "AC" + "12" * 16])
    assert "comms-sim: 3 accounts" in copied
    assert f"export TWILIO_ACCOUNT_SID={'AC' + '12' * 16}" in copied
    assert copied.count("scenario 'story'") == 3


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--scenario", str(TWO_ACCOUNTS), "--accounts", "2"], "names its accounts: leave out --accounts"),
        (["--accounts", "0"], "must be at least 1"),
        (["--accounts", "2", "--account-sid", "ACuser"], "is not AC followed by 32"),
    ],
    ids=["file-and-count", "zero", "bad-first-sid"],
)
def test_command_line_account_mistakes_are_one_line(argv: list[str], expected: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "comms_sim", "--quiet", "--port", "0", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and expected in completed.stderr, completed.stderr


def test_account_spec_refuses_a_bad_sid() -> None:
    with pytest.raises(ValueError, match="lowercase hex"):
        AccountSpec("AC" + "F" * 32, Scenario.story())

"""benchmarks.accounts: the verdicts from the figures, the rendered section, and a small real experiment
(two accounts on one stack, one of them answered 401 on every call)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.accounts import (
    PERIOD,
    SECTION_END,
    SECTION_START,
    Experiment,
    Plan,
    Round,
    build_accounts,
    isolation_verdict,
    passed,
    render,
    requests_verdict,
    run_experiment,
    write_section,
)
from comms_bridge_tools.moto_server import MotoServer

A, B, C = ("AC" + digit * 32 for digit in "abc")


def _round(requests: dict[str, int], statuses: dict[str, str] | None = None) -> Round:
    return Round("09:00:00", requests, {sid: 1.0 for sid in requests}, statuses or {})


def _experiment(name: str, per_run: list[dict[str, int]], fault: str | None = None) -> Experiment:
    experiment = Experiment(name, fault, A if fault else None)
    experiment.rounds = [_round(requests) for requests in per_run]
    return experiment


def test_requests_pass_only_when_every_account_matches_the_single_one_run_by_run() -> None:
    single = _experiment("single", [{A: 5}, {A: 2}, {A: 3}])
    same = _experiment("many", [{A: 5, B: 5}, {A: 2, B: 2}, {A: 3, B: 3}])
    verdict = requests_verdict(same, single, A)
    assert verdict["pass"] and verdict["single_account_requests_per_run"] == 2.5
    assert verdict["per_account_requests_per_run"] == {"min": 2.5, "mean": 2.5, "max": 2.5}
    # The same mean, but not run by run: another account's run cost this one a request.
    shifted = _experiment("many", [{A: 5, B: 5}, {A: 2, B: 3}, {A: 3, B: 2}])
    assert not requests_verdict(shifted, single, A)["pass"]


def _latencies(experiment: Experiment, values: dict[str, tuple[str, float]]) -> Experiment:
    for key, (sid, latency) in values.items():
        experiment.latencies[key] = latency
        experiment.owners[key] = sid
    return experiment


def test_isolation_compares_the_healthy_accounts_events_by_key() -> None:
    base = _latencies(_experiment("no-fault", [{}]), {"k1": (B, 30.0), "k2": (C, 40.0), "k0": (A, 10.0)})
    faulted = _latencies(_experiment("401", [{}, {}], fault="401"), {"k1": (B, 35.0), "k2": (C, 40.0)})
    faulted.rounds[1] = _round({A: 1, B: 3}, {A: "error", B: "complete"})
    verdict = isolation_verdict(base, faulted)
    assert verdict["pass"] and verdict["largest_increase_seconds"] == 5.0
    assert verdict["healthy_events"] == 2 and verdict["faulted_account_runs"] == {"error": 1}
    late = _latencies(_experiment("429", [{}], fault="429"), {"k1": (B, 30.0 + PERIOD + 1), "k2": (C, 40.0)})
    assert not isolation_verdict(base, late)["pass"]
    lost = _latencies(_experiment("429", [{}], fault="429"), {"k1": (B, 30.0)})
    assert (
        isolation_verdict(base, lost)["missing_with_fault"] == 1 and not isolation_verdict(base, lost)["pass"]
    )


def _results() -> dict[str, Any]:
    single = _experiment("single", [{A: 5}, {A: 2}])
    many = _experiment("many", [{A: 5, B: 5}, {A: 2, B: 2}])
    base = _latencies(_experiment("no-fault", [{}]), {"k1": (B, 30.0)})
    faulted = _latencies(_experiment("401", [{}], fault="401"), {"k1": (B, 31.0)})
    return {
        "generated_at": "2026-12-03 17:00 UTC",
        "plan": {
            "accounts": 2,
            "operations": 100,
            "rounds": 1,
            "workers": 1,
            "changes_per_minute": 20.0,
            "seed": 7,
        },
        "schedule_period_seconds": PERIOD,
        "environment": {"cpus": 2, "python": "3.11.7"},
        "requests": requests_verdict(many, single, A),
        "isolation": [isolation_verdict(base, faulted)],
        "round_wall_seconds": {"no-fault": 1.0},
    }


def test_the_section_is_rendered_and_replaced_between_its_markers(tmp_path: Path) -> None:
    results = _results()
    assert passed(results)
    section = render(results)
    assert "| Comms requests per run, one account alone | 2 | | |" in section
    assert "PASS" in section and "FAIL" not in section
    page = tmp_path / "many-accounts.md"
    page.write_text(f"# Many accounts\n\ntext\n\n{SECTION_START}\nold figures\n{SECTION_END}\n\nafter\n")
    assert write_section(page, section)
    text = page.read_text()
    assert "old figures" not in text and section in text and text.endswith("after\n")
    assert not write_section(tmp_path / "missing.md", section)


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_401_account_costs_the_other_nothing_and_crosses_nothing(moto_server: MotoServer) -> None:
    plan = Plan(accounts=2, operations=200, rounds=2, workers=2, changes_per_minute=10.0)
    accounts = build_accounts(plan)
    base = run_experiment(moto_server, accounts, plan, name="t-base", fault=None, progress=lambda _: None)
    faulted = run_experiment(moto_server, accounts, plan, name="t-401", fault="401", progress=lambda _: None)
    healthy = accounts[1].sid
    # The faulted account is the first; from the first steady round on, its every request is refused and
    # its runs fail (the handler raises: nothing polled, nothing moved).
    assert [r.statuses[accounts[0].sid] for r in faulted.rounds] == ["complete", "error", "error"]
    assert all(r.statuses[healthy] == "complete" for r in base.rounds + faulted.rounds)
    # Both accounts play the same window: the same requests, run by run, with and without the fault.
    assert [r.requests[healthy] for r in faulted.rounds] == [r.requests[healthy] for r in base.rounds]
    assert [r.requests[accounts[0].sid] for r in base.rounds] == [r.requests[healthy] for r in base.rounds]
    verdict = isolation_verdict(base, faulted)
    assert verdict["healthy_events"] > 0 and verdict["missing_with_fault"] == 0
    assert verdict["extra_with_fault"] == 0 and verdict["crossed_events"] == 0

"""The fault suite across several Twilio accounts on one stack (docs/many-accounts.md).

Each account plays its own busy day (failing sends, stalls) in one simulator, under its own credentials
and secret; each run, every account's schedule invokes the poller with its ``twilioSecretArn``, the
invocations running concurrently on a few warm containers. The faults of the single-account suite are
drawn the same way: those on the Comms API side aimed at one account (a simulator rule with ``account``),
a short budget or an overlap at that account's invocation, AWS faults at the shared proxy, where they hit
whichever account's call comes first. Then, per account, what the bus accepted is judged against that
account's ground truth (zero lost, none published under two keys, in order), and across accounts: every
event's ``accountSid`` is its operation's account, no eventKey is shared, and every state item of the table
is keyed by the account its operation belongs to.

    FAULT_SEED=123 FAULT_ACCOUNTS=3 FAULT_ACCOUNT_RUNS=60 pytest tests/product/fault_suite -k accounts
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import pytest

from benchmarks.accounts import account_events, accounts_rig
from benchmarks.rig import Rig
from benchmarks.support import LambdaFunction, lambda_function
from comms_sim.accounts import AccountSpec, account_sid
from tests.product.fault_suite import faults
from tests.product.fault_suite.ground_truth import Published, TrueVersion, check
from tests.product.fault_suite.test_fault_suite import (
    PERIOD,
    POLLER_DETAIL_TYPES,
    STALL_MINUTES,
    build_scenario,
)

SEED: Final = int(os.environ.get("FAULT_SEED", "20260105"))
ACCOUNTS: Final = int(os.environ.get("FAULT_ACCOUNTS", "2"))
RUNS: Final = int(os.environ.get("FAULT_ACCOUNT_RUNS", "24"))
DRAIN_RUNS: Final = 4
CONTAINERS: Final = 3


@dataclass
class AccountRun:
    """One account's invocations in one run, and whether they saw the API as it was."""

    outcomes: list[str]
    targeted: bool  # a Comms fault, budget or overlap of this run was aimed at this account

    def quiet(self, shared_faults: bool) -> bool:
        return not shared_faults and not self.targeted and self.outcomes == ["complete"]


@dataclass
class Log:
    published: list[dict[str, Any]] = field(default_factory=list)
    quiet: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    bootstrap: dict[str, Any] = field(default_factory=dict)
    planned: Counter[str] = field(default_factory=Counter)
    fired: Counter[str] = field(default_factory=Counter)
    targeted: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)


def _outcome(invocation: Any) -> str:
    if not invocation.ok:
        return "error"
    return str((invocation.result or {}).get("status", "?"))


class AccountsSuite:
    def __init__(self, rig: Rig, accounts: list[AccountSpec], seed: int) -> None:
        self.rig = rig
        self.accounts = accounts
        self.rng = random.Random(seed)
        self.deck: list[str] = []
        self.log = Log()
        self.events = dict(account_events(rig))  # account sid -> its schedule's input
        self.environment = rig.function_environment("PollerFunction", POWERTOOLS_LOG_LEVEL="WARNING")
        self.margin = float(self.environment.get("POLLER_SAFETY_MARGIN_SECONDS", "10"))
        self.timeout = float(rig.stack.parameters.get("PollerTimeoutSeconds", "60"))
        self.containers = [
            lambda_function("poller", environment=self.environment, timeout_seconds=self.timeout)
            for _ in range(CONTAINERS)
        ]

    def _invoke(self, container: LambdaFunction, sid: str, budget: float | None) -> str:
        container.timeout_seconds = self.timeout if budget is None else self.margin + budget
        return _outcome(container.invoke(self.events[sid]))

    def run(self, plan: faults.RunPlan, *, bootstrap: bool = False) -> None:
        target = self.rng.choice(self.accounts).sid
        for rule in plan.comms_rules:
            rule.account = target  # the Comms API side of the plan: one account's requests only
        faults.apply(plan, self.rig.simulator, self.rig.proxy)
        calls: list[tuple[str, float | None]] = []
        for spec in self.accounts:
            mine = spec.sid == target
            calls.append((spec.sid, plan.budget_seconds if mine else None))
            if mine and plan.overlap:
                calls.append((spec.sid, plan.budget_seconds))
        self.rng.shuffle(calls)
        with ThreadPoolExecutor(max_workers=CONTAINERS) as pool:
            # Each invocation on its own container, as Lambda runs concurrent invocations.
            futures = [
                (sid, pool.submit(self._invoke, self.containers[i % CONTAINERS], sid, budget))
                for i, (sid, budget) in enumerate(calls)
            ]
            outcomes: dict[str, list[str]] = defaultdict(list)
            for sid, future in futures:
                outcomes[sid].append(future.result())
        self.log.fired.update(faults.clear(plan, self.rig.simulator, self.rig.proxy))
        self.log.planned.update(plan.kinds)
        shared = any(kind in faults.AWS_KINDS for kind in plan.kinds)
        at = self.rig.clock.now()
        for spec in self.accounts:
            run = AccountRun(outcomes[spec.sid], targeted=spec.sid == target and bool(plan.kinds))
            self.log.outcomes.update(run.outcomes)
            self.log.targeted[spec.name] += int(run.targeted)
            if bootstrap:
                assert run.outcomes == ["complete"], f"{spec.name}: bootstrap {run.outcomes} (seed {SEED})"
                self.log.bootstrap[spec.sid] = at
            elif run.quiet(shared):
                self.log.quiet[spec.sid].append(at)
        self.log.published.extend(self.rig.published())
        self.rig.empty_rule_queues()


def build_accounts(count: int, seed: int, horizon: int) -> list[AccountSpec]:
    """``count`` accounts, each with its own day (its own seed: different operations and ids)."""
    return [
        AccountSpec(
            account_sid(f"fault-suite-{index}"), build_scenario(seed + index, horizon), name=f"a{index}"
        )
        for index in range(count)
    ]


def _truth(rig: Rig, sid: str) -> list[TrueVersion]:
    return [
        TrueVersion(e.time, e.operation_id, e.status, dict(e.stats), e.updated_at)
        for e in rig.simulator.history_between(None, rig.clock.now(), account=sid)
    ]


def _state_items(rig: Rig) -> list[dict[str, Any]]:
    dynamodb = rig.stack.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": rig.stack.state_table_name}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _crossed_state(items: list[dict[str, Any]], owners: dict[str, str]) -> tuple[list[str], Counter[str]]:
    """State items whose key names an account other than their operation's; per key kind and account."""
    crossed: list[str] = []
    kinds: Counter[str] = Counter()
    for item in items:
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        kind, _, rest = pk.partition("#")
        account, _, operation = rest.partition("#")
        kinds[f"{kind}#{account[-6:]}"] += 1
        operation = operation or (sk if kind == "ACTIVE" else "")
        if operation.startswith("comms_operation_") and owners.get(operation) != account:
            crossed.append(f"{pk} {sk}: the operation belongs to {owners.get(operation)}")
    return crossed, kinds


def _crossing(events: list[dict[str, Any]], owners: dict[str, str]) -> tuple[list[str], set[str]]:
    """Events whose accountSid is not their operation's account; eventKeys published for two accounts."""
    crossed = [
        f"{e['detail']['operationId']}: accountSid {e['detail'].get('accountSid')}"
        for e in events
        if owners.get(str(e["detail"]["operationId"])) != e["detail"].get("accountSid")
    ]
    keys_by_account: dict[str, set[str]] = defaultdict(set)
    for event in events:
        keys_by_account[str(event["detail"].get("accountSid"))].add(str(event["detail"]["eventKey"]))
    accounts = list(keys_by_account)
    shared = {
        key
        for i, a in enumerate(accounts)
        for b in accounts[i + 1 :]
        for key in keys_by_account[a] & keys_by_account[b]
    }
    return crossed, shared


def _verdicts(
    accounts: list[AccountSpec], events: list[dict[str, Any]], truths: dict[str, list[TrueVersion]], log: Log
) -> dict[str, Any]:
    """Each account's events judged against its own ground truth and its own quiet runs."""
    verdicts = {}
    for spec in accounts:
        mine = [
            Published(e["detail-type"], e["detail"])
            for e in events
            if e["detail"].get("accountSid") == spec.sid
        ]
        verdicts[spec.name] = check(
            truths[spec.sid],
            mine,
            bootstrap_time=log.bootstrap[spec.sid],
            quiet_times=log.quiet[spec.sid],
            stall_after_seconds=STALL_MINUTES * 60,
        )
    return verdicts


@pytest.mark.timeout(max(600, 150 + RUNS * ACCOUNTS * 10))
def test_fault_suite_across_accounts(
    moto_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    accounts = build_accounts(ACCOUNTS, SEED, (RUNS + DRAIN_RUNS + 2) * PERIOD)
    owners = {op.id: spec.sid for spec in accounts for op in spec.scenario.operations}
    with accounts_rig(
        moto_server,
        accounts,
        f"fault-acc-{uuid.uuid4().hex[:6]}",
        parameters={"StallAfterMinutes": str(STALL_MINUTES)},
        simulator_seed=SEED,
    ) as rig:
        suite = AccountsSuite(rig, accounts, SEED)
        for key, value in suite.environment.items():  # threads share os.environ (see the single suite)
            monkeypatch.setenv(key, value)
        suite.run(faults.RunPlan(), bootstrap=True)
        for _ in range(RUNS):
            rig.clock.advance(PERIOD)
            suite.run(faults.draw(suite.rng, suite.deck))
        for _ in range(DRAIN_RUNS):
            rig.clock.advance(PERIOD)
            suite.run(faults.RunPlan())
        truths = {spec.sid: _truth(rig, spec.sid) for spec in accounts}
        crossed_state, state_kinds = _crossed_state(_state_items(rig), owners)

    log = suite.log
    events = [e for e in log.published if e["detail-type"] in POLLER_DETAIL_TYPES]
    crossed, shared_keys = _crossing(events, owners)
    verdicts = _verdicts(accounts, events, truths, log)
    report = [
        f"fault suite across {ACCOUNTS} accounts: seed {SEED}, {RUNS} runs + bootstrap + {DRAIN_RUNS} drain, "
        f"{time.perf_counter() - started:.0f} s",
        f"faults planned {dict(sorted(log.planned.items()))}; fired {dict(sorted(log.fired.items()))}; "
        f"runs with faults aimed at each account {dict(log.targeted)}; outcomes {dict(log.outcomes)}",
        f"events {len(events)}; crossing accounts {len(crossed)}; eventKeys shared by accounts "
        f"{len(shared_keys)}; state items per kind and account {dict(sorted(state_kinds.items()))}; "
        f"state items keyed by the wrong account {len(crossed_state)}",
        *(
            f"{spec.name} ({len(log.quiet[spec.sid])} quiet runs): "
            + "; ".join(f"{k}: {v}" for k, v in sorted(verdicts[spec.name].counts.items()))
            for spec in accounts
        ),
    ]
    with capsys.disabled():
        print("\n" + "\n".join(report))

    for name, verdict in verdicts.items():
        assert verdict.ok, f"seed {SEED}, account {name}: contract §4 violated:\n{verdict.summary()}"
        assert verdict.counts["status changes published"] > 0, f"{name}: no status changes published"
        assert verdict.counts["true status changes seen by a quiet run"] > 0, f"{name}: no quiet run judged"
    assert not crossed, f"seed {SEED}: events naming another account: {crossed[:5]}"
    assert not shared_keys, f"seed {SEED}: eventKeys published for two accounts: {sorted(shared_keys)[:5]}"
    assert not crossed_state, f"seed {SEED}: state keyed by the wrong account: {crossed_state[:5]}"
    unfired = faults.never_fired(log.planned, log.fired)
    assert not unfired, f"seed {SEED}: planned faults that never fired: {unfired}"
    assert all(log.targeted[spec.name] for spec in accounts), f"an account was never faulted: {log.targeted}"

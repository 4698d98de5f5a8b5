"""``make demo``: the whole pipeline on one machine, with no AWS account, no Twilio account and no Docker.

What runs, all in this process and on loopback:

- the Comms API simulator playing ``scenarios/story.yaml`` on a clock the demo steps (the API's clock);
- moto in server mode, provisioned from ``template.yaml`` by the template loader: the tables, the bus,
  the rules with their real patterns and the parameter defaults, the alert topic. Nothing here restates
  the template: what differs from a deployment (secret ARNs, the API root) is passed as parameters;
- the poller handler, invoked as Lambda would be, once per tick of the template's schedule;
- the errors handler, fed from the SQS queue standing in for it as the target of ``ErrorsTriggerRule``:
  it runs when, and only when, the template's rule matches an event on the bus;
- a Slack webhook receiver (the webhook URL sits in Secrets Manager like in a deployment) and an SQS
  queue subscribed to the alert topic: the SNS mail.

The timeline shows every event that crossed the bus and every alert as a person would read it, then a
summary per operation. The exit status is 1 when the pipeline did not produce what the story expects.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

import boto3

from comms_bridge.events.detail_types import DetailType
from comms_bridge_tools import demo_accounts, local_stack, local_up
from comms_bridge_tools.demo_record import AlertRecord, DemoRecorder, DemoResult, OperationRecord, clock_text
from comms_bridge_tools.demo_routing import EventRouter, RuleRoute, rule_routes, sns_mail_text
from comms_bridge_tools.lambda_runtime import ASYNC_ATTEMPTS, REPO_ROOT, LambdaFunction
from comms_bridge_tools.moto_server import MotoServer
from comms_bridge_tools.slack_receiver import SlackReceiver
from comms_bridge_tools.timeline import OperationRow, Timeline, make_console

if TYPE_CHECKING:
    from comms_bridge_tools.demo_push import PushPath
    from comms_sim.accounts import AccountSpec
    from comms_sim.clock import ManualClock
    from comms_sim.scenario import Scenario
    from comms_sim.server import SimulatorServer

# What a run produced, and how its events reach their targets, live in demo_record and demo_routing; the
# names stay importable from here, where tests and callers have always found them.
__all__ = [
    "DEFAULT_SPEED",
    "DEMO_ACCOUNT_SID",
    "DEMO_AUTH_TOKEN",
    "EXPECTATIONS_BY_FILE",
    "NEXT_STEPS",
    "PUSH_STACK_PARAMETERS",
    "STOREFRONT_EXPECTATIONS",
    "STORY",
    "STORY_EXPECTATIONS",
    "TRAILING_TICKS",
    "AlertKind",
    "AlertRecord",
    "DemoInputError",
    "DemoOptions",
    "DemoResult",
    "DemoRun",
    "Expectation",
    "OperationRecord",
    "RuleRoute",
    "all_before_first_poll",
    "build_parser",
    "check_story",
    "load_accounts",
    "load_scenario",
    "main",
    "poller_schedule",
    "poller_schedules",
    "rule_routes",
    "run_demo",
    "schedule_seconds",
    "settled_by",
    "sns_mail_text",
]

STORY: Final = REPO_ROOT / "scenarios" / "story.yaml"
# API-clock seconds per wall second: a one-minute schedule ticks ten times a second, slow enough to read.
DEFAULT_SPEED: Final = 600.0
DEMO_ACCOUNT_SID: Final = local_up.LOCAL_ACCOUNT_SID
DEMO_AUTH_TOKEN: Final = local_up.LOCAL_AUTH_TOKEN
NEXT_STEPS: Final = (
    ("deploy it", "make deploy  (docs/deploy.md)"),
    ("the CLI, locally", "make local, paste the export lines it prints, then .venv/bin/comms-bridge poll"),
    ("your own scenario", 'make demo ARGS="--scenario my.yaml"  (docs/simulator.md)'),
)
# Polls after the last scripted change: late stats and a stall need a poll to be seen.
TRAILING_TICKS: Final = 2

_RATE_RE: Final = re.compile(r"^rate\(\s*(\d+)\s+(second|seconds|minute|minutes|hour|hours|day|days)\s*\)$")
_RATE_UNITS: Final = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# --push deploys the stack as EnableEventStreams=true would (the external id only guards the writer role).
PUSH_STACK_PARAMETERS: Final = {
    "EnableEventStreams": "true",
    "EventStreamsExternalId": "demo-external-id-0123456789",
}


def schedule_seconds(expression: str) -> int:
    """The period of an EventBridge ``rate(...)`` expression (a cron schedule has no single period)."""
    match = _RATE_RE.match(expression.strip())
    if match is None:
        raise ValueError(f"the demo can run a rate() schedule only, not {expression!r}")
    return int(match.group(1)) * _RATE_UNITS[match.group(2).removesuffix("s")]


# -- what the story expects ---------------------------------------------------------------------------


AlertKind = Literal["none", "errors", "stall"]


@dataclass(frozen=True)
class Expectation:
    """What one operation of the story must have produced.

    ``final_status`` None: the operation must produce no event at all (it was there before the first poll,
    which records silently, or it is beyond retention). ``alerts``: ``errors`` = each Errors Summarized
    event came with exactly one Slack message and one SNS mail; ``stall`` = each Stalled event with one
    Slack message and one SNS mail (the errors function confirms and formats stalls too); ``none`` = no
    alert.
    """

    final_status: str | None
    required: tuple[DetailType, ...] = ()
    forbidden: tuple[DetailType, ...] = ()
    alerts: AlertKind = "none"
    stats_after_terminal: bool = False


_S = DetailType.STATUS_CHANGED
_STATS = DetailType.STATS_CHANGED
_STALL = DetailType.STALLED
_ERR = DetailType.ERRORS_SUMMARIZED
_QUIET = Expectation(None)

# Keyed by the operation names of scenarios/story.yaml.
STORY_EXPECTATIONS: Final[Mapping[str, Expectation]] = {
    "archived": _QUIET,
    "expiring": _QUIET,
    "yesterday": _QUIET,
    "newsletter": Expectation("COMPLETED", (_S,), (_ERR, _STALL), stats_after_terminal=True),
    "transactional": Expectation("COMPLETED", (_S,), (_ERR, _STALL)),
    "high-failure": Expectation("COMPLETED", (_S, _ERR), (_STALL,), alerts="errors"),
    "canceled": Expectation("CANCELED", (_S,), (_ERR, _STALL)),
    "stalled": Expectation("PROCESSING", (_S, _STALL), (_ERR,), alerts="stall"),
    "reminder": Expectation("COMPLETED", (_S,), (_ERR, _STALL)),
    "late-opens": Expectation("COMPLETED", (_S, _STATS), (_ERR, _STALL), stats_after_terminal=True),
}
# Keyed by the operation names of scenarios/storefront.yaml (the second account of the two-account demo).
STOREFRONT_EXPECTATIONS: Final[Mapping[str, Expectation]] = {
    "last-week": _QUIET,
    "confirmations": Expectation("COMPLETED", (_S,), (_ERR, _STALL)),
    "flash-sale": Expectation("COMPLETED", (_S, _ERR), (_STALL,), alerts="errors"),
    "recalled": Expectation("CANCELED", (_S,), (_ERR, _STALL)),
    "digest": Expectation("COMPLETED", (_S,), (_ERR, _STALL), stats_after_terminal=True),
}
EXPECTATIONS_BY_FILE: Final[Mapping[Path, Mapping[str, Expectation]]] = {
    demo_accounts.STORY.resolve(): STORY_EXPECTATIONS,
    demo_accounts.STOREFRONT.resolve(): STOREFRONT_EXPECTATIONS,
}


def check_story(result: DemoResult, expectations: Mapping[str, Expectation]) -> list[str]:
    """Every way the run differs from what the story expects, as readable sentences (empty: all good)."""
    problems: list[str] = []
    by_name = {record.name: record for record in result.operations.values()}
    for name, expected in expectations.items():
        record = by_name.get(name)
        if record is None:
            problems.append(f"{name}: not in the scenario")
            continue
        problems.extend(f"{name}: {problem}" for problem in _check_operation(record, expected))
    return problems


def _check_operation(record: OperationRecord, expected: Expectation) -> list[str]:
    problems: list[str] = []
    if expected.final_status is None:
        if record.events.total():
            problems.append(f"{record.events.total()} event(s), expected none")
    elif record.final_status != expected.final_status:
        problems.append(f"ended {record.final_status or 'unseen'}, expected {expected.final_status}")
    problems.extend(f"no '{kind}' event" for kind in expected.required if not record.events[kind])
    problems.extend(f"unexpected '{kind}' event" for kind in expected.forbidden if record.events[kind])
    if expected.stats_after_terminal and not record.stats_after_terminal:
        problems.append("no Stats Changed after it completed (late opens)")
    slack, sns = record.alerts["slack"], record.alerts["sns"]
    if expected.alerts == "errors":
        summaries = record.events[_ERR]
        if not summaries or slack != summaries or sns != summaries:
            problems.append(f"{summaries} error summaries but {slack} Slack and {sns} SNS alert(s)")
    elif expected.alerts == "stall":
        stalls = record.events[_STALL]
        if not stalls or sns != stalls or slack != stalls:
            problems.append(f"{stalls} stall(s) but {sns} SNS and {slack} Slack alert(s)")
    elif slack or sns:
        problems.append(f"{slack} Slack and {sns} SNS alert(s), expected none")
    return problems


# -- the run ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOptions:
    scenario: Path = STORY
    # API-clock seconds per wall second; None runs the polls back to back.
    speed: float | None = DEFAULT_SPEED
    no_color: bool = False
    expectations: Mapping[str, Expectation] | None = None
    # The handlers' log file is removed after a run that passed, unless this is set.
    keep_logs: bool = False
    # The Event Streams push path on (EnableEventStreams=true): deliveries this long after each change.
    push_delay: float | None = None
    # Several Twilio accounts on one stack (None: the scenario's own, one unless it is an accounts file).
    accounts: int | None = None


class DemoInputError(Exception):
    """A mistake in what the user gave the demo (the scenario file, an option): one line, exit status 2."""


def load_scenario(path: Path) -> Scenario:
    """The scenario at ``path``, or a ``DemoInputError`` naming the file and what is wrong with it."""
    from comms_sim.scenario import ScenarioError  # noqa: PLC0415 -- keeps --help fast
    from comms_sim.scenario import load_scenario as load  # noqa: PLC0415

    try:
        return load(path)
    except ScenarioError as exc:
        raise DemoInputError(str(exc)) from None


def load_accounts(path: Path, count: int | None) -> list[AccountSpec] | None:
    """The accounts to run: an accounts file's, or ``count`` of them (``--accounts``); None for one account
    (the single-account stack, as before). A ``DemoInputError`` for a bad file or a count that misfits."""
    from comms_sim.accounts import load_setup  # noqa: PLC0415
    from comms_sim.scenario import ScenarioError  # noqa: PLC0415

    try:
        setup = load_setup(path)
    except ScenarioError as exc:
        raise DemoInputError(str(exc)) from None
    if isinstance(setup, list):
        if count is not None and count != len(setup):
            raise DemoInputError(f"{path} names {len(setup)} accounts: leave out --accounts {count}")
        return setup
    if count is None:
        return None
    try:
        return demo_accounts.demo_accounts(count, setup, default_story=path.resolve() == STORY.resolve())
    except ValueError as exc:
        raise DemoInputError(str(exc)) from None


def all_before_first_poll(scenario: Scenario) -> bool:
    """Every operation of the scenario exists when the first poll runs (at the scenario's ``now``)."""
    return bool(scenario.operations) and all(op.created <= scenario.now for op in scenario.operations)


def poller_schedule(aws: local_stack.LocalStack) -> tuple[str, str, Any]:
    """(function logical id, schedule expression, payload) of the template's first schedule."""
    first = poller_schedules(aws)[0]
    return first.function, first.expression, first.payload


def poller_schedules(aws: local_stack.LocalStack) -> list[local_stack.Schedule]:
    """The template's schedules as deployed here: one per watched account where the template generates
    them per secret, all at one rate (the demo ticks them together)."""
    found = local_stack.schedules(aws)
    if not found:
        raise ValueError("template.yaml declares no schedule for a function")
    if len({schedule.expression for schedule in found}) > 1:
        raise ValueError(f"the demo runs schedules of one rate, not {sorted({s.expression for s in found})}")
    return found


def settled_by(scenarios: Sequence[Scenario], now: int, stall_after: int) -> int:
    """Scenario seconds (not before ``now``) by which every operation has shown its outcome: its terminal
    status, or for one that stops moving while PROCESSING, the stall. Late stats after that are not waited
    for."""
    settled = now
    for op in (op for scenario in scenarios for op in scenario.operations):
        versions = op.versions()
        terminal = [v.time for v in versions if v.status in ("COMPLETED", "CANCELED")]
        if terminal:
            settled = max(settled, terminal[0])
        elif versions and versions[-1].status == "PROCESSING":
            settled = max(settled, versions[-1].time + stall_after)
        elif versions:
            settled = max(settled, versions[-1].time)
    return settled


class DemoRun:
    """Set up the servers and the stack, run the story tick by tick, collect what came out."""

    def __init__(self, options: DemoOptions, timeline: Timeline, handler_output: TextIO) -> None:
        self.options = options
        self.timeline = timeline
        self.handler_output = handler_output
        self.accounts = load_accounts(options.scenario, options.accounts)
        if self.accounts is None:
            self.scenario = load_scenario(options.scenario)
            self.names = {op.id: op.name for op in self.scenario.operations}
            self.owners: dict[str, demo_accounts.AccountOperation] = {}
        else:
            self.scenario = self.accounts[0].scenario
            try:
                self.owners = demo_accounts.operations(self.accounts)
            except ValueError as exc:
                raise DemoInputError(str(exc)) from None
            self.names = {op_id: owner.label for op_id, owner in self.owners.items()}
        if self.accounts is None:
            name = self.scenario.name
        else:
            name = " + ".join(dict.fromkeys(account.scenario.name for account in self.accounts))
        self.result = DemoResult(scenario=name)
        self.result.operations = {
            op_id: OperationRecord(name=label, operation_id=op_id) for op_id, label in self.names.items()
        }
        self.recorder = DemoRecorder(self.result, self.names, self.owners, timeline)
        self.functions: dict[str, LambdaFunction] = {}

    # -- set-up --------------------------------------------------------------------------------

    def _function(self, aws: local_stack.LocalStack, logical_id: str) -> LambdaFunction:
        if logical_id not in self.functions:
            # Only what running the handler needs (roles, log groups and the like have no local value).
            wanted = ("CodeUri", "Handler", "Timeout", "MemorySize", "EventInvokeConfig")
            setting = aws.function_properties(logical_id, wanted)
            retries = setting.get("EventInvokeConfig", {}).get("MaximumRetryAttempts", ASYNC_ATTEMPTS - 1)
            self.functions[logical_id] = LambdaFunction(
                str(setting["CodeUri"]),
                handler=str(setting.get("Handler", "app.lambda_handler")),
                environment=aws.function_environment(logical_id),
                function_name=str(aws.resource_names[logical_id]),
                timeout_seconds=float(setting.get("Timeout", 3)),
                memory_mb=int(setting.get("MemorySize", 128)),
                region=aws.region,
                output=self.handler_output,
                max_retry_attempts=int(retries),
            )
        return self.functions[logical_id]

    def _start(
        self, stack: contextlib.ExitStack, clock: ManualClock
    ) -> tuple[SimulatorServer, MotoServer, SlackReceiver, local_stack.LocalStack]:
        """The simulator, moto server and Slack receiver (each stopped when ``stack`` closes), and the
        stack provisioned in moto from template.yaml against them."""
        from comms_sim import SimulatorServer  # noqa: PLC0415 -- keeps --help fast

        if self.accounts is None:
            sim = SimulatorServer(
                self.scenario, clock=clock, credentials={DEMO_ACCOUNT_SID: DEMO_AUTH_TOKEN}, port=0
            ).start()
        else:
            sim = SimulatorServer(accounts=self.accounts, clock=clock, port=0).start()
        stack.callback(sim.stop)
        moto = MotoServer().start()
        stack.callback(moto.stop)
        stack.enter_context(_environment(moto.env()))
        slack = SlackReceiver().start()
        stack.callback(slack.stop)
        aws = local_up.provision(
            boto3.session.Session(),
            prefix=f"demo-{uuid.uuid4().hex[:6]}",
            api_base_url=sim.base_url,
            parameters=PUSH_STACK_PARAMETERS if self.options.push_delay is not None else None,
            slack_webhook_url=slack.url,
            accounts=None if self.accounts is None else demo_accounts.secrets(self.accounts),
        )
        return sim, moto, slack, aws

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> DemoResult:
        from comms_sim import STORY_START, ManualClock  # noqa: PLC0415

        started = time.perf_counter()
        self.timeline.note("starting the Comms API simulator and moto server, provisioning template.yaml ...")
        # A scenario without its own start plays from the simulator's fixed instant: every run is the same.
        anchor = self.scenario.start or STORY_START
        clock = ManualClock(start=anchor + timedelta(seconds=self.scenario.now))

        with contextlib.ExitStack() as stack:
            sim, moto, slack, aws = self._start(stack, clock)
            routes = rule_routes(aws)
            schedules = self._schedules(aws)
            expression = schedules[0].expression
            interval = schedule_seconds(expression)
            poller = self._function(aws, schedules[0].function)
            stall_after = int(poller.environment.get("STALL_AFTER_SECONDS", "1800"))
            scenarios = [self.scenario] if self.accounts is None else [a.scenario for a in self.accounts]
            settled = settled_by(scenarios, self.scenario.now, stall_after)
            end = anchor + timedelta(seconds=settled + TRAILING_TICKS * interval)
            ticks = max(1, int((end - clock.now()).total_seconds() // interval) + 1)

            self._header(
                api=sim.base_url,
                moto=moto.endpoint_url,
                aws=aws,
                routes=routes,
                expression=expression,
                ticks=ticks,
                now=clock.now(),
            )
            self._note_baseline_only(poller)
            push = self._push_path(aws, sim, clock, end)
            if push is not None:
                # The story's changes fall on whole minutes, as its polls do; a real schedule has no reason
                # to line up with the sends, so with --push the polls run half a period later.
                clock.advance(interval // 2)
            router = EventRouter(aws, routes, slack, self.recorder, lambda name: self._function(aws, name))
            polls = self._tick(
                clock,
                ticks=ticks,
                interval=interval,
                poller=poller,
                schedules=schedules,
                router=router,
                push=push,
            )
            if push is not None:
                self.result.push_lines = push.report(self.recorder.arrivals, polls, self.recorder.label)

        self.result.wall_seconds = time.perf_counter() - started
        for logical_id, function in self.functions.items():
            self.result.invocations[logical_id] = len(function.invocations)
            self.result.problems.extend(
                f"{logical_id} invocation failed: {inv.error}" for inv in function.invocations if not inv.ok
            )
        return self.result

    def _tick(
        self,
        clock: ManualClock,
        *,
        ticks: int,
        interval: int,
        poller: LambdaFunction,
        schedules: Sequence[local_stack.Schedule],
        router: EventRouter,
        push: PushPath | None,
    ) -> list[datetime]:
        """Every tick of the schedules (paced to ``options.speed``), with the push path's deliveries in
        between; the API-clock instant of each tick."""
        polls: list[datetime] = []
        self.timeline.start_progress(ticks, "polls")
        try:
            for tick in range(ticks):
                wall_tick = time.perf_counter()
                now = clock.now()
                polls.append(now)
                self.recorder.path = "poll"
                for schedule in schedules:  # each account's schedule fires on the same tick
                    self._poll(poller, schedule.payload, router=router, now=now)
                self.result.polls = tick + 1
                self.timeline.advance(tick + 1, clock_text(clock.now()))
                if self.options.speed:
                    pause = interval / self.options.speed - (time.perf_counter() - wall_tick)
                    if pause > 0:
                        time.sleep(pause)
                if push is not None:
                    push.run_until(now + timedelta(seconds=interval), self._pushed(router))
                clock.set(now + timedelta(seconds=interval))
        finally:
            self.timeline.stop_progress()
        return polls

    def _schedules(self, aws: local_stack.LocalStack) -> list[local_stack.Schedule]:
        """The poller's schedules: one per account as the template generates them (``twilioSecretArn`` in
        each input), checked against the accounts the demo runs."""
        try:
            schedules = poller_schedules(aws)
        except ValueError as exc:
            raise DemoInputError(str(exc)) from None
        if self.accounts is not None:
            watched = set(local_stack.twilio_secret_arns(aws))
            named = {str(s.payload.get("twilioSecretArn")) for s in schedules if isinstance(s.payload, dict)}
            if named != watched:
                raise DemoInputError(
                    f"template.yaml gives {len(schedules)} schedule(s) naming {len(named & watched)} of the "
                    f"{len(watched)} accounts' secrets: it does not generate one schedule per account"
                )
        return schedules

    def _poll(self, poller: LambdaFunction, payload: Any, *, router: EventRouter, now: datetime) -> None:
        """One tick: the poller, then everything its events set off (targets, alerts)."""
        poll = poller.invoke(payload)
        if isinstance(poll.result, dict) and poll.result.get("status") in ("partial", "failed"):
            errors = "; ".join(poll.result.get("errors") or [])
            status = poll.result["status"]
            self.result.problems.append(f"the poll at {clock_text(now)} was {status}: {errors}")
        router.settle(now)

    def _note_baseline_only(self, poller: LambdaFunction) -> None:
        """A scenario that only a baseline sees would otherwise look like a pipeline that does nothing."""
        if poller.environment.get("BOOTSTRAP_MODE", "baseline") == "baseline" and all_before_first_poll(
            self.scenario
        ):
            self.timeline.note(
                "Every operation of this scenario exists before the first poll: a baseline "
                "(BootstrapMode baseline) records them silently, so only what changes after that poll "
                "is published."
            )

    def _push_path(self, aws: local_stack.LocalStack, sim: Any, clock: Any, end: datetime) -> PushPath | None:
        if self.options.push_delay is None:
            return None
        from comms_bridge_tools.demo_push import PushPath  # noqa: PLC0415 -- keeps --help fast
        from comms_sim.event_streams import DeliveryFaults  # noqa: PLC0415

        return PushPath.plan(
            sim,
            clock,
            kinesis=aws.client("kinesis"),
            stream_name=aws.stream_name(),
            function=self._function(aws, "StreamFunction"),
            until=end,
            faults=DeliveryFaults(delay_seconds=self.options.push_delay),
        )

    def _pushed(self, router: EventRouter) -> Callable[[datetime], None]:
        def after_batch(now: datetime) -> None:
            self.recorder.path = "push"
            router.settle(now)

        return after_batch

    def _header(
        self,
        *,
        api: str,
        moto: str,
        aws: local_stack.LocalStack,
        routes: Sequence[RuleRoute],
        expression: str,
        ticks: int,
        now: datetime,
    ) -> None:
        t = self.timeline
        t.title(f"comms-bridge demo: scenario '{self.result.scenario}' ({len(self.names)} operations)")
        if self.accounts is not None:
            t.operation_width = max(t.operation_width, *(len(label) for label in self.names.values()))
        for account in self.accounts or ():
            t.setup_line(
                "account",
                f"{account.name} {account.sid}: story '{account.scenario.name}', its own secret and schedule",
            )
        t.setup_line("Comms API", f"simulator {api}, API clock starts {now:%Y-%m-%d %H:%M}Z")
        t.setup_line("AWS", f"moto server {moto}, stack '{aws.prefix}' provisioned from template.yaml")
        t.setup_line("bus", f"{aws.bus_name} (source {aws.event_source})")
        for route in routes:
            targets = [*(f"{f} handler" for f in route.functions), *("alert topic" for _ in route.topics)]
            t.setup_line("rule", f"{route.rule} -> {', '.join(targets)}")
        if self.accounts is None:
            t.setup_line("schedule", f"{expression}: {ticks} polls of the poller handler")
        else:
            t.setup_line(
                "schedules",
                f'{expression}, one per account ({{"twilioSecretArn": ...}}): {ticks} ticks of '
                f"{len(self.accounts)} poller invocations",
            )
        t.setup_line("alerts", "Slack: local webhook receiver; SNS: queue subscribed to the alert topic")
        t.blank()


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_demo(options: DemoOptions, *, out: TextIO | None = None) -> DemoResult:
    """Run the demo, render its timeline on ``out`` (default stdout), check the story, return the result."""
    console = make_console(no_color=options.no_color, file=out)
    timeline = Timeline(console)
    run = DemoRun(options, timeline, io.StringIO())  # the scenario is read before any file is made
    descriptor, log_path = tempfile.mkstemp(prefix="comms-bridge-demo-", suffix=".log")
    try:
        with open(descriptor, "w", encoding="utf-8") as log:
            run.handler_output = log
            result = run.run()
    except KeyboardInterrupt:
        Path(log_path).unlink(missing_ok=True)
        raise
    expectations = options.expectations
    if expectations is None and run.accounts is not None:
        expectations = demo_accounts.expectations(run.accounts, EXPECTATIONS_BY_FILE)
    if expectations is None:
        # Another scenario has no script to check against: only the generic checks (handlers, schemas) apply.
        expectations = STORY_EXPECTATIONS if options.scenario.resolve() == STORY.resolve() else {}
    result.problems.extend(check_story(result, expectations))
    timeline.blank()
    timeline.summary(
        [
            OperationRow(
                name=record.name,
                operation_id=record.operation_id,
                status_path=record.status_path,
                events=record.events,
                alerts=record.alerts,
                problems=[p.split(": ", 1)[1] for p in result.problems if p.startswith(f"{record.name}: ")],
            )
            for record in result.operations.values()
        ],
        wall_seconds=result.wall_seconds,
        polls=result.polls,
    )
    if result.push_lines:
        timeline.blank()
        timeline.note("push path: per status change, how long after the API change its event reached the bus")
        for line in result.push_lines:
            timeline.note("  " + line)
    if result.ok and not options.keep_logs:
        Path(log_path).unlink(missing_ok=True)
    else:
        result.handler_log = log_path
        timeline.note(f"handler logs (Powertools JSON): {log_path}")
    timeline.verdict(result.problems, story=bool(expectations))
    if result.ok:
        timeline.next_steps(NEXT_STEPS)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m comms_bridge_tools.demo",
        description=(
            "Run comms-bridge end to end on this machine: the Comms API simulator playing a scenario, "
            "moto server provisioned from template.yaml, the poller on its schedule, the errors function "
            "behind its rule, Slack and SNS alerts. Exits 1 if the pipeline did not do what the story "
            "expects."
        ),
    )
    parser.add_argument(
        "--scenario",
        type=Path,
        default=STORY,
        help="scenario file (default: the story; what a story run must produce is checked only for it)",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help="API-clock seconds per wall-clock second (default: %(default)s, one minute every 0.1 s)",
    )
    pace.add_argument("--fast", action="store_true", help="no pacing: run the polls back to back")
    parser.add_argument("--no-color", action="store_true", help="plain text (also when NO_COLOR is set)")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the handlers' log file after a run that passed"
    )
    parser.add_argument(
        "--push",
        action="store_true",
        help="turn the Event Streams push path on (EnableEventStreams=true) and show, per status change, "
        "how long it took to reach the bus on each path",
    )
    parser.add_argument(
        "--push-delay",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="with --push: Event Streams delivery delay after each change (default: %(default)s)",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=None,
        metavar="N",
        help="watch N Twilio accounts with one stack, each with its own secret and schedule (2: the story "
        "and scenarios/storefront.yaml; --scenario may also be an accounts file, e.g. "
        "scenarios/two-accounts.yaml)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a machine-readable summary on stdout (timeline on stderr)"
    )
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Exit status 0: the run passed; 1: the pipeline did not do what was expected; 2: a mistake in the
    input (one line on stderr, never a traceback) or Ctrl-C."""
    args = build_parser().parse_args(argv)
    if args.speed is not None and args.speed <= 0:
        build_parser().error("--speed must be positive")
    options = DemoOptions(
        scenario=args.scenario,
        speed=None if args.fast else args.speed,
        no_color=args.no_color,
        keep_logs=args.keep_logs,
        push_delay=args.push_delay if args.push else None,
        accounts=args.accounts,
    )
    stream = out if out is not None else sys.stdout
    try:
        result = run_demo(options, out=sys.stderr if args.json else stream)
    except DemoInputError as exc:
        sys.stderr.write(f"demo: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("demo: interrupted; the simulator and moto server are stopped\n")
        return 2
    if args.json:
        stream.write(json.dumps(result.to_json(), indent=2) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

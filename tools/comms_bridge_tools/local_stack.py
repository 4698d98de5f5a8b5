"""Create in moto server exactly what template.yaml declares, so tests, the demo and the benchmarks run the
handlers against the deployed shape (table keys, TTL attributes, real rule patterns, environment) instead of
a hand-written copy of it.

    stack = LocalStack.provision(moto_server.env(), prefix="t-abc", parameters={"FailedCountThreshold": "5"})
    env = stack.function_environment("PollerFunction")    # the env vars the template sets, resolved locally

Every resource name starts with ``prefix`` so tests can share one moto server. Lambda targets cannot run in
moto: each rule target (our functions, the alert topic) is replaced by an SQS queue that receives exactly what
the rule matched, and the demo hands those events to the handler.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import boto3

from comms_bridge_tools import stack_provisioning
from comms_bridge_tools.cfn_template import (
    ACCOUNT_ID,
    FOR_EACH_PREFIX,
    NO_VALUE,
    PARTITION,
    REPO_ROOT,
    TEMPLATE_PATH,
    Resolver,
    as_string,
    expand_for_each,
    function_events,
    load_template,
    parameter_defaults,
)

# The template half (loading, Fn::ForEach, intrinsic functions) lives in cfn_template and the creation steps
# in stack_provisioning; callers have always imported these names from here.
__all__ = [
    "ACCOUNT_ID",
    "FOR_EACH_PREFIX",
    "NO_VALUE",
    "PARTITION",
    "REPO_ROOT",
    "SIMULATED_CLOCK_SKEW_SECONDS",
    "TEMPLATE_PATH",
    "FunctionEnv",
    "LocalStack",
    "Resolver",
    "Schedule",
    "expand_for_each",
    "function_events",
    "load_template",
    "parameter_defaults",
    "schedules",
    "twilio_secret_arns",
]

SIMULATED_CLOCK_SKEW_SECONDS: Final = str(20 * 365 * 86_400)
"""The local stack's MaxClockSkewSeconds unless a caller passes one: the simulator plays on a clock of its
own, fixed in the past (STORY_START) so that every run is the same; against the machine's clock that is
skew, which the functions would rightly distrust (contract section 6). Tests of that distrust pass 3600."""

FunctionEnv = dict[str, str]


# ---------------------------------------------------------------- the local stack


def _clients_factory(session_or_env: boto3.Session | Mapping[str, str] | None) -> Callable[[str], Any]:
    if isinstance(session_or_env, boto3.Session):
        session = session_or_env
        return cache(session.client)
    env = dict(os.environ if session_or_env is None else session_or_env)
    endpoint = env.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise ValueError("LocalStack needs AWS_ENDPOINT_URL (the moto server) in the given environment")
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"
    credentials = (
        env.get("AWS_ACCESS_KEY_ID", "testing"),
        env.get("AWS_SECRET_ACCESS_KEY", "testing"),
        env.get("AWS_SESSION_TOKEN"),
    )
    return lambda service: _shared_client(endpoint, region, credentials, service)


@cache
def _shared_client(endpoint: str, region: str, credentials: tuple[str, str, str | None], service: str) -> Any:
    """One client per server and service for the whole process: creating one costs tens of milliseconds."""
    key, secret, token = credentials
    session = boto3.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token, region_name=region
    )
    return session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


@dataclass
class LocalStack:
    """What the template declares, created in moto server. Build it with :meth:`provision`."""

    prefix: str
    template: dict[str, Any]
    parameters: dict[str, str]
    region: str
    client: Callable[[str], Any]
    resource_names: dict[str, Any] = field(default_factory=dict)
    rule_queue_urls: dict[str, str] = field(default_factory=dict)  # rule logical id -> stand-in target queue
    capture_queue_url: str = ""
    alert_queue_url: str = ""  # SQS subscription of the alert topic (SNS envelopes)

    # ---- construction

    @classmethod
    def provision(
        cls,
        session_or_env: boto3.Session | Mapping[str, str] | None = None,
        *,
        prefix: str | None = None,
        parameters: Mapping[str, str] | None = None,
        capture_all_events: bool = True,
        twilio_secret: Mapping[str, str] | None = None,
        twilio_secrets: Iterable[Mapping[str, str]] = (),
        name_accounts: bool = False,
        slack_webhook_url: str | None = None,
        rule_patterns: Mapping[str, Mapping[str, Any]] | None = None,
        template_path: str | os.PathLike[str] = TEMPLATE_PATH,
    ) -> LocalStack:
        """Create the stack's tables, bus, rules (with stand-in SQS targets), alert topic, queues, schedules
        and, when given, the secrets (``twilio_secrets``: one per account, listed in TwilioSecretArns, or
        with ``name_accounts`` named ``<prefix>/accounts/twilio-<n>`` and listed in TwilioSecretNames).
        ``parameters`` override the template defaults (strings, as CloudFormation takes them);
        ``rule_patterns`` replaces a rule's pattern by logical id (``ErrorsTriggerRule`` or
        ``ErrorsFunctionErrorsTriggerRule`` both name the SAM event rule)."""
        client = _clients_factory(session_or_env)
        region = client("sts").meta.region_name
        prefix = prefix or f"cb-{uuid.uuid4().hex[:10]}"
        template = load_template(template_path)
        values = {
            **parameter_defaults(template),
            "TwilioSecretArn": _fake_secret_arn(region, prefix, "twilio"),
            "MaxClockSkewSeconds": SIMULATED_CLOCK_SKEW_SECONDS,
        }
        values.update(parameters or {})
        _check_allowed_values(template, values)
        stack = cls(prefix=prefix, template=template, parameters=values, region=region, client=client)
        stack_provisioning.store_secrets(
            stack,
            twilio_secret=twilio_secret,
            twilio_secrets=twilio_secrets,
            name_accounts=name_accounts,
            slack_webhook_url=slack_webhook_url,
        )
        # What AWS::LanguageExtensions does first: the per-account schedules, for these parameter values.
        stack.template = expand_for_each(template, stack.parameters)
        stack_provisioning.create_resources(stack, rule_patterns or {}, capture_all_events=capture_all_events)
        return stack

    def resolver(self) -> Resolver:
        return Resolver(
            template=self.template,
            parameters=self.parameters,
            resource_names=self.resource_names,
            region=self.region,
            stack_name=self.prefix,
        )

    def condition(self, name: str) -> bool:
        return self.resolver().condition(name)

    def create_secret(self, suffix: str, value: str) -> str:
        """A secret named under the stack's prefix; its ARN is what a secret ARN parameter takes."""
        response = self.client("secretsmanager").create_secret(
            Name=f"{self.prefix}/{suffix}", SecretString=value
        )
        return str(response["ARN"])

    def stream_name(self, logical_id: str = "EventStreamsStream") -> str:
        return str(self.resource_names[logical_id])

    def create_topic(self, logical_id: str) -> str:
        """Create (again, after a test deleted it: the same name gives the same ARN) a topic of the template,
        the alert topic with its SQS subscription."""
        return stack_provisioning.create_topic(self, logical_id)

    def schedule_inputs(self) -> dict[str, dict[str, Any]]:
        """Schedule name -> the event its target invokes the poller with, as moto holds them."""
        scheduler = self.client("scheduler")
        inputs: dict[str, dict[str, Any]] = {}
        for logical_id, _ in self.resolver().resources("AWS::Scheduler::Schedule"):
            name = self.resource_names[logical_id]
            group = self.resolver().resolve(self.template["Resources"][logical_id]["Properties"]["GroupName"])
            schedule = scheduler.get_schedule(Name=name, GroupName=group)
            inputs[name] = json.loads(schedule["Target"]["Input"])
        return inputs

    # ---- what tests use

    @property
    def state_table_name(self) -> str:
        return str(self.resource_names["StateTable"])

    @property
    def idempotency_table_name(self) -> str:
        return str(self.resource_names["IdempotencyTable"])

    @property
    def alert_topic_arn(self) -> str:
        return str(self.resource_names["AlertTopic"])

    @property
    def bus_name(self) -> str:
        return str(
            self.resolver().resolve({"Fn::If": ["CreateBus", {"Ref": "EventBus"}, {"Ref": "EventBusName"}]})
        )

    @property
    def event_source(self) -> str:
        return self.parameters["EventSource"]

    @property
    def errors_trigger_queue_url(self) -> str:
        """Stands in for ErrorsQueue as the target of ErrorsTriggerRule (logical id
        ``ErrorsFunctionErrorsTriggerRule``, the id SAM gave it when it was the function's own event)."""
        urls = self.rule_queue_urls
        return (
            urls["ErrorsTriggerRule"]
            if "ErrorsTriggerRule" in urls
            else urls["ErrorsFunctionErrorsTriggerRule"]
        )

    @property
    def stalled_alert_queue_url(self) -> str:
        """Stands in for ErrorsQueue as the target of StalledAlertRule."""
        return self.rule_queue_urls["StalledAlertRule"]

    def function_properties(self, function_logical_id: str, keys: Iterable[str]) -> dict[str, Any]:
        """Some of a function's properties as the template sets them here (Globals merged, conditions
        applied, a property that resolves to ``AWS::NoValue`` left out). Only the keys asked for: roles and
        the like have no local value."""
        defaults = self.template.get("Globals", {}).get("Function", {})
        props = self.template["Resources"][function_logical_id]["Properties"]
        merged = {
            key: props[key] if key in props else defaults[key] for key in keys if key in {**defaults, **props}
        }
        resolved: dict[str, Any] = self.resolver().resolve(merged)
        return resolved

    def function_environment(self, function_logical_id: str) -> FunctionEnv:
        """The environment the template gives the function (Globals merged), resolved to local names."""
        globals_env = self.template.get("Globals", {}).get("Function", {}).get("Environment", {})
        props = self.template["Resources"][function_logical_id]["Properties"]
        variables = {**globals_env.get("Variables", {}), **props.get("Environment", {}).get("Variables", {})}
        resolved = self.resolver().resolve(variables)
        return {name: as_string(value) for name, value in resolved.items()}

    def drain(self, queue_url: str, wait: float = 1.0, *, max_messages: int = 10_000) -> list[dict[str, Any]]:
        """Receive and delete everything in the queue, as parsed JSON bodies (EventBridge events, or SNS
        envelopes for the alert subscription). moto delivers rule targets synchronously, so this returns as
        soon as the queue is empty; only while nothing at all has arrived does it keep looking for ``wait``
        seconds (pass 0 to assert that nothing was delivered without waiting)."""
        sqs = self.client("sqs")
        received: list[dict[str, Any]] = []
        give_up_at = time.monotonic() + wait
        while len(received) < max_messages:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30
            ).get("Messages", [])
            if not messages:
                if received or time.monotonic() >= give_up_at:
                    break
                time.sleep(0.05)
                continue
            received.extend(json.loads(message["Body"]) for message in messages)
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        return received

    def drain_alerts(self, wait: float = 1.0) -> list[dict[str, Any]]:
        """SNS messages published to the alert topic: ``{"Subject": ..., "Message": ...}`` each."""
        return [
            {
                "Subject": envelope.get("Subject"),
                "Message": envelope.get("Message"),
                "MessageAttributes": envelope.get("MessageAttributes", {}),
            }
            for envelope in self.drain(self.alert_queue_url, wait)
        ]

    def put_event(self, detail_type: str, detail: Mapping[str, Any], *, source: str | None = None) -> None:
        """Publish one event on the stack's bus (for rule tests)."""
        response = self.client("events").put_events(
            Entries=[
                {
                    "Source": source or self.event_source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "EventBusName": self.bus_name,
                }
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"put_events failed: {response['Entries']}")


@dataclass(frozen=True)
class Schedule:
    """One schedule of the template: what it invokes (a function's logical id), how often, with what."""

    name: str  # the schedule's logical id, or the SAM function event's name
    function: str
    expression: str
    payload: Any  # the event the target gets: the schedule's Input, parsed ({} without one)


def schedules(stack: LocalStack) -> list[Schedule]:
    """Every schedule that invokes one of the stack's functions: EventBridge Scheduler schedules
    (``AWS::Scheduler::Schedule``, ``Fn::ForEach`` expanded: one per watched account) and SAM
    ``ScheduleV2``/``Schedule`` function events, in template order. Only the target, the expression and
    the input are resolved (roles and groups need no local value)."""
    resolver = stack.resolver()
    by_arn = {
        stack.resource_names[f"{logical_id}.Arn"]: logical_id
        for logical_id, _ in resolver.resources("AWS::Serverless::Function")
    }
    found: list[Schedule] = []
    for logical_id, props in resolver.resources("AWS::Scheduler::Schedule"):
        target = props.get("Target", {})
        function = by_arn.get(str(resolver.resolve(target.get("Arn"))))
        if function is not None:
            expression = str(resolver.resolve(props.get("ScheduleExpression")))
            payload = _payload(resolver.resolve(target.get("Input")))
            found.append(Schedule(logical_id, function, expression, payload))
    for event_type in ("ScheduleV2", "Schedule"):
        for function, event_name, event in function_events(stack.template, event_type):
            wanted = {k: v for k, v in event.items() if k in ("ScheduleExpression", "Schedule", "Input")}
            resolved = resolver.resolve(wanted)
            expression = str(resolved.get("ScheduleExpression") or resolved.get("Schedule"))
            found.append(Schedule(event_name, function, expression, _payload(resolved.get("Input"))))
    return found


def twilio_secret_arns(stack: LocalStack) -> list[str]:
    """Every watched account's secret: ``TwilioSecretArn``, the ``TwilioSecretArns`` list, then each of
    ``TwilioSecretNames`` as the ARN its schedule passes (no random suffix), in order."""
    arns = [stack.parameters.get("TwilioSecretArn", "")]
    arns += stack.parameters.get("TwilioSecretArns", "").split(",")
    prefix = stack.parameters.get("TwilioSecretNamePrefix", "")
    if prefix:
        arns += [
            stack.resolver().arn("secretsmanager", f"secret:{prefix}{name.strip()}")
            for name in stack.parameters.get("TwilioSecretNames", "").split(",")
            if name.strip()
        ]
    return list(dict.fromkeys(arn.strip() for arn in arns if arn.strip()))


def _payload(raw_input: Any) -> Any:
    """A schedule's Input (JSON text) as the event its target receives; none: an empty event."""
    return json.loads(raw_input) if isinstance(raw_input, str) and raw_input else {}


def _fake_secret_arn(region: str, prefix: str, suffix: str) -> str:
    return f"arn:{PARTITION}:secretsmanager:{region}:{ACCOUNT_ID}:secret:{prefix}/{suffix}-AbCdEf"


def _check_allowed_values(template: Mapping[str, Any], values: Mapping[str, str]) -> None:
    """Catch a value the real deploy would refuse (AllowedValues only: local URLs are http://)."""
    for name, spec in template.get("Parameters", {}).items():
        allowed = spec.get("AllowedValues")
        if allowed is not None and name in values and values[name] not in {as_string(v) for v in allowed}:
            raise ValueError(f"parameter {name}={values[name]!r} is not one of {allowed}")

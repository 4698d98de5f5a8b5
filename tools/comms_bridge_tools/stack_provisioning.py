"""The steps that create a local stack's resources in moto, one resource type each, in the order a later
step needs the names an earlier one recorded (a rule's target queue, a schedule's function ARN).

Each step reads the stack's parameters and resolved template and records what ``Ref``/``Fn::GetAtt`` of the
new resource return in ``resource_names``, as CloudFormation would. ``LocalStack.provision`` runs them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from comms_bridge_tools.cfn_template import Resolver, function_events


class StackUnderConstruction(Protocol):
    """What the steps read and record: a ``LocalStack`` while it is provisioned."""

    prefix: str
    template: dict[str, Any]
    parameters: dict[str, str]
    resource_names: dict[str, Any]
    rule_queue_urls: dict[str, str]
    capture_queue_url: str
    alert_queue_url: str

    def client(self, service: str) -> Any: ...

    def resolver(self) -> Resolver: ...

    def create_secret(self, suffix: str, value: str) -> str: ...

    @property
    def bus_name(self) -> str: ...


def store_secrets(
    stack: StackUnderConstruction,
    *,
    twilio_secret: Mapping[str, str] | None,
    twilio_secrets: Iterable[Mapping[str, str]],
    name_accounts: bool,
    slack_webhook_url: str | None,
) -> None:
    """Create the given secrets and point the secret parameters at them (see ``LocalStack.provision``)."""
    if twilio_secret is not None:
        stack.parameters["TwilioSecretArn"] = stack.create_secret("twilio", json.dumps(dict(twilio_secret)))
    folder = "accounts/" if name_accounts else ""
    accounts = [
        stack.create_secret(f"{folder}twilio-{n}", json.dumps(dict(secret)))
        for n, secret in enumerate(twilio_secrets, start=1)
    ]
    if accounts and name_accounts:
        stack.parameters["TwilioSecretNamePrefix"] = f"{stack.prefix}/{folder}"
        stack.parameters["TwilioSecretNames"] = ",".join(f"twilio-{n}" for n in range(1, len(accounts) + 1))
    elif accounts:
        stack.parameters["TwilioSecretArns"] = ",".join(accounts)
    if slack_webhook_url is not None:
        stack.parameters["SlackWebhookSecretArn"] = stack.create_secret("slack-webhook", slack_webhook_url)


def create_resources(
    stack: StackUnderConstruction, rule_patterns: Mapping[str, Mapping[str, Any]], *, capture_all_events: bool
) -> None:
    """Every resource of the (already ``Fn::ForEach``-expanded) template that moto can hold."""
    _name_functions_and_layer(stack)
    _create_tables(stack)
    _create_queues(stack)
    _create_streams(stack)
    for logical_id, _ in stack.resolver().resources("AWS::SNS::Topic"):
        create_topic(stack, logical_id)
    _create_bus(stack)
    _create_rules(stack, rule_patterns)
    _create_schedules(stack)
    if capture_all_events:
        _create_capture_rule(stack)


def create_topic(stack: StackUnderConstruction, logical_id: str) -> str:
    """See ``LocalStack.create_topic``."""
    sns = stack.client("sns")
    arn = str(sns.create_topic(Name=f"{stack.prefix}-{logical_id}")["TopicArn"])
    stack.resource_names[logical_id] = arn
    stack.resource_names[f"{logical_id}.TopicArn"] = arn
    if logical_id == "AlertTopic":
        stack.alert_queue_url, queue_arn = _new_queue(stack, f"{stack.prefix}-AlertTopic-subscription")
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return arn


def _name_functions_and_layer(stack: StackUnderConstruction) -> None:
    """Functions, layers, log groups, roles and keys cannot be created in moto here; only their names and
    ARNs are recorded, for the environment, schedules and policies that refer to them."""
    resolver, names = stack.resolver(), stack.resource_names
    for logical_id, props in resolver.resources("AWS::Serverless::Function"):
        name = resolver.resolve(props.get("FunctionName")) or f"{stack.prefix}-{logical_id}"
        names[logical_id] = name
        names[f"{logical_id}.Arn"] = resolver.arn("lambda", f"function:{name}")
    for logical_id, props in resolver.resources("AWS::Serverless::LayerVersion"):
        name = resolver.resolve(props.get("LayerName")) or f"{stack.prefix}-{logical_id}"
        names[logical_id] = resolver.arn("lambda", f"layer:{name}:1")
    for logical_id, props in resolver.resources("AWS::Logs::LogGroup"):
        name = resolver.resolve(props["LogGroupName"])
        names[logical_id] = name
        names[f"{logical_id}.Arn"] = resolver.arn("logs", f"log-group:{name}:*")
    for logical_id, _ in resolver.resources("AWS::IAM::Role"):
        names[f"{logical_id}.Arn"] = resolver.arn("iam", f"role/{stack.prefix}-{logical_id}")
    for logical_id, _ in resolver.resources("AWS::KMS::Key"):
        key_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stack.prefix}/{logical_id}"))
        names[logical_id] = key_id
        names[f"{logical_id}.Arn"] = resolver.arn("kms", f"key/{key_id}")


def _create_tables(stack: StackUnderConstruction) -> None:
    dynamodb = stack.client("dynamodb")
    resolver = stack.resolver()
    for logical_id, declared in resolver.resources("AWS::DynamoDB::Table"):
        props = resolver.resolve(declared)
        name = f"{stack.prefix}-{logical_id}"
        dynamodb.create_table(
            TableName=name,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "AttributeName": ttl["AttributeName"],
                    "Enabled": bool(ttl["Enabled"]),
                },
            )
        stack.resource_names[logical_id] = name
        stack.resource_names[f"{logical_id}.Arn"] = resolver.arn("dynamodb", f"table/{name}")


def _new_queue(stack: StackUnderConstruction, name: str) -> tuple[str, str]:
    sqs = stack.client("sqs")
    url = str(sqs.create_queue(QueueName=name[:80])["QueueUrl"])
    arn = str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
    return url, arn


def _create_queues(stack: StackUnderConstruction) -> None:
    for logical_id, _ in stack.resolver().resources("AWS::SQS::Queue"):
        name = f"{stack.prefix}-{logical_id}"
        url, arn = _new_queue(stack, name)
        stack.resource_names[logical_id] = url
        stack.resource_names[f"{logical_id}.Arn"] = arn
        stack.resource_names[f"{logical_id}.QueueName"] = name[:80]
        stack.resource_names[f"{logical_id}.QueueUrl"] = url


def _create_streams(stack: StackUnderConstruction) -> None:
    """The Event Streams Kinesis stream (EnableEventStreams=true): its declared mode and encryption."""
    kinesis = stack.client("kinesis")
    resolver = stack.resolver()
    for logical_id, declared in resolver.resources("AWS::Kinesis::Stream"):
        props = resolver.resolve(declared)
        name = f"{stack.prefix}-{logical_id}"
        kinesis.create_stream(StreamName=name, StreamModeDetails=props["StreamModeDetails"])
        encryption = props.get("StreamEncryption")
        if encryption:
            kinesis.start_stream_encryption(
                StreamName=name, EncryptionType=encryption["EncryptionType"], KeyId=encryption["KeyId"]
            )
        stack.resource_names[logical_id] = name
        stack.resource_names[f"{logical_id}.Arn"] = resolver.arn("kinesis", f"stream/{name}")


def _create_schedules(stack: StackUnderConstruction) -> None:
    """The schedule group and each schedule, with its target's input (each account's secret)."""
    scheduler = stack.client("scheduler")
    resolver = stack.resolver()
    for logical_id, declared in resolver.resources("AWS::Scheduler::ScheduleGroup"):
        name = resolver.resolve(declared["Name"])
        scheduler.create_schedule_group(Name=name)
        stack.resource_names[logical_id] = name
    for logical_id, declared in resolver.resources("AWS::Scheduler::Schedule"):
        props = resolver.resolve(declared)
        # CloudFormation names a schedule without Name: <stack>-<logical id, cut>-<unique suffix>, at
        # most 64 characters.
        suffix = hashlib.sha256(logical_id.encode()).hexdigest()[:12]
        name = props.get("Name") or f"{stack.prefix}-{logical_id}"[:50] + f"-{suffix}"
        scheduler.create_schedule(
            Name=name,
            GroupName=props["GroupName"],
            ScheduleExpression=props["ScheduleExpression"],
            FlexibleTimeWindow=props["FlexibleTimeWindow"],
            Target=props["Target"],
            Description=props.get("Description", ""),
        )
        stack.resource_names[logical_id] = name


def _create_bus(stack: StackUnderConstruction) -> None:
    events = stack.client("events")
    resolver = stack.resolver()
    created = list(resolver.resources("AWS::Events::EventBus"))
    for logical_id, props in created:
        name = resolver.resolve(props["Name"])
        arn = str(events.create_event_bus(Name=name)["EventBusArn"])
        stack.resource_names[logical_id] = name
        stack.resource_names[f"{logical_id}.Arn"] = arn
        stack.resource_names[f"{logical_id}.Name"] = name


def _create_rules(stack: StackUnderConstruction, overrides: Mapping[str, Mapping[str, Any]]) -> None:
    resolver = stack.resolver()
    for logical_id, props in resolver.resources("AWS::Events::Rule"):
        _create_rule(
            stack, logical_id, resolver.resolve(props.get("EventBusName")), props["EventPattern"], overrides
        )
    for function_id, event_name, props in function_events(stack.template, "EventBridgeRule"):
        # SAM names the generated rule <function><event>; accept the event name alone as well.
        logical_id = f"{function_id}{event_name}"
        override = overrides.get(logical_id, overrides.get(event_name))
        _create_rule(
            stack,
            logical_id,
            resolver.resolve(props.get("EventBusName")),
            props["Pattern"],
            {logical_id: override} if override is not None else {},
            alias=event_name,
        )


def _create_rule(
    stack: StackUnderConstruction,
    logical_id: str,
    bus_name: str | None,
    pattern: Any,
    overrides: Mapping[str, Mapping[str, Any]],
    *,
    alias: str | None = None,
) -> None:
    """The rule, and an SQS queue as its only target: Lambda targets cannot run in moto, so the queue
    stands in for them and receives exactly what the rule matched."""
    events = stack.client("events")
    resolved = stack.resolver().resolve(pattern)
    document = overrides.get(logical_id) or (json.loads(resolved) if isinstance(resolved, str) else resolved)
    name = f"{stack.prefix}-{logical_id}"[:64]
    bus = bus_name or "default"
    rule_arn = str(
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(document), State="ENABLED")[
            "RuleArn"
        ]
    )
    url, queue_arn = _new_queue(stack, f"{stack.prefix}-{logical_id}-target")
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "stand-in", "Arn": queue_arn}])
    for key in filter(None, (logical_id, alias)):
        stack.rule_queue_urls[key] = url
        stack.resource_names[key] = name
        stack.resource_names[f"{key}.Arn"] = rule_arn


def _create_capture_rule(stack: StackUnderConstruction) -> None:
    pattern = {"source": [stack.parameters["EventSource"]]}
    name = f"{stack.prefix}-capture"
    events = stack.client("events")
    events.put_rule(Name=name, EventBusName=stack.bus_name, EventPattern=json.dumps(pattern), State="ENABLED")
    stack.capture_queue_url, queue_arn = _new_queue(stack, f"{stack.prefix}-capture")
    events.put_targets(Rule=name, EventBusName=stack.bus_name, Targets=[{"Id": "capture", "Arn": queue_arn}])

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

import copy
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import boto3
import yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SIMULATED_CLOCK_SKEW_SECONDS: Final = str(20 * 365 * 86_400)
"""The local stack's MaxClockSkewSeconds unless a caller passes one: the simulator plays on a clock of its
own, fixed in the past (STORY_START) so that every run is the same; against the machine's clock that is
skew, which the functions would rightly distrust (contract section 6). Tests of that distrust pass 3600."""
TEMPLATE_PATH: Final = REPO_ROOT / "template.yaml"
ACCOUNT_ID: Final = "123456789012"  # moto's default account
PARTITION: Final = "aws"

FunctionEnv = dict[str, str]


class _NoValue:
    """AWS::NoValue: removes the property or list item it stands in."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()


# ---------------------------------------------------------------- template loading


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns the CloudFormation short tags into their long JSON form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | os.PathLike[str] = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain data; short tags (``!Ref``, ``!Sub`` ...) become ``{"Ref": ...}`` etc.
    Parsed once per file version; each caller gets its own copy."""
    resolved = Path(path).resolve()
    return copy.deepcopy(_parse_template(str(resolved), resolved.stat().st_mtime_ns))


@cache
def _parse_template(path: str, mtime_ns: int) -> dict[str, Any]:
    loaded = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - _CfnLoader is a SafeLoader subclass
    assert isinstance(loaded, dict)
    return loaded


FOR_EACH_PREFIX: Final = "Fn::ForEach::"


def expand_for_each(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, Any]:
    """The template with its ``Fn::ForEach`` loops in Resources expanded as ``AWS::LanguageExtensions``
    expands them before the SAM transform: the collection is a literal list or a ``Ref`` to a
    CommaDelimitedList parameter (a string here, split on commas; empty gives one empty item, as in
    CloudFormation); in the output key ``&{Id}`` is the item's letters and digits only and ``${Id}`` the item;
    in the body ``Ref: Id`` and ``${Id}`` inside ``Fn::Sub`` are the item. A repeated logical id is an error,
    as in CloudFormation."""
    expanded = copy.deepcopy(dict(template))
    resources: dict[str, Any] = {}
    for key, value in template.get("Resources", {}).items():
        if not key.startswith(FOR_EACH_PREFIX):
            resources[key] = copy.deepcopy(value)
            continue
        identifier, collection, outputs = value
        for item in _for_each_items(collection, parameters):
            for key_template, body in outputs.items():
                logical_id = key_template.replace(
                    f"&{{{identifier}}}", re.sub(r"[^A-Za-z0-9]", "", item)
                ).replace(f"${{{identifier}}}", item)
                if logical_id in resources:
                    raise ValueError(f"{key}: logical id {logical_id} is generated twice")
                resources[logical_id] = _substitute_item(copy.deepcopy(body), identifier, item)
    expanded["Resources"] = resources
    return expanded


def _for_each_items(collection: Any, parameters: Mapping[str, str]) -> list[str]:
    if isinstance(collection, dict) and set(collection) == {"Ref"}:
        return [item.strip() for item in parameters[collection["Ref"]].split(",")]
    if isinstance(collection, list):
        return [_as_string(item) for item in collection]
    raise ValueError(f"Fn::ForEach collection not supported locally: {collection!r}")


def _substitute_item(value: Any, identifier: str, item: str) -> Any:
    if isinstance(value, list):
        return [_substitute_item(v, identifier, item) for v in value]
    if not isinstance(value, dict):
        return value
    if value == {"Ref": identifier}:
        return item
    if set(value) == {"Fn::Sub"}:
        argument = value["Fn::Sub"]
        text = argument[0] if isinstance(argument, list) else argument
        replaced = text.replace(f"${{{identifier}}}", item)
        if isinstance(argument, list):
            return {"Fn::Sub": [replaced, _substitute_item(argument[1], identifier, item)]}
        return {"Fn::Sub": replaced}
    return {key: _substitute_item(v, identifier, item) for key, v in value.items()}


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    """Each parameter's default as CloudFormation passes it: a string."""
    return {
        name: _as_string(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }


def _as_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------- intrinsic functions

_SUB_VARIABLE: Final = re.compile(r"\$\{([^}!]+)\}")


@dataclass
class Resolver:
    """Evaluates the intrinsic-function subset the template uses against local values.

    ``resource_names`` maps a logical id to what ``Ref`` returns and ``"LogicalId.Attribute"`` to what
    ``Fn::GetAtt`` returns.
    """

    template: Mapping[str, Any]
    parameters: Mapping[str, str]
    resource_names: Mapping[str, Any] = field(default_factory=dict)
    region: str = "us-east-1"
    stack_name: str = "comms-bridge"

    def pseudo(self, name: str) -> Any:
        values: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}/x",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        return values[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            spec = self.template.get("Parameters", {}).get(name, {})
            if spec.get("Type") == "CommaDelimitedList":  # a list, as CloudFormation passes it
                return [item.strip() for item in self.parameters[name].split(",")]
            return self.parameters[name]
        if name in self.resource_names:
            return self.resource_names[name]
        raise KeyError(f"Ref {name}: not a parameter and no local value for this resource")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        key = f"{logical_id}.{attribute}"
        if key in self.resource_names:
            return self.resource_names[key]
        raise KeyError(f"Fn::GetAtt {key}: no local value")

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            handler = self._functions().get(key)
            if handler is not None:
                return handler(argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self.ref,
            "Condition": self.condition,
            "Fn::GetAtt": lambda arg: self.get_att(*(arg.split(".", 1) if isinstance(arg, str) else arg)),
            "Fn::Sub": self._sub,
            "Fn::If": self._if,
            "Fn::Equals": lambda arg: _as_string(self.resolve(arg[0])) == _as_string(self.resolve(arg[1])),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::And": lambda arg: all(self.resolve(item) for item in arg),
            "Fn::Or": lambda arg: any(self.resolve(item) for item in arg),
            "Fn::FindInMap": self._find_in_map,
            "Fn::Join": lambda arg: self.resolve(arg[0]).join(_as_string(v) for v in self.resolve(arg[1])),
            "Fn::Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
            "Fn::Split": lambda arg: self.resolve(arg[1]).split(self.resolve(arg[0])),
        }

    def _if(self, argument: list[Any]) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _find_in_map(self, argument: list[Any]) -> Any:
        name, top, second = (_as_string(self.resolve(part)) for part in argument)
        return self.template["Mappings"][name][top][second]

    def _sub(self, argument: str | list[Any]) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return _as_string(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return _as_string(self.get_att(logical_id, attribute))
            return _as_string(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")


def function_events(
    template: Mapping[str, Any], event_type: str
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(function logical id, event name, event properties) of every SAM function event of a type."""
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") == event_type:
                yield logical_id, event_name, event.get("Properties", {})


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
        if twilio_secret is not None:
            stack.parameters["TwilioSecretArn"] = stack.create_secret(
                "twilio", json.dumps(dict(twilio_secret))
            )
        folder = "accounts/" if name_accounts else ""
        accounts = [
            stack.create_secret(f"{folder}twilio-{n}", json.dumps(dict(secret)))
            for n, secret in enumerate(twilio_secrets, start=1)
        ]
        if accounts and name_accounts:
            stack.parameters["TwilioSecretNamePrefix"] = f"{prefix}/{folder}"
            stack.parameters["TwilioSecretNames"] = ",".join(
                f"twilio-{n}" for n in range(1, len(accounts) + 1)
            )
        elif accounts:
            stack.parameters["TwilioSecretArns"] = ",".join(accounts)
        if slack_webhook_url is not None:
            stack.parameters["SlackWebhookSecretArn"] = stack.create_secret(
                "slack-webhook", slack_webhook_url
            )
        # What AWS::LanguageExtensions does first: the per-account schedules, for these parameter values.
        stack.template = expand_for_each(template, stack.parameters)
        stack._name_functions_and_layer()
        stack._create_tables()
        stack._create_queues()
        stack._create_streams()
        stack._create_topic()
        stack._create_bus()
        stack._create_rules(rule_patterns or {})
        stack._create_schedules()
        if capture_all_events:
            stack._create_capture_rule()
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

    def _resources(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.template["Resources"].items():
            if resource.get("Type") != resource_type:
                continue
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            yield logical_id, resource.get("Properties", {})

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:{PARTITION}:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    def _name_functions_and_layer(self) -> None:
        for logical_id, props in self._resources("AWS::Serverless::Function"):
            name = self.resolver().resolve(props.get("FunctionName")) or f"{self.prefix}-{logical_id}"
            self.resource_names[logical_id] = name
            self.resource_names[f"{logical_id}.Arn"] = self._arn("lambda", f"function:{name}")
        for logical_id, props in self._resources("AWS::Serverless::LayerVersion"):
            name = self.resolver().resolve(props.get("LayerName")) or f"{self.prefix}-{logical_id}"
            self.resource_names[logical_id] = self._arn("lambda", f"layer:{name}:1")
        for logical_id, props in self._resources("AWS::Logs::LogGroup"):
            name = self.resolver().resolve(props["LogGroupName"])
            self.resource_names[logical_id] = name
            self.resource_names[f"{logical_id}.Arn"] = self._arn("logs", f"log-group:{name}:*")
        for logical_id, _ in self._resources("AWS::IAM::Role"):
            self.resource_names[f"{logical_id}.Arn"] = self._arn("iam", f"role/{self.prefix}-{logical_id}")
        for logical_id, _ in self._resources("AWS::KMS::Key"):
            key_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.prefix}/{logical_id}"))
            self.resource_names[logical_id] = key_id
            self.resource_names[f"{logical_id}.Arn"] = self._arn("kms", f"key/{key_id}")

    def create_secret(self, suffix: str, value: str) -> str:
        """A secret named under the stack's prefix; its ARN is what a secret ARN parameter takes."""
        response = self.client("secretsmanager").create_secret(
            Name=f"{self.prefix}/{suffix}", SecretString=value
        )
        return str(response["ARN"])

    def _create_tables(self) -> None:
        dynamodb = self.client("dynamodb")
        for logical_id, declared in self._resources("AWS::DynamoDB::Table"):
            props = self.resolver().resolve(declared)
            name = f"{self.prefix}-{logical_id}"
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
            self.resource_names[logical_id] = name
            self.resource_names[f"{logical_id}.Arn"] = self._arn("dynamodb", f"table/{name}")

    def _new_queue(self, name: str) -> tuple[str, str]:
        sqs = self.client("sqs")
        url = str(sqs.create_queue(QueueName=name[:80])["QueueUrl"])
        arn = str(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        )
        return url, arn

    def _create_queues(self) -> None:
        for logical_id, _ in self._resources("AWS::SQS::Queue"):
            name = f"{self.prefix}-{logical_id}"
            url, arn = self._new_queue(name)
            self.resource_names[logical_id] = url
            self.resource_names[f"{logical_id}.Arn"] = arn
            self.resource_names[f"{logical_id}.QueueName"] = name[:80]
            self.resource_names[f"{logical_id}.QueueUrl"] = url

    def _create_streams(self) -> None:
        """The Event Streams Kinesis stream (EnableEventStreams=true): its declared mode and encryption."""
        kinesis = self.client("kinesis")
        for logical_id, declared in self._resources("AWS::Kinesis::Stream"):
            props = self.resolver().resolve(declared)
            name = f"{self.prefix}-{logical_id}"
            kinesis.create_stream(StreamName=name, StreamModeDetails=props["StreamModeDetails"])
            encryption = props.get("StreamEncryption")
            if encryption:
                kinesis.start_stream_encryption(
                    StreamName=name, EncryptionType=encryption["EncryptionType"], KeyId=encryption["KeyId"]
                )
            self.resource_names[logical_id] = name
            self.resource_names[f"{logical_id}.Arn"] = self._arn("kinesis", f"stream/{name}")

    def stream_name(self, logical_id: str = "EventStreamsStream") -> str:
        return str(self.resource_names[logical_id])

    def _create_topic(self) -> None:
        for logical_id, _ in self._resources("AWS::SNS::Topic"):
            self.create_topic(logical_id)

    def create_topic(self, logical_id: str) -> str:
        """Create (again, after a test deleted it: the same name gives the same ARN) a topic of the template,
        the alert topic with its SQS subscription."""
        sns = self.client("sns")
        arn = str(sns.create_topic(Name=f"{self.prefix}-{logical_id}")["TopicArn"])
        self.resource_names[logical_id] = arn
        self.resource_names[f"{logical_id}.TopicArn"] = arn
        if logical_id == "AlertTopic":
            self.alert_queue_url, queue_arn = self._new_queue(f"{self.prefix}-AlertTopic-subscription")
            sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
        return arn

    def _create_schedules(self) -> None:
        """The schedule group and each schedule, with its target's input (each account's secret)."""
        scheduler = self.client("scheduler")
        for logical_id, declared in self._resources("AWS::Scheduler::ScheduleGroup"):
            name = self.resolver().resolve(declared["Name"])
            scheduler.create_schedule_group(Name=name)
            self.resource_names[logical_id] = name
        for logical_id, declared in self._resources("AWS::Scheduler::Schedule"):
            props = self.resolver().resolve(declared)
            # CloudFormation names a schedule without Name: <stack>-<logical id, cut>-<unique suffix>, at
            # most 64 characters.
            suffix = hashlib.sha256(logical_id.encode()).hexdigest()[:12]
            name = props.get("Name") or f"{self.prefix}-{logical_id}"[:50] + f"-{suffix}"
            scheduler.create_schedule(
                Name=name,
                GroupName=props["GroupName"],
                ScheduleExpression=props["ScheduleExpression"],
                FlexibleTimeWindow=props["FlexibleTimeWindow"],
                Target=props["Target"],
                Description=props.get("Description", ""),
            )
            self.resource_names[logical_id] = name

    def schedule_inputs(self) -> dict[str, dict[str, Any]]:
        """Schedule name -> the event its target invokes the poller with, as moto holds them."""
        scheduler = self.client("scheduler")
        inputs: dict[str, dict[str, Any]] = {}
        for logical_id, _ in self._resources("AWS::Scheduler::Schedule"):
            name = self.resource_names[logical_id]
            group = self.resolver().resolve(self.template["Resources"][logical_id]["Properties"]["GroupName"])
            schedule = scheduler.get_schedule(Name=name, GroupName=group)
            inputs[name] = json.loads(schedule["Target"]["Input"])
        return inputs

    def _create_bus(self) -> None:
        events = self.client("events")
        created = list(self._resources("AWS::Events::EventBus"))
        for logical_id, props in created:
            name = self.resolver().resolve(props["Name"])
            arn = str(events.create_event_bus(Name=name)["EventBusArn"])
            self.resource_names[logical_id] = name
            self.resource_names[f"{logical_id}.Arn"] = arn
            self.resource_names[f"{logical_id}.Name"] = name

    def _create_rules(self, overrides: Mapping[str, Mapping[str, Any]]) -> None:
        resolver = self.resolver()
        for logical_id, props in self._resources("AWS::Events::Rule"):
            self._create_rule(
                logical_id, resolver.resolve(props.get("EventBusName")), props["EventPattern"], overrides
            )
        for function_id, event_name, props in function_events(self.template, "EventBridgeRule"):
            # SAM names the generated rule <function><event>; accept the event name alone as well.
            logical_id = f"{function_id}{event_name}"
            override = overrides.get(logical_id, overrides.get(event_name))
            self._create_rule(
                logical_id,
                resolver.resolve(props.get("EventBusName")),
                props["Pattern"],
                {logical_id: override} if override is not None else {},
                alias=event_name,
            )

    def _create_rule(
        self,
        logical_id: str,
        bus_name: str | None,
        pattern: Any,
        overrides: Mapping[str, Mapping[str, Any]],
        alias: str | None = None,
    ) -> None:
        events = self.client("events")
        resolved = self.resolver().resolve(pattern)
        document = overrides.get(logical_id) or (
            json.loads(resolved) if isinstance(resolved, str) else resolved
        )
        name = f"{self.prefix}-{logical_id}"[:64]
        bus = bus_name or "default"
        rule_arn = str(
            events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(document), State="ENABLED")[
                "RuleArn"
            ]
        )
        url, queue_arn = self._new_queue(f"{self.prefix}-{logical_id}-target")
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "stand-in", "Arn": queue_arn}])
        for key in filter(None, (logical_id, alias)):
            self.rule_queue_urls[key] = url
            self.resource_names[key] = name
            self.resource_names[f"{key}.Arn"] = rule_arn

    def _create_capture_rule(self) -> None:
        pattern = {"source": [self.parameters["EventSource"]]}
        name = f"{self.prefix}-capture"
        events = self.client("events")
        events.put_rule(
            Name=name, EventBusName=self.bus_name, EventPattern=json.dumps(pattern), State="ENABLED"
        )
        self.capture_queue_url, queue_arn = self._new_queue(f"{self.prefix}-capture")
        events.put_targets(
            Rule=name, EventBusName=self.bus_name, Targets=[{"Id": "capture", "Arn": queue_arn}]
        )

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
        return {name: _as_string(value) for name, value in resolved.items()}

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
        for logical_id, _ in stack._resources("AWS::Serverless::Function")
    }
    found: list[Schedule] = []
    for logical_id, props in stack._resources("AWS::Scheduler::Schedule"):
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
            stack._arn("secretsmanager", f"secret:{prefix}{name.strip()}")
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
        if allowed is not None and name in values and values[name] not in {_as_string(v) for v in allowed}:
            raise ValueError(f"parameter {name}={values[name]!r} is not one of {allowed}")

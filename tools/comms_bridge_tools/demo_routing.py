"""The template's rules played locally: each rule's stand-in queue is drained and what it matched is handed
to the rule's targets (our functions, the alert topic) as EventBridge would, until the bus is quiet; then
the alerts that came out (Slack webhook, SNS mail) are collected."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from comms_bridge_tools import local_stack
from comms_bridge_tools.demo_record import AlertRecord, DemoRecorder, clock_text
from comms_bridge_tools.lambda_runtime import LambdaFunction, as_delivered, deliver_event
from comms_bridge_tools.slack_receiver import SlackReceiver
from comms_bridge_tools.timeline import slack_payload_text

_OPERATION_ID_RE: Final = re.compile(r"comms_operation_[0-7][a-hjkmnpqrstv-z0-9]{25,34}")


@dataclass(frozen=True)
class RuleRoute:
    """Where the events a rule matched go: the rule's stand-in queue, then each of its targets as the
    template declares them (one of our functions, or the alert topic)."""

    rule: str
    queue_url: str
    functions: tuple[str, ...] = ()  # logical ids
    topics: tuple[str, ...] = ()  # topic ARNs


def rule_routes(aws: local_stack.LocalStack) -> list[RuleRoute]:
    """Every rule of the template with its targets, read from the template itself. A target queue that a
    function's SQS event reads (ErrorsQueue) stands for that function."""
    resolver = aws.resolver()
    function_arns = {
        aws.resource_names[f"{logical_id}.Arn"]: logical_id
        for logical_id, resource in aws.template["Resources"].items()
        # A function whose condition is off (StreamFunction without EnableEventStreams) was not created.
        if resource.get("Type") == "AWS::Serverless::Function" and f"{logical_id}.Arn" in aws.resource_names
    }
    for function_id, _, props in local_stack.function_events(aws.template, "SQS"):
        function_arns[str(resolver.resolve(props["Queue"]))] = function_id
    routes: list[RuleRoute] = []
    for logical_id, resource in aws.template["Resources"].items():
        if resource.get("Type") != "AWS::Events::Rule" or logical_id not in aws.rule_queue_urls:
            continue
        targets = resolver.resolve(resource.get("Properties", {}).get("Targets", []))
        arns = [str(target["Arn"]) for target in targets]
        routes.append(
            RuleRoute(
                rule=logical_id,
                queue_url=aws.rule_queue_urls[logical_id],
                functions=tuple(function_arns[arn] for arn in arns if arn in function_arns),
                topics=tuple(arn for arn in arns if ":sns:" in arn),
            )
        )
    for function_id, event_name, _ in local_stack.function_events(aws.template, "EventBridgeRule"):
        routes.append(
            RuleRoute(rule=event_name, queue_url=aws.rule_queue_urls[event_name], functions=(function_id,))
        )
    return routes


class EventRouter:
    """After each poll or push batch: what crossed the bus, what the rules delivered, what alerted."""

    def __init__(
        self,
        aws: local_stack.LocalStack,
        routes: Sequence[RuleRoute],
        slack: SlackReceiver,
        recorder: DemoRecorder,
        function: Callable[[str], LambdaFunction],
    ) -> None:
        self.aws = aws
        self.routes = routes
        self.slack = slack
        self.recorder = recorder
        self.function = function  # a function of the stack by logical id, made on first use

    def settle(self, now: datetime) -> None:
        """Everything the events put on the bus so far set off: targets run, alerts collected."""
        self.drain_bus(now)
        self.deliver(now)
        self.collect_alerts(now)

    def drain_bus(self, now: datetime) -> None:
        for event in _queued_events(self.aws, self.aws.capture_queue_url):
            self.recorder.event(event, now)

    def deliver(self, now: datetime) -> None:
        """Hand every matched event to its targets; repeat while targets put new events on the bus."""
        sns = self.aws.client("sns")
        for _ in range(10):
            delivered = 0
            for route in self.routes:
                for event in _queued_events(self.aws, route.queue_url):
                    delivered += 1
                    for logical_id in route.functions:
                        deliver_event(self.function(logical_id), event)
                    for topic_arn in route.topics:
                        # EventBridge's SNS target: the event JSON is the message (no input transformer).
                        sns.publish(TopicArn=topic_arn, Message=json.dumps(event))
            if not delivered:
                return
            self.drain_bus(now)

    def collect_alerts(self, now: datetime) -> None:
        at = clock_text(now)
        for payload in self.slack.take():
            text = slack_payload_text(payload)
            self.recorder.alert(AlertRecord(at, "slack", _operation_in(text, payload), "", text))
        for envelope in self.aws.drain_alerts(wait=0):
            subject = str(envelope.get("Subject") or "")
            body = sns_mail_text(str(envelope.get("Message") or ""))
            self.recorder.alert(AlertRecord(at, "sns", _operation_in(subject + body), subject, body))


def _queued_events(aws: local_stack.LocalStack, queue_url: str) -> list[dict[str, Any]]:
    """The EventBridge events a rule delivered to ``queue_url`` (a target's stand-in), as delivered."""
    return [as_delivered(body) for body in aws.drain(queue_url, wait=0)]


def sns_mail_text(message: str) -> str:
    """An SNS message as the e-mail shows it. An EventBridge event (the Stalled rule's target) is JSON:
    shown with the fields a reader needs and the rest elided."""
    try:
        event = json.loads(message)
    except ValueError:
        return message
    if not isinstance(event, dict) or "detail-type" not in event:
        return message
    detail = event.get("detail") or {}
    keep = ("operationId", "status", "stalledForSeconds", "updatedAt", "observedAt", "eventKey")
    shown = {
        "detail-type": event["detail-type"],
        "source": event.get("source"),
        "detail": {key: detail[key] for key in keep if key in detail},
    }
    elided = len(detail) - len(shown["detail"])
    return json.dumps(shown, indent=2) + (f"\n(... {elided} more detail fields)" if elided else "")


def _operation_in(text: str, payload: Any = None) -> str | None:
    match = _OPERATION_ID_RE.search(text) or _OPERATION_ID_RE.search(json.dumps(payload or ""))
    return match.group(0) if match else None

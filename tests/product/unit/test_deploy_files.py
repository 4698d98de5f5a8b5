"""The files a first deploy uses: the IAM policy of the deploying principal covers every resource type the
SAM-transformed template creates, ``samconfig.toml.example`` is what ``sam deploy`` reads and names only the
template's parameters, and the make targets wire the deploy and the demo as the guide says."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from comms_bridge_tools.local_stack import load_template, parameter_defaults
from tests.product.unit.test_template import EVERYTHING_ON, _sam_transform

REPO = Path(__file__).resolve().parents[3]
POLICY = REPO / "deploy" / "deploy-policy.json"

# What CloudFormation needs to create, update and delete each resource type, and what `sam deploy` and
# `sam delete` need around it. A resource type the template gains without an entry here fails the test.
NEEDED: dict[str, tuple[str, ...]] = {
    "(sam deploy)": (
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DescribeChangeSet",
        "cloudformation:DescribeStacks",
        "cloudformation:DescribeStackEvents",
        "cloudformation:GetTemplateSummary",
        "cloudformation:DeleteStack",
        "s3:CreateBucket",
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:DeleteObject",
    ),
    "AWS::Lambda::Function": (
        "lambda:CreateFunction",
        "lambda:DeleteFunction",
        "lambda:GetFunction",
        "lambda:UpdateFunctionCode",
        "lambda:UpdateFunctionConfiguration",
        "lambda:TagResource",
        "lambda:PutFunctionConcurrency",
        "iam:PassRole",
    ),
    "AWS::Lambda::LayerVersion": ("lambda:PublishLayerVersion", "lambda:DeleteLayerVersion"),
    "AWS::Lambda::Permission": ("lambda:AddPermission", "lambda:RemovePermission"),
    "AWS::Lambda::EventInvokeConfig": (
        "lambda:PutFunctionEventInvokeConfig",
        "lambda:UpdateFunctionEventInvokeConfig",
        "lambda:DeleteFunctionEventInvokeConfig",
    ),
    "AWS::Lambda::EventSourceMapping": (
        "lambda:CreateEventSourceMapping",
        "lambda:GetEventSourceMapping",
        "lambda:UpdateEventSourceMapping",
        "lambda:DeleteEventSourceMapping",
    ),
    "AWS::Kinesis::Stream": (
        "kinesis:CreateStream",
        "kinesis:DeleteStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:StartStreamEncryption",
    ),
    "AWS::IAM::Role": ("iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:PutRolePolicy", "iam:TagRole"),
    "AWS::DynamoDB::Table": (
        "dynamodb:CreateTable",
        "dynamodb:DeleteTable",
        "dynamodb:DescribeTable",
        "dynamodb:UpdateTable",
        "dynamodb:UpdateTimeToLive",
        "dynamodb:UpdateContinuousBackups",
    ),
    "AWS::Events::EventBus": ("events:CreateEventBus", "events:DeleteEventBus", "events:DescribeEventBus"),
    "AWS::Events::EventBusPolicy": ("events:PutPermission", "events:RemovePermission"),
    "AWS::Events::Archive": ("events:CreateArchive", "events:DeleteArchive", "events:DescribeArchive"),
    "AWS::Events::Rule": ("events:PutRule", "events:DeleteRule", "events:PutTargets", "events:RemoveTargets"),
    "AWS::EventSchemas::Registry": ("schemas:CreateRegistry", "schemas:DeleteRegistry"),
    "AWS::EventSchemas::Schema": ("schemas:CreateSchema", "schemas:DeleteSchema", "schemas:UpdateSchema"),
    "AWS::Scheduler::Schedule": (
        "scheduler:CreateSchedule",
        "scheduler:GetSchedule",
        "scheduler:UpdateSchedule",
        "scheduler:DeleteSchedule",
        "iam:PassRole",
    ),
    "AWS::Scheduler::ScheduleGroup": (
        "scheduler:CreateScheduleGroup",
        "scheduler:GetScheduleGroup",
        "scheduler:DeleteScheduleGroup",
        "scheduler:TagResource",
        "scheduler:ListTagsForResource",
    ),
    "AWS::SNS::Topic": ("sns:CreateTopic", "sns:DeleteTopic", "sns:SetTopicAttributes"),
    "AWS::SNS::Subscription": ("sns:Subscribe", "sns:Unsubscribe"),
    "AWS::SNS::TopicPolicy": ("sns:SetTopicAttributes",),
    "AWS::SQS::Queue": ("sqs:CreateQueue", "sqs:DeleteQueue", "sqs:GetQueueAttributes"),
    "AWS::SQS::QueuePolicy": ("sqs:SetQueueAttributes",),
    "AWS::KMS::Key": (
        "kms:CreateKey",
        "kms:PutKeyPolicy",
        "kms:EnableKeyRotation",
        "kms:ScheduleKeyDeletion",
    ),
    "AWS::Logs::LogGroup": ("logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy"),
    "AWS::CloudWatch::Alarm": ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"),
    "AWS::CloudWatch::Dashboard": ("cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards"),
}


def _policy() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(POLICY.read_text())
    return document


def _actions() -> list[str]:
    return [action for statement in _policy()["Statement"] for action in statement["Action"]]


def test_the_deploy_policy_covers_every_resource_type_of_the_template() -> None:
    accounts = "arn:aws:secretsmanager:us-east-1:123456789012:secret:comms/b-AbCdEf"
    parameters = {**parameter_defaults(load_template()), **EVERYTHING_ON, "TwilioSecretArns": accounts}
    output = _sam_transform({**parameters, "EventBusName": ""})
    types = {resource["Type"] for resource in output["Resources"].values()}
    assert types <= NEEDED.keys(), f"add what deploying {sorted(types - NEEDED.keys())} needs"
    granted = set(_actions())
    for resource_type in sorted(types | {"(sam deploy)"}):
        missing = [action for action in NEEDED[resource_type] if action not in granted]
        assert not missing, f"{resource_type}: {missing}"


def test_the_deploy_policy_may_run_every_transform_of_the_template() -> None:
    (stack,) = [s for s in _policy()["Statement"] if s["Sid"] == "CloudFormationStack"]
    for name in load_template()["Transform"]:
        assert f"arn:aws:cloudformation:*:aws:transform/{name.removeprefix('AWS::')}" in stack["Resource"]


def test_the_deploy_policy_is_well_formed_and_its_count_is_documented() -> None:
    policy = _policy()
    assert policy["Version"] == "2012-10-17"
    actions = _actions()
    assert len(actions) == len(set(actions)), "an action listed twice"
    assert all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action) for action in actions), "no wildcards"
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])
    pass_role = next(s for s in policy["Statement"] if s["Action"] == ["iam:PassRole"])
    assert pass_role["Condition"]["StringEquals"]["iam:PassedToService"] == [
        "lambda.amazonaws.com",
        "scheduler.amazonaws.com",
    ]
    secrets = next(
        s for s in policy["Statement"] if any(a.startswith("secretsmanager:") for a in s["Action"])
    )
    assert secrets["Action"] == ["secretsmanager:DescribeSecret"], "the deploy never reads a secret's value"
    assert f"It has {len(actions)} actions" in (REPO / "docs" / "deploy.md").read_text()


def test_the_samconfig_example_is_what_sam_reads_and_names_template_parameters() -> None:
    text = (REPO / "samconfig.toml.example").read_text()
    config = tomllib.loads(text)
    deploy = config["default"]["deploy"]["parameters"]
    assert config["default"]["global"]["parameters"]["stack_name"] == "comms-bridge"
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert any(
        value.startswith("TwilioSecretArn=arn:aws:secretsmanager:") for value in deploy["parameter_overrides"]
    )
    named = set(re.findall(r'"([A-Za-z]+)=', text))
    assert named, "the example shows parameters"
    assert named <= set(load_template()["Parameters"]), named - set(load_template()["Parameters"])
    assert "samconfig.toml" in (REPO / ".gitignore").read_text().splitlines()


def _make_n(*argv: str) -> str:
    completed = subprocess.run(
        ["make", "-n", *argv], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    return completed.stdout


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("deploy", ("sam deploy --guided", "-f samconfig.toml", "sam build --template template.yaml")),
        ("delete", (".venv-sam/bin/sam delete",)),
        ("demo", ("-m comms_bridge_tools.demo --fast",)),
        ("local", ("-m comms_bridge_tools.local_up --fast",)),
    ],
)
def test_make_targets_run_what_the_guide_says(target: str, expected: tuple[str, ...]) -> None:
    commands = _make_n(target, "ARGS=--fast")
    for command in expected:
        assert command in commands, commands


def test_the_demo_installs_only_what_it_needs() -> None:
    demo = (REPO / "requirements-demo.txt").read_text()
    dev = (REPO / "requirements-dev.txt").read_text()
    assert "-r layers/shared/requirements.txt" in demo
    for needed in ("moto[server", "PyYAML", "rich", "jsonschema"):
        assert needed in demo
    for toolchain in ("pytest", "ruff", "mypy", "mkdocs", "cfn-lint", "hypothesis", "boto3-stubs"):
        assert toolchain not in demo and toolchain in dev
    assert dev.splitlines()[0] == "-r requirements-demo.txt"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: \$\(DEMO_STAMP\) ", makefile, re.MULTILINE)
    assert re.search(r"^local: \$\(DEMO_STAMP\) ", makefile, re.MULTILINE)
    assert (
        "-r requirements-dev.txt"
        not in makefile[makefile.index("$(DEMO_STAMP):") : makefile.index("$(STAMP):")]
    )

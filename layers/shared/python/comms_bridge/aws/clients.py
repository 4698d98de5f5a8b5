"""The one botocore configuration every function's AWS clients use, and how they are built."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient

AWS_CLIENT_CONFIG: Final = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=3,
    read_timeout=10,
)
"""botocore retries throttling itself (3 attempts, standard mode); our own loops (unprocessed items, failed
entries, longer throttling spells: ``aws.retry``) sit on top. Short timeouts keep a hung call inside the
Lambda's time budget."""

DYNAMODB_CLIENT_CONFIG: Final = AWS_CLIENT_CONFIG.merge(Config(parameter_validation=False))
"""DynamoDB without botocore's client-side check of every parameter against the service model: it walked
each attribute of each item again and was most of the CPU of a large write (70 % of a bootstrap's). The
calls are typed (mypy, the service's stubs) and DynamoDB itself refuses a malformed request
(``ValidationException``, which fails the call at once: ``aws.errors``)."""


class AwsClients:
    """Clients for one region, built once per container (``AWS_ENDPOINT_URL`` is honoured by the SDK)."""

    def __init__(self, session: boto3.session.Session | None = None, region: str | None = None) -> None:
        self._session = session or boto3.session.Session()
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")

    def _client(self, service: str, config: Config = AWS_CLIENT_CONFIG) -> Any:
        return self._session.client(service, region_name=self.region, config=config)  # type: ignore[call-overload]

    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb", DYNAMODB_CLIENT_CONFIG)
        return client

    def events(self) -> EventBridgeClient:
        client: EventBridgeClient = self._client("events")
        return client

    def sns(self) -> SNSClient:
        client: SNSClient = self._client("sns")
        return client

    def secretsmanager(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self._client("secretsmanager")
        return client

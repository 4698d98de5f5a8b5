"""Fixtures shared by every suite. Servers are real processes' worth of HTTP on loopback, never patches."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from comms_bridge_tools.moto_server import FAKE_AWS_ENV, MotoServer

pytest_plugins = ["comms_sim.pytest_plugin"]

# Unit tests must never reach a real AWS account, even by accident.
for _key, _value in FAKE_AWS_ENV.items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "CommsBridge")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "comms-bridge")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server for the session; tests keep apart by using their own resource names."""
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Point every boto3 client created during the test at the moto server through AWS_ENDPOINT_URL."""
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    return moto_server

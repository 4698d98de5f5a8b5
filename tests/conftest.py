"""Fixtures shared by every suite. Servers are real processes' worth of HTTP on loopback, never patches."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """Handlers invoked in-process configure logging: Powertools copies its handler onto our library loggers
    and turns their propagation off, the handlers quiet urllib3 and botocore. Undo that on our loggers after
    each test so later tests' caplog still sees records. Powertools' own service loggers are left alone: the
    cached handler modules still hold them."""
    manager = logging.Logger.manager
    ours = ("comms_bridge", "comms_sim", "urllib3", "botocore")
    saved = {
        name: (logger.level, logger.propagate, list(logger.handlers))
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and name.startswith(ours)
    }
    yield
    for name, logger in list(manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.startswith(ours):
            level, propagate, handlers = saved.get(name, (logging.NOTSET, True, []))
            logger.setLevel(level)
            logger.propagate = propagate
            logger.handlers[:] = handlers

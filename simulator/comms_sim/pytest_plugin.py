"""pytest fixtures: ``comms_simulator`` (the story on a ManualClock) and ``comms_simulator_factory``.

Register with ``pytest_plugins = ["comms_sim.pytest_plugin"]`` (tests/conftest.py does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from comms_sim.clock import Clock, ManualClock
from comms_sim.scenario import STORY_START, Scenario
from comms_sim.server import SimulatorServer

__all__ = ["STORY_START", "SimulatorFactory", "comms_simulator", "comms_simulator_factory"]

SimulatorFactory = Callable[..., SimulatorServer]


@pytest.fixture
def comms_simulator() -> Iterator[SimulatorServer]:
    """A started simulator playing scenarios/story.yaml on a ManualClock at ``STORY_START``.

    Move time with ``comms_simulator.advance(seconds)``; credentials: ``.account_sid``/``.auth_token``
    (or ``.env()``); ground truth: ``.operations()``, ``.history``; faults: ``.faults.add(...)``.
    """
    with SimulatorServer(Scenario.story(), clock=ManualClock(STORY_START)) as simulator:
        yield simulator


@pytest.fixture
def comms_simulator_factory() -> Iterator[SimulatorFactory]:
    """Build and start simulators with any scenario/clock; all are stopped after the test.

    ``factory(scenario=None, clock=None, **SimulatorServer kwargs)``: scenario is a Scenario, a path,
    or None for the story; clock defaults to a ManualClock at ``STORY_START`` (or the scenario's start).
    """
    started: list[SimulatorServer] = []

    def factory(
        scenario: Scenario | str | Path | None = None, clock: Clock | None = None, **kwargs: Any
    ) -> SimulatorServer:
        loaded = Scenario.story() if scenario is None else scenario
        if not isinstance(loaded, Scenario):
            loaded = Scenario.load(loaded)
        if clock is None and loaded.start is None:
            clock = ManualClock(STORY_START)
        simulator = SimulatorServer(loaded, clock=clock, **kwargs).start()
        started.append(simulator)
        return simulator

    yield factory
    for simulator in started:
        simulator.stop()

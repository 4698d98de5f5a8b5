"""A stateful local simulator of the Twilio Comms API Email Operations endpoints.

A developer tool, not part of the Lambda layer, and deliberately independent of
``comms_bridge``: testing the client against it only means something if the two
were written separately from the documentation.
"""

from comms_sim.accounts import AccountSpec, load_accounts
from comms_sim.clock import AcceleratedClock, Clock, ManualClock, RealClock
from comms_sim.error_catalog import ERROR_CODES
from comms_sim.faults import FAULT_KINDS, FaultRule
from comms_sim.scenario import STORY_START, Scenario, scenarios_dir
from comms_sim.server import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
    HistoryEntry,
    RequestRecord,
    SimAccount,
    SimulatorServer,
)
from comms_sim.store import RETENTION_SECONDS

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_API_KEY_SECRET",
    "DEFAULT_API_KEY_SID",
    "DEFAULT_AUTH_TOKEN",
    "ERROR_CODES",
    "FAULT_KINDS",
    "RETENTION_SECONDS",
    "STORY_START",
    "AcceleratedClock",
    "AccountSpec",
    "Clock",
    "FaultRule",
    "HistoryEntry",
    "ManualClock",
    "RealClock",
    "RequestRecord",
    "Scenario",
    "SimAccount",
    "SimulatorServer",
    "load_accounts",
    "scenarios_dir",
]

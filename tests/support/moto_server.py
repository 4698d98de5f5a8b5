"""Re-export: the moto server helper lives in the tools package so the demo and benchmarks share it."""

from comms_bridge_tools.moto_server import FAKE_AWS_ENV, MotoServer, running_moto_server

__all__ = ["FAKE_AWS_ENV", "MotoServer", "running_moto_server"]

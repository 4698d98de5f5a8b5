"""Shared code of comms-bridge: the Comms API client, the core and the AWS adapters."""

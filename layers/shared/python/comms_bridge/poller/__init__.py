"""Pipeline 1, the scheduled poller: discovery, change detection, state, lease, the run and its runtime."""

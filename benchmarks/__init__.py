"""`make bench`: the cost of a poller run, measured against the Comms API simulator and moto server."""

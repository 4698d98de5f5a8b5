"""Pipeline 3: the Event Streams consumer (the push path, contract §7)."""

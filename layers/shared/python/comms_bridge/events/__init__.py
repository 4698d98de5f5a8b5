"""The event contract (contract §3): detail-types, eventKey, detail builders and the JSON Schemas."""

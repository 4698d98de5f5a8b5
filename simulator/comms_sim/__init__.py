"""A stateful local simulator of the Twilio Comms API Email Operations endpoints."""

"""Twilio Comms API: the HTTP client, its exceptions, the models and the credentials (no AWS here)."""

"""Hosts (contract §6): the Comms API root is https under .twilio.com, the Slack webhook https to
hooks.slack.com or hooks.slack-gov.com, loopback over http allowed for local runs, user info refused; the
functions refuse a bad one at start-up with a message that names the setting and never echoes the URL.
Before: any https host was accepted for both (and user info in a webhook URL too)."""

from __future__ import annotations

import pytest

from comms_bridge.enricher.alerts.webhook import webhook_url_from_secret
from comms_bridge.poller.config import PollerConfig
from comms_bridge.settings import SettingsError, check_comms_api_url, check_slack_webhook_url

SECRET = "XyZsEcReT"


@pytest.mark.parametrize(
    "url",
    [
        "https://comms.twilio.com/v1",
        "https://comms.dublin.ie1.twilio.com/v1",
        "http://127.0.0.1:8765/v1",
        "https://localhost/v1",
    ],
)
def test_twilio_hosts_and_loopback_are_accepted_as_the_api_root(url: str) -> None:
    assert check_comms_api_url(url, what="COMMS_API_BASE_URL") == url


@pytest.mark.parametrize(
    "url",
    [
        "https://comms.example.com/v1",
        "https://twilio.com.evil.example/v1",
        "https://eviltwilio.com/v1",
        "http://comms.twilio.com/v1",
        f"https://AC1:{SECRET}@comms.twilio.com/v1",
        "https://comms.twilio.com:bad/v1",
    ],
)
def test_other_api_roots_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(SettingsError, match="COMMS_API_BASE_URL") as info:
        check_comms_api_url(url, what="COMMS_API_BASE_URL")
    assert SECRET not in str(info.value) and url not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"https://hooks.slack.com/services/T0/B0/{SECRET}",
        f"https://hooks.slack-gov.com/services/T0/B0/{SECRET}",
        f"http://127.0.0.1:9000/services/{SECRET}",
    ],
)
def test_slack_hosts_and_loopback_are_accepted_as_the_webhook(url: str) -> None:
    assert check_slack_webhook_url(url, what="the Slack webhook") == url
    assert webhook_url_from_secret(url) == url


@pytest.mark.parametrize(
    "url",
    [
        f"https://hooks.slack.com.evil.example/services/{SECRET}",
        f"https://example.com/services/{SECRET}",
        f"http://hooks.slack.com/services/{SECRET}",
        f"https://user:{SECRET}@hooks.slack.com/services/T0/B0/X",
    ],
)
def test_other_webhooks_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(SettingsError) as info:
        webhook_url_from_secret(url)
    assert SECRET not in str(info.value)


def test_the_poller_refuses_a_foreign_api_root_at_start_up() -> None:
    env = {"COMMS_API_BASE_URL": "https://comms.example.com/v1", "STATE_TABLE_NAME": "t"}
    with pytest.raises(SettingsError, match="COMMS_API_BASE_URL") as info:
        PollerConfig.from_env(env)
    assert "example.com" not in str(info.value)

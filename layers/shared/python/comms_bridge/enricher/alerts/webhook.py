"""Posting to a Slack incoming webhook until Slack has the message once (contract §4).

The outcome of a failed post decides what happens next:

- transient (``429``, ``5xx``, a timeout, a connection error): posted again within the call, after
  ``Retry-After`` (429) or a short pause, while attempts and the time left allow; then
  :class:`SlackPostError` with ``retryable`` True, and the caller's retry (the queue's redelivery) posts
  again. A 5xx or a read timeout after Slack received the post may show it twice: the contract prefers
  that to an alert lost.
- the secret could not be read or the URL is refused: ``retryable`` too (an operator can fix the secret).
- permanent (another 4xx: a revoked webhook, an archived channel, a bad payload): ``retryable`` False,
  never posted again.

The webhook URL is a secret: it never appears in a log line or an exception (``requests`` puts URLs in
its messages, so those are never passed on).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import requests

from comms_bridge.aws.errors import error_code
from comms_bridge.aws.secrets import DEFAULT_SECRET_MAX_AGE_SECONDS, SecretsProviderLike
from comms_bridge.comms.transport import parse_http_date, parse_retry_after
from comms_bridge.settings import SettingsError, check_slack_webhook_url

DEFAULT_TIMEOUT_SECONDS: Final = 5.0
CONNECT_TIMEOUT_SECONDS: Final = 3.05
DEFAULT_MAX_ATTEMPTS: Final = 3
MAX_RETRY_AFTER_SECONDS: Final = 30.0
MIN_REQUEST_SECONDS: Final = 1.0
TRANSIENT_PAUSE_SECONDS: Final = 1.0
"""Pause before posting again after a 5xx or a transport error (times the attempt number)."""
WEBHOOK_SETTING: Final = "the Slack webhook URL (secret SLACK_WEBHOOK_SECRET_ARN)"

logger = logging.getLogger("comms_bridge.enricher.alerts.webhook")


class SlackPostError(Exception):
    """The message was not (knowingly) posted. ``kind``: throttled, rejected, server_error, timeout,
    connection, config. ``retryable``: a transient failure, worth posting again."""

    def __init__(self, summary: str, *, kind: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(summary)
        self.kind = kind
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class SlackPostResult:
    status: int
    attempts: int


def webhook_url_from_secret(value: object) -> str:
    """The secret's value is the URL itself or JSON ``{"webhookUrl": "..."}``: https to hooks.slack.com or
    hooks.slack-gov.com, or a loopback host (contract §6). The errors never echo the URL."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise SettingsError(f"{WEBHOOK_SETTING} must be a string")
    text = value.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise SettingsError(f"{WEBHOOK_SETTING} looks like JSON but does not parse") from None
        url = parsed.get("webhookUrl") if isinstance(parsed, dict) else None
        if not isinstance(url, str) or not url.strip():
            raise SettingsError(f"{WEBHOOK_SETTING}: the JSON has no 'webhookUrl' string")
        text = url.strip()
    return check_slack_webhook_url(text, what=WEBHOOK_SETTING)


class SecretWebhookUrl:
    """Reads the URL from Secrets Manager through Powertools Parameters (cached ``max_age`` seconds)."""

    def __init__(
        self,
        secret_arn: str,
        provider: SecretsProviderLike,
        *,
        max_age: int = DEFAULT_SECRET_MAX_AGE_SECONDS,
    ) -> None:
        self._arn = secret_arn
        self._provider = provider
        self._max_age = max_age

    def __call__(self) -> str:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError  # noqa: PLC0415

        try:
            value = self._provider.get(self._arn, max_age=self._max_age)
        except GetParameterError as exc:
            raise SlackPostError(
                f"could not read {WEBHOOK_SETTING}: {error_code(exc)}", kind="config", retryable=True
            ) from None
        try:
            return webhook_url_from_secret(value)
        except SettingsError as exc:
            raise SlackPostError(str(exc), kind="config", retryable=True) from None


class SlackWebhook:
    """Posts JSON payloads to the webhook from ``url``. ``time_left`` bounds waits and timeouts."""

    def __init__(
        self,
        url: Callable[[], str],
        *,
        session: requests.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        time_left: Callable[[], float] | None = None,
    ) -> None:
        self._url = url
        self._session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self.time_left = time_left
        self.requests_sent = 0

    def __repr__(self) -> str:
        return "SlackWebhook(url=<secret>)"

    def _left(self) -> float:
        return float("inf") if self.time_left is None else self.time_left()

    def post(self, payload: Mapping[str, Any]) -> SlackPostResult:
        url = self._url()
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            attempt += 1
            left = self._left()
            if left < MIN_REQUEST_SECONDS:
                raise SlackPostError("no time left to post to Slack", kind="timeout", retryable=True)
            try:
                response = self._send(url, body, min(self.timeout, left))
            except SlackPostError as exc:
                self._pause_or_raise(exc, attempt, TRANSIENT_PAUSE_SECONDS * attempt)
                continue
            status = response.status_code
            if 200 <= status < 300:
                return SlackPostResult(status=status, attempts=attempt)
            if status == 429:
                wait = parse_retry_after(
                    response.headers.get("Retry-After"),
                    response_date=parse_http_date(response.headers.get("Date")),
                    now=datetime.now(UTC),
                )
                throttled = SlackPostError(
                    "Slack webhook throttled (HTTP 429)", kind="throttled", retryable=True, status=429
                )
                self._pause_or_raise(throttled, attempt, 1.0 if wait is None else wait)
                continue
            if status >= 500:
                server_error = SlackPostError(
                    f"Slack webhook failed with HTTP {status}",
                    kind="server_error",
                    retryable=True,
                    status=status,
                )
                self._pause_or_raise(server_error, attempt, TRANSIENT_PAUSE_SECONDS * attempt)
                continue
            raise SlackPostError(
                f"Slack webhook refused the post for good (HTTP {status}: {_slack_reason(response)})",
                kind="rejected",
                retryable=False,
                status=status,
            )

    def _pause_or_raise(self, error: SlackPostError, attempt: int, wait: float) -> None:
        """Wait before the next attempt, or raise ``error`` (saying why) when there is none to make."""
        why = ""
        if attempt >= self.max_attempts:
            why = f"after {attempt} attempts"
        elif wait > self.max_retry_after:
            why = f"a wait of {wait:.0f}s is longer than {self.max_retry_after:.0f}s"
        elif wait + MIN_REQUEST_SECONDS > self._left():
            why = f"no time left to wait {wait:.0f}s"
        if why:
            raise SlackPostError(
                f"{error} {why}", kind=error.kind, retryable=error.retryable, status=error.status
            )
        logger.warning(
            "Slack webhook post failed (%s); posting again after %.1fs",
            error.kind,
            wait,
            extra={"retry_after": wait, "kind": error.kind},
        )
        self._sleep(wait)

    def _send(self, url: str, body: bytes, read_timeout: float) -> requests.Response:
        self.requests_sent += 1
        try:
            return self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=(min(CONNECT_TIMEOUT_SECONDS, read_timeout), read_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            # The exception text carries the URL: only its class is passed on.
            kind = "timeout" if isinstance(exc, requests.Timeout) else "connection"
            raise SlackPostError(
                f"Slack webhook request failed ({type(exc).__name__})", kind=kind, retryable=True
            ) from None


def _slack_reason(response: requests.Response) -> str:
    # Slack answers errors with a short plain-text code (invalid_payload, no_service, channel_not_found).
    text = response.text.strip().splitlines()[0] if response.text.strip() else ""
    return text[:60] if text.isascii() else "non-ASCII body"

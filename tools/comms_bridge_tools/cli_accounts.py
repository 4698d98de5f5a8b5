"""Which Twilio account a ``comms-bridge`` command is about: ``--account AC...`` (one the stack watches), or
the only one the stack watches. State, checkpoint, leases and stream records are kept per account, so a
command that reads or writes them must know which."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from comms_bridge.comms.client import CommsClient
    from comms_bridge.poller.runtime import PollerRuntime

ACCOUNT_SID: Final = re.compile(r"^AC[0-9a-fA-F]{32}$")
HELP: Final = (
    "the Twilio account (Account SID); needed when the stack watches several"
    " (TWILIO_SECRET_ARNS, TWILIO_SECRET_NAMES)"
)


class AccountError(Exception):
    """``--account`` is missing, malformed or not watched: printed as one line, exit status 2."""


@dataclass(frozen=True)
class Selected:
    account_sid: str
    secret_arn: str | None  # what the poller's event would name (None: the only one, or the environment's)
    comms: CommsClient


def account_sid(text: str) -> str:
    """argparse type: an Account SID."""
    if not ACCOUNT_SID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an Account SID (AC followed by 32 hex digits)")
    return text


def add_account_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", type=account_sid, default=None, metavar="AC...", help=HELP)


def select(runtime: PollerRuntime, account: str | None) -> Selected:
    """The account ``--account`` names, or the only watched one; an :class:`AccountError` naming the watched
    accounts otherwise."""
    accounts = runtime.accounts
    if account is None:
        if len(accounts.watched) > 1:
            watched = ", ".join(sorted(accounts.account_secrets())) or "none readable"
            raise AccountError(
                f"the stack watches {len(accounts.watched)} Twilio accounts: pass --account "
                f"(one of: {watched})"
            )
        comms = runtime.comms()
        return Selected(comms.account_sid, None, comms)
    secrets = accounts.account_secrets()
    if account not in secrets:
        watched = ", ".join(sorted(secrets)) or "none readable"
        raise AccountError(f"{account} is not an account this stack watches (watched: {watched})")
    secret_arn = secrets[account] or None
    return Selected(account, secret_arn, runtime.comms(secret_arn))

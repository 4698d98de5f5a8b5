"""The demo with several Twilio accounts (``make demo ARGS="--accounts 2"``, or an accounts file): which
accounts, the credentials each one's secret holds, how its operations are labelled, what its story must
produce, and the check that no event or alert crossed from one account to another."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from comms_bridge_tools.lambda_runtime import REPO_ROOT

if TYPE_CHECKING:
    from comms_sim.accounts import AccountSpec
    from comms_sim.scenario import Scenario

TWO_ACCOUNTS: Final = REPO_ROOT / "scenarios" / "two-accounts.yaml"
STORY: Final = REPO_ROOT / "scenarios" / "story.yaml"
STOREFRONT: Final = REPO_ROOT / "scenarios" / "storefront.yaml"


class AccountsInputError(ValueError):
    """``--accounts`` does not fit the scenario given."""


def demo_accounts(count: int, scenario: Scenario, *, default_story: bool) -> list[AccountSpec]:
    """``count`` accounts: for the story, the accounts of scenarios/two-accounts.yaml (two customers with
    different stories), then copies of the story under their own SIDs; for another scenario, copies of it."""
    from comms_sim.accounts import copies, load_accounts  # noqa: PLC0415 -- keeps --help fast

    if count < 1:
        raise AccountsInputError(f"--accounts must be at least 1, not {count}")
    if not default_story:
        return copies(scenario, count)
    specs = load_accounts(TWO_ACCOUNTS)[:count]
    if count > len(specs):
        extra = copies(scenario, count - len(specs) + 1)[1:]
        specs += extra
    return specs


def secrets(accounts: Sequence[AccountSpec]) -> list[dict[str, str]]:
    """What each account's Secrets Manager secret holds (contract section 2: the Auth Token form)."""
    return [{"accountSid": spec.sid, "authToken": spec.auth_token} for spec in accounts]


@dataclass(frozen=True)
class AccountOperation:
    account: str  # the account's name
    account_sid: str
    name: str  # the operation's name in its scenario

    @property
    def label(self) -> str:
        return f"{self.account}/{self.name}"


def operations(accounts: Sequence[AccountSpec]) -> dict[str, AccountOperation]:
    """operation id -> its account and name (ids are unique across accounts, as in Twilio)."""
    found: dict[str, AccountOperation] = {}
    for spec in accounts:
        for timeline in spec.scenario.operations:
            if timeline.id in found:
                raise AccountsInputError(f"operation {timeline.id} is in two accounts' scenarios")
            found[timeline.id] = AccountOperation(spec.name, spec.sid, timeline.name)
    return found


def expectations(
    accounts: Sequence[AccountSpec], by_scenario: Mapping[Path, Mapping[str, Any]]
) -> dict[str, Any]:
    """Each account's story expectations under its labels (``acme/newsletter``): for the scenarios the
    demo knows (by file), none for the others."""
    found: dict[str, Any] = {}
    for spec in accounts:
        source = spec.scenario.source
        known = by_scenario.get(source.resolve()) if source is not None else None
        # A copy of a story under other ids still plays that story: its names are the same.
        for name, expected in (known or {}).items():
            found[f"{spec.name}/{name}"] = expected
    return found


def crossed(detail: Mapping[str, Any], owners: Mapping[str, AccountOperation]) -> str | None:
    """Why an event's ``accountSid`` is not its operation's account (None: it is)."""
    owner = owners.get(str(detail.get("operationId")))
    if owner is None:
        return None
    given = detail.get("accountSid")
    if given != owner.account_sid:
        return f"event for {owner.label} carries accountSid {given}, not {owner.account_sid}"
    return None

"""Several Twilio accounts in one simulator: each with its own credentials and its own operations.

A request belongs to the account its Basic-auth username names: the Account SID itself, or an API key
that belongs to the account (as in Twilio, where an API key is created inside one account). An accounts
file names each account and the scenario it plays::

    name: two-customers
    accounts:
      - name: acme
        sid: AC0123456789abcdef0123456789abcdef   # optional: derived from the name
        authToken: acme-token                       # optional: derived from the sid
        apiKeys: {SK0123456789abcdef0123456789abcdef: acme-key-secret}   # optional
        scenario: story.yaml                        # a path (relative to this file) ...
      - name: globex
        scenario: {name: globex, now: 1h, operations: [...]}   # ... or a scenario inline

See docs/simulator.md ("Several accounts").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from comms_sim.scenario import Scenario

ACCOUNT_SID_RE: Final = re.compile(r"^AC[0-9a-f]{32}$")
API_KEY_SID_RE: Final = re.compile(r"^SK[0-9a-f]{32}$")
_TOP_KEYS: Final = frozenset({"name", "description", "accounts"})
_ACCOUNT_KEYS: Final = frozenset({"name", "sid", "authToken", "apiKeys", "scenario"})


def account_sid(seed: str) -> str:
    """A deterministic Account SID (``AC`` + 32 lowercase hex digits) for ``seed``."""
    return "AC" + hashlib.blake2b(f"account:{seed}".encode(), digest_size=16).hexdigest()


def auth_token(sid: str) -> str:
    """The simulator's Auth Token for an account that was given none (a local fake, 32 characters)."""
    return "sim-" + hashlib.blake2b(f"token:{sid}".encode(), digest_size=14).hexdigest()


@dataclass
class AccountSpec:
    """One account: its SID, its Auth Token, its API keys (key SID -> secret) and the scenario it plays."""

    sid: str
    scenario: Scenario
    auth_token: str = ""
    api_keys: dict[str, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if not ACCOUNT_SID_RE.fullmatch(self.sid):
            raise ValueError(f"account sid {self.sid!r} is not AC followed by 32 lowercase hex digits")
        for key in self.api_keys:
            if not API_KEY_SID_RE.fullmatch(key):
                raise ValueError(f"API key {key!r} is not SK followed by 32 lowercase hex digits")
        self.auth_token = self.auth_token or auth_token(self.sid)
        self.name = self.name or self.sid

    @property
    def credentials(self) -> dict[str, str]:
        """Every username/secret pair that authenticates as this account."""
        return {self.sid: self.auth_token, **self.api_keys}


def check_unique(accounts: Sequence[AccountSpec]) -> None:
    """No two accounts share a SID, an API key or a name: a username must name one account."""
    if not accounts:
        raise ValueError("at least one account is needed")
    seen: dict[str, str] = {}
    for spec in accounts:
        for username in (*spec.credentials, f"name:{spec.name}"):
            if username in seen:
                raise ValueError(f"{username.removeprefix('name:')!r} is used by two accounts")
            seen[username] = spec.sid


def reidentified(scenario: Scenario, salt: str) -> Scenario:
    """The same story under operation ids of its own (Twilio's ids are unique across accounts): every
    explicit or derived id is derived again from ``salt`` and the old id."""
    from comms_sim.ids import operation_id  # noqa: PLC0415 -- keeps this module's imports small

    data = scenario.to_dict()
    for spec in data["operations"]:
        spec["id"] = operation_id(f"{salt}:{spec['id']}")
    copy = Scenario.from_dict(data)
    copy.source = scenario.source
    return copy


def copies(scenario: Scenario, count: int, first: AccountSpec | None = None) -> list[AccountSpec]:
    """``count`` accounts playing ``scenario``: ``first`` (default: a derived SID) with the scenario's own
    operation ids, each other one under its own SID and operation ids."""
    if count < 1:
        raise ValueError(f"the number of accounts must be at least 1, not {count}")
    specs = [first or AccountSpec(account_sid("copy-0"), scenario, name="account-1")]
    for index in range(1, count):
        sid = account_sid(f"copy-{index}")
        specs.append(AccountSpec(sid, reidentified(scenario, sid), name=f"account-{index + 1}"))
    return specs


def is_accounts_file(data: object) -> bool:
    return isinstance(data, Mapping) and "accounts" in data


def accounts_from_dict(data: Mapping[str, Any], base: Path | None = None) -> list[AccountSpec]:
    """The accounts of a parsed accounts file; ``base``: where relative scenario paths start."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    raw = data.get("accounts")
    if not isinstance(raw, list) or not raw:
        raise ValueError("'accounts' is a non-empty list of {name, sid?, authToken?, apiKeys?, scenario}")
    specs = [_account(entry, index, base) for index, entry in enumerate(raw)]
    check_unique(specs)
    return specs


def _account(entry: object, index: int, base: Path | None) -> AccountSpec:
    if not isinstance(entry, Mapping):
        raise ValueError(f"account #{index} is not a mapping")
    name = str(entry.get("name") or f"account-{index + 1}")
    try:
        unknown = set(entry) - _ACCOUNT_KEYS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(_ACCOUNT_KEYS)}")
        keys = entry.get("apiKeys") or {}
        if not isinstance(keys, Mapping):
            raise ValueError("'apiKeys' maps API key SIDs to their secrets")
        return AccountSpec(
            sid=str(entry.get("sid") or account_sid(name)),
            scenario=_scenario(entry.get("scenario"), base),
            auth_token=str(entry.get("authToken") or ""),
            api_keys={str(key): str(secret) for key, secret in keys.items()},
            name=name,
        )
    except (ValueError, TypeError, OSError) as exc:
        raise ValueError(f"account #{index} ({name}): {exc}") from exc


def _scenario(value: object, base: Path | None) -> Scenario:
    if isinstance(value, Mapping):
        return Scenario.from_dict(value)
    if isinstance(value, str) and value:
        path = Path(value)
        if not path.is_absolute() and base is not None:
            path = base / path
        return Scenario.load(path)
    raise ValueError("'scenario' is a scenario file (relative to the accounts file) or a scenario mapping")


def read_file(path: str | os.PathLike[str]) -> object:
    """A YAML or JSON document (``.json``: JSON)."""
    source = Path(path)
    text = source.read_text(encoding="utf-8")
    return json.loads(text) if source.suffix == ".json" else yaml.load(text, Loader=yaml.CSafeLoader)


def load_accounts(path: str | os.PathLike[str]) -> list[AccountSpec]:
    """The accounts of an accounts file (its scenarios read relative to it)."""
    data = read_file(path)
    if not is_accounts_file(data):
        raise ValueError(f"{path}: an accounts file is a mapping with an 'accounts' list")
    assert isinstance(data, Mapping)
    return accounts_from_dict(data, Path(path).parent)


def load_setup(path: str | os.PathLike[str]) -> Scenario | list[AccountSpec]:
    """What a ``--scenario`` file describes: one scenario (one account), or an accounts file. Any problem is
    a one-line :class:`comms_sim.scenario.ScenarioError` naming the file (for command lines)."""
    from comms_sim.scenario import read_or_explain  # noqa: PLC0415

    def load(source: str | Path) -> Scenario | list[AccountSpec]:
        data = read_file(source)
        if is_accounts_file(data):
            assert isinstance(data, Mapping)
            return accounts_from_dict(data, Path(source).parent)
        return Scenario.load(source)

    return read_or_explain(Path(path), load)

"""Error records of failed emails (``GET /Emails/Operations/{id}/Errors``).

Twilio documents neither the endpoint nor its codes, so these codes are the simulator's own:
plausible five-digit codes in one block, one per failure cause, with a fixed message so that
consumers can group by code. Records are derived from (operation id, index): the same
operation always has the same errors, and a growing ``failed`` counter only appends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from comms_sim.ids import email_id

ERROR_CODES: Final[Mapping[int, str]] = {
    62001: "The recipient address is invalid.",
    62002: "The recipient's mailbox is full.",
    62003: "The recipient's mail server rejected the address (hard bounce).",
    62004: "The recipient is on the suppression list.",
    62005: "The recipient has unsubscribed.",
    62006: "The recipient's mail provider is rate limiting deliveries.",
    62007: "The recipient's mail provider rejected the content.",
}

DEFAULT_WEIGHTS: Final[Mapping[int, int]] = {
    62001: 5,
    62002: 2,
    62003: 3,
    62004: 3,
    62005: 2,
    62006: 1,
    62007: 1,
}

_DOMAINS: Final = ("example.com", "example.org", "example.net", "mail.example", "inbox.test")


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    code: int
    message: str
    email_id: str
    recipient: str

    def to_api_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "emailId": self.email_id,
            "recipient": self.recipient,
        }


def validate_weights(weights: Mapping[int, int]) -> dict[int, int]:
    checked: dict[int, int] = {}
    for code, weight in weights.items():
        if int(code) not in ERROR_CODES:
            raise ValueError(f"unknown error code {code}; known: {sorted(ERROR_CODES)}")
        if int(weight) < 0:
            raise ValueError(f"negative weight for error code {code}")
        checked[int(code)] = int(weight)
    if not any(checked.values()):
        raise ValueError("error code weights are all zero")
    return checked


@lru_cache(maxsize=256)
def _cycle(weights: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    """Codes in exact proportion to their weights, interleaved (smooth weighted round robin)."""
    total = sum(weight for _, weight in weights)
    current = dict.fromkeys((code for code, _ in weights), 0)
    order: list[int] = []
    for _ in range(total):
        for code, weight in weights:
            current[code] += weight
        best = max(current, key=lambda code: current[code])
        current[best] -= total
        order.append(best)
    return tuple(order)


def error_records(
    operation_id: str, start: int, stop: int, weights: Mapping[int, int] | None = None
) -> Sequence[ErrorRecord]:
    """Records ``start`` to ``stop - 1`` of an operation (index = order in which emails failed)."""
    cycle = _cycle(tuple(sorted((weights or DEFAULT_WEIGHTS).items())))
    records = []
    for index in range(start, stop):
        code = cycle[index % len(cycle)]
        digest = hashlib.blake2b(f"{operation_id}:{index}".encode(), digest_size=4).digest()
        domain = _DOMAINS[digest[0] % len(_DOMAINS)]
        records.append(
            ErrorRecord(
                code=code,
                message=ERROR_CODES[code],
                email_id=email_id(f"{operation_id}:{index}"),
                recipient=f"recipient{index + 1:05d}@{domain}",
            )
        )
    return records

"""Deterministic resource ids with the documented shape (``comms_operation_`` + a lowercase ULID body)."""

from __future__ import annotations

import hashlib
import re
from typing import Final

# Crockford base32, lowercase: no i, l, o, u -- exactly the alphabet the documented pattern allows.
_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"
OPERATION_ID_RE: Final = re.compile(r"^comms_operation_[0-7][a-hjkmnpqrstv-z0-9]{25,34}$")


def _body(seed: str) -> str:
    number = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=17).digest(), "big")
    rest = "".join([_ALPHABET[(number >> shift) & 31] for shift in range(0, 125, 5)])
    # The first ULID character only carries 3 bits of the timestamp, hence 0-7.
    return _ALPHABET[(number >> 125) % 8] + rest


def operation_id(seed: str) -> str:
    return f"comms_operation_{_body(seed)}"


def email_id(seed: str) -> str:
    return f"comms_email_{_body(seed)}"


def is_operation_id(value: str) -> bool:
    return OPERATION_ID_RE.fullmatch(value) is not None

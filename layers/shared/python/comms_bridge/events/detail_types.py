"""The four detail-types of contract §3 and the file of each one's JSON Schema."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

SCHEMA_VERSION: Final = "1.0"


class DetailType(StrEnum):
    """The only four detail-types of contract §3; a new one is a contract change."""

    STATUS_CHANGED = "Email Operation Status Changed"
    STATS_CHANGED = "Email Operation Stats Changed"
    STALLED = "Email Operation Stalled"
    ERRORS_SUMMARIZED = "Email Operation Errors Summarized"

    @property
    def schema_file(self) -> str:
        """File name of this detail-type's JSON Schema inside ``comms_bridge/events/schemas/``."""
        return _SCHEMA_FILES[self]


_SCHEMA_FILES: Final[Mapping[DetailType, str]] = {
    DetailType.STATUS_CHANGED: "email-operation-status-changed.json",
    DetailType.STATS_CHANGED: "email-operation-stats-changed.json",
    DetailType.STALLED: "email-operation-stalled.json",
    DetailType.ERRORS_SUMMARIZED: "email-operation-errors-summarized.json",
}


POLLER_DETAIL_TYPES: Final = (DetailType.STATUS_CHANGED, DetailType.STATS_CHANGED, DetailType.STALLED)

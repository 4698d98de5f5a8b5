"""The *Stalled* alert: what the alerter tells Slack and e-mail about an operation that stopped moving
(contract §3, §4), from the operation as the Comms API confirmed it. No errors are read and no event is
published for a stall: *Errors Summarized* follows reading an operation's errors (contract §3), and the
*Stalled* event itself is already on the bus."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from comms_bridge.comms.models import EmailOperationStats
from comms_bridge.enricher.confirmation import ConfirmedOperation
from comms_bridge.events.detail_types import DetailType
from comms_bridge.events.details import stats_rates


@dataclass(frozen=True)
class StallAlert:
    trigger_event_key: str
    operation: ConfirmedOperation

    trigger_detail_type = DetailType.STALLED.value

    @property
    def account_sid(self) -> str:
        return self.operation.account_sid

    @property
    def operation_id(self) -> str:
        return self.operation.operation_id

    @property
    def status(self) -> str:
        return self.operation.status

    @property
    def stats(self) -> Mapping[str, int]:
        return self.operation.stats

    @property
    def rates(self) -> dict[str, float]:
        return stats_rates(EmailOperationStats.model_validate(dict(self.stats)))

    @property
    def stalled_for_seconds(self) -> int:
        return self.operation.stalled_for_seconds or 0

    @property
    def updated_at(self) -> str:
        return self.operation.updated_at

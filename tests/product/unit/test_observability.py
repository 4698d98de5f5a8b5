"""Which counts become CloudWatch metrics (billed per metric) and which only log fields (no AWS)."""

from __future__ import annotations

import json

import pytest

from comms_bridge.enricher.adapters import PowertoolsTelemetry
from comms_bridge.observability import EMITTED_METRICS, build
from comms_bridge.poller.summary import RunStatus, RunSummary


@pytest.fixture(autouse=True)
def _namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CommsBridgeTest")
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)


def test_the_poller_emits_its_alarmed_and_graphed_counts_and_leaves_the_rest_to_its_summary_log() -> None:
    obs = build("poller")
    obs.metrics.clear_metrics()
    summary = RunSummary(status=RunStatus.PARTIAL, operations_seen=5, checkpoint_lag_seconds=3.0)
    summary.put_metrics(obs)
    obs.add("LeaseContended", "Count", 1)
    emitted = set(obs.metrics.metric_set)
    assert emitted == EMITTED_METRICS["poller"]
    assert "OperationsSeen" not in emitted and summary.as_dict()["operations_seen"] == 5
    assert "SkippedMalformedItems" in emitted, "contract §4: a skipped malformed operation is a metric"
    obs.metrics.clear_metrics()


def test_the_errors_enricher_logs_a_count_that_is_not_a_metric(capsys: pytest.CaptureFixture[str]) -> None:
    obs = build("errors")
    obs.metrics.clear_metrics()
    telemetry = PowertoolsTelemetry(obs)
    telemetry.count("AlertsCapped", 27)
    telemetry.count("SummariesPublished")
    assert set(obs.metrics.metric_set) == {"SummariesPublished"}
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"counted"' in line]
    assert [(line["counter"], line["value"]) for line in logged] == [("AlertsCapped", 27)]
    obs.metrics.clear_metrics()

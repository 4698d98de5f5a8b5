"""The generator's shapes: how a week's operations spend their active time (no server)."""

from __future__ import annotations

from collections import Counter

import pytest

from comms_sim.generate import SHAPES, Shape, generate_scenario


def _status_counts(shape: str) -> Counter[str | None]:
    scenario = generate_scenario(n_operations=20_000, active=200, changes_per_minute=20, seed=3, shape=shape)
    return Counter(op.status_at(scenario.now) for op in scenario.operations)


def test_both_shapes_keep_the_active_target_but_split_it_differently() -> None:
    scheduled, on_arrival = _status_counts("scheduled"), _status_counts("on-arrival")
    for counts in (scheduled, on_arrival):
        assert 150 < counts["SCHEDULED"] + counts["PROCESSING"] < 250
    assert scheduled["SCHEDULED"] > scheduled["PROCESSING"]
    assert on_arrival["SCHEDULED"] == 0


def test_on_arrival_operations_start_processing_when_created() -> None:
    scenario = generate_scenario(n_operations=2_000, active=20, seed=5, shape="on-arrival")
    assert all(op.status_at(op.created) == "PROCESSING" for op in scenario.operations)


def test_the_default_shape_is_the_scheduled_one_unchanged() -> None:
    default = generate_scenario(n_operations=300, seed=9)
    assert default.to_dict() == generate_scenario(n_operations=300, seed=9, shape="scheduled").to_dict()
    assert "shape" not in default.description
    assert "shape on-arrival" in generate_scenario(n_operations=300, seed=9, shape="on-arrival").description


@pytest.mark.parametrize(
    ("scheduled_share", "processing_share"), [(-0.1, 0.5), (0.5, 0.0), (0.0, 0.5), (1.5, 0.5)]
)
def test_impossible_shapes_are_refused(scheduled_share: float, processing_share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        Shape(scheduled_share, processing_share)


def test_unknown_shape_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="on-arrival"):
        generate_scenario(n_operations=10, shape="weekly")
    assert set(SHAPES) == {"scheduled", "on-arrival"}

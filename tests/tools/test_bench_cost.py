"""DynamoDB capacity units as the benchmark meters them, and the bill per million events (no servers)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.capacity import CapacityMeter, item_size, read_units, value_size, write_units
from benchmarks.cost import bill_per_million_events, cost_rows, main, units_per_event
from benchmarks.results import BenchResults, RunFigures, WindowResult

TABLE = "state"


def _s(text: str) -> dict[str, str]:
    return {"S": text}


def _item(pk: str, padding: int = 0) -> dict[str, Any]:
    return {"pk": _s(pk), "sk": _s("STATE"), "pad": _s("x" * padding)}


class Table:
    """Items by key, as the meter's lookup sees them; the "server" applies writes between before/after."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def lookup(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.items.get(key["pk"]["S"])

    def put(self, item: dict[str, Any]) -> None:
        self.items[item["pk"]["S"]] = item


def _call(meter: CapacityMeter, target: str, request: dict[str, Any], answer: dict[str, Any], apply=None):
    after = meter.before(f"DynamoDB_20120810.{target}", json.dumps(request).encode())
    if apply is not None:
        apply()
    assert after is not None
    after(200, json.dumps(answer).encode())


def test_item_sizes_follow_dynamodb_rules() -> None:
    assert value_size(_s("héllo")) == 6  # UTF-8 bytes
    assert value_size({"N": "12345"}) == 4  # 5 significant digits: 3 bytes + 1
    assert value_size({"N": "1000"}) == 2  # trailing zeros are not significant
    assert value_size({"BOOL": True}) == value_size({"NULL": True}) == 1
    assert value_size({"M": {"a": {"N": "1"}}}) == 3 + 1 + 2 + 1
    assert value_size({"L": [_s("ab"), _s("c")]}) == 3 + (2 + 1) + (1 + 1)
    assert item_size({"pk": _s("abc"), "n": {"N": "7"}}) == 2 + 3 + 1 + 2


def test_units_round_up_per_4_kb_read_and_1_kb_written() -> None:
    assert read_units(0, consistent=True) == 1.0  # a key without an item still costs a read
    assert read_units(4096, consistent=True) == 1.0 and read_units(4097, consistent=True) == 2.0
    assert read_units(4097, consistent=False) == 1.0
    assert write_units(0, 1024) == 1.0 and write_units(1025, 10) == 2.0


def test_a_write_is_billed_on_the_larger_image_and_a_transaction_twice() -> None:
    table = Table()
    meter = CapacityMeter(table.lookup)
    big = _item("a", padding=2000)
    _call(meter, "PutItem", {"TableName": TABLE, "Item": big}, {}, apply=lambda: table.put(big))
    small = _item("a")
    # The item shrinks: billed on its size before (2 KB).
    _call(
        meter,
        "UpdateItem",
        {"TableName": TABLE, "Key": {"pk": _s("a"), "sk": _s("STATE")}},
        {},
        apply=lambda: table.put(small),
    )
    actions = [{"Put": {"TableName": TABLE, "Item": _item(pk)}} for pk in ("b", "c")]
    _call(meter, "TransactWriteItems", {"TransactItems": actions}, {})
    _, writes, _ = meter.totals()
    assert writes == {"PutItem": 2.0, "UpdateItem": 2.0, "TransactWriteItems": 4.0}


def test_a_query_sums_its_items_and_a_batch_get_rounds_each() -> None:
    meter = CapacityMeter(Table().lookup)
    items = [_item(str(n), padding=1100) for n in range(8)]  # 1,113 bytes each: 8,904 in all
    _call(meter, "Query", {"TableName": TABLE, "ConsistentRead": False}, {"Items": items})
    keys = [{"pk": _s(str(n)), "sk": _s("STATE")} for n in range(3)]
    request = {"RequestItems": {TABLE: {"Keys": keys, "ConsistentRead": True}}}
    _call(meter, "BatchGetItem", request, {"Responses": {TABLE: items[:2]}})
    reads, _, _ = meter.totals()
    # 3 units of 4 KB at half price; two items and a missing key at one unit each
    assert reads == {"Query": 1.5, "BatchGetItem": 3.0}


def test_events_are_measured_as_eventbridge_sizes_entries() -> None:
    meter = CapacityMeter(Table().lookup)
    entry = {"Source": "twilio.comms", "DetailType": "Email Operation Stalled", "Detail": "{}"}
    assert meter.before("AWSEvents.PutEvents", json.dumps({"Entries": [entry, entry]}).encode()) is None
    assert meter.totals()[2] == 2 * (14 + 12 + 23 + 2)


def test_the_bill_per_million_events_from_a_run() -> None:
    run = RunFigures(
        events=100, dynamodb_read_units=50, dynamodb_write_units=200, wall_seconds=2.0, event_bytes=125_000
    )
    assert units_per_event(run) == (0.5, 2.0)
    bill = bill_per_million_events(run, memory_mb=512, archive_retention_days=30)
    assert bill.eventbridge == 1.0
    assert bill.dynamodb_reads == pytest.approx(0.5 * 0.125)
    assert bill.dynamodb_writes == pytest.approx(2.0 * 0.625)
    # 10,000 runs of 2 s at 0.5 GB, and as many requests.
    assert bill.lambda_compute == pytest.approx(10_000 * 2.0 * 0.5 * 0.0000133334)
    assert bill.lambda_requests == pytest.approx(10_000 * 0.20 / 1_000_000)
    # 1,250 + 250 bytes an event: 1.5 GB in, kept a month.
    assert bill.archive == pytest.approx(1.5 * (0.10 + 0.023))
    assert bill.total == pytest.approx(1.0 + bill.beyond_eventbridge)
    assert bill.to_dict()["dynamodb"] == pytest.approx(bill.dynamodb_reads + bill.dynamodb_writes)


def test_no_bill_per_event_without_events() -> None:
    with pytest.raises(ValueError, match="no event"):
        bill_per_million_events(RunFigures())


def test_the_cost_table_has_a_row_per_window_that_published(tmp_path, capsys) -> None:
    steady = RunFigures(events=100, dynamodb_read_units=50, dynamodb_write_units=200, wall_seconds=2.0)
    windows = [
        WindowResult("100k", 100_000, 1000, 100, bootstrap=RunFigures(), steady=steady),
        WindowResult("quiet", 1_000, 0, 0, bootstrap=RunFigures(), steady=RunFigures()),
    ]
    results = BenchResults("now", quick=True, environment={}, settings={}, windows=windows)
    assert [row[0] for row in cost_rows(results)] == ["100k"]
    path = results.save(tmp_path / "results.json")
    assert main([str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| window |") and table[2].startswith("| 100k | 0.50 | 2.00 |")

"""Kinesis on the local side: the CloudEvents a Twilio Event Streams sink writes, put into a (moto) Kinesis
stream, and read back as the event Lambda's event source mapping hands the stream consumer.

moto stores records but runs no event source mapping, so :class:`KinesisPump` plays that part: it reads
each shard from where it stopped and builds the standard Kinesis event (``Records[].kinesis.data`` base64,
``sequenceNumber``, ``partitionKey``, ``eventID``, ``eventSourceARN`` ...) in batches of the template's
size; what the handler reports in ``batchItemFailures`` is read again on the next :meth:`KinesisPump.pump`,
from the first failed record, as Lambda does (bounded by ``max_retries``, like the mapping).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

TEST_EVENT_TYPE: Final = "com.twilio.eventstreams.test-event"
OPERATION_EVENT: Final = "com.twilio.comms-api.operation.{}"
AWS_REGION: Final = "us-east-1"


def cloud_event(
    kind: str, data: Mapping[str, Any], *, time: str, event_id: str, data_as_string: bool
) -> bytes:
    """One Event Streams delivery as the Kinesis sink writes it: a CloudEvents object, its ``data`` an
    object or (as in Twilio's Kinesis example) JSON text of one."""
    envelope = {
        "specversion": "1.0",
        "type": kind,
        "source": "/v1/Emails/Operations" if kind != TEST_EVENT_TYPE else "Sink",
        "id": event_id,
        "dataschema": "https://events-schemas.twilio.com/" + kind.rsplit(".", 1)[-1] + "/1.json",
        "datacontenttype": "application/json",
        "time": time,
        "data": json.dumps(dict(data)) if data_as_string else dict(data),
    }
    return json.dumps(envelope).encode()


def operation_event(status: str, operation_id: str, *, time: str, event_id: str) -> bytes:
    return cloud_event(
        OPERATION_EVENT.format(status.lower()),
        {"operation_id": operation_id},
        time=time,
        event_id=event_id,
        data_as_string=False,
    )


def sink_test_event(test_id: str, *, account_sid: str, time: str) -> bytes:
    return cloud_event(
        TEST_EVENT_TYPE, {"test_id": test_id}, time=time, event_id=account_sid, data_as_string=True
    )


def lambda_records(
    stream_arn: str, shard_id: str, records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``GetRecords`` output as the ``Records`` of the Lambda event (the shape AWS documents)."""
    out = []
    for record in records:
        arrival = record.get("ApproximateArrivalTimestamp")
        out.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": record["PartitionKey"],
                    "sequenceNumber": record["SequenceNumber"],
                    "data": base64.b64encode(record["Data"]).decode(),
                    "approximateArrivalTimestamp": arrival.timestamp()
                    if isinstance(arrival, datetime)
                    else 0.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{record['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/comms-bridge-stream",
                "awsRegion": AWS_REGION,
                "eventSourceARN": stream_arn,
            }
        )
    return out


def raw_event(stream_arn: str, datas: Sequence[bytes], *, first_sequence: int = 1) -> dict[str, Any]:
    """A Kinesis event of ``datas`` as written to one shard (unit tests, no stream needed)."""
    records = [
        {"PartitionKey": f"pk-{i}", "SequenceNumber": f"{first_sequence + i:056d}", "Data": data}
        for i, data in enumerate(datas)
    ]
    return {"Records": lambda_records(stream_arn, "shardId-000000000000", records)}


@dataclass
class KinesisPump:
    """Reads ``stream_name`` in moto and hands batches to ``handler`` (event -> partial batch response)."""

    kinesis: Any
    stream_name: str
    handler: Callable[[dict[str, Any]], Mapping[str, Any]]
    batch_size: int = 25
    max_retries: int = 5
    positions: dict[str, str | None] = field(default_factory=dict)  # shard -> last sequence done
    retries: dict[str, int] = field(default_factory=dict)
    responses: list[Mapping[str, Any]] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)  # sequence numbers sent to the failure destination

    @property
    def stream_arn(self) -> str:
        description = self.kinesis.describe_stream_summary(StreamName=self.stream_name)
        return str(description["StreamDescriptionSummary"]["StreamARN"])

    def pump(self) -> int:
        """One pass over every shard: each batch of new records to the handler; the records handled."""
        arn = self.stream_arn
        handled = 0
        for shard in self.kinesis.list_shards(StreamName=self.stream_name)["Shards"]:
            shard_id = shard["ShardId"]
            for batch in self._batches(shard_id):
                done = self._deliver(arn, shard_id, batch)
                handled += done
                if done < len(batch):  # retried from the first failure on the next pass, in order
                    break
        return handled

    def _batches(self, shard_id: str) -> Iterator[list[Mapping[str, Any]]]:
        after = self.positions.get(shard_id)
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id}
        if after is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        iterator = self.kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
        records = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
        for start in range(0, len(records), self.batch_size):
            yield records[start : start + self.batch_size]

    def _deliver(self, arn: str, shard_id: str, batch: Sequence[Mapping[str, Any]]) -> int:
        response = self.handler({"Records": lambda_records(arn, shard_id, batch)})
        self.responses.append(response)
        failures = [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]
        if not failures:
            self.positions[shard_id] = batch[-1]["SequenceNumber"]
            return len(batch)
        first = min(failures, key=int)
        done = [r for r in batch if int(r["SequenceNumber"]) < int(first)]
        tries = self.retries.get(first, 0) + 1
        if tries > self.max_retries:  # the mapping's bound: the batch's range goes to the destination
            self.given_up.append(first)
            self.positions[shard_id] = batch[-1]["SequenceNumber"]
            return len(batch)
        self.retries[first] = tries
        if done:
            self.positions[shard_id] = done[-1]["SequenceNumber"]
        return len(done)

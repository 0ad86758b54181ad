"""The local stack's DynamoDB stream event source: Lambda's event shape (records read as the service sends
them make the event boto3's would), and what it does with failures (partial batch failures, bisecting,
retries, the on-failure queue), with a function that fails on cue."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from docpipe_local.moto_server import CREDENTIALS, MotoServer
from docpipe_local.runtime import Invocation
from docpipe_local.streams import LambdaShapedRecords, StreamPoller, stream_event
from docpipe_local.template import StreamSource

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/docpipe-local-JobsTable/stream/2026-11-18T00:00:00.000"


def record(n: int) -> dict[str, Any]:
    return {
        "eventID": f"e{n}",
        "eventName": "MODIFY",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 11, 18, 9, 0, n, tzinfo=UTC),
            "Keys": {"jobId": {"S": f"job-{n}"}},
            "SequenceNumber": str(100 + n),
        },
    }


class Function:
    """A function that fails (an error, or a partial batch failure) for batches holding a poisoned record."""

    def __init__(self, poisoned: set[str], partial: bool) -> None:
        self.poisoned, self.partial = poisoned, partial
        self.batches: list[list[str]] = []
        self.spec = type("Spec", (), {"logical": "NotifierFunction"})()
        self.arn = "arn:aws:lambda:us-east-1:123456789012:function:docpipe-local-NotifierFunction"

    def invoke(self, event: dict[str, Any]) -> Invocation:
        keys = [r["dynamodb"]["Keys"]["jobId"]["S"] for r in event["Records"]]
        self.batches.append(keys)
        bad = [r for r in event["Records"] if r["dynamodb"]["Keys"]["jobId"]["S"] in self.poisoned]
        if not bad:
            return Invocation("ok", {"batchItemFailures": []})
        if self.partial:
            return Invocation("ok", {"batchItemFailures": [{"itemIdentifier": bad[0]["dynamodb"]["SequenceNumber"]}]})
        return Invocation("error", error={"errorMessage": "boom"})


class Streams:
    def get_shard_iterator(self, **kwargs: Any) -> dict[str, str]:
        return {"ShardIterator": "it-0"}


class Queue:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, QueueUrl: str, MessageBody: str) -> None:
        self.sent.append(json.loads(MessageBody))


def poller(function: Function, queue: Queue, bisect: bool, retries: int = 2) -> StreamPoller:
    source = StreamSource("JobsStream", "JobsTable", 100, "LATEST", bisect, retries, True, "arn:dlq")
    return StreamPoller(function, Streams(), queue, source, ARN, "shard-1", "us-east-1", threading.Event(), "dlq-url")  # type: ignore[arg-type]


def test_the_event_is_lambdas_with_creation_times_in_epoch_seconds() -> None:
    (event,) = stream_event([record(1)], ARN, "us-east-1")["Records"]

    assert event["eventSourceARN"] == ARN and event["awsRegion"] == "us-east-1"
    assert event["dynamodb"]["ApproximateCreationDateTime"] == datetime(2026, 11, 18, 9, 0, 1, tzinfo=UTC).timestamp()


def test_a_partial_failure_retries_from_the_failed_record_and_then_gives_it_to_the_on_failure_queue() -> None:
    function, queue = Function({"job-3"}, partial=True), Queue()

    poller(function, queue, bisect=False).deliver([record(n) for n in range(1, 6)])

    assert function.batches[0] == ["job-1", "job-2", "job-3", "job-4", "job-5"]
    assert function.batches[1:] == [["job-3", "job-4", "job-5"]] * 2  # from the failed record, twice more
    (failure,) = queue.sent
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["DDBStreamBatchInfo"]["startSequenceNumber"] == "103"
    assert failure["DDBStreamBatchInfo"]["endSequenceNumber"] == "105"


def test_bisecting_isolates_the_poisoned_record_and_delivers_the_rest() -> None:
    function, queue = Function({"job-2"}, partial=False), Queue()

    poller(function, queue, bisect=True, retries=3).deliver(
        [record(n) for n in range(1, 5)]
    )  # enough to bisect down to one

    delivered = {key for batch in function.batches for key in batch if "job-2" not in batch}
    assert delivered == {"job-1", "job-3", "job-4"}
    assert ["job-2"] in function.batches
    assert [f["DDBStreamBatchInfo"]["batchSize"] for f in queue.sent] == [1]


class OnceStreams(Streams):
    """A shard that holds ``records`` once, then nothing new."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        records, self.records = self.records[:Limit], self.records[Limit:]
        return {"NextShardIterator": "it-next", "Records": records}


class Timed(Function):
    """Records when each batch ran; a batch holding ``slow``'s record takes a second."""

    def __init__(self, slow: str) -> None:
        super().__init__(set(), partial=True)
        self.slow = slow
        self.ran: list[tuple[float, float, list[tuple[str, str]]]] = []  # (start, end, [(key, sequence)])

    def invoke(self, event: dict[str, Any]) -> Invocation:
        started = time.monotonic()
        records = [(r["dynamodb"]["Keys"]["jobId"]["S"], r["dynamodb"]["SequenceNumber"]) for r in event["Records"]]
        if any(key == self.slow for key, _ in records):
            time.sleep(1)
        self.ran.append((started, time.monotonic(), records))
        return Invocation("ok", {"batchItemFailures": []})


def keyed(key: str, sequence: int) -> dict[str, Any]:
    return {
        "eventID": f"e{sequence}",
        "eventName": "MODIFY",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 11, 18, 9, 0, 0, tzinfo=UTC),
            "Keys": {"jobId": {"S": key}, "at": {"N": str(sequence)}},  # a sort key never splits a partition
            "SequenceNumber": str(sequence),
        },
    }


def test_parallel_lanes_keep_each_keys_order_deliver_once_and_a_slow_batch_holds_only_its_lane() -> None:
    # given a shard with 3 records of each of 30 keys, interleaved; the batch with job-0's records is slow
    keys = [f"job-{n}" for n in range(30)]
    records = [keyed(key, 1000 + 30 * round_ + n) for round_ in range(3) for n, key in enumerate(keys)]
    function, stop = Timed("job-0"), threading.Event()
    source = StreamSource("JobsStream", "JobsTable", 10, "LATEST", True, 2, True, None, parallelization=3)
    poller = StreamPoller(
        function, OnceStreams(records), Queue(), source, ARN, "shard-1", "us-east-1", stop, None, "jobId"
    )  # type: ignore[arg-type]
    # when it is polled until every record is delivered
    poller.start()
    deadline = time.monotonic() + 20
    while sum(len(batch) for _, _, batch in function.ran) < len(records) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    poller.join(timeout=5)
    delivered = [item for _, _, batch in sorted(function.ran) for item in batch]
    # then each record once, and each key's records in the order of the stream
    assert sorted(delivered) == sorted(
        (r["dynamodb"]["Keys"]["jobId"]["S"], r["dynamodb"]["SequenceNumber"]) for r in records
    )
    for key in keys:
        assert [int(s) for k, s in delivered if k == key] == sorted(int(s) for k, s in delivered if k == key)
    # and each key went to one lane, a partition key's records together whatever their sort key
    lanes = {key: {poller._lane_of(keyed(key, n)) for n in range(5)} for key in keys}
    assert all(len(lane) == 1 for lane in lanes.values()) and len({next(iter(v)) for v in lanes.values()}) == 3
    # and while job-0's slow batch ran, other lanes' batches ran and ended
    slow_start, slow_end, _ = next(run for run in function.ran if any(k == "job-0" for k, _ in run[2]))
    others = [run for run in function.ran if lanes[run[2][0][0]] != lanes["job-0"]]
    assert any(slow_start <= end < slow_end for _, end, _ in others)


def test_a_records_lane_is_picked_by_its_tables_partition_key() -> None:
    from pathlib import Path

    from docpipe_local.push_local import _partition_key
    from docpipe_local.template import Template

    template = Template.load(Path(__file__).resolve().parents[2] / "template.yaml")
    assert (_partition_key(template, "JobsTable"), _partition_key(template, "FilesTable")) == ("jobId", "hash")
    assert _partition_key(template, "NoSuchTable") is None


class BusyStreams(Streams):
    """A shard with a new record at every read, as under a burst; counts the reads."""

    def __init__(self) -> None:
        self.reads = 0

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        self.reads += 1
        return {"NextShardIterator": "it-next", "Records": [keyed(f"job-{self.reads}", 1000 + self.reads)]}


def test_a_busy_shard_is_read_at_lambdas_rate_not_again_at_once() -> None:
    # given a shard that always has a record to give, and a function that takes no time
    streams, function, stop = BusyStreams(), Timed("none"), threading.Event()
    source = StreamSource("JobsStream", "JobsTable", 100, "LATEST", True, 2, True, None)
    poller = StreamPoller(function, streams, Queue(), source, ARN, "shard-1", "us-east-1", stop, None, "jobId")  # type: ignore[arg-type]
    # when it is polled for a second and a half
    poller.start()
    time.sleep(1.5)
    stop.set()
    poller.join(timeout=5)
    # then it was read about every POLL_SECONDS (0.25 s: 7 reads at most), and each record delivered in order;
    # a read that the stop caught before its delivery is the only one that may be missing
    assert 3 <= streams.reads <= 7
    delivered = [record for _, _, batch in function.ran for record in batch]
    assert streams.reads - 1 <= len(delivered) <= streams.reads
    assert delivered == [(f"job-{n}", str(1000 + n)) for n in range(1, len(delivered) + 1)]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "emulator.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_records_read_as_sent_are_the_event_boto3s_would_make(emulator: MotoServer) -> None:
    # given a table whose stream holds an insert and a change of every kind of value
    kwargs = {
        "endpoint_url": emulator.url,
        "region_name": "us-east-1",
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": CREDENTIALS["AWS_SESSION_TOKEN"],
    }
    dynamodb, streams = boto3.client("dynamodb", **kwargs), boto3.client("dynamodbstreams", **kwargs)
    dynamodb.create_table(
        TableName="jobs",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "jobId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "jobId", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = dynamodb.describe_table(TableName="jobs")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    item = {
        "jobId": {"S": "job-1"},
        "size": {"N": "12.5"},
        "digest": {"B": b"\x00\xffbytes"},
        "tags": {"SS": ["a", "b"]},
        "parts": {"BS": [b"\x01", b"\x02"]},
        "tasks": {"M": {"scan": {"M": {"state": {"S": "ready"}, "done": {"BOOL": True}, "none": {"NULL": True}}}}},
        "history": {"L": [{"S": "queued"}, {"N": "3"}]},
    }
    dynamodb.put_item(TableName="jobs", Item=item)
    dynamodb.update_item(
        TableName="jobs",
        Key={"jobId": {"S": "job-1"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": {"S": "ready"}},
    )

    def read(reader: Any) -> list[dict[str, Any]]:
        iterator = reader.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        return list(reader.get_records(ShardIterator=iterator["ShardIterator"], Limit=100)["Records"])

    # when the stream is read through boto3, and as sent
    through_boto3, as_sent = read(streams), read(LambdaShapedRecords(streams, CREDENTIALS))

    # then the two events are the same, binary values in base64 and times in epoch seconds
    theirs = stream_event(through_boto3, ARN, "us-east-1")
    mine = stream_event(as_sent, ARN, "us-east-1", shaped=True)
    assert len(mine["Records"]) == 2
    assert json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True)
    assert mine["Records"][0]["dynamodb"]["NewImage"]["digest"] == {"B": base64.b64encode(b"\x00\xffbytes").decode()}
    assert isinstance(mine["Records"][1]["dynamodb"]["ApproximateCreationDateTime"], float)
    # and a read the service refuses is botocore's ClientError
    with pytest.raises(ClientError):
        LambdaShapedRecords(streams, CREDENTIALS).get_records(ShardIterator="not-an-iterator", Limit=10)

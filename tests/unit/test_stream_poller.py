"""The local stack's DynamoDB stream event source: Lambda's event shape, and what it does with failures
(partial batch failures, bisecting, retries, the on-failure queue), with a function that fails on cue."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

from docpipe_local.runtime import Invocation
from docpipe_local.streams import StreamPoller, stream_event
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

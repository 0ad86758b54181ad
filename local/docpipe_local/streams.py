"""DynamoDB stream event source mappings: read the table's stream, build Lambda's DynamoDB stream event,
invoke, and honour the mapping's failure settings.

Each ``Type: DynamoDB`` event source becomes one poller thread per shard. At most every
``POLL_SECONDS`` (Lambda's base rate: four reads of a shard a second) it calls ``GetRecords`` (up to
``BatchSize``) on the emulator's DynamoDB Streams and, when there are records, invokes the function
with ``{"Records": [...]}``, each record as Lambda delivers it
(``eventSourceARN``, ``awsRegion``, ``ApproximateCreationDateTime`` in epoch seconds). After a failed
invocation the batch is retried; with ``ReportBatchItemFailures`` from the first reported sequence
number, with ``BisectBatchOnFunctionError`` in halves. A record still failing after
``MaximumRetryAttempts`` is described on the ``OnFailure`` queue, as Lambda does, and skipped.

With a ``ParallelizationFactor`` above 1, Lambda processes that many batches of one shard at once and
keeps the order of each partition key's records. The poller does the same: each record goes to one of
that many lanes by a hash of its partition key, each lane invokes with its records in order (up to
``BatchSize`` at a time), and a lane's slow batch holds only the keys hashed to it. The poller reads on
while every lane holds fewer than ``BatchSize`` records waiting.

The local stack reads with :class:`LambdaShapedRecords`: ``GetRecords``' JSON as the service sends it is
already the shape of Lambda's records (times in epoch seconds, binary values in base64), so it is parsed
once by ``json`` and delivered as it is. Read through boto3 instead, every record's images were turned
into Python values by botocore and back by :func:`_plain`: a third of the local stack's own CPU under the
tenants bench, where the pollers that hand the functions their messages share that process.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import zlib
from collections import deque
from datetime import datetime
from typing import Any

import requests
from botocore.exceptions import BotoCoreError, ClientError

from docpipe_local.runtime import FunctionRuntime
from docpipe_local.template import StreamSource

log = logging.getLogger("docpipe.local")
# How often a shard is read, busy or idle, as Lambda does: the floor of the push latency. At 0.1 s, and
# at once again after every read that found records, the two streams' reads were a fifth of the
# emulator's DynamoDB requests under a burst (and 34 requests a photo at a photo a second).
POLL_SECONDS = 0.25


def _plain(value: Any) -> Any:
    """A stream record from boto3, back in the JSON shape Lambda's event has."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


def stream_event(records: list[dict[str, Any]], stream_arn: str, region: str, shaped: bool = False) -> dict[str, Any]:
    """Lambda's event of ``records``: boto3's (made plain), or already in Lambda's shape (``shaped``)."""
    plain = records if shaped else [_plain(r) for r in records]
    return {"Records": [{**r, "eventSourceARN": stream_arn, "awsRegion": region} for r in plain]}


class LambdaShapedRecords:
    """A DynamoDB Streams client whose ``GetRecords`` answers the service's JSON as it is (see the
    module's docstring), signed with ``credentials`` for the ``client``'s endpoint and region; every other
    call is the ``client``'s. Errors are botocore's: an error answer a ``ClientError``, an endpoint that
    cannot be reached an ``EndpointConnectionError``."""

    lambda_shaped = True
    TARGET = "DynamoDBStreams_20120810.GetRecords"

    def __init__(self, client: Any, credentials: dict[str, str]) -> None:
        from botocore.credentials import Credentials

        self.client = client
        self.url = client.meta.endpoint_url.rstrip("/") + "/"
        self.credentials = Credentials(
            credentials["AWS_ACCESS_KEY_ID"],
            credentials["AWS_SECRET_ACCESS_KEY"],
            credentials.get("AWS_SESSION_TOKEN"),
        )
        self._session = requests.Session()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # boto3's parameter names
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import EndpointConnectionError

        body = json.dumps({"ShardIterator": ShardIterator, "Limit": Limit})
        headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": self.TARGET}
        request = AWSRequest(method="POST", url=self.url, data=body, headers=headers)
        SigV4Auth(self.credentials, "dynamodb", self.client.meta.region_name).add_auth(request)
        try:
            response = self._session.post(self.url, data=body, headers=dict(request.headers), timeout=60)
        except requests.RequestException as exc:
            raise EndpointConnectionError(endpoint_url=self.url, error=exc) from exc
        try:
            answer = response.json() if response.content else {}
        except ValueError:  # an error answered in plain text
            answer = {}
        if response.status_code != 200 or not isinstance(answer, dict):
            answer = answer if isinstance(answer, dict) else {}
            code = str(answer.get("__type", response.status_code)).rsplit("#", 1)[-1]
            error = {"Code": code, "Message": answer.get("message") or answer.get("Message") or response.text[:300]}
            raise ClientError({"Error": error}, "GetRecords")
        return dict(answer)


class StreamPoller(threading.Thread):
    def __init__(
        self,
        runtime: FunctionRuntime,
        streams: Any,
        sqs: Any,
        source: StreamSource,
        stream_arn: str,
        shard_id: str,
        region: str,
        stop: threading.Event,
        on_failure_url: str | None = None,
        partition_key: str | None = None,
    ) -> None:
        """``partition_key``: the table's partition key attribute, which picks a record's lane when the
        source's ``parallelization`` is above 1 (every key attribute, when it is not given)."""
        super().__init__(name=f"{runtime.spec.logical}-{source.name}", daemon=True)
        self.runtime, self.streams, self.sqs, self.source = runtime, streams, sqs, source
        self.stream_arn, self.shard_id, self.region = stream_arn, shard_id, region
        self.stop_event, self.on_failure_url = stop, on_failure_url
        position = "TRIM_HORIZON" if source.starting_position == "TRIM_HORIZON" else "LATEST"
        # the iterator is taken now, while the stack starts: a LATEST mapping sees every write after it
        self.iterator: str | None = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType=position
        )["ShardIterator"]
        self.invocations = 0
        self._counting = threading.Lock()
        self.partition_key = partition_key
        self.shaped = bool(getattr(streams, "lambda_shaped", False))  # its records need no _plain
        self.lanes = [_Lane(self, n) for n in range(source.parallelization)] if source.parallelization > 1 else []

    def run(self) -> None:
        for lane in self.lanes:
            lane.start()
        last_read = 0.0
        while not self.stop_event.is_set() and self.iterator:
            if any(lane.waiting >= self.source.batch_size for lane in self.lanes):
                self.stop_event.wait(POLL_SECONDS / 2)  # a lane is behind: its keys' records wait in the stream
                continue
            pause = last_read + POLL_SECONDS - time.monotonic()
            if pause > 0 and self.stop_event.wait(pause):
                break
            last_read = time.monotonic()
            try:
                response = self.streams.get_records(
                    ShardIterator=self.iterator, Limit=min(self.source.batch_size, 1000)
                )
            except (BotoCoreError, ClientError) as exc:
                if not self.stop_event.is_set():
                    log.warning("reading %s failed: %s", self.stream_arn, exc)
                self.stop_event.wait(1)
                continue
            self.iterator = response.get("NextShardIterator")
            records = response.get("Records") or []
            if records and self.lanes:
                for record in records:
                    self.lanes[self._lane_of(record)].put(record)
            elif records:
                try:
                    self.deliver(records)
                except Exception:  # a poller thread must outlive any one bad batch
                    log.exception("delivering %s records failed unexpectedly", self.stream_arn)

    def _lane_of(self, record: dict[str, Any]) -> int:
        keys = (record.get("dynamodb") or {}).get("Keys") or {}
        if self.partition_key is not None:
            keys = {self.partition_key: keys.get(self.partition_key)}
        return zlib.crc32(json.dumps(_plain(keys), sort_keys=True).encode()) % len(self.lanes)

    def deliver(self, records: list[dict[str, Any]]) -> None:
        """Invoke with ``records`` until each is delivered or given up on (then sent to the on-failure queue)."""
        pending = [records]
        attempts = 0
        while pending and not self.stop_event.is_set():
            batch = pending.pop(0)
            failed_from = self._invoke(batch)
            if failed_from is None:
                continue
            attempts += 1
            rest = batch[failed_from:]
            if self.source.max_retries >= 0 and attempts > self.source.max_retries:
                self._give_up(rest)
                continue
            if self.source.bisect and len(rest) > 1:
                half = len(rest) // 2
                pending[:0] = [rest[:half], rest[half:]]
            else:
                pending.insert(0, rest)
                self.stop_event.wait(min(0.1 * 2**attempts, 5))

    def _invoke(self, batch: list[dict[str, Any]]) -> int | None:
        """Invoke once: None when the whole batch is done, else the index of the first record to retry."""
        invocation = self.runtime.invoke(stream_event(batch, self.stream_arn, self.region, self.shaped))
        with self._counting:  # lanes invoke side by side
            self.invocations += 1
        if not invocation.ok:
            log.warning("%s failed: %s", self.runtime.spec.logical, (invocation.error or {}).get("errorMessage"))
            return 0
        failures = (invocation.result or {}).get("batchItemFailures") if isinstance(invocation.result, dict) else None
        if not self.source.report_failures or not failures:
            return None
        sequences = [r["dynamodb"]["SequenceNumber"] for r in batch]
        first = failures[0].get("itemIdentifier") if isinstance(failures[0], dict) else None
        return sequences.index(first) if first in sequences else 0

    def _give_up(self, records: list[dict[str, Any]]) -> None:
        log.warning("%s: %d stream records dropped after their retries", self.runtime.spec.logical, len(records))
        if not self.on_failure_url or not records:
            return
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        body = {
            "requestContext": {
                "condition": "RetryAttemptsExhausted",
                "functionArn": self.runtime.arn,
                "approximateInvokeCount": self.source.max_retries + 1,
            },
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "DDBStreamBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        self.sqs.send_message(QueueUrl=self.on_failure_url, MessageBody=json.dumps(body))


class _Lane(threading.Thread):
    """One of a shard's batches processed at once (``ParallelizationFactor``): the records of the keys
    hashed to it, delivered in the order they were read."""

    def __init__(self, poller: StreamPoller, index: int) -> None:
        super().__init__(name=f"{poller.name}-{index}", daemon=True)
        self.poller = poller
        self._records: deque[dict[str, Any]] = deque()
        self._ready = threading.Condition()

    @property
    def waiting(self) -> int:
        return len(self._records)

    def put(self, record: dict[str, Any]) -> None:
        with self._ready:
            self._records.append(record)
            self._ready.notify()

    def run(self) -> None:
        stop = self.poller.stop_event
        while not stop.is_set():
            with self._ready:
                if not self._records:
                    self._ready.wait(0.5)
                batch = [self._records.popleft() for _ in range(min(len(self._records), self.poller.source.batch_size))]
            if not batch:
                continue
            try:
                self.poller.deliver(batch)
            except Exception:  # a lane must outlive any one bad batch
                log.exception("delivering %s records failed unexpectedly", self.poller.stream_arn)

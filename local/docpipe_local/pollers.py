"""SQS event source mappings: receive, build the Lambda SQS event, invoke, settle.

Each mapping runs ``MaximumConcurrency`` poller threads (capped by the function's own concurrency),
and, on a fair queue, a quiet-seat poller that runs only while a heavy tenant's invocation of the
queue does (:meth:`~docpipe_local.fairness.FairDispatcher.heavy_started`).
A poller takes a function slot before it receives, so messages never wait out their visibility
timeout behind a throttle. The local stack gives the pollers of a queue one
:class:`~docpipe_local.fairness.FairDispatcher`, which delivers quiet tenants' messages before a
noisy tenant's backlog as an SQS fair queue does; a poller without one receives from SQS directly,
first in, first out. After the invocation: success deletes the batch (with a dispatcher, its
:class:`~docpipe_local.settler.Settler` sends the delete while the poller goes on); with
``ReportBatchItemFailures`` only the listed messages stay (an unknown or empty identifier fails the
whole batch, as on Lambda); an error, timeout or crash deletes nothing and the messages come back
after the queue's visibility timeout, to reach the DLQ after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from docpipe_local.fairness import FairDispatcher
from docpipe_local.queue_metrics import QueueAges
from docpipe_local.runtime import FunctionRuntime, Invocation
from docpipe_local.template import SqsSource

log = logging.getLogger("docpipe.local")
# Long polls: the emulator answers as soon as a message arrives, so a longer wait costs no latency and
# saves it dozens of empty receives a second; it bounds how long a stop waits for the pollers.
POLL_WAIT_SECONDS = 5


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The exact event Lambda builds for a batch of SQS messages."""
    records = []
    for m in messages:
        attributes = {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": _b64(value.get("BinaryValue")),
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": [_b64(v) for v in value.get("BinaryListValues", [])],
                "dataType": value["DataType"],
            }
            for name, value in m.get("MessageAttributes", {}).items()
        }
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": attributes,
                "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def failed_ids(messages: list[dict[str, Any]], invocation: Invocation, report_failures: bool) -> set[str]:
    """Which messages must stay on the queue after an invocation."""
    everything = {m["MessageId"] for m in messages}
    if not invocation.ok:
        return everything
    if not report_failures or not isinstance(invocation.result, dict):
        return set()
    listed = invocation.result.get("batchItemFailures") or []
    ids = {item.get("itemIdentifier") if isinstance(item, dict) else None for item in listed}
    if None in ids or "" in ids or not ids <= everything:
        return everything
    return {i for i in ids if i}


class SqsPoller(threading.Thread):
    def __init__(
        self,
        runtime: FunctionRuntime,
        sqs: Any,
        source: SqsSource,
        queue_url: str,
        queue_arn: str,
        region: str,
        stop: threading.Event,
        index: int = 0,
        ages: QueueAges | None = None,
        nice: int = 0,
        dispatcher: FairDispatcher | None = None,
        heavy_nice: int = 0,
        quiet_seat: bool = False,
    ) -> None:
        """With a ``dispatcher``, messages come from it (which reports their ages itself), else from SQS.
        ``nice`` is the CPU priority of the invocations; ``heavy_nice`` is added to it (up to 19) for a
        batch whose tenants are all heavy (:meth:`FairDispatcher.heavy`). A ``quiet_seat`` poller holds
        no function slot: it takes only tenants that are not heavy, in a seat that a heavy tenant's running
        invocation of the queue lends (:meth:`FairDispatcher.heavy_started`)."""
        super().__init__(name=f"{runtime.spec.logical}-{source.name}-{index}", daemon=True)
        self.runtime, self.sqs, self.source = runtime, sqs, source
        self.queue_url, self.queue_arn, self.region = queue_url, queue_arn, region
        self.stop_event = stop
        self.ages = ages
        self.nice = nice
        self.dispatcher = dispatcher
        self.heavy_nice = heavy_nice
        self.quiet_seat = quiet_seat and dispatcher is not None

    def run(self) -> None:
        while not self.stop_event.is_set():
            if not self.quiet_seat and not self.runtime.acquire(timeout=0.5):
                continue
            try:
                self.poll_once()
            except (BotoCoreError, ClientError) as exc:
                if not self.stop_event.is_set():
                    log.warning("polling %s failed: %s", self.queue_url, exc)
                    self.stop_event.wait(1)
            except Exception:  # a poller thread must outlive any one bad batch
                log.exception("polling %s failed unexpectedly", self.queue_url)
                self.stop_event.wait(1)
            finally:
                if not self.quiet_seat:
                    self.runtime.release()

    def poll_once(self) -> int:
        """Receive one batch and run it (the caller holds a function slot). Returns how many messages ran."""
        batch_size = min(self.source.batch_size, 10)
        if self.dispatcher is not None:
            messages = self.dispatcher.take(batch_size, POLL_WAIT_SECONDS, self.quiet_seat)
        else:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=batch_size,
                WaitTimeSeconds=POLL_WAIT_SECONDS,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if messages and self.ages is not None:
                self.ages.received(self.queue_url, messages)
        if not messages:
            return 0
        seconds = 0.0
        nice = self.nice
        dispatcher = self.dispatcher
        heavy = bool(self.heavy_nice) and dispatcher is not None and dispatcher.heavy(messages)
        if heavy:
            nice = min(19, nice + self.heavy_nice)
        try:
            started = time.monotonic()
            if heavy:
                dispatcher.heavy_started()  # type: ignore[union-attr]
            try:
                invocation = self.runtime.invoke_acquired(sqs_event(messages, self.queue_arn, self.region), nice, heavy)
            finally:
                if heavy:
                    dispatcher.heavy_ended()  # type: ignore[union-attr]
            seconds = time.monotonic() - started
            self._settle(messages, invocation)
        finally:
            if dispatcher is not None:
                dispatcher.done(messages, seconds, self.quiet_seat)
        return len(messages)

    def _settle(self, messages: list[dict[str, Any]], invocation: Invocation) -> None:
        keep = failed_ids(messages, invocation, self.source.report_failures)
        if not invocation.ok:
            log.warning(
                "%s failed (%s): %s",
                self.runtime.spec.logical,
                invocation.status,
                (invocation.error or {}).get("errorMessage"),
            )
        done = [m for m in messages if m["MessageId"] not in keep]
        if self.dispatcher is not None:
            self.dispatcher.settle(done)  # sent by its settler, which counts them deleted
            return
        for i in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done[i : i + 10])],
            )
        if self.ages is not None:
            self.ages.deleted(self.queue_url, len(done))

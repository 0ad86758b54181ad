"""The ``AWS/SQS`` metrics the operators' views read, published for the local stack's queues:
``ApproximateAgeOfOldestMessage``, and (for the console's last hour, ``GET /admin/metrics``)
``ApproximateNumberOfMessagesVisible``, ``ApproximateNumberOfMessagesNotVisible`` and
``NumberOfMessagesDeleted`` (the messages the pollers deleted). Counts of zero are left out, as AWS
publishes nothing for an idle queue: the emulator's CloudWatch scans every datapoint on each query.

On AWS, SQS publishes each queue's oldest-message age to CloudWatch every minute, and ``GET /queues``
reads it from there. The emulator publishes nothing, so the local stack does, every few seconds, to
the emulator's CloudWatch. SQS does not tell a consumer which message is oldest without receiving it
(which would count towards its ``maxReceiveCount``), so the age is bounded from what is known: every
message still waiting in SQS was sent after the newest one received from it, and after the last time
the queue was seen empty; with SQS's roughly first-in-first-out order the bound is close. Messages a
fair dispatcher (:mod:`docpipe_local.fairness`) has received but not yet handed to a poller are
waiting too, though SQS counts them in flight: their oldest ``SentTimestamp`` is known exactly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("docpipe.local")


class QueueAges:
    """What the pollers have seen, per queue URL: the newest ``SentTimestamp`` received from SQS, and
    the oldest of the messages received but still waiting in a local buffer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.newest_received: dict[str, float] = {}
        self._held: dict[str, Callable[[], float | None]] = {}
        self._deleted: dict[str, int] = {}

    def deleted(self, queue_url: str, count: int) -> None:
        """A poller deleted ``count`` messages of ``queue_url`` (its consumer finished them)."""
        if count:
            with self._lock:
                self._deleted[queue_url] = self._deleted.get(queue_url, 0) + count

    def take_deleted(self) -> dict[str, int]:
        """The messages deleted per queue URL since the last call."""
        with self._lock:
            deleted, self._deleted = self._deleted, {}
        return deleted

    def hold(self, queue_url: str, oldest_sent: Callable[[], float | None]) -> None:
        """A buffer of ``queue_url``'s messages: ``oldest_sent()`` is its oldest ``SentTimestamp`` (s), None when empty."""
        self._held[queue_url] = oldest_sent

    def oldest_held(self, queue_url: str) -> float | None:
        held = self._held.get(queue_url)
        return held() if held else None

    def received(self, queue_url: str, messages: list[dict[str, Any]]) -> None:
        sent = [int(m.get("Attributes", {}).get("SentTimestamp", 0)) / 1000 for m in messages]
        if sent:
            with self._lock:
                self.newest_received[queue_url] = max(self.newest_received.get(queue_url, 0.0), *sent)


class QueueAgePublisher(threading.Thread):
    def __init__(
        self,
        sqs: Any,
        cloudwatch: Any,
        queues: dict[str, str],
        ages: QueueAges,
        stop: threading.Event,
        every_seconds: float = 5.0,
    ) -> None:
        super().__init__(name="queue-ages", daemon=True)
        self.sqs, self.cloudwatch, self.queues, self.ages = sqs, cloudwatch, queues, ages
        self.stop_event, self.every = stop, every_seconds
        self.last_empty: dict[str, float] = {}

    def age_of(self, url: str, waiting: int, now: float) -> float:
        """``waiting``: the messages SQS counts as waiting, without those in a local buffer."""
        held = self.ages.oldest_held(url)
        age = max(0.0, now - held) if held else 0.0
        if waiting == 0:
            self.last_empty[url] = now
            return age
        since = max(self.last_empty.get(url, 0.0), self.ages.newest_received.get(url, 0.0))
        return max(age, now - since) if since else age

    def publish_once(self) -> None:
        now = time.time()
        data = []
        deleted = self.ages.take_deleted()
        for name, url in self.queues.items():
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            waiting = int(attributes.get("ApproximateNumberOfMessages", 0))
            dimensions = [{"Name": "QueueName", "Value": name}]
            data.append(
                {
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": dimensions,
                    "Value": round(self.age_of(url, waiting, now), 1),
                    "Unit": "Seconds",
                }
            )
            counts = {
                "ApproximateNumberOfMessagesVisible": waiting,
                "ApproximateNumberOfMessagesNotVisible": int(
                    attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
                ),
                "NumberOfMessagesDeleted": deleted.get(url, 0),
            }
            data += [
                {"MetricName": metric, "Dimensions": dimensions, "Value": value, "Unit": "Count"}
                for metric, value in counts.items()
                if value
            ]
        for i in range(0, len(data), 20):
            self.cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=data[i : i + 20])

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.publish_once()
            except (BotoCoreError, ClientError) as exc:
                if not self.stop_event.is_set():
                    log.warning("publishing queue ages failed: %s", exc)
            self.stop_event.wait(self.every)

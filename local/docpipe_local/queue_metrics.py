"""The ``AWS/SQS ApproximateAgeOfOldestMessage`` metric, published for the local stack's queues.

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
        for name, url in self.queues.items():
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            waiting = int(attributes["Attributes"].get("ApproximateNumberOfMessages", 0))
            data.append(
                {
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": [{"Name": "QueueName", "Value": name}],
                    "Value": round(self.age_of(url, waiting, now), 1),
                    "Unit": "Seconds",
                }
            )
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

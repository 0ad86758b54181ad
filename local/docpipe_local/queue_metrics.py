"""The ``AWS/SQS ApproximateAgeOfOldestMessage`` metric, published for the local stack's queues.

On AWS, SQS publishes each queue's oldest-message age to CloudWatch every minute, and ``GET /queues``
reads it from there. The emulator publishes nothing, so the local stack does, every few seconds, to
the emulator's CloudWatch. SQS does not tell a consumer which message is oldest without receiving it
(which would count towards its ``maxReceiveCount``), so the age is bounded from what is known: every
message still waiting was sent after the newest one a poller has received, and after the last time
the queue was seen empty; with SQS's roughly first-in-first-out order the bound is close.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("docpipe.local")


class QueueAges:
    """What the pollers have seen, per queue URL: the newest ``SentTimestamp`` received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.newest_received: dict[str, float] = {}

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
        if waiting == 0:
            self.last_empty[url] = now
            return 0.0
        since = max(self.last_empty.get(url, 0.0), self.ages.newest_received.get(url, 0.0))
        return max(0.0, now - since) if since else 0.0

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

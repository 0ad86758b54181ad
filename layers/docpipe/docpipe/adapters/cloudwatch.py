"""CloudWatch: what SQS reports only as metrics: the age of each queue's oldest message, and how many
messages its consumers deleted (a lane's recent throughput)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from docpipe import aws


class _QueueMetric:
    """One ``AWS/SQS`` metric of several queues over the last minutes, one-minute periods."""

    metric = ""
    stat = ""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("cloudwatch")

    def _results(self, queue_names: list[str], window_minutes: int, **extra: Any) -> list[dict[str, Any]] | None:
        """``MetricDataResults``, whose ``Id`` is ``q{index in queue_names}``; ``None`` when CloudWatch
        cannot be read (the metrics are a nicety: what asks for them still answers)."""
        end = datetime.now(UTC)
        queries = [
            {
                "Id": f"q{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": self.metric,
                        "Dimensions": [{"Name": "QueueName", "Value": name}],
                    },
                    "Period": 60,
                    "Stat": self.stat,
                },
            }
            for i, name in enumerate(queue_names)
        ]
        try:
            return list(
                self.client.get_metric_data(
                    MetricDataQueries=queries,
                    StartTime=end - timedelta(minutes=window_minutes),
                    EndTime=end + timedelta(minutes=1),  # the minute under way (nothing is later than now)
                    **extra,
                )["MetricDataResults"]
            )
        except (ClientError, BotoCoreError):
            return None


class QueueAges(_QueueMetric):
    """``AWS/SQS ApproximateAgeOfOldestMessage`` (the latest one-minute maximum of the last five
    minutes) by queue name. On AWS, SQS publishes it every minute; the local stack publishes the same
    metric from what its pollers see. ``None`` for a queue with no recent datapoint."""

    metric, stat = "ApproximateAgeOfOldestMessage", "Maximum"

    def oldest_seconds(self, queue_names: list[str], window_minutes: int = 5) -> dict[str, float | None]:
        ages: dict[str, float | None] = dict.fromkeys(queue_names)
        if not queue_names:
            return ages
        for result in self._results(queue_names, window_minutes, ScanBy="TimestampDescending") or []:
            values = result.get("Values") or []
            if values:
                ages[queue_names[int(result["Id"][1:])]] = float(values[0])
        return ages


class QueueThroughput(_QueueMetric):
    """``AWS/SQS NumberOfMessagesDeleted`` of queues over the last minutes, as messages a second: how fast
    the consumers finished (or skipped) messages, a lane's recent throughput. SQS publishes it every
    minute for an active queue. ``None`` when no queue has a datapoint in the window (an idle queue, or
    nothing publishes it: the local stack does not), or when CloudWatch cannot be read."""

    metric, stat = "NumberOfMessagesDeleted", "Sum"

    def per_second(self, queue_names: list[str], window_minutes: int = 5) -> float | None:
        if not queue_names:
            return None
        results = self._results(queue_names, window_minutes)
        values = [float(v) for result in results or [] for v in result.get("Values") or []]
        return sum(values) / (window_minutes * 60) if values else None

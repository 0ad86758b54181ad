"""CloudWatch: what SQS reports only as metrics: the age of each queue's oldest message, and how many
messages its consumers deleted (a lane's recent throughput)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from docpipe import aws


class QueueAges:
    """``AWS/SQS ApproximateAgeOfOldestMessage`` (the latest one-minute maximum of the last five
    minutes) by queue name. On AWS, SQS publishes it every minute; the local stack publishes the same
    metric from what its pollers see. ``None`` for a queue with no recent datapoint."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("cloudwatch")

    def oldest_seconds(self, queue_names: list[str], window_minutes: int = 5) -> dict[str, float | None]:
        ages: dict[str, float | None] = dict.fromkeys(queue_names)
        if not queue_names:
            return ages
        end = datetime.now(UTC)
        queries = [
            {
                "Id": f"q{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "ApproximateAgeOfOldestMessage",
                        "Dimensions": [{"Name": "QueueName", "Value": name}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
            for i, name in enumerate(queue_names)
        ]
        try:
            results = self.client.get_metric_data(
                MetricDataQueries=queries,
                StartTime=end - timedelta(minutes=window_minutes),
                EndTime=end + timedelta(minutes=1),
                ScanBy="TimestampDescending",
            )["MetricDataResults"]
        except (ClientError, BotoCoreError):
            return ages  # the ages are a nicety: depth and DLQ counts still answer
        for result in results:
            values = result.get("Values") or []
            if values:
                ages[queue_names[int(result["Id"][1:])]] = float(values[0])
        return ages


class QueueThroughput:
    """``AWS/SQS NumberOfMessagesDeleted`` of queues over the last minutes, as messages a second: how fast
    the consumers finished (or skipped) messages, a lane's recent throughput. SQS publishes it every
    minute for an active queue. ``None`` when no queue has a datapoint in the window (an idle queue, or
    nothing publishes it: the local stack does not), or when CloudWatch cannot be read."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("cloudwatch")

    def per_second(self, queue_names: list[str], window_minutes: int = 5) -> float | None:
        if not queue_names:
            return None
        end = datetime.now(UTC)
        queries = [
            {
                "Id": f"q{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "NumberOfMessagesDeleted",
                        "Dimensions": [{"Name": "QueueName", "Value": name}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
            for i, name in enumerate(queue_names)
        ]
        try:
            results = self.client.get_metric_data(
                MetricDataQueries=queries,
                StartTime=end - timedelta(minutes=window_minutes),
                EndTime=end + timedelta(minutes=1),  # the minute under way (nothing is later than now)
            )["MetricDataResults"]
        except (ClientError, BotoCoreError):
            return None  # an estimate is a nicety: the job's place in the queue still answers
        values = [float(v) for result in results for v in result.get("Values") or []]
        return sum(values) / (window_minutes * 60) if values else None

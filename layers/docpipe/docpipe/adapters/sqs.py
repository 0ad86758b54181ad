"""SQS: sending task messages to a concern's lane. Messages carry keys and hashes, never file bytes."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from docpipe import aws
from docpipe.errors import Transient


class TaskQueues:
    def __init__(self, queues: dict[str, dict[str, str]], client: Any | None = None) -> None:
        self.queues = queues
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("sqs")

    def send(self, task: str, lane: str, message: dict[str, Any]) -> None:
        try:
            url = self.queues[task][lane]
        except KeyError as exc:
            raise Transient(f"no queue is configured for {task} on the {lane} lane") from exc
        try:
            self.client.send_message(QueueUrl=url, MessageBody=json.dumps({"task": task, "lane": lane, **message}))
        except ClientError as exc:
            raise Transient(f"SQS failed to take a {task} task: {exc.response.get('Error', {}).get('Code')}") from exc


class QueueStats:
    """Depth, in-flight and dead-letter counts of queues, read from SQS attributes.

    The dead-letter queue of each queue is found from its ``RedrivePolicy`` (once per queue and cold
    start). SQS has no attribute for the oldest message's age: that comes from CloudWatch
    (:class:`docpipe.adapters.cloudwatch.QueueAges`).
    """

    ATTRIBUTES = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "RedrivePolicy",
    )

    def __init__(self, client: Any | None = None) -> None:
        self._client = client
        self._dlq: dict[str, str | None] = {}

    @property
    def client(self) -> Any:
        return self._client or aws.client("sqs")

    def _attributes(self, url: str) -> dict[str, str]:
        try:
            return dict(
                self.client.get_queue_attributes(QueueUrl=url, AttributeNames=list(self.ATTRIBUTES))["Attributes"]
            )
        except ClientError as exc:
            raise Transient(f"SQS failed to describe a queue: {exc.response.get('Error', {}).get('Code')}") from exc

    def dead_letter_url(self, url: str, attributes: dict[str, str]) -> str | None:
        if url not in self._dlq:
            policy = json.loads(attributes.get("RedrivePolicy") or "{}")
            arn = policy.get("deadLetterTargetArn")
            self._dlq[url] = url.rsplit("/", 1)[0] + "/" + arn.rsplit(":", 1)[1] if arn else None
        return self._dlq[url]

    def stats(self, url: str) -> dict[str, Any]:
        """``{queue, depth, inFlight, delayed, dlq, dlqDepth}`` of one queue and its dead-letter queue."""
        attributes = self._attributes(url)
        out: dict[str, Any] = {
            "queue": url.rsplit("/", 1)[1],
            "depth": int(attributes.get("ApproximateNumberOfMessages", 0)),
            "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        }
        dlq = self.dead_letter_url(url, attributes)
        if dlq:
            out["dlq"] = dlq.rsplit("/", 1)[1]
            out["dlqDepth"] = int(self._attributes(dlq).get("ApproximateNumberOfMessages", 0))
        return out

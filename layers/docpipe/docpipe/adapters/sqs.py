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

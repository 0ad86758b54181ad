"""SQS: sending task messages to a concern's lane. Messages carry keys and hashes, never file bytes.

Every task message carries ``MessageGroupId`` = the tenant (the owner of the job that queued it),
which makes a standard queue a *fair queue* on AWS: SQS delivers quiet tenants' messages before a
noisy tenant's backlog (the local stack's pollers do the same). Work a task queues while it runs (a
large PDF's page ranges, its scanned pages for OCR) belongs to the tenant of the message being
handled: :func:`tenant_scope` sets it around a record, and :meth:`TaskQueues.send` uses it unless
told otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from docpipe import aws
from docpipe.errors import Transient

_TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("docpipe_tenant", default=None)
# SQS's limit on a MessageGroupId: 128 characters of letters, digits and punctuation.
_GROUP_MAX = 128


@contextlib.contextmanager
def tenant_scope(tenant: str | None) -> Iterator[None]:
    """Messages sent inside belong to ``tenant`` (the message group of the record being handled)."""
    token = _TENANT.set(tenant)
    try:
        yield
    finally:
        _TENANT.reset(token)


def message_group(tenant: str) -> str:
    """A MessageGroupId for a tenant: SQS takes only printable ASCII, up to 128 characters."""
    if tenant.isascii() and tenant.isprintable() and len(tenant) <= _GROUP_MAX:
        return tenant
    return "t-" + tenant.encode().hex()[: _GROUP_MAX - 2]


class TaskQueues:
    def __init__(self, queues: dict[str, dict[str, str]], client: Any | None = None) -> None:
        self.queues = queues
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("sqs")

    def send(self, task: str, lane: str, message: dict[str, Any], tenant: str | None = None) -> None:
        """Queue ``message`` for ``task`` on ``lane``, in ``tenant``'s message group (default: the
        tenant of the record being handled, :func:`tenant_scope`)."""
        try:
            url = self.queues[task][lane]
        except KeyError as exc:
            raise Transient(f"no queue is configured for {task} on the {lane} lane") from exc
        group = tenant if tenant is not None else _TENANT.get()
        kwargs: dict[str, Any] = {"MessageGroupId": message_group(group)} if group else {}
        try:
            self.client.send_message(
                QueueUrl=url, MessageBody=json.dumps({"task": task, "lane": lane, **message}), **kwargs
            )
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

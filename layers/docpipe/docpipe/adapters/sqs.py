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
import time
from collections.abc import Iterator
from dataclasses import dataclass
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

    def dead_letter_of(self, url: str) -> str | None:
        """The URL of the dead-letter queue of ``url``, from its ``RedrivePolicy``; ``None`` for none."""
        return self.dead_letter_url(url, {} if url in self._dlq else self._attributes(url))

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


# Answers that say the endpoint does not implement an action (an emulator); on AWS a 5xx is a fault of the
# moment, after which copying the messages is still a correct redrive.
_UNSUPPORTED = frozenset({"InvalidAction", "UnknownOperationException", "UnsupportedOperation", "NotImplemented"})


def _unsupported(exc: Exception) -> bool:
    if isinstance(exc, NotImplementedError):  # moto in-process raises it for an action it lacks
        return True
    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code.rsplit(".", 1)[-1] in _UNSUPPORTED or status >= 500


@dataclass(frozen=True)
class Redrive:
    """What a dead-letter redrive did. ``method``: ``move-task`` (SQS moves the messages itself, after the
    call: ``messages`` is how many it has to move, approximately; ``running`` when a task the call did
    not start was moving them already), ``copy`` (the call received, sent and deleted them: ``messages``
    moved, exactly; ``more`` when it stopped at its bound with messages left), or ``none`` (the
    dead-letter queue was empty)."""

    method: str
    messages: int
    approximate: bool = False
    more: bool = False
    running: bool = False
    task_handle: str | None = None


class DeadLetters:
    """Moving a dead-letter queue's messages back to the queue they came from.

    On AWS, ``StartMessageMoveTask``: SQS moves them at its own pace (up to 500 a second), keeping
    their bodies and attributes, and only one task runs per queue at a time (``ListMessageMoveTasks``
    finds one already running, which is reported rather than started again). Where the endpoint does
    not implement it (moto, which the local stack embeds, answers 500), the messages are copied: each
    batch received from the dead-letter queue is sent to the source queue with its body, attributes and
    message group (the tenant), and deleted from the dead-letter queue once sent, up to ``limit``
    messages or the ``deadline``. A message whose delete failed after its send is delivered twice,
    which the idempotent workers absorb.
    """

    def __init__(self, client: Any | None = None, control: Any | None = None) -> None:
        self._client = client
        self._control = control

    @property
    def client(self) -> Any:
        return self._client or aws.client("sqs")

    @property
    def control(self) -> Any:
        """For the move-task actions: a client that does not retry, so an emulator's 500 costs one call."""
        return self._control or self._client or aws.client("sqs", single_attempt=True)

    def _attribute(self, url: str, name: str) -> str:
        try:
            return str(self.client.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"].get(name, 0))
        except ClientError as exc:
            raise Transient(f"SQS failed to describe a queue: {exc.response.get('Error', {}).get('Code')}") from exc

    def waiting(self, url: str) -> int:
        return int(self._attribute(url, "ApproximateNumberOfMessages"))

    def redrive(self, dlq_url: str, source_url: str, limit: int = 100, deadline: float | None = None) -> Redrive:
        """Move ``dlq_url``'s messages back to ``source_url``. ``limit`` and ``deadline`` (a
        :func:`time.monotonic` value) bound the copy; a move task is not bound by them."""
        dlq_arn, source_arn = self._attribute(dlq_url, "QueueArn"), self._attribute(source_url, "QueueArn")
        try:
            tasks = self.control.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
            if tasks and tasks[0].get("Status") == "RUNNING":
                task = tasks[0]
                left = int(task.get("ApproximateNumberOfMessagesToMove", 0)) - int(
                    task.get("ApproximateNumberOfMessagesMoved", 0)
                )
                return Redrive(
                    "move-task", max(0, left), approximate=True, running=True, task_handle=task.get("TaskHandle")
                )
            waiting = self.waiting(dlq_url)
            if waiting == 0:
                return Redrive("none", 0)
            handle = self.control.start_message_move_task(SourceArn=dlq_arn, DestinationArn=source_arn)["TaskHandle"]
            return Redrive("move-task", waiting, approximate=True, task_handle=handle)
        except (ClientError, NotImplementedError) as exc:
            if not _unsupported(exc):
                code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else exc
                raise Transient(f"SQS failed to start moving messages: {code}") from exc
        return self._copy(dlq_url, source_url, limit, deadline)

    def _copy(self, dlq_url: str, source_url: str, limit: int, deadline: float | None) -> Redrive:
        moved = 0
        try:
            while moved < limit and (deadline is None or time.monotonic() < deadline):
                got = self.client.receive_message(
                    QueueUrl=dlq_url,
                    MaxNumberOfMessages=min(10, limit - moved),
                    WaitTimeSeconds=0,
                    VisibilityTimeout=30,  # a message whose send fails is back in the dead-letter queue soon
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["MessageGroupId"],
                ).get("Messages", [])
                if not got:
                    break
                entries = []
                for i, message in enumerate(got):
                    entry: dict[str, Any] = {"Id": str(i), "MessageBody": message["Body"]}
                    if message.get("MessageAttributes"):
                        entry["MessageAttributes"] = message["MessageAttributes"]
                    if group := message.get("Attributes", {}).get("MessageGroupId"):
                        entry["MessageGroupId"] = group
                    entries.append(entry)
                sent = {
                    e["Id"]
                    for e in self.client.send_message_batch(QueueUrl=source_url, Entries=entries).get("Successful", [])
                }
                if sent:
                    self.client.delete_message_batch(
                        QueueUrl=dlq_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(got)
                            if str(i) in sent
                        ],
                    )
                moved += len(sent)
                if len(sent) < len(got):
                    break  # the rest are visible again in the dead-letter queue after their visibility timeout
        except ClientError as exc:
            raise Transient(f"SQS failed while moving messages: {exc.response.get('Error', {}).get('Code')}") from exc
        return Redrive("copy", moved, more=self.waiting(dlq_url) > 0)

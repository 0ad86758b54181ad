"""SQS keeps every message it accepted while others are deleted (:func:`docpipe_local.emulator.serialize_sqs_deletes`).

moto's ``DeleteMessage`` walks the queue's messages, keeps the others in a new list and puts that list
in place of the old one. A send that lands after the walk and before the swap appends to the old list,
and the message is gone. Under the embedded emulator's threads that happened: two scan tasks of a
500-upload run were never delivered. The test holds the delete at exactly that point while another
thread sends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import boto3
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import sqs_backends

from docpipe_local.emulator import serialize_sqs_deletes


class _SendWhenWalked(list):
    """A queue's messages that run ``send`` on another thread once a walk over them has ended, and give
    it half a second: a delete that holds the queue's lock makes the send wait for the delete."""

    def __init__(self, items: list, send: Callable[[], None]) -> None:
        super().__init__(items)
        self.send = send
        self.sender: threading.Thread | None = None

    def __iter__(self) -> Iterator:
        yield from list.__iter__(self)
        if self.sender is None:
            self.sender = threading.Thread(target=self.send)
            self.sender.start()
            self.sender.join(0.5)


def test_a_message_sent_while_another_is_deleted_is_kept() -> None:
    serialize_sqs_deletes()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="tasks")["QueueUrl"]
        for body in ("first", "second", "third"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
        assert first["Body"] == "first"
        queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues["tasks"]
        walked = queue._messages = _SendWhenWalked(
            queue._messages, lambda: sqs.send_message(QueueUrl=url, MessageBody="sent meanwhile")
        )

        sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])

        assert walked.sender is not None, "the delete walked the queue's messages"
        walked.sender.join(5)
        left = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            left += [m["Body"] for m in batch]
        assert sorted(left) == ["second", "sent meanwhile", "third"]


def test_serializing_twice_wraps_once() -> None:
    from moto.sqs.models import Queue

    serialize_sqs_deletes()
    wrapped = Queue.delete_message
    serialize_sqs_deletes()
    assert Queue.delete_message is wrapped
    assert wrapped._docpipe_serialized

"""The local stack treats a queue's messages the way Lambda's SQS event source does, shown with a tiny
template of one queue, its DLQ and one function: an invocation past its timeout is killed and its
batch retried after the visibility timeout; with ``ReportBatchItemFailures`` a record that fails is
the only one retried, and after ``maxReceiveCount`` receives it is in the DLQ — not when its last
invocation ends, but when that receive's visibility timeout does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docpipe_local.stack import LocalStack

pytestmark = pytest.mark.reliability

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  OutDir: {Type: String}
Resources:
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 3
      RedrivePolicy: {deadLetterTargetArn: !GetAtt WorkDLQ.Arn, maxReceiveCount: 3}
  WorkDLQ:
    Type: AWS::SQS::Queue
  WorkFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: work.handler
      Runtime: python3.12
      Timeout: 1
      MemorySize: 128
      Environment: {Variables: {OUT_DIR: !Ref OutDir}}
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
"""

HANDLER = """\
import json, os, time

def handler(event, context):
    failures = []
    for record in event["Records"]:
        body = json.loads(record["body"])
        receive = int(record["attributes"]["ApproximateReceiveCount"])
        with open(os.path.join(os.environ["OUT_DIR"], f"{body['id']}.{receive}"), "w") as fh:
            fh.write(str(time.time()))
        if (body["kind"] == "slow" and receive == 1) or body["kind"] == "hang":
            time.sleep(5)  # past the 1 s timeout: killed
        if body["kind"] == "bad":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Path]]:
    root = tmp_path_factory.mktemp("tiny")
    (root / "code").mkdir()
    (root / "code" / "work.py").write_text(HANDLER)
    (root / "template.yaml").write_text(TEMPLATE)
    out = root / "out"
    out.mkdir()
    with LocalStack(root / "template.yaml", state_dir=root / "state", parameters={"OutDir": str(out)}) as stack:
        yield stack, out


def send(stack: LocalStack, *bodies: dict[str, str]) -> None:
    url = stack.template.attributes["WorkQueue"]["QueueUrl"]
    stack.client("sqs").send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": json.dumps(b)} for i, b in enumerate(bodies)]
    )


def counts(stack: LocalStack, logical: str) -> tuple[int, int]:
    url = stack.template.attributes[logical]["QueueUrl"]
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_until(check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def receipts(out: Path, ident: str) -> dict[int, float]:
    return {int(p.suffix[1:]): float(p.read_text() or 0) for p in out.glob(f"{ident}.*")}


def test_an_invocation_past_its_timeout_is_killed_and_its_message_retried(tiny) -> None:
    stack, out = tiny
    runtime = stack.runtimes["WorkFunction"]
    failures = runtime.failures

    send(stack, {"id": "slow", "kind": "slow"})
    wait_until(lambda: 2 in receipts(out, "slow") and counts(stack, "WorkQueue") == (0, 0), timeout=30)

    seen = receipts(out, "slow")
    assert sorted(seen) == [1, 2]
    assert seen[2] - seen[1] >= 3  # back after the queue's visibility timeout
    assert runtime.failures == failures + 1
    assert counts(stack, "WorkDLQ") == (0, 0)


def test_one_failing_record_is_the_only_one_retried_and_ends_in_the_dlq(tiny) -> None:
    stack, out = tiny

    send(stack, {"id": "ok1", "kind": "ok"}, {"id": "bad", "kind": "bad"}, {"id": "ok2", "kind": "ok"})
    wait_until(lambda: counts(stack, "WorkDLQ")[0] == 1 and counts(stack, "WorkQueue") == (0, 0), timeout=40)

    assert sorted(receipts(out, "ok1")) == [1] and sorted(receipts(out, "ok2")) == [1]
    assert sorted(receipts(out, "bad")) == [1, 2, 3]  # maxReceiveCount receives, then the DLQ
    dlq = stack.template.attributes["WorkDLQ"]["QueueUrl"]
    dead = stack.client("sqs").receive_message(QueueUrl=dlq)["Messages"]
    assert [json.loads(m["Body"])["id"] for m in dead] == ["bad"]


def test_a_message_whose_final_receive_is_killed_reaches_the_dlq_a_visibility_timeout_after_that_receive(tiny) -> None:
    # A job whose final attempt was killed reads failed when that attempt's time limit passes
    # (docpipe.jobs.task_state); its message is not in the DLQ until the visibility timeout has too.
    stack, out = tiny
    before = sum(counts(stack, "WorkDLQ"))

    send(stack, {"id": "hang", "kind": "hang"})
    wait_until(lambda: sum(counts(stack, "WorkDLQ")) == before + 1, timeout=40)
    dead_lettered = time.time()

    seen = receipts(out, "hang")
    assert sorted(seen) == [1, 2, 3]
    assert dead_lettered - seen[3] >= 3 - 0.2  # the queue's visibility timeout, not the function's 1 s timeout

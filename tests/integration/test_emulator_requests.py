"""The embedded emulator counts the requests it answers by service and operation (what a bench prices),
over real HTTP to moto's server as the local stack runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from docpipe_local.emulator import request_counts
from docpipe_local.stack import CREDENTIALS, WORKERS_BEHIND, MotoServer, worker_nice


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MotoServer]:
    moto = MotoServer(tmp_path / "emulator.log")
    try:
        moto.wait_ready()
        yield moto
    finally:
        moto.stop()


def client(service: str, url: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
    )


def test_requests_are_counted_by_caller_service_and_operation_and_can_be_reset(
    server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, sqs, dynamodb = (client(s, server.url) for s in ("s3", "sqs", "dynamodb"))
    s3.create_bucket(Bucket="store")
    queue = sqs.create_queue(QueueName="lane")["QueueUrl"]
    dynamodb.create_table(
        TableName="jobs",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    request_counts(server.url, reset=True)

    # two puts, a copy, a get, a head, a list; a presigned GET by plain HTTP
    s3.put_object(Bucket="store", Key="a/1", Body=b"one")
    s3.put_object(Bucket="store", Key="a/2", Body=b"two")
    s3.copy_object(Bucket="store", Key="b/1", CopySource={"Bucket": "store", "Key": "a/1"})
    s3.get_object(Bucket="store", Key="a/1")["Body"].read()
    s3.head_object(Bucket="store", Key="a/2")
    s3.list_objects_v2(Bucket="store")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "store", "Key": "a/2"})
    assert requests.get(url, timeout=10).content == b"two"
    # a message sent, received, deleted
    sqs.send_message(QueueUrl=queue, MessageBody="m")
    (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    # a put, a get, a transaction of three writes
    dynamodb.put_item(TableName="jobs", Item={"id": {"S": "x"}})
    dynamodb.get_item(TableName="jobs", Key={"id": {"S": "x"}})
    dynamodb.transact_write_items(
        TransactItems=[{"Put": {"TableName": "jobs", "Item": {"id": {"S": f"t{i}"}}}} for i in range(3)]
    )

    answered = request_counts(server.url)
    seconds = [v[2] for services in answered.values() for ops in services.values() for v in ops.values()]
    assert all(s >= 0 for s in seconds) and sum(seconds) > 0  # the CPU the server spent answering
    (caller, counts), *others = without_seconds(answered).items()
    assert (caller, others) == ("-", [])  # no application id in these clients' User-Agent
    assert counts["s3"] == {
        "PutObject": [2, 2],
        "CopyObject": [1, 1],
        "GetObject": [2, 2],
        "HeadObject": [1, 1],
        "ListObjects": [1, 1],
    }
    assert counts["sqs"] == {"SendMessage": [1, 1], "ReceiveMessage": [1, 1], "DeleteMessage": [1, 1]}
    assert counts["dynamodb"] == {"PutItem": [1, 1], "GetItem": [1, 1], "TransactWriteItems": [1, 3]}

    # and a reset starts again from nothing; a client with an application id (as the local stack gives
    # each function's SDK) is counted under it
    request_counts(server.url, reset=True)
    s3.head_object(Bucket="store", Key="a/1")
    monkeypatch.setenv("AWS_SDK_UA_APP_ID", "PresetsFunction")
    client("s3", server.url).head_object(Bucket="store", Key="a/1")
    assert without_seconds(request_counts(server.url)) == {
        "-": {"s3": {"HeadObject": [1, 1]}},
        "PresetsFunction": {"s3": {"HeadObject": [1, 1]}},
    }


def without_seconds(counts: dict[str, dict[str, dict[str, list[float]]]]) -> dict[str, Any]:
    """The counts' requests and items, without the CPU seconds beside them."""
    return {c: {s: {o: v[:2] for o, v in ops.items()} for s, ops in svc.items()} for c, svc in counts.items()}


def may_raise_priority() -> bool:
    """Whether a process started from here may run at a higher CPU priority (root, or CAP_SYS_NICE)."""
    return subprocess.run([sys.executable, "-c", "import os; os.nice(-1)"], capture_output=True).returncode == 0


def thread_nices(pid: int) -> set[int]:
    """The nice value of each of a process's threads (on Linux each thread has its own)."""
    tasks = Path(f"/proc/{pid}/task")
    return {int((task / "stat").read_text().rsplit(")", 1)[1].split()[16]) for task in tasks.iterdir()}


def test_the_emulator_runs_ahead_of_the_stack_where_it_may_and_workers_make_room_where_it_may_not(
    tmp_path: Path,
) -> None:
    moto = MotoServer(tmp_path / "emulator.log", ahead=4)
    try:
        moto.wait_ready()
        client("sqs", moto.url).list_queues()  # its request threads are running
        own = os.getpriority(os.PRIO_PROCESS, 0)
        if may_raise_priority():
            assert moto.ahead == 4
            assert thread_nices(moto.process.pid) == {own - 4}  # every thread of the server, not just its first
            assert worker_nice([moto], None) == 0
        else:
            assert moto.ahead == 0
            assert worker_nice([moto], None) == WORKERS_BEHIND
        assert worker_nice([moto], "http://127.0.0.1:4566") == WORKERS_BEHIND  # another emulator: not ours to raise
        assert worker_nice([], None) == WORKERS_BEHIND
    finally:
        moto.stop()
    level = MotoServer(tmp_path / "level.log")
    try:
        level.wait_ready()
        assert level.ahead == 0 and worker_nice([level], None) == WORKERS_BEHIND
    finally:
        level.stop()

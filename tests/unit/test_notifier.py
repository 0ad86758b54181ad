"""The notifier under moto: real stream records of the template's tables (read from moto's DynamoDB
Streams) in, frames to connections out. The management API is a fake of the one port the notifier
uses (``post``), which says which connections are gone, as ``GoneException`` would."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.push import ConnectionsRepository
from docpipe.config import PushSettings, Settings
from docpipe.job_views import JobViews
from docpipe.jobs import now_iso
from notifier.service import Notifier
from tests.unit.test_api import call  # noqa: F401 - the API fixture

pytestmark = pytest.mark.usefixtures("aws")


class FakeChannel:
    """PostToConnection: records each frame per connection; a connection in ``gone`` answers as closed."""

    def __init__(self, gone: set[str] | None = None) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self.gone = gone or set()

    def post(self, connection_id: str, data: str) -> bool:
        if connection_id in self.gone:
            return False
        self.frames.setdefault(connection_id, []).append(json.loads(data))
        return True


@pytest.fixture
def repos(aws) -> tuple[JobsRepository, FilesRepository, ConnectionsRepository]:
    settings, push = Settings.from_env(), PushSettings.from_env()
    return (
        JobsRepository(settings.jobs_table),
        FilesRepository(settings.files_table),
        ConnectionsRepository(str(push.connections_table)),
    )


class Stream:
    """A table's stream read from its start, as the event source mapping reads it."""

    def __init__(self, table: str) -> None:
        arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.client = boto3.client("dynamodbstreams")
        shard = self.client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.iterator = self.client.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")[
            "ShardIterator"
        ]
        self.arn = arn

    def records(self) -> list[dict[str, Any]]:
        from docpipe_local.streams import stream_event

        response = self.client.get_records(ShardIterator=self.iterator)
        self.iterator = response["NextShardIterator"]
        return stream_event(response["Records"], self.arn, "us-east-1")["Records"]


def a_job(jobs: JobsRepository, owner: str, state: str = "queued", digest: str | None = None, **extra: Any) -> str:
    job_id = f"{abs(hash((owner, state, digest, time.time()))) % 10**8:08d}-0000-4000-8000-000000000000"
    job = {
        "jobId": job_id,
        "owner": owner,
        "name": f"{owner}.txt",
        "state": state,
        "lane": "high",
        "plan": ["extract"],
        "createdAt": now_iso(),
        "updatedAt": now_iso(),
        **({"hash": digest, "sha256": digest} if digest else {}),
        **extra,
    }
    jobs.create(job)
    return job_id


def recorded_calls(*clients: Any) -> list[str]:
    """The DynamoDB operations the clients (of the repositories: one client, or several) make from now on."""
    calls: list[str] = []
    for client in {id(c): c for c in clients}.values():
        client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


def notifier(repos, channel: FakeChannel) -> Notifier:
    jobs, files, connections = repos
    views = JobViews(jobs, files, Settings.from_env().task_queues, lambda names: None)
    return Notifier(views, jobs, connections, channel)  # type: ignore[arg-type]


def test_an_update_reaches_each_of_its_owners_connections_and_no_one_elses(repos) -> None:
    jobs, _, connections = repos
    now = int(time.time())
    for owner, connection in (("alice", "a-laptop"), ("alice", "a-phone"), ("bob", "b-laptop")):
        assert connections.add(owner, connection, now, 3600, 10)
    stream = Stream(jobs.name)
    channel = FakeChannel()

    job_id = a_job(jobs, "alice")
    sent = sum(notifier(repos, channel).handle(record) for record in stream.records())

    assert sent == 2
    assert set(channel.frames) == {"a-laptop", "a-phone"}  # never bob's
    for frames in channel.frames.values():
        (frame,) = frames
        assert frame["type"] == "job" and frame["job"]["jobId"] == job_id and frame["job"]["state"] == "queued"
        assert frame["changedAt"] <= frame["sentAt"]


def test_the_pushed_job_is_what_get_jobs_id_answers(repos, call) -> None:  # noqa: F811
    jobs, _, connections = repos
    connections.add("alice", "a-laptop", int(time.time()), 3600, 10)
    stream = Stream(jobs.name)
    channel = FakeChannel()
    job_id = a_job(jobs, "alice")

    for record in stream.records():
        notifier(repos, channel).handle(record)
    status, body, _ = call("GET", f"/jobs/{job_id}", user="alice")

    assert status == 200
    assert channel.frames["a-laptop"][-1]["job"] == body  # state, progress, tasks and the queue place alike


def test_a_gone_connection_is_pruned_and_the_others_still_get_the_update(repos) -> None:
    jobs, _, connections = repos
    now = int(time.time())
    connections.add("alice", "closed-tab", now, 3600, 10)
    connections.add("alice", "open-tab", now, 3600, 10)
    stream = Stream(jobs.name)
    channel = FakeChannel(gone={"closed-tab"})

    a_job(jobs, "alice")
    for record in stream.records():
        notifier(repos, channel).handle(record)

    assert list(channel.frames) == ["open-tab"]
    assert connections.for_owner("alice", now) == ["open-tab"]


def test_a_file_change_pushes_each_open_job_of_the_bytes_to_its_own_owner_only(repos) -> None:
    jobs, files, connections = repos
    now = int(time.time())
    connections.add("alice", "a-tab", now, 3600, 10)
    connections.add("bob", "b-tab", now, 3600, 10)
    digest = "c" * 64
    alices = a_job(jobs, "alice", "processing", digest, openHash=digest)
    bobs = a_job(jobs, "bob", "processing", digest, openHash=digest)
    stream = Stream(files.name)
    channel = FakeChannel()

    boto3.client("dynamodb").put_item(
        TableName=files.name,
        Item={"hash": {"S": digest}, "status": {"S": "stored"}, "extractState": {"S": "running"}},
    )
    for record in stream.records():
        notifier(repos, channel).handle(record)

    assert [f["job"]["jobId"] for f in channel.frames["a-tab"]] == [alices]
    assert [f["job"]["jobId"] for f in channel.frames["b-tab"]] == [bobs]
    assert channel.frames["a-tab"][0]["job"]["tasks"]["extract"]["state"] == "running"


def test_a_job_leaving_the_queue_moves_its_owners_later_jobs_up(repos) -> None:
    jobs, _, connections = repos
    connections.add("alice", "a-tab", int(time.time()), 3600, 10)
    first = a_job(jobs, "alice", openOwner="alice")
    second = a_job(jobs, "alice", openOwner="alice")
    stream = Stream(jobs.name)
    channel = FakeChannel()

    jobs.transition(first, ("queued",), {"state": "processing", "updatedAt": now_iso()}, [])
    for record in stream.records():
        notifier(repos, channel).handle(record)

    places = {f["job"]["jobId"]: f["job"].get("queue") for f in channel.frames["a-tab"]}
    assert places[first] is None and places[second]["ahead"] == 0


def test_a_user_holds_at_most_the_bound_of_connections_and_a_closed_one_frees_a_place(repos) -> None:
    _, _, connections = repos
    now = int(time.time())
    assert all(connections.add("alice", f"tab-{i}", now, 3600, 3) for i in range(3))

    assert not connections.add("alice", "tab-3", now, 3600, 3)
    assert connections.add("bob", "b-tab", now, 3600, 3)  # the bound is per user
    assert connections.remove("tab-0") == "alice"
    assert connections.add("alice", "tab-3", now, 3600, 3)
    assert connections.add("alice", "later", now + 7200, 3600, 3)  # expired connections do not count


def test_nothing_is_read_or_built_for_an_owner_without_connections(repos) -> None:
    """Most changes belong to owners with nothing open: the notifier must not build their views (a job leaving
    its queue would otherwise read every queued job of the owner, on every move)."""
    jobs, _, connections = repos
    connections.add("bob", "b-laptop", int(time.time()), 3600, 10)
    queued = [a_job(jobs, "alice") for _ in range(5)]
    stream = Stream(jobs.name)
    jobs.client.update_item(
        TableName=jobs.name,
        Key={"jobId": {"S": queued[0]}},
        UpdateExpression="SET #s = :p",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":p": {"S": "processing"}},
    )
    records = stream.records()
    calls = recorded_calls(connections.client, jobs.client)
    channel = FakeChannel()

    sent = sum(notifier(repos, channel).handle(record) for record in records)

    assert records and sent == 0 and channel.frames == {}
    assert calls == ["Query"] * len(records)  # alice's connections, once a record; no job, view or queue read


def test_a_batch_reads_each_owners_connections_and_each_bytes_open_jobs_once(repos) -> None:
    """One invocation's records share what they read: three jobs and two progress updates of the same bytes,
    of an owner with nothing open, cost one read of the owner's connections and one of the bytes' open jobs."""
    jobs, files, _ = repos
    digest = "d" * 64
    ids = [a_job(jobs, "alice", "processing", digest, openHash=digest) for _ in range(3)]
    job_stream, file_stream = Stream(jobs.name), Stream(files.name)
    client = boto3.client("dynamodb")
    for job_id in ids:
        client.update_item(
            TableName=jobs.name,
            Key={"jobId": {"S": job_id}},
            UpdateExpression="SET progress = :p",
            ExpressionAttributeValues={":p": {"N": "50"}},
        )
    for state in ("running", "done"):
        client.put_item(
            TableName=files.name,
            Item={"hash": {"S": digest}, "status": {"S": "stored"}, "extractState": {"S": state}},
        )
    records = job_stream.records() + file_stream.records()
    calls = recorded_calls(repos[2].client, jobs.client)
    channel = FakeChannel()
    handler = notifier(repos, channel)

    handler.begin()
    sent = sum(handler.handle(record) for record in records)

    assert len(records) == 5 and sent == 0
    assert calls == ["Query", "Query"]  # alice's connections; the bytes' open jobs (their owners known by then)


def test_a_change_to_the_bytes_that_no_view_shows_reads_and_pushes_nothing(repos) -> None:
    """The bytes stored, a waiting job counted, a task's holder: the views of the jobs of those bytes are what
    they were, so those records cost no read at all; a task's state pushes."""
    jobs, files, connections = repos
    connections.add("alice", "a-tab", int(time.time()), 3600, 10)
    digest = "e" * 64
    a_job(jobs, "alice", "processing", digest, openHash=digest)
    client = boto3.client("dynamodb")
    client.put_item(TableName=files.name, Item={"hash": {"S": digest}, "status": {"S": "storing"}})
    stream = Stream(files.name)
    values = {":stored": {"S": "stored"}, ":one": {"N": "1"}, ":holder": {"S": "m-1"}, ":running": {"S": "running"}}
    for expression in (
        "SET #status = :stored",
        "ADD extractWaiters :one",
        "SET extractHolder = :holder, refs = :one",
        "SET extractState = :running",  # shown
    ):
        client.update_item(
            TableName=files.name,
            Key={"hash": {"S": digest}},
            UpdateExpression=expression,
            **({"ExpressionAttributeNames": {"#status": "status"}} if "#status" in expression else {}),
            ExpressionAttributeValues={k: v for k, v in values.items() if k in expression},
        )
    records = stream.records()
    calls = recorded_calls(connections.client, jobs.client, files.client)
    channel = FakeChannel()
    handler = notifier(repos, channel)

    costs = []
    for record in records:
        before = len(calls)
        handler.handle(record)
        costs.append(len(calls) - before)

    assert len(records) == 4 and costs[:3] == [0, 0, 0] and costs[3] > 0
    assert [f["job"]["tasks"]["extract"]["state"] for f in channel.frames["a-tab"]] == ["running"]


def test_a_stream_record_without_both_images_may_have_changed_anything() -> None:
    from docpipe import push

    keys = {"Keys": {"hash": {"S": "f" * 64}}, "ApproximateCreationDateTime": 1}
    only_keys = {"eventName": "MODIFY", "dynamodb": keys}
    waiters = {
        "eventName": "MODIFY",
        "dynamodb": {
            **keys,
            "OldImage": {"hash": {"S": "f" * 64}, "scanWaiters": {"N": "1"}},
            "NewImage": {"hash": {"S": "f" * 64}, "scanWaiters": {"N": "2"}},
        },
    }
    claimed = {
        "eventName": "INSERT",
        "dynamodb": {**keys, "NewImage": {"hash": {"S": "f" * 64}, "status": {"S": "storing"}}},
    }

    assert push.change_of(only_keys) is not None
    assert push.change_of(waiters) is None and push.change_of(claimed) is None


def test_a_jobs_owner_is_remembered_across_batches_so_its_bytes_progress_reads_no_job(repos) -> None:
    """A job's owner never changes: once a batch has seen it (from the job's own record), a later batch's
    change to the job's bytes costs the bytes' open jobs and the owner's connections, and no read of the job."""
    jobs, files, connections = repos
    digest = "a1" * 32
    job_stream, file_stream = Stream(jobs.name), Stream(files.name)
    a_job(jobs, "alice", "processing", digest, openHash=digest)
    handler = notifier(repos, FakeChannel())
    handler.begin()
    for record in job_stream.records():  # the job's INSERT carries its owner
        handler.handle(record)
    boto3.client("dynamodb").put_item(
        TableName=files.name, Item={"hash": {"S": digest}, "status": {"S": "stored"}, "extractState": {"S": "running"}}
    )
    records = file_stream.records()
    calls = recorded_calls(connections.client, jobs.client, files.client)

    handler.begin()  # a later invocation
    sent = sum(handler.handle(record) for record in records)

    assert len(records) == 1 and sent == 0
    assert calls == ["Query", "Query"]  # the bytes' open jobs; alice's connections (none)


def test_of_several_changes_of_a_job_in_one_batch_only_its_latest_state_is_pushed(repos) -> None:
    """queued → processing → ready in one batch: one frame, ``ready``. Its owner's later job still moves up
    (the first job left the queue at a record that was not pushed), and another job's record is pushed."""
    jobs, _, connections = repos
    connections.add("alice", "a-tab", int(time.time()), 3600, 10)
    stream = Stream(jobs.name)
    first = a_job(jobs, "alice", openOwner="alice")
    second = a_job(jobs, "alice", openOwner="alice")
    jobs.transition(first, ("queued",), {"state": "processing", "updatedAt": now_iso()}, [])
    jobs.transition(first, ("processing",), {"state": "ready", "updatedAt": now_iso()}, [])
    records = stream.records()
    channel = FakeChannel()
    handler = notifier(repos, channel)

    handler.begin(records)
    sent = sum(handler.handle(record) for record in records)

    assert len(records) == 4
    frames = channel.frames["a-tab"]
    states = [(f["job"]["jobId"], f["job"]["state"]) for f in frames]
    assert states.count((first, "ready")) == 1 and not any(job == first and s != "ready" for job, s in states)
    assert (second, "queued") in states and sent == len(frames)


def test_a_backlog_moving_up_costs_a_batch_a_few_reads_not_a_read_per_queued_job(repos) -> None:
    """Three of a user's 30 queued jobs start in one batch, with a page open: the next ten of the 27 left
    are pushed once each with their new places, from one read of the user's open jobs and one batch read of
    the ten (before, each job that started read every queued job, and all the open ones again for each of
    them; and every queued job was pushed)."""
    jobs, _, connections = repos
    connections.add("alice", "a-tab", int(time.time()), 3600, 10)
    queued = []
    for _ in range(30):
        queued.append(a_job(jobs, "alice", openOwner="alice"))
        time.sleep(0.002)  # each its own createdAt: the lane's order
    stream = Stream(jobs.name)
    for job_id in queued[:3]:
        jobs.transition(job_id, ("queued",), {"state": "processing", "updatedAt": now_iso()}, [])
    records = stream.records()
    calls = recorded_calls(connections.client, jobs.client)
    channel = FakeChannel()
    handler = notifier(repos, channel)

    handler.begin(records)
    sent = sum(handler.handle(record) for record in records)

    frames = channel.frames["a-tab"]
    moved = [f["job"] for f in frames if f["job"]["jobId"] in queued[3:]]
    assert sorted(job["jobId"] for job in moved) == sorted(queued[3:13])  # the next ten, each once
    assert sorted(job["queue"]["ahead"] for job in moved) == list(range(10))  # nearer their start
    assert sent == len(frames)
    # alice's connections and her open jobs, a query each; the ten jobs in one batch read; no job read alone
    assert calls.count("Query") == 2 and calls.count("BatchGetItem") == 1 and "GetItem" not in calls


def test_the_files_of_a_batch_s_jobs_are_read_together(repos) -> None:
    """Five of a user's jobs change in one batch, each of other bytes, with a page open: their five file
    records are read in one batch read, not one read a job, and each frame shows its own file's tasks."""
    jobs, files, connections = repos
    connections.add("alice", "a-tab", int(time.time()), 3600, 10)
    digests = [f"{n:x}" * 64 for n in range(1, 6)]
    ids = [a_job(jobs, "alice", "processing", digest, openHash=digest) for digest in digests]
    client = boto3.client("dynamodb")
    for n, digest in enumerate(digests):
        client.put_item(
            TableName=files.name,
            Item={
                "hash": {"S": digest},
                "status": {"S": "stored"},
                "extractState": {"S": "done" if n % 2 else "running"},
            },
        )
    stream = Stream(jobs.name)
    for job_id in ids:
        jobs.transition(job_id, ("processing",), {"state": "ready", "updatedAt": now_iso()}, [])
    records = stream.records()
    calls = recorded_calls(connections.client, jobs.client, files.client)
    channel = FakeChannel()
    handler = notifier(repos, channel)

    handler.begin(records)
    sent = sum(handler.handle(record) for record in records)

    assert sent == 5
    shown = {f["job"]["jobId"]: f["job"]["tasks"]["extract"]["state"] for f in channel.frames["a-tab"]}
    assert shown == {job_id: "done" if n % 2 else "running" for n, job_id in enumerate(ids)}
    assert calls == ["Query", "BatchGetItem"]  # alice's connections; the five files together

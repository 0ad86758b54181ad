"""GET /jobs shows each job as GET /jobs/{id} does (its file records read in one BatchGetItem), and a queued
job's place in its lane: the caller's own jobs ahead, and a coarse estimate from the lane's throughput."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from api import positions
from docpipe.adapters.dynamo import FilesRepository, JobsRepository, owner_hash
from docpipe.adapters.dynamo.table import BATCH_GET_KEYS
from docpipe.config import Settings
from docpipe.errors import Transient
from tests.unit.test_api import call  # noqa: F401 - the API fixture

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture(autouse=True)
def no_cached_throughput() -> None:
    from api import context

    context._throughput.clear()


@pytest.fixture
def repos() -> tuple[JobsRepository, FilesRepository]:
    settings = Settings.from_env()
    return JobsRepository(settings.jobs_table), FilesRepository(settings.files_table)


def a_job(
    repos: tuple[JobsRepository, FilesRepository],
    state: str,
    digest: str,
    owner: str = "alice",
    lane: str = "high",
    at: int = 0,
    plan: tuple[str, ...] = ("presets",),
    **file_fields: Any,
) -> str:
    jobs_repo, files_repo = repos
    if files_repo.get(digest) is None:
        files_repo.claim({"hash": digest, "status": "stored", "contentType": "image/png", "type": "png"})
    if file_fields:
        files_repo.update(digest, file_fields)
    job_id = str(uuid.uuid4())
    created = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=at)).isoformat(timespec="milliseconds")
    open_ = state in ("uploading", "queued", "processing")
    jobs_repo.create(
        {
            "jobId": job_id,
            "owner": owner,
            "name": "photo.png",
            "state": state,
            "lane": lane,
            "plan": list(plan),
            "createdAt": created.replace("+00:00", "Z"),
            "hash": digest,
            "ownerHash": owner_hash(owner, digest),
            **({"openOwner": owner} if open_ else {}),
        }
    )
    return job_id


def test_the_list_shows_each_jobs_task_states_as_the_job_itself_does(call, repos) -> None:  # noqa: F811
    artifact = {"key": "derived/x/thumbnail.webp", "contentType": "image/webp", "width": 200, "height": 100}
    done = a_job(repos, "ready", "a" * 64, presetsState="done", presetsArtifacts={"thumbnail": artifact})
    failed = a_job(
        repos, "failed", "b" * 64, presetsState="failed", presetsError={"code": "file.corrupt", "message": "broken"}
    )
    running = a_job(repos, "processing", "c" * 64, presetsState="running")

    status, page, _ = call("GET", "/jobs")

    listed = {job["jobId"]: job for job in page["jobs"]}
    assert status == 200 and set(listed) == {done, failed, running}
    for job_id in (done, failed, running):
        assert listed[job_id] == call("GET", f"/jobs/{job_id}")[1]
    assert listed[done]["tasks"]["presets"]["state"] == "done"
    assert listed[done]["tasks"]["presets"]["variants"]["thumbnail"]["width"] == 200
    assert listed[failed]["tasks"]["presets"]["error"]["code"] == "file.corrupt"
    assert listed[running]["tasks"]["presets"]["state"] == "running"


class BatchGetClient:
    """A DynamoDB client whose BatchGetItem leaves keys unprocessed for the first ``unprocessed`` rounds."""

    def __init__(self, recorded: set[str], unprocessed: int = 0) -> None:
        self.recorded, self.unprocessed, self.calls = recorded, unprocessed, []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        keys = [key["hash"]["S"] for key in request["Keys"]]
        self.calls.append(keys)
        assert request["ConsistentRead"] is True and len(keys) <= BATCH_GET_KEYS
        answered, left = (keys[:1], keys[1:]) if self.unprocessed else (keys, [])
        self.unprocessed = max(0, self.unprocessed - 1)
        return {
            "Responses": {table: [{"hash": {"S": k}, "n": {"N": "1"}} for k in answered if k in self.recorded]},
            "UnprocessedKeys": {table: {"Keys": [{"hash": {"S": k}} for k in left]}} if left else {},
        }


def test_file_records_are_read_in_batches_of_100_each_hash_once() -> None:
    digests = [f"{i:064x}" for i in range(150)]
    client = BatchGetClient(set(digests[:149]))

    found = FilesRepository("files", client).get_many(digests + digests[:10])

    assert [len(keys) for keys in client.calls] == [100, 50]
    assert set(found) == set(digests[:149])  # the last hash has no record


def test_unprocessed_keys_are_asked_for_again() -> None:
    digests = [f"{i:064x}" for i in range(3)]
    client = BatchGetClient(set(digests), unprocessed=2)

    found = FilesRepository("files", client).get_many(digests)

    assert set(found) == set(digests)
    assert client.calls == [digests, digests[1:], digests[2:]]


def test_keys_still_unprocessed_after_every_round_are_a_transient_fault() -> None:
    digests = [f"{i:064x}" for i in range(10)]  # one answered a round: five left after five rounds
    client = BatchGetClient(set(digests), unprocessed=99)

    with pytest.raises(Transient):
        FilesRepository("files", client).get_many(digests)


# ---------------------------------------------------------------- queue position
def deleted_per_minute(aws: dict[str, Any], logical: str, count: float) -> None:
    """What SQS publishes for a queue whose consumers deleted ``count`` messages in the last minute."""
    name = aws["template"].attributes[logical]["QueueName"]
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "NumberOfMessagesDeleted",
                "Dimensions": [{"Name": "QueueName", "Value": name}],
                "Value": count,
            }
        ],
    )


def test_a_queued_job_counts_only_its_owners_queued_jobs_ahead_in_its_lane(call, repos) -> None:  # noqa: F811
    digest = "d" * 64
    for at in (1, 2):
        a_job(repos, "queued", digest, at=at)
    a_job(repos, "processing", digest, at=3)  # started: not ahead
    a_job(repos, "queued", digest, lane="low", at=4)  # another lane
    a_job(repos, "queued", digest, owner="bob", at=5)  # another user's: never counted, never shown
    mine = a_job(repos, "queued", digest, at=6)
    a_job(repos, "queued", digest, at=7)  # behind it

    status, job, _ = call("GET", f"/jobs/{mine}")

    assert status == 200
    assert job["queue"] == {"lane": "high", "ahead": 2, "approximate": True}  # no throughput: no estimate


def test_the_estimate_is_the_jobs_ahead_at_the_lanes_recent_throughput_rounded_up(aws, call, repos) -> None:  # noqa: F811
    digest = "d" * 64
    for at in range(5):
        a_job(repos, "queued", digest, at=at)
    mine = a_job(repos, "queued", digest, at=10)
    deleted_per_minute(aws, "PresetsHighQueue", 30)  # 30 in 5 minutes: 0.1 a second
    deleted_per_minute(aws, "PresetsLowQueue", 3000)  # another lane's

    _, job, _ = call("GET", f"/jobs/{mine}")

    assert job["queue"] == {"lane": "high", "ahead": 5, "approximate": True, "startsInSeconds": 60}  # 6 / 0.1 s


def test_the_list_gives_each_queued_job_its_place_and_no_other_job_one(call, repos) -> None:  # noqa: F811
    digest = "e" * 64
    first = a_job(repos, "queued", digest, at=1)
    second = a_job(repos, "queued", digest, at=2)
    ready = a_job(repos, "ready", "f" * 64, at=3, presetsState="done")

    _, page, _ = call("GET", "/jobs")

    places = {job["jobId"]: job.get("queue") for job in page["jobs"]}
    assert places[first]["ahead"] == 0 and places[second]["ahead"] == 1
    assert places[ready] is None


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.2, 5), (5, 5), (5.1, 10), (61, 90), (3599, 3600), (3601, 7200), (9000, 10800)]
)
def test_estimates_are_rounded_up_to_coarse_steps(seconds: float, shown: int) -> None:
    assert positions.coarse(seconds) == shown


def test_a_job_that_is_not_queued_has_no_place() -> None:
    job = {"jobId": "j", "state": "processing", "lane": "high", "createdAt": "2026"}
    assert positions.queue_view(job, [job], 1.0) is None

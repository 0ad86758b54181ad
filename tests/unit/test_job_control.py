"""Job control and the task workers' guard, over moto: cancel, retry, queues, claims, backoff, dead letters."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from docpipe import jobs
from docpipe.adapters.dynamo import FilesRepository, JobsRepository, owner_hash
from docpipe.adapters.sqs import TaskQueues
from docpipe.config import LANES, Settings
from docpipe.errors import OcrUnavailable, TaskBusy
from docpipe.worker import Message, TaskRunner, backoff_seconds
from docpipe_local.pollers import sqs_event
from tests.unit.test_api import call  # noqa: F401 - the API fixture

pytestmark = pytest.mark.usefixtures("aws")
DIGEST = "ab" * 32


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture
def repos(settings: Settings) -> tuple[JobsRepository, FilesRepository]:
    return JobsRepository(settings.jobs_table), FilesRepository(settings.files_table)


def a_job(
    repos: tuple[JobsRepository, FilesRepository],
    state: str = "queued",
    task_state: str | None = "queued",
    owner: str = "alice",
    lane: str = "high",
    **file_fields: Any,
) -> str:
    jobs_repo, files_repo = repos
    job_id = str(uuid.uuid4())
    if files_repo.get(DIGEST) is None:
        # bytes scanned clean: the workers run nothing else before (docpipe.scanning)
        files_repo.claim(
            {"hash": DIGEST, "status": "stored", "contentType": "image/jpeg", "type": "jpeg", "scanState": "done"}
        )
    fields: dict[str, Any] = dict(file_fields)
    if task_state is not None:
        fields["presetsState"] = task_state
    if fields:
        files_repo.update(DIGEST, fields)
    files_repo.add_waiter(DIGEST, "presets")
    jobs_repo.create(
        {
            "jobId": job_id,
            "owner": owner,
            "name": "photo.jpg",
            "state": state,
            "lane": lane,
            "plan": ["presets"],
            "createdAt": jobs.now_iso(),
            "hash": DIGEST,
            "ownerHash": owner_hash(owner, DIGEST),
        }
    )
    return job_id


def drain(aws: dict[str, Any], logical: str) -> list[dict[str, Any]]:
    url = aws["template"].attributes[logical]["QueueUrl"]
    got = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in got]


# ---------------------------------------------------------------- cancel
def test_cancel_moves_the_job_and_marks_work_nobody_else_waits_for(call, repos) -> None:  # noqa: F811
    job_id = a_job(repos)

    status, body, _ = call("DELETE", f"/jobs/{job_id}")

    assert (status, body["state"]) == (200, "cancelled")
    assert [h["state"] for h in body["history"]] == ["queued", "cancelled"]
    assert repos[1].get(DIGEST)["presetsState"] == "cancelled"


def test_cancel_leaves_work_another_job_waits_for(call, repos) -> None:  # noqa: F811
    mine = a_job(repos)
    a_job(repos, owner="bob")

    status, _, _ = call("DELETE", f"/jobs/{mine}")

    record = repos[1].get(DIGEST)
    assert status == 200
    assert (record["presetsState"], record["presetsWaiters"]) == ("queued", 1)


def test_a_running_task_is_not_marked_but_its_job_stays_cancelled(call, repos) -> None:  # noqa: F811
    job_id = a_job(repos, state="processing", task_state="running")

    call("DELETE", f"/jobs/{job_id}")
    repos[1].update(DIGEST, {"presetsState": "done"})
    from docpipe.settlement import settle_jobs

    settle_jobs(repos[0], repos[1], DIGEST, 0)

    assert repos[1].get(DIGEST)["presetsState"] == "done"
    assert repos[0].get(job_id)["state"] == "cancelled"


def test_an_ended_job_cannot_be_cancelled(call, repos) -> None:  # noqa: F811
    job_id = a_job(repos, state="ready", task_state="done")

    status, body, _ = call("DELETE", f"/jobs/{job_id}")
    other, _, _ = call("DELETE", f"/jobs/{job_id}", user="bob")

    assert (status, body["code"]) == (409, "job.finished")
    assert other == 404


def test_a_new_upload_of_cancelled_work_queues_it_again(repos) -> None:
    a_job(repos, task_state="cancelled")

    assert repos[1].request_task(DIGEST, "presets") is None
    assert repos[1].get(DIGEST)["presetsState"] == "queued"


# ---------------------------------------------------------------- retry
def test_retry_queues_the_failed_task_on_the_jobs_lane(aws, call, repos) -> None:  # noqa: F811
    job_id = a_job(repos, state="failed", task_state="failed", lane="low")
    repos[1].update(DIGEST, {"presetsError": {"code": "ocr.unavailable", "message": "down"}})

    status, body, _ = call("POST", f"/jobs/{job_id}/retry")

    assert (status, body["state"], body["requeued"]) == (202, "queued", ["presets"])
    assert "error" not in body
    assert drain(aws, "PresetsLowQueue") == [{"task": "presets", "lane": "low", "hash": DIGEST}]
    record = repos[1].get(DIGEST)
    assert record["presetsState"] == "queued" and "presetsError" not in record


def test_retry_of_a_cancelled_job_runs_its_skipped_work(aws, call, repos) -> None:  # noqa: F811
    job_id = a_job(repos)
    call("DELETE", f"/jobs/{job_id}")

    status, body, _ = call("POST", f"/jobs/{job_id}/retry")

    assert (status, body["requeued"]) == (202, ["presets"])
    assert [h["state"] for h in body["history"]] == ["queued", "cancelled", "queued"]
    assert drain(aws, "PresetsHighQueue") == [{"task": "presets", "lane": "high", "hash": DIGEST}]


def test_retry_does_not_queue_work_that_is_on_its_way(aws, call, repos) -> None:  # noqa: F811
    job_id = a_job(repos)
    a_job(repos, owner="bob")  # keeps the task queued through the cancel
    call("DELETE", f"/jobs/{job_id}")

    status, body, _ = call("POST", f"/jobs/{job_id}/retry")

    assert (status, body["requeued"]) == (202, [])
    assert drain(aws, "PresetsHighQueue") == []


@pytest.mark.parametrize("state", ["ready", "queued", "processing"])
def test_only_failed_or_cancelled_jobs_are_retried(call, repos, state) -> None:  # noqa: F811
    job_id = a_job(repos, state=state, task_state="done" if state == "ready" else "queued")

    status, body, _ = call("POST", f"/jobs/{job_id}/retry")

    assert (status, body["code"]) == (409, "job.not_retryable")


def test_an_upload_refused_at_ingest_cannot_be_retried(call, repos) -> None:  # noqa: F811
    job_id = str(uuid.uuid4())
    repos[0].create(
        {
            "jobId": job_id,
            "owner": "alice",
            "name": "x.png",
            "state": "failed",
            "createdAt": jobs.now_iso(),
            "error": {"code": "file.corrupt", "message": "no"},
        }
    )

    status, body, _ = call("POST", f"/jobs/{job_id}/retry")

    assert (status, body["code"]) == (409, "job.not_retryable")
    assert "file.corrupt" in body["message"]


# ---------------------------------------------------------------- queues
ADMIN = {"cognito:groups": ["docpipe-admins"]}  # the template's default AdminGroup and AdminGroupClaim


def test_queues_lists_every_lane_with_its_counts(aws, call) -> None:  # noqa: F811
    low = aws["template"].attributes["PresetsLowQueue"]["QueueUrl"]
    for _ in range(2):
        aws["sqs"].send_message(QueueUrl=low, MessageBody="{}")
    dlq = aws["template"].attributes["ExtractHighDLQ"]["QueueUrl"]
    aws["sqs"].send_message(QueueUrl=dlq, MessageBody="{}")

    status, body, headers = call("GET", "/queues", claims=ADMIN)

    rows = {(r["concern"], r["lane"]): r for r in body["queues"]}
    assert status == 200 and headers["Cache-Control"] == "no-store" and body["scope"] == "all"
    assert set(rows) == {("ingest", lane) for lane in LANES} | {
        (t, lane) for t in ("scan", "presets", "extract", "ocr") for lane in ("high", "normal", "low")
    }
    assert (rows["presets", "low"]["depth"], rows["presets", "low"]["dlqDepth"]) == (2, 0)
    assert rows["extract", "high"]["dlqDepth"] == 1
    assert all({"inFlight", "delayed", "oldestAgeSeconds", "dlq"} <= set(r) for r in rows.values())


def test_queue_ages_come_from_cloudwatch(aws, call) -> None:  # noqa: F811
    import boto3

    name = aws["template"].attributes["OcrLowQueue"]["QueueName"]
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": name}],
                "Value": 42.0,
            }
        ],
    )

    _, body, _ = call("GET", "/queues", claims={"cognito:groups": "[docpipe-admins]"})  # API Gateway's string form

    ages = {(r["concern"], r["lane"]): r["oldestAgeSeconds"] for r in body["queues"]}
    assert ages["ocr", "low"] == 42.0
    assert ages["ocr", "high"] is None


def test_a_user_who_is_not_an_operator_sees_only_their_own_open_jobs_per_lane(aws, call) -> None:  # noqa: F811
    low = aws["template"].attributes["PresetsLowQueue"]["QueueUrl"]
    aws["sqs"].send_message(QueueUrl=low, MessageBody="{}")  # someone's traffic: not bob's to see
    for name, size in (("a.jpg", 1000), ("b.jpg", 2000), ("big.pdf", 50 * 1024 * 1024)):
        assert call("POST", "/uploads", {"name": name, "size": size}, user="bob")[0] == 201
    ended = call("POST", "/uploads", {"name": "c.jpg", "size": 10}, user="bob")[1]["jobId"]
    assert call("DELETE", f"/jobs/{ended}", user="bob")[0] == 200
    call("POST", "/uploads", {"name": "x.jpg", "size": 10}, user="carol")

    as_user = call("GET", "/queues", user="bob", claims={"cognito:groups": ["readers"]})[1]
    as_other_group = call("GET", "/queues", user="bob", claims={"groups": ["docpipe-admins"]})[1]

    assert as_user == as_other_group
    assert as_user["scope"] == "own" and "queues" not in as_user
    lanes = {row["lane"]: row for row in as_user["lanes"]}
    assert lanes["high"] == {"lane": "high", "open": 2, "uploading": 2, "scanning": 0, "queued": 0, "processing": 0}
    assert (lanes["normal"]["open"], lanes["low"]["open"]) == (0, 1)


def test_queues_needs_a_user(call) -> None:  # noqa: F811
    assert call("GET", "/queues", user=None)[0] == 401


# ---------------------------------------------------------------- dead letters on read
def test_a_final_attempt_killed_past_its_time_limit_fails_the_job_on_read(call, repos) -> None:  # noqa: F811
    job_id = a_job(repos, state="processing", task_state="running", presetsFinalAttemptEnds=int(time.time()) - 1)

    status, body, _ = call("GET", f"/jobs/{job_id}")

    assert (status, body["state"], body["error"]["code"]) == (200, "failed", "task.dead_lettered")
    assert repos[0].get(job_id)["state"] == "failed"


def test_a_final_attempt_still_in_its_time_limit_is_running(call, repos) -> None:  # noqa: F811
    job_id = a_job(repos, state="processing", task_state="running", presetsFinalAttemptEnds=int(time.time()) + 60)

    _, body, _ = call("GET", f"/jobs/{job_id}")

    assert (body["state"], body["tasks"]["presets"]["state"]) == ("processing", "running")


# ---------------------------------------------------------------- the task runner
class Queue:
    """A real lane queue: messages are sent and received, so records carry real receipt handles."""

    def __init__(self, aws: dict[str, Any], logical: str = "PresetsHighQueue") -> None:
        self.sqs = aws["sqs"]
        self.url = aws["template"].attributes[logical]["QueueUrl"]
        self.arn = aws["template"].attributes[logical]["Arn"]

    def record(self, body: dict[str, Any] | None = None, visibility: int = 30) -> Any:

        self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(body or {"hash": DIGEST}))
        return self.receive(visibility)

    def receive(self, visibility: int = 30) -> Any:
        from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

        got = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=1, VisibilityTimeout=visibility, AttributeNames=["All"]
        )["Messages"]
        return SQSRecord(sqs_event(got, self.arn, "us-east-1")["Records"][0])

    def visible(self) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def message(record: Any, opening: bool = True, task: str = "presets") -> Message:
    return Message.of(record, DIGEST, task, opening)


@pytest.fixture
def runner(settings, repos) -> TaskRunner:
    return TaskRunner(settings, repos[1], repos[0])


def test_backoff_grows_by_receive_count() -> None:
    assert [backoff_seconds(n, rand=lambda: 0.5) for n in (1, 2, 3, 4)] == [5, 20, 80, 320]
    assert backoff_seconds(1, rand=lambda: 0.0) == 4 and backoff_seconds(1, rand=lambda: 1.0) == 6


def test_an_opening_message_claims_the_task_and_counts_an_attempt(aws, runner, repos) -> None:
    a_job(repos)
    ran = []

    state = runner.process(message(Queue(aws).record()), lambda: ran.append(1) or "done", time.time() + 30)

    record = repos[1].get(DIGEST)
    assert (state, ran, record["presetsAttempts"]) == ("done", [1], 1)


def test_a_duplicate_message_while_the_task_runs_is_retried_later(aws, runner, repos) -> None:
    a_job(repos)
    queue = Queue(aws)
    first, second = queue.record(), queue.record()
    seen: list[Any] = []

    def run() -> str:
        with pytest.raises(TaskBusy):
            runner.process(message(second), lambda: seen.append("second ran") or "done", time.time() + 30)
        return "done"

    runner.process(message(first), run, time.time() + 30)

    assert seen == []
    assert queue.visible() == 0  # the duplicate waits out its backoff before it comes back


def test_the_same_message_redelivered_after_its_run_was_killed_takes_the_task_over(aws, runner, repos) -> None:
    a_job(repos, task_state="running", presetsLeaseUntil=int(time.time()) + 300)
    queue = Queue(aws)
    record = queue.record(visibility=0)
    repos[1].update(DIGEST, {"presetsHolder": record.message_id})
    again = queue.receive()

    assert runner.process(message(again), lambda: "done", time.time() + 30) == "done"
    assert repos[1].get(DIGEST)["presetsAttempts"] == 1


def test_cancelled_work_is_skipped(aws, runner, repos) -> None:
    a_job(repos, task_state="cancelled")

    assert runner.process(message(Queue(aws).record()), lambda: pytest.fail("ran"), time.time() + 30) == "skipped"


def test_a_retryable_fault_gives_the_task_back_and_backs_off(aws, runner, repos) -> None:
    a_job(repos)
    queue = Queue(aws)

    def run() -> str:
        raise OcrUnavailable()

    with pytest.raises(OcrUnavailable):
        runner.process(message(queue.record(visibility=0)), run, time.time() + 30)

    record = repos[1].get(DIGEST)
    assert record["presetsState"] == "queued" and "presetsHolder" not in record
    assert queue.visible() == 0  # visibility 0 was replaced by the backoff


def test_a_fault_on_the_final_receive_fails_the_task_and_the_job(aws, runner, repos) -> None:
    job_id = a_job(repos)
    queue = Queue(aws)
    queue.record(visibility=0)
    queue.receive(visibility=0)
    final = queue.receive()
    assert message(final).final

    def run() -> str:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        runner.process(message(final), run, time.time() + 30)

    assert repos[1].get(DIGEST)["presetsError"]["code"] == "internal"
    job = repos[0].get(job_id)
    assert (job["state"], job["error"]["code"]) == ("failed", "internal")


def test_a_final_attempt_leaves_its_deadline_until_it_ends(aws, runner, repos) -> None:
    a_job(repos)
    queue = Queue(aws)
    queue.record(visibility=0)
    queue.receive(visibility=0)
    final = queue.receive()
    during: list[Any] = []

    def run() -> str:
        during.append(repos[1].get(DIGEST).get("presetsFinalAttemptEnds"))
        return "done"

    runner.process(message(final), run, time.time() + 30)

    assert during[0] is not None
    assert "presetsFinalAttemptEnds" not in repos[1].get(DIGEST)


def test_task_queues_carry_the_lane(aws, settings) -> None:
    TaskQueues(settings.task_queues).send("presets", "normal", {"hash": DIGEST})

    assert drain(aws, "PresetsNormalQueue") == [{"task": "presets", "lane": "normal", "hash": DIGEST}]


def test_two_settlers_racing_to_the_same_state_move_the_job_once(repos) -> None:
    # given a queued job whose task started: two workers both read "queued" and both settle it to processing
    jobs_repo = repos[0]
    job_id = a_job(repos, task_state="running")
    fields = {"state": "processing", "updatedAt": jobs.now_iso()}

    first = jobs_repo.transition(job_id, ("queued", "processing"), fields)
    second = jobs_repo.transition(job_id, ("queued", "processing"), fields)

    # then the second finds it there already: one transition, one history entry
    assert first is not None and second is None
    assert [h["state"] for h in (jobs_repo.get(job_id) or {})["history"]] == ["queued", "processing"]

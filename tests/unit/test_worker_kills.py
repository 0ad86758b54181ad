"""Kills counted per task on the same bytes, over moto: a run killed once is run again, a second kill
fails the task with the code that fits instead of a third run into the dead-letter queue; what a job
reads while a killed run's time limit has not passed, and after."""

from __future__ import annotations

import time
from typing import Any

import pytest

from docpipe import jobs
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.config import Settings
from docpipe.errors import OcrUnavailable
from docpipe.worker import TaskRunner
from tests.unit.test_api import call  # noqa: F401 - the API fixture
from tests.unit.test_job_control import DIGEST, Queue, a_job, message

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def repos() -> tuple[JobsRepository, FilesRepository]:
    settings = Settings.from_env()
    return JobsRepository(settings.jobs_table), FilesRepository(settings.files_table)


@pytest.fixture
def runner(repos: tuple[JobsRepository, FilesRepository]) -> TaskRunner:
    return TaskRunner(Settings.from_env(), repos[1], repos[0])


def redelivered(aws: dict[str, Any], repos: Any, receives: int = 2) -> Any:
    """The ``receives``-th receive of a presets message whose last run was killed holding the task."""
    queue = Queue(aws)
    record = queue.record(visibility=0)
    for _ in range(receives - 2):
        queue.receive(visibility=0)
    repos[1].update(
        DIGEST, {"presetsState": "running", "presetsHolder": record.message_id, "presetsLeaseUntil": int(time.time())}
    )
    return queue.receive()


# ---------------------------------------------------------------- counting
def test_a_claim_of_a_queued_task_counts_no_kill(aws, runner, repos) -> None:
    a_job(repos)

    runner.process(message(Queue(aws).record()), lambda: "done", time.time() + 30)

    assert "presetsKills" not in repos[1].get(DIGEST)


def test_the_same_message_taking_over_its_killed_run_counts_one_kill_and_runs(aws, runner, repos) -> None:
    a_job(repos)
    again = redelivered(aws, repos)
    ran = []

    state = runner.process(message(again), lambda: ran.append(1) or "done", time.time() + 30)

    record = repos[1].get(DIGEST)
    assert (state, ran) == ("done", [1])
    assert (record["presetsKills"], record["presetsAttempts"]) == (1, 1)


def test_a_claim_after_another_holders_lease_passed_counts_a_kill(aws, runner, repos) -> None:
    a_job(repos, task_state="running", presetsHolder="a-message-whose-run-died", presetsLeaseUntil=int(time.time()) - 5)

    state = runner.process(message(Queue(aws).record()), lambda: "done", time.time() + 30)

    assert (state, repos[1].get(DIGEST)["presetsKills"]) == ("done", 1)


def test_a_run_that_raises_gives_its_claim_back_and_its_retry_counts_no_kill(aws, runner, repos) -> None:
    a_job(repos)
    queue = Queue(aws)

    def down() -> str:
        raise OcrUnavailable()

    first = queue.record(visibility=0)
    with pytest.raises(OcrUnavailable):
        runner.process(message(first), down, time.time() + 30)
    queue.sqs.change_message_visibility(QueueUrl=queue.url, ReceiptHandle=first.receipt_handle, VisibilityTimeout=0)
    retry = queue.receive()  # the same message, its backoff cut short

    state = runner.process(message(retry), lambda: "done", time.time() + 30)

    record = repos[1].get(DIGEST)
    assert retry.message_id == first.message_id
    assert (state, record["presetsAttempts"]) == ("done", 2) and "presetsKills" not in record


def test_a_run_that_leaves_the_task_running_for_other_messages_ends_its_claim(aws, runner, repos) -> None:
    # given an opening message that splits its work into follow-up messages (a large PDF's page ranges)
    a_job(repos)
    queue = Queue(aws)
    runner.process(message(queue.record()), lambda: "running", time.time() - 5)  # a lease that has passed

    # when a duplicate of the opening message comes
    record = repos[1].get(DIGEST)
    duplicate = queue.record()
    claimed = repos[1].claim_task(DIGEST, "presets", duplicate.message_id, int(time.time()) + 30, int(time.time()))

    # then the task is still the ranges' and no kill is counted: the run ended, it was not killed
    assert record["presetsState"] == "running" and "presetsHolder" not in record and "presetsLeaseUntil" not in record
    assert claimed is None and "presetsKills" not in repos[1].get(DIGEST)
    assert jobs.task_state(repos[1].get(DIGEST), "presets") == ("running", None)


# ---------------------------------------------------------------- the second kill
def test_the_second_kill_fails_the_task_and_its_jobs_without_a_third_run(aws, runner, repos) -> None:
    job_id = a_job(repos, state="processing", presetsKills=1, presetsAttempts=2)  # two runs, both killed
    third = redelivered(aws, repos, receives=3)
    assert message(third).final

    state = runner.process(message(third), lambda: pytest.fail("ran a third time"), time.time() + 30)

    record, job = repos[1].get(DIGEST), repos[0].get(job_id)
    assert state == "failed"  # the handler returns: the message is deleted, never dead-lettered
    assert (record["presetsState"], record["presetsError"]["code"], record["presetsKills"]) == (
        "failed",
        "image.too_many_pixels",
        2,
    )
    assert not {"presetsHolder", "presetsLeaseUntil", "presetsFinalAttemptEnds"} & set(record)
    assert record["presetsAttempts"] == 2  # the third receive's claim ran nothing
    assert (job["state"], job["error"]["code"]) == ("failed", "image.too_many_pixels")


def test_the_second_kill_also_fails_a_task_on_its_second_receive(aws, runner, repos) -> None:
    # given a kill counted already (a duplicate message took the task over), and this message's run killed too
    a_job(repos, presetsKills=1)
    again = redelivered(aws, repos)

    state = runner.process(message(again), lambda: pytest.fail("ran again"), time.time() + 30)

    assert (state, repos[1].get(DIGEST)["presetsState"]) == ("failed", "failed")


@pytest.mark.parametrize(
    ("task", "code"),
    [("presets", "image.too_many_pixels"), ("ocr", "image.too_many_pixels"), ("extract", "archive.unsafe")],
)
def test_a_task_killed_twice_fails_with_the_code_of_what_it_does(aws, runner, repos, task, code) -> None:
    a_job(repos)
    queue = Queue(aws)
    record = queue.record(visibility=0)
    repos[1].update(
        DIGEST,
        {f"{task}State": "running", f"{task}Holder": record.message_id, f"{task}LeaseUntil": 1, f"{task}Kills": 1},
    )

    runner.process(message(queue.receive(), task=task), lambda: pytest.fail("ran"), time.time() + 30)

    assert repos[1].get(DIGEST)[f"{task}Error"]["code"] == code


# ---------------------------------------------------------------- what a job reads
def test_a_task_killed_once_whose_next_run_outlived_its_time_limit_reads_failed() -> None:
    file = {"presetsState": "running", "presetsKills": 1, "presetsLeaseUntil": 100}

    assert jobs.task_state(file, "presets", now=101) == ("failed", jobs.killed_error("presets"))
    assert jobs.task_state(file, "presets", now=99) == ("running", None)


def test_a_task_never_killed_reads_running_past_its_lease() -> None:
    # a lease that has passed alone proves nothing until a claim finds it (the run may have ended it)
    assert jobs.task_state({"presetsState": "running", "presetsLeaseUntil": 100}, "presets", now=500) == (
        "running",
        None,
    )


def test_a_final_attempt_killed_after_an_earlier_kill_reads_the_kills_code_not_dead_lettered() -> None:
    file = {"extractState": "running", "extractKills": 1, "extractLeaseUntil": 100, "extractFinalAttemptEnds": 100}

    state, error = jobs.task_state(file, "extract", now=101)

    assert (state, error and error["code"]) == ("failed", "archive.unsafe")


def test_a_final_attempt_killed_reads_dead_lettered_without_saying_the_message_is_in_the_dlq_yet() -> None:
    # the verdict is final when the attempt's time passes; SQS moves the message a visibility timeout later
    file = {"presetsState": "running", "presetsLeaseUntil": 100, "presetsFinalAttemptEnds": 100}

    state, error = jobs.task_state(file, "presets", now=101)

    assert (state, error) == ("failed", jobs.DEAD_LETTERED)
    assert "is in the dead-letter queue" not in jobs.DEAD_LETTERED["message"]


def test_a_job_reads_failed_once_its_second_killed_run_outlived_its_time_limit(call, repos) -> None:  # noqa: F811
    job_id = a_job(
        repos, state="processing", task_state="running", presetsKills=1, presetsLeaseUntil=int(time.time()) - 1
    )

    status, body, _ = call("GET", f"/jobs/{job_id}")

    assert (status, body["state"], body["error"]["code"]) == (200, "failed", "image.too_many_pixels")
    assert body["tasks"]["presets"]["state"] == "failed"
    assert repos[0].get(job_id)["state"] == "failed"


def test_retry_of_a_job_failed_by_kills_runs_the_task_again_from_no_kills(aws, call, repos) -> None:  # noqa: F811
    job_id = a_job(repos, state="processing", task_state="running", presetsKills=1, presetsLeaseUntil=1)
    assert call("GET", f"/jobs/{job_id}")[1]["state"] == "failed"

    status, body, _ = call("POST", f"/jobs/{job_id}/retry")

    record = repos[1].get(DIGEST)
    assert (status, body["requeued"]) == (202, ["presets"])
    assert record["presetsState"] == "queued" and "presetsKills" not in record


def test_a_scan_killed_twice_fails_as_unsupported_not_as_an_image_code() -> None:
    # a 1 GiB text file whose scan outlived ScanFunction's timeout twice on the local stack ended
    # image.too_many_pixels; a scan that cannot finish is scan.unsupported (never clean)
    assert jobs.killed_error("scan")["code"] == "scan.unsupported"
    assert jobs.killed_error("presets")["code"] == "image.too_many_pixels"
    assert jobs.killed_error("extract")["code"] == "archive.unsafe"

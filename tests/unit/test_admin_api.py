"""The operators' routes over moto: /admin/queues, /admin/jobs, retry by job or by code, DLQ redrive and
clean; each refuses a user who is not an operator (403) and a request without one (401)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from docpipe.adapters.dynamo import FilesRepository, JobsRepository, owner_hash
from docpipe.adapters.sqs import DeadLetters
from docpipe.config import Settings
from tests.unit.test_api import call  # noqa: F401 - the API fixture

pytestmark = pytest.mark.usefixtures("aws")
ADMIN = {"cognito:groups": ["docpipe-admins"]}  # the template's default AdminGroup and AdminGroupClaim


@pytest.fixture
def repos() -> tuple[JobsRepository, FilesRepository]:
    settings = Settings.from_env()
    return JobsRepository.for_settings(settings), FilesRepository(settings.files_table)


def iso(days_ago: float = 0, at: int = 0) -> str:
    moment = datetime.now(UTC) - timedelta(days=days_ago) + timedelta(milliseconds=at)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def a_job(
    repos: tuple[JobsRepository, FilesRepository],
    state: str = "failed",
    owner: str = "alice",
    code: str | None = "image.too_many_pixels",
    digest: str | None = "new",
    updated: str | None = None,
    lane: str = "normal",
) -> str:
    jobs_repo, files_repo = repos
    job_id = str(uuid.uuid4())
    job: dict[str, Any] = {
        "jobId": job_id,
        "owner": owner,
        "name": "photo.png",
        "state": state,
        "lane": lane,
        "plan": ["presets"],
        "createdAt": updated or iso(),
        "updatedAt": updated or iso(),
    }
    if digest == "new":  # bytes of its own, so that no other job's tasks settle it
        digest = uuid.uuid4().hex * 2
    if digest:
        if files_repo.get(digest) is None:
            files_repo.claim({"hash": digest, "status": "stored", "contentType": "image/png", "type": "png"})
        files_repo.update(digest, {"presetsState": {"failed": "failed", "ready": "done"}.get(state, "queued")})
        files_repo.mark_stored(digest, {})  # one more reference: this job's
        job |= {"hash": digest, "ownerHash": owner_hash(owner, digest)}
    if code and state == "failed":
        job["error"] = {"code": code, "message": "too many pixels"}
    if state in ("uploading", "queued", "processing"):
        job["openOwner"] = owner
    jobs_repo.create(job)
    return job_id


ROUTES = [
    ("GET", "/admin/queues", None),
    ("GET", "/admin/jobs", None),
    ("POST", "/admin/jobs/retry", {"code": "image.too_many_pixels"}),
    ("POST", "/admin/dlq/redrive", {"queue": "presets-high"}),
    ("POST", "/admin/clean", {"olderThanDays": 30}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_a_user_who_is_not_an_operator_is_forbidden(call, method, path, body) -> None:  # noqa: F811
    status, error, _ = call(method, path, body, user="bob", claims={"cognito:groups": ["readers"]})
    assert (status, error["code"]) == (403, "auth.forbidden")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_a_request_without_a_user_is_unauthorized(call, method, path, body) -> None:  # noqa: F811
    status, error, _ = call(method, path, body, user=None)
    assert (status, error["code"]) == (401, "auth.required")


def test_admin_queues_is_what_queues_gives_an_operator(aws, call) -> None:  # noqa: F811
    dlq = aws["template"].attributes["OcrLowDLQ"]["QueueUrl"]
    aws["sqs"].send_message(QueueUrl=dlq, MessageBody="{}")

    status, body, headers = call("GET", "/admin/queues", user="root", claims=ADMIN)

    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert body == call("GET", "/queues", user="root", claims=ADMIN)[1]
    assert {(r["concern"], r["lane"]): r["dlqDepth"] for r in body["queues"]}["ocr", "low"] == 1


# ---------------------------------------------------------------- /admin/jobs
def admin(call, method: str, path: str, body: Any = None, query: str = "") -> tuple[int, Any]:  # noqa: F811
    status, got, _ = call(method, path, body, user="root", claims=ADMIN, query=query)
    return status, got


def test_jobs_of_every_user_are_listed_by_state_and_code_with_their_owner(call, repos) -> None:  # noqa: F811
    pixels = {a_job(repos, owner="alice"), a_job(repos, owner="bob")}
    a_job(repos, code="file.corrupt")
    a_job(repos, state="ready")

    status, body = admin(call, "GET", "/admin/jobs", query="code=image.too_many_pixels")

    assert status == 200 and body["nextCursor"] is None
    assert {job["jobId"] for job in body["jobs"]} == pixels
    assert {job["owner"] for job in body["jobs"]} == {"alice", "bob"}
    assert all(job["tasks"]["presets"]["state"] == "failed" for job in body["jobs"])


def test_the_listing_filters_by_owner_and_time_and_pages_with_a_cursor(call, repos) -> None:  # noqa: F811
    old = a_job(repos, owner="bob", updated=iso(days_ago=3))
    recent = [a_job(repos, owner="bob", updated=iso(at=i)) for i in range(3)]
    a_job(repos, owner="alice")

    seen, cursor, pages, since = [], None, 0, iso(days_ago=1)
    while True:
        query = f"state=failed&owner=bob&since={since}&limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body = admin(call, "GET", "/admin/jobs", query=query)
        assert status == 200, body
        seen += [job["jobId"] for job in body["jobs"]]
        pages, cursor = pages + 1, body["nextCursor"]
        if cursor is None:
            break

    assert seen == recent[::-1] and old not in seen  # most recently changed first
    assert pages == 2


def test_without_a_state_every_state_is_listed_in_turn(call, repos) -> None:  # noqa: F811
    ids = {a_job(repos, state=state) for state in ("uploading", "queued", "ready", "cancelled")}

    _, body = admin(call, "GET", "/admin/jobs")

    assert [job["state"] for job in body["jobs"]] == ["uploading", "queued", "ready", "cancelled"]
    assert {job["jobId"] for job in body["jobs"]} == ids


@pytest.mark.parametrize(
    "query",
    [
        "state=broken",
        "code=Not A Code",
        "since=yesterday",
        "until=2026-13-01",
        pytest.param(f"since={iso()}&until={iso(days_ago=1)}", id="since-after-until"),  # ids the same on every worker
        "limit=0",
        "limit=101",
        "stat=failed",  # a misspelt filter is refused, not ignored
        "owner=a/b",
        "cursor=not-a-cursor",
    ],
)
def test_bad_listing_parameters_are_400(call, query) -> None:  # noqa: F811
    status, body = admin(call, "GET", "/admin/jobs", query=query)
    assert (status, body["code"]) == (400, "request.invalid")


def test_a_cursor_of_another_listing_is_refused(call, repos) -> None:  # noqa: F811
    for _ in range(2):
        a_job(repos)
    _, page = admin(call, "GET", "/admin/jobs", query="state=failed&limit=1")

    status, body = admin(call, "GET", "/admin/jobs", query=f"state=ready&limit=1&cursor={page['nextCursor']}")

    assert (status, body["code"]) == (400, "request.invalid")
    assert "belong" in body["message"]


# ---------------------------------------------------------------- retry
def test_an_operator_retries_one_job_of_any_user_past_its_owners_retries(aws, call, repos) -> None:  # noqa: F811
    job_id = a_job(repos, owner="bob")
    for _ in range(5):  # RetriesPerJob (5) used up by bob
        repos[0].count_retry(job_id, 5)

    status, body = admin(call, "POST", "/admin/jobs/retry", {"jobId": job_id})

    assert status == 200
    assert (body["retried"], body["skipped"], body["nextCursor"]) == (1, 0, None)
    assert body["jobs"] == [{"jobId": job_id, "owner": "bob", "result": "retried", "requeued": ["presets"]}]
    job = repos[0].get(job_id)
    assert job is not None and (job["state"], job["retries"]) == ("queued", 5)  # not counted against bob
    assert call("POST", f"/jobs/{job_id}/retry", user="bob")[0] == 409  # queued now; his own limit unchanged


def test_retry_by_code_retries_the_failed_jobs_with_that_code_a_bounded_number_a_call(call, repos) -> None:  # noqa: F811
    wanted = {a_job(repos, owner=owner, updated=iso(at=i)) for i, owner in enumerate(("alice", "bob", "carol"))}
    other = a_job(repos, code="file.corrupt")
    refused = a_job(repos, digest=None)  # refused at ingest: nothing stored to retry

    status, first = admin(call, "POST", "/admin/jobs/retry", {"code": "image.too_many_pixels", "limit": 2})
    _, second = admin(
        call, "POST", "/admin/jobs/retry", {"code": "image.too_many_pixels", "limit": 2, "cursor": first["nextCursor"]}
    )

    assert status == 200 and (first["retried"], second["retried"]) == (2, 1)
    assert first["nextCursor"] and second["nextCursor"] is None
    assert {job["jobId"] for job in first["jobs"] + second["jobs"]} == wanted
    assert all(repos[0].get(job_id)["state"] == "queued" for job_id in wanted)  # type: ignore[index]
    assert repos[0].get(other)["state"] == repos[0].get(refused)["state"] == "failed"  # type: ignore[index]


def test_retry_by_code_stops_in_time_and_its_cursor_goes_on_after_the_last_job_touched(
    call,  # noqa: F811
    repos,
    monkeypatch,
) -> None:
    from api import admin as routes

    wanted = [a_job(repos, updated=iso(at=i)) for i in range(3)]
    clock = iter([0.0, 1.0, 1.0, 100.0])  # the deadline's start, then before each job: the third is too late
    monkeypatch.setattr(routes, "time", SimpleNamespace(monotonic=lambda: next(clock, 100.0)))

    _, first = admin(call, "POST", "/admin/jobs/retry", {"code": "image.too_many_pixels"})
    monkeypatch.undo()
    _, rest = admin(call, "POST", "/admin/jobs/retry", {"code": "image.too_many_pixels", "cursor": first["nextCursor"]})

    assert [job["jobId"] for job in first["jobs"]] == wanted[:0:-1]  # newest first, two in time
    assert [job["jobId"] for job in rest["jobs"]] == wanted[:1]
    assert rest["nextCursor"] is None


def test_a_job_that_cannot_be_retried_is_skipped_with_the_reason(call, repos) -> None:  # noqa: F811
    ready = a_job(repos, state="ready")

    status, body = admin(call, "POST", "/admin/jobs/retry", {"jobId": ready})

    assert (status, body["retried"], body["skipped"]) == (200, 0, 1)
    assert body["jobs"][0] | {"message": ""} == {
        "jobId": ready,
        "owner": "alice",
        "result": "skipped",
        "code": "job.not_retryable",
        "message": "",
    }


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"jobId": "x", "code": "image.too_many_pixels"}, 400),
        ({"code": "image.too_many_pixels", "limit": 0}, 400),
        ({"code": "image.too_many_pixels", "limit": "5"}, 400),
        ({"code": "not a code"}, 400),
        ({"jobId": str(uuid.uuid4()), "limit": 3}, 400),
        ({"code": "image.too_many_pixels", "force": True}, 400),
        ({"jobId": str(uuid.uuid4())}, 404),
    ],
)
def test_bad_retry_requests_are_refused(call, body, status) -> None:  # noqa: F811
    assert admin(call, "POST", "/admin/jobs/retry", body)[0] == status


# ---------------------------------------------------------------- dead letters
def test_redrive_moves_a_dlqs_messages_back_to_its_queue_with_their_tenant(aws, call) -> None:  # noqa: F811
    urls = {name: aws["template"].attributes[name]["QueueUrl"] for name in ("PresetsHighQueue", "PresetsHighDLQ")}
    for i in range(12):
        aws["sqs"].send_message(
            QueueUrl=urls["PresetsHighDLQ"], MessageBody=json.dumps({"hash": f"{i}"}), MessageGroupId="alice"
        )

    status, body = admin(call, "POST", "/admin/dlq/redrive", {"queue": "presets-high"})

    assert status == 200
    assert body == {
        "queue": "presets-high",
        "deadLetterQueue": urls["PresetsHighDLQ"].rsplit("/", 1)[1],
        "method": "copy",  # moto has no StartMessageMoveTask
        "messages": 12,
        "approximate": False,
        "more": False,
    }
    moved = []
    while (
        got := aws["sqs"]
        .receive_message(
            QueueUrl=urls["PresetsHighQueue"], MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageGroupId"]
        )
        .get("Messages")
    ):
        moved += got
    assert sorted(json.loads(m["Body"])["hash"] for m in moved) == sorted(str(i) for i in range(12))
    assert {m["Attributes"]["MessageGroupId"] for m in moved} == {"alice"}
    assert DeadLetters().waiting(urls["PresetsHighDLQ"]) == 0


@pytest.mark.parametrize("queue", ["presets", "presets-urgent", "uploads-high", "PresetsHighQueue"])
def test_redrive_of_an_unknown_queue_is_400(call, queue) -> None:  # noqa: F811
    assert admin(call, "POST", "/admin/dlq/redrive", {"queue": queue})[0] == 400


class MoveTasks:
    """An SQS endpoint that has StartMessageMoveTask: it records the task and answers ListMessageMoveTasks."""

    def __init__(self, waiting: int, running: dict[str, Any] | None = None) -> None:
        self.waiting, self.running, self.started = waiting, running, []

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        name = QueueUrl.rsplit("/", 1)[1]
        return {"Attributes": {"QueueArn": f"arn:aws:sqs:us-east-1:1:{name}", "ApproximateNumberOfMessages": "7"}}

    def list_message_move_tasks(self, SourceArn: str, MaxResults: int) -> dict[str, Any]:
        return {"Results": [self.running] if self.running else []}

    def start_message_move_task(self, SourceArn: str, DestinationArn: str) -> dict[str, Any]:
        self.started.append((SourceArn, DestinationArn))
        return {"TaskHandle": "handle-1"}


def test_where_sqs_moves_messages_itself_a_move_task_is_started_to_the_source_queue() -> None:
    sqs = MoveTasks(waiting=7)

    moved = DeadLetters(sqs).redrive("https://sqs/1/q-dlq", "https://sqs/1/q")

    assert sqs.started == [("arn:aws:sqs:us-east-1:1:q-dlq", "arn:aws:sqs:us-east-1:1:q")]
    assert (moved.method, moved.messages, moved.approximate, moved.task_handle) == ("move-task", 7, True, "handle-1")


def test_a_move_task_already_running_is_reported_not_started_again() -> None:
    running = {"Status": "RUNNING", "TaskHandle": "h0", "ApproximateNumberOfMessagesToMove": 50}
    sqs = MoveTasks(waiting=7, running={**running, "ApproximateNumberOfMessagesMoved": 20})

    moved = DeadLetters(sqs).redrive("https://sqs/1/q-dlq", "https://sqs/1/q")

    assert sqs.started == []
    assert (moved.method, moved.messages, moved.running, moved.task_handle) == ("move-task", 30, True, "h0")


# ---------------------------------------------------------------- clean
def test_clean_purges_ended_jobs_older_than_the_days_given_a_bounded_number_a_call(call, repos) -> None:  # noqa: F811
    old = {
        a_job(repos, state=state, updated=iso(days_ago=40, at=i), digest=f"{i:02x}" * 32)
        for i, state in enumerate(("ready", "failed", "cancelled"))
    }
    recent = a_job(repos, state="ready", updated=iso(days_ago=2))
    still_open = a_job(repos, state="queued", updated=iso(days_ago=40))

    status, first = admin(call, "POST", "/admin/clean", {"olderThanDays": 30, "limit": 2})
    _, second = admin(call, "POST", "/admin/clean", {"olderThanDays": 30, "limit": 2})

    assert status == 200
    assert (first["purged"], first["more"], second["purged"], second["more"]) == (2, True, 1, False)
    assert first["filesDeleted"] + second["filesDeleted"] == 3  # each was its bytes' only job
    assert all(repos[0].get(job_id) is None for job_id in old)
    assert repos[0].get(recent) is not None and repos[0].get(still_open) is not None


@pytest.mark.parametrize("body", [{}, {"olderThanDays": 0}, {"olderThanDays": "30"}, {"olderThanDays": 30, "x": 1}])
def test_bad_clean_requests_are_400(call, body) -> None:  # noqa: F811
    assert admin(call, "POST", "/admin/clean", body)[0] == 400

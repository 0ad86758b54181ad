"""Per-user quotas over moto: each limit refuses the request that crosses it, counts stay exact under
concurrency, and storage comes back with a purge."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from docpipe import quotas
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.adapters.usage import UsageRepository
from docpipe.config import Settings
from docpipe.errors import QuotaExceeded
from ingest.service import IngestService
from tests.unit.test_api import call, upload  # noqa: F401 - the API fixture

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture
def usage(settings: Settings) -> UsageRepository:
    return UsageRepository(settings.usage_table or "")


def ask(call, size: int = 1000, user: str = "alice", name: str = "notes.txt") -> tuple[int, Any, dict]:  # noqa: F811
    return call("POST", "/uploads", {"name": name, "size": size, "contentType": "text/plain"}, user=user)


def test_uploads_per_minute_are_spread_over_the_minute(call, usage) -> None:  # noqa: F811
    usage.set_override("alice", "UploadsPerMinute", 12)  # 2 in any 10-second slot
    if time.time() % 10 > 7:  # the three requests must fall in one slot (and one minute): start one fresh
        time.sleep(10.05 - time.time() % 10)

    statuses = [ask(call)[0] for _ in range(2)]
    status, body, headers = ask(call)

    assert statuses == [201, 201]
    assert (status, body["code"]) == (429, "quota.exceeded")
    assert "UploadsPerMinute (12 uploads) allows a sixth of it in any 10 seconds" in body["message"]
    assert 1 <= int(headers["Retry-After"]) <= 11 and body["retryAfter"] == int(headers["Retry-After"])
    assert ask(call, user="bob")[0] == 201  # another user's limit is their own


def test_uploads_per_minute_refuses_past_the_minutes_limit_until_the_minute_ends(usage) -> None:
    usage.set_override("alice", "UploadsPerMinute", 3)  # 1 in any 10-second slot, 3 in the minute
    minute = 29_000_000 * 60
    for slot in range(3):
        assert quotas.admit(usage, "alice", 10, "high", {}, now=minute + 10 * slot) == "high"

    with pytest.raises(QuotaExceeded) as refused:
        quotas.admit(usage, "alice", 10, "high", {}, now=minute + 30)

    assert "UploadsPerMinute (3 uploads) is reached" in refused.value.message
    assert refused.value.retry_after == 31  # to the next minute
    assert quotas.admit(usage, "alice", 10, "high", {}, now=minute + 60) == "high"


def test_upload_bytes_per_day_counts_declared_bytes(call, usage) -> None:  # noqa: F811
    usage.set_override("alice", "UploadBytesPerDay", 1500)

    first = ask(call, 1000)[0]
    status, body, headers = ask(call, 600)

    assert first == 201
    assert (status, body["code"]) == (429, "quota.exceeded") and "UploadBytesPerDay" in body["message"]
    assert 1 <= int(headers["Retry-After"]) <= 86401
    assert ask(call, 500)[0] == 201  # what fits still fits


def test_open_jobs_per_user_frees_a_place_when_a_job_ends(call, usage) -> None:  # noqa: F811
    usage.set_override("alice", "OpenJobsPerUser", 2)
    jobs = [ask(call)[1]["jobId"] for _ in range(2)]

    status, body, headers = ask(call)
    assert (status, body["code"], headers["Retry-After"]) == (429, "quota.exceeded", "10")

    assert call("DELETE", f"/jobs/{jobs[0]}")[0] == 200  # cancelled: no longer open
    assert ask(call)[0] == 201


def test_stored_bytes_count_uploads_in_flight_and_refuse_without_retry_after(call, usage) -> None:  # noqa: F811
    usage.set_override("alice", "StoredBytesPerUser", 1500)
    assert ask(call, 1000)[0] == 201

    status, body, headers = ask(call, 600)

    assert (status, body["code"]) == (429, "quota.exceeded") and "StoredBytesPerUser" in body["message"]
    assert "purge=true" in body["message"]
    assert "Retry-After" not in headers  # waiting does not free storage; deleting does


def test_the_high_lane_past_its_bytes_per_minute_moves_uploads_to_normal(call, usage) -> None:  # noqa: F811
    usage.set_override("alice", "HighLaneBytesPerMinute", 100_000)

    first = ask(call, 60_000)[1]
    second = ask(call, 60_000)[1]

    assert (first["lane"], second["lane"]) == ("high", "normal")
    assert second["upload"]["fields"]["key"].startswith(f"uploads/normal/alice/{second['jobId']}/")


def test_retries_per_job_are_counted_on_the_job(call, usage, settings) -> None:  # noqa: F811
    usage.set_override("alice", "RetriesPerJob", 1)
    job_id = ask(call)[1]["jobId"]
    JobsRepository(settings.jobs_table).transition(job_id, ("uploading",), {"state": "failed", "hash": "0" * 64})

    first = call("POST", f"/jobs/{job_id}/retry")[0]
    JobsRepository(settings.jobs_table).transition(job_id, ("queued", "processing", "ready"), {"state": "failed"})
    status, body, _ = call("POST", f"/jobs/{job_id}/retry")

    assert first == 202
    assert (status, body["code"]) == (429, "quota.exceeded") and "RetriesPerJob" in body["message"]


def test_usage_shows_each_limit_what_is_used_and_when_it_resets(call, usage) -> None:  # noqa: F811
    usage.set_override("alice", "OpenJobsPerUser", 0)  # unlimited for alice
    ask(call, 1000)
    ask(call, 500)

    status, body, headers = call("GET", "/usage")

    rows = {row["name"]: row for row in body["limits"]}
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert set(rows) == set(quotas.LIMIT_NAMES)
    assert (rows["UploadsPerMinute"]["used"], rows["UploadsPerMinute"]["limit"]) == (2, 120)
    assert rows["UploadBytesPerDay"]["used"] == rows["StoredBytesPerUser"]["used"] == 1500
    assert (rows["OpenJobsPerUser"]["used"], rows["OpenJobsPerUser"]["limit"]) == (2, None)
    assert rows["UploadsPerMinute"]["resetsAt"].endswith("Z") and "resetsAt" not in rows["StoredBytesPerUser"]
    assert rows["RetriesPerJob"]["scope"] == "per job"


def test_twenty_concurrent_requests_admit_exactly_up_to_the_limit(usage) -> None:
    usage.set_override("carol", "OpenJobsPerUser", 7)
    defaults = {"UploadsPerMinute": 0, "OpenJobsPerUser": 100}  # 0: counted, never refused

    def one(_: int) -> bool:
        try:
            quotas.admit(usage, "carol", 100, "high", defaults, now=time.time())
        except QuotaExceeded:
            return False
        return True

    with ThreadPoolExecutor(max_workers=20) as pool:
        admitted = sum(pool.map(one, range(20)))

    now = quotas.windows(time.time())
    used = usage.used("carol", [quotas.OPEN, now["UploadsPerMinute"].item, quotas.STORED])
    assert admitted == 7
    assert used == {quotas.OPEN: 7, now["UploadsPerMinute"].item: 7, quotas.STORED: 700}  # refusals gave back


def test_the_quota_store_being_unreachable_refuses_with_503(call, monkeypatch) -> None:  # noqa: F811
    from api import handler

    monkeypatch.setattr(handler.usage(), "name", "no-such-table")

    status, body, headers = ask(call)

    assert (status, body["code"], headers["Retry-After"]) == (503, "quota.unavailable", "5")


def test_storage_is_settled_at_ingest_and_freed_by_a_purge(aws, call, usage, settings) -> None:  # noqa: F811
    data = b"stored bytes " * 50
    created = ask(call, len(data) + 100, name="notes.txt")[1]  # declared more than it is
    key = created["upload"]["fields"]["key"]
    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=key, Body=data)
    service = IngestService(
        settings,
        ObjectStore(),
        JobsRepository.for_settings(settings),
        FilesRepository(settings.files_table),
    )
    assert service.ingest(settings.uploads_bucket, key).result == "stored"
    assert usage.used("alice", [quotas.STORED])[quotas.STORED] == len(data)  # the reservation became the size

    status, body, _ = call("DELETE", f"/jobs/{created['jobId']}", query="purge=true")

    digest = hashlib.sha256(data).hexdigest()
    assert (status, body) == (200, {"jobId": created["jobId"], "purged": True})
    assert usage.used("alice", [quotas.STORED, quotas.OPEN]) == {quotas.STORED: 0, quotas.OPEN: 0}
    assert FilesRepository(settings.files_table).get(digest) is None
    assert call("GET", f"/jobs/{created['jobId']}")[0] == 404


class Counting:
    """A DynamoDB client that counts the calls made through it."""

    def __init__(self, client: Any) -> None:
        self.client, self.calls = client, []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)

        return counted


def test_an_admission_is_one_conditional_update_once_the_windows_are_started(aws, settings) -> None:
    counting = Counting(aws["dynamodb"])
    usage = UsageRepository(settings.usage_table or "", client=counting)
    slot = 29_000_000 * 60  # the start of a minute and of its first 10-second slot
    quotas.admit(usage, "dora", 10, "high", {"UploadsPerMinute": 60}, now=slot)  # reads limits, starts windows
    counting.calls.clear()

    lanes = [quotas.admit(usage, "dora", 10, "high", {"UploadsPerMinute": 60}, now=slot + 1) for _ in range(3)]

    assert lanes == ["high"] * 3
    assert counting.calls == ["update_item"] * 3
    minute = quotas.windows(slot)["UploadsPerMinute"].item
    assert usage.used("dora", [minute, quotas.OPEN, quotas.STORED]) == {minute: 4, quotas.OPEN: 4, quotas.STORED: 40}


def test_an_override_set_elsewhere_holds_from_the_next_admission(aws, settings) -> None:
    # given a worker that has admitted dora under the defaults, so it knows her limits
    worker = UsageRepository(settings.usage_table or "")
    quotas.admit(worker, "dora", 10, "high", {"OpenJobsPerUser": 100})
    # when another process lowers her open jobs to the one she has
    UsageRepository(settings.usage_table or "").set_override("dora", "OpenJobsPerUser", 1)
    # then the worker's next admission checks the new limit, not the one it had seen
    with pytest.raises(QuotaExceeded) as refused:
        quotas.admit(worker, "dora", 10, "high", {"OpenJobsPerUser": 100})
    assert "OpenJobsPerUser (1 jobs)" in refused.value.message
    assert worker.used("dora", [quotas.OPEN]) == {quotas.OPEN: 1}


def test_a_refused_admission_counts_nothing_and_one_larger_than_a_limit_never_fits(aws, settings) -> None:
    usage = UsageRepository(settings.usage_table or "")
    defaults = {"UploadBytesPerDay": 1000, "StoredBytesPerUser": 5000}
    quotas.admit(usage, "erin", 600, "high", defaults)
    before = usage.used("erin", [quotas.OPEN, quotas.STORED, quotas.windows(time.time())["UploadBytesPerDay"].item])

    for size in (500, 2000):  # past the day's bytes; larger than the day's limit itself
        with pytest.raises(QuotaExceeded) as refused:
            quotas.admit(usage, "erin", size, "high", defaults)
        assert "UploadBytesPerDay (1000 bytes)" in refused.value.message

    assert usage.used("erin", list(before)) == before  # no count moved, nothing to give back


def test_a_count_of_a_window_that_is_over_is_left_alone(aws, settings) -> None:
    usage = UsageRepository(settings.usage_table or "")
    day = 29_000_000 * 60
    quotas.admit(usage, "finn", 100, "high", {}, now=day)
    quotas.admit(usage, "finn", 100, "high", {}, now=day + 86_400)  # the next day's window
    yesterday, today = (
        quotas.windows(day)["UploadBytesPerDay"].item,
        quotas.windows(day + 86_400)["UploadBytesPerDay"].item,
    )

    assert usage.add("finn", yesterday, 50) == 0  # a resize of yesterday's upload: that day is over
    assert usage.used("finn", [yesterday, today]) == {yesterday: 0, today: 100}


def test_an_upload_larger_than_a_limit_the_worker_saw_is_admitted_once_the_limit_was_raised_elsewhere(
    aws, settings
) -> None:
    worker = UsageRepository(settings.usage_table or "")
    worker.set_override("gwen", "StoredBytesPerUser", 1000)  # the worker knows this limit
    UsageRepository(settings.usage_table or "").set_override("gwen", "StoredBytesPerUser", 10_000)

    assert quotas.admit(worker, "gwen", 5000, "normal", {}) == "normal"
    assert worker.used("gwen", [quotas.STORED]) == {quotas.STORED: 5000}

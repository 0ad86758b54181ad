"""What settling costs as a file gets popular (issue 21): a settle reads the open jobs of a hash only, and
no item grows with the number of jobs of the same bytes open at once. Over moto, with the template's tables."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from docpipe import aws as docpipe_aws
from docpipe.adapters.dynamo import FilesRepository, JobsRepository, owner_hash
from docpipe.adapters.dynamo.jobs import _with_history
from docpipe.adapters.dynamo.table import _dump, _load
from docpipe.config import Settings
from docpipe.settlement import settle_jobs
from docpipe.storage import original_key
from presets.service import PresetsService
from tests.fixtures.files import image_bytes

pytestmark = [pytest.mark.usefixtures("aws"), pytest.mark.slow]
BLOCK = 25  # jobs a joining thread opens in one batch write (DynamoDB's BatchWriteItem limit)


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env()


class ItemsRead:
    """Counts the job items DynamoDB returns to docpipe's client (a botocore event hook on every call)."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.job_ids: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        items = list(parsed.get("Items") or [])
        if "Item" in parsed:
            items.append(parsed["Item"])
        for batch in (parsed.get("Responses") or {}).values():
            items += batch
        with self.lock:
            self.job_ids.update(item["jobId"]["S"] for item in items if "jobId" in item)


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it, near enough: attribute names plus their values' bytes (the JSON
    of a value is a little larger than DynamoDB's encoding, so this errs high)."""
    return sum(len(name.encode()) + len(json.dumps(value).encode()) for name, value in item.items())


def scan_all(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_a_settle_reads_only_the_open_jobs_of_a_popular_hash(aws, settings) -> None:
    # given 10,000 ended jobs of one hash (a popular file, uploaded all month) and 3 open ones
    digest = "cd" * 32
    jobs_repo, files_repo = JobsRepository(settings.jobs_table), FilesRepository(settings.files_table)
    files_repo.claim({"hash": digest, "status": "stored", "contentType": "image/png", "type": "png"})
    ended = [
        {
            "jobId": f"ended-{i:05d}",
            "owner": f"user-{i % 97}",
            "name": "meme.png",
            "state": "ready",
            "plan": ["presets"],
            "createdAt": "2026-01-01T00:00:00.000Z",
            "hash": digest,
            "ownerHash": owner_hash(f"user-{i % 97}", digest),
        }
        for i in range(10_000)
    ]
    for start in range(0, len(ended), 25):
        with_keys = [{"PutRequest": {"Item": _dump(job)}} for job in ended[start : start + 25]]
        aws["dynamodb"].batch_write_item(RequestItems={settings.jobs_table: with_keys})
    open_ids = []
    for i in range(3):
        open_ids.append(f"open-{i}")
        jobs_repo.create({**ended[i], "jobId": f"open-{i}", "state": "processing"})
    files_repo.update(digest, {"presetsState": "done", "presetsArtifacts": {}})
    counter = ItemsRead(settings.jobs_table)
    docpipe_aws.client("dynamodb").meta.events.register("after-call.dynamodb", counter)

    # when a task's end settles the hash
    moved = settle_jobs(jobs_repo, files_repo, digest, 0)

    # then only the 3 open jobs were read: once from the index, once each with a consistent get
    assert moved == 3
    assert counter.job_ids == Counter({job_id: 2 for job_id in open_ids})
    assert {jobs_repo.get(i)["state"] for i in open_ids} == {"ready"}
    assert jobs_repo.open_ids_for_hash(digest) == []


def test_two_thousand_concurrent_jobs_of_one_new_hash_all_end_ready_and_no_item_grows(aws, settings) -> None:
    # given a new image, stored once, and 2,000 jobs of it by 50 users joining it 16 at a time, each as
    # ingest joins one: a reference, a waiter on the task, the task queued once, the job open on the hash
    data = image_bytes("PNG", (64, 48))
    digest = hashlib.sha256(data).hexdigest()
    jobs_repo, files_repo = JobsRepository(settings.jobs_table), FilesRepository(settings.files_table)
    aws["s3"].put_object(Bucket=settings.store_bucket, Key=original_key(digest), Body=data)
    files_repo.claim({"hash": digest, "status": "storing", "contentType": "image/png", "type": "png"})
    files_repo.mark_stored(digest, {"size": len(data)})
    presets = PresetsService.for_settings(settings)
    queued = Counter[str]()
    joined = threading.Semaphore(0)

    def join(block: int) -> list[str]:
        """Jobs ``block`` x 25 to + 24 join: each takes a reference, waits on the task and asks for it, as
        ingest does; then the 25 jobs open on the hash in one batch write (the setup's round trips: the
        file item's updates, what the test is about, stay one call each)."""
        jobs = []
        for i in range(block * BLOCK, (block + 1) * BLOCK):
            job_id, owner = f"job-{i:04d}", f"user-{i % 50}"
            assert i == 0 or files_repo.add_ref(digest)  # job 0 stored the bytes: mark_stored counted its reference
            files_repo.add_waiter(digest, "presets")
            queued[str(files_repo.request_task(digest, "presets"))] += 1
            jobs.append(
                {"jobId": job_id, "owner": owner, "name": "same.png", "state": "processing", "lane": "high"}
                | {"plan": ["presets"], "createdAt": "2026-01-01T00:00:00.000Z", "hash": digest}
                | {"ownerHash": owner_hash(owner, digest)}
            )
        puts = [{"PutRequest": {"Item": _dump(_with_history(job))}} for job in jobs]
        assert not aws["dynamodb"].batch_write_item(RequestItems={settings.jobs_table: puts})["UnprocessedItems"]
        for _ in jobs:
            joined.release()
        return [job["jobId"] for job in jobs]

    # when the task runs and settles while half of the jobs are still joining (4 joining threads and the
    # task's thread race as much as 16 would: moto serves them one call at a time under the GIL, and more
    # threads only add switching)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(join, block) for block in range(2_000 // BLOCK)]
        for _ in range(1_000):
            joined.acquire(timeout=60)
        assert presets.run(digest) == "done"
        ids = [job_id for f in futures for job_id in f.result()]
    # (a job that joined after the settle finds the task done, as ingest's own settle of its job does;
    # the open index names them: a job missing from it would stay open and fail the checks below)
    late = jobs_repo.open_ids_for_hash(digest)
    settle_jobs(jobs_repo, files_repo, digest, 0, late)

    # then the task was queued once, and every job is ready and out of the open index
    assert queued["None"] == 1
    jobs_items = scan_all(aws["dynamodb"], settings.jobs_table)  # one read of the table for every check
    jobs = [_load(item) for item in jobs_items]
    assert Counter(job["state"] for job in jobs) == Counter({"ready": 2_000})
    assert sorted(ids) == sorted(job["jobId"] for job in jobs)
    record = files_repo.get(digest)
    assert (record["presetsState"], record["refs"], record["presetsWaiters"]) == ("done", 2_000, 2_000)
    assert jobs_repo.open_ids_for_hash(digest) == []
    # and no item of any table is over 50 KB
    sizes = {
        settings.jobs_table: max(item_size(job) for job in jobs),
        settings.files_table: max(item_size(_load(item)) for item in scan_all(aws["dynamodb"], settings.files_table)),
    }
    assert max(sizes.values()) < 50 * 1024, sizes

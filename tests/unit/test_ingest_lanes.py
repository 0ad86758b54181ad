"""Lanes from the first queue, over moto: S3 notifications pick the ingest queue by the key's lane, and
ingest holds an upload to the size its lane and its declaration allow."""

from __future__ import annotations

import json
from typing import Any

import pytest

from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.config import LANES, Settings
from ingest.service import IngestService
from tests.unit.test_api import call, upload  # noqa: F401 - the API fixture

pytestmark = pytest.mark.usefixtures("aws")
KB = 1024


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env()


def waiting(aws: dict[str, Any], url: str) -> list[dict[str, Any]]:
    messages = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def uploaded_keys(aws: dict[str, Any], url: str) -> list[str]:
    return [r["s3"]["object"]["key"] for body in waiting(aws, url) for r in body.get("Records", [])]


def test_a_small_upload_arrives_on_the_high_ingest_queue_only(aws, call, settings) -> None:  # noqa: F811
    created = upload(call, "photo.jpg", 50 * KB, contentType="image/jpeg")
    key = created["upload"]["fields"]["key"]

    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=key, Body=b"x" * 50 * KB)

    queues = {lane: settings.ingest_queues[lane] for lane in LANES}
    assert created["lane"] == "high" and key.startswith("uploads/high/alice/")
    assert [k.replace("%2F", "/") for k in uploaded_keys(aws, queues["high"])] == [key]
    assert uploaded_keys(aws, queues["normal"]) == uploaded_keys(aws, queues["low"]) == []


def test_each_size_has_its_ingest_lane(aws, call, settings) -> None:  # noqa: F811
    for size, lane in ((50 * KB, "high"), (3 * 1024 * KB, "normal"), (30 * 1024 * KB, "low")):
        key = upload(call, "scan.pdf", size, contentType="application/pdf")["upload"]["fields"]["key"]
        aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=key, Body=b"%PDF-1.7\n")
        assert [k.replace("%2F", "/") for k in uploaded_keys(aws, settings.ingest_queues[lane])] == [key]


def test_an_upload_that_declared_50kb_but_sent_5mb_never_reaches_a_high_lane_worker(aws, call, settings) -> None:  # noqa: F811
    created = upload(call, "photo.jpg", 50 * KB, contentType="image/jpeg")
    key = created["upload"]["fields"]["key"]
    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=key, Body=b"\xff\xd8\xff" + b"\0" * (5 * 1024 * KB))
    service = IngestService(
        settings, ObjectStore(), JobsRepository.for_settings(settings), FilesRepository(settings.files_table)
    )

    outcome = service.ingest(settings.uploads_bucket, key)

    job = JobsRepository(settings.jobs_table).get(created["jobId"]) or {}
    assert (outcome.result, outcome.reason) == ("failed", "file.too_large")
    assert (job["state"], job["error"]["code"]) == ("failed", "file.too_large")
    assert "hash" not in job  # refused from its size alone, before a byte was hashed
    for lanes in settings.task_queues.values():
        assert all(waiting(aws, url) == [] for url in lanes.values())
    kept = aws["s3"].head_object(Bucket=settings.uploads_bucket, Key=key)["ContentLength"]
    assert kept == 3 + 5 * 1024 * KB  # the upload itself is kept


def test_an_upload_over_its_lanes_ceiling_is_refused_even_when_declared(aws, settings) -> None:
    from tests.unit.test_ingest import new_upload

    data = b"a" * (10 * 1024 * KB + 1)
    _, key = new_upload(aws, settings, data, "big.txt", lane="high", declaredSize=len(data))
    service = IngestService(
        settings, ObjectStore(), JobsRepository.for_settings(settings), FilesRepository(settings.files_table)
    )

    assert service.ingest(settings.uploads_bucket, key).reason == "file.too_large"


def test_events_from_another_bucket_or_of_a_key_not_issued_are_ignored(aws, call, settings) -> None:  # noqa: F811
    created = upload(call, "notes.txt", 10, contentType="text/plain")
    key = created["upload"]["fields"]["key"]
    service = IngestService(
        settings, ObjectStore(), JobsRepository.for_settings(settings), FilesRepository(settings.files_table)
    )
    other_lane = key.replace("uploads/high/", "uploads/low/")
    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=other_lane, Body=b"0123456789")

    assert service.ingest("someone-elses-bucket", key).reason == "not the uploads bucket"
    assert service.ingest(settings.uploads_bucket, other_lane).reason == "key mismatch"
    assert JobsRepository(settings.jobs_table).get(created["jobId"])["state"] == "uploading"

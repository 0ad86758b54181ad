"""IngestService and IngestFunction's handler over moto, with the template's own buckets and tables."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectChanged, ObjectStore
from docpipe.config import Settings
from docpipe.errors import Transient
from docpipe.jobs import new_job_id
from docpipe.storage import original_key, upload_key
from ingest.service import IngestService
from tests.fixtures.files import docx_bytes, image_bytes

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def settings() -> Settings:
    # ClamAV (or any engine that scans the stored bytes): the raw upload goes once it is stored; with
    # GuardDuty it stays for GuardDuty to scan (test_guardduty_keeps_the_raw_upload_for_its_verdict)
    return dataclasses.replace(Settings.from_env(), scan_engine="clamav")


@pytest.fixture
def service(settings: Settings) -> IngestService:
    return IngestService(
        settings,
        ObjectStore(),
        JobsRepository(settings.jobs_table),
        FilesRepository(settings.files_table),
        store_wait_seconds=0.3,
    )


def new_upload(
    aws: dict[str, Any], settings: Settings, data: bytes, name: str, owner: str = "alice", **job: Any
) -> tuple[str, str]:
    job_id = new_job_id()
    key = upload_key(job.get("lane") or "normal", owner, job_id, name)
    JobsRepository(settings.jobs_table).create(
        {
            "jobId": job_id,
            "owner": owner,
            "name": name,
            "state": "uploading",
            "createdAt": "2026-01-01T00:00:00Z",
            "uploadKey": key,
            **job,
        }
    )
    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=key, Body=data)
    return job_id, key


def job(settings: Settings, job_id: str) -> dict[str, Any]:
    found = JobsRepository(settings.jobs_table).get(job_id)
    assert found is not None
    return found


def stored_keys(aws: dict[str, Any], settings: Settings) -> list[str]:
    listing = aws["s3"].list_objects_v2(Bucket=settings.store_bucket, Prefix="files/")
    return [o["Key"] for o in listing.get("Contents", [])]


def test_an_image_is_stored_by_hash_and_its_presets_are_queued_on_its_lane(aws, settings, service) -> None:
    data = image_bytes("JPEG", (800, 600))
    job_id, key = new_upload(aws, settings, data, "photo.jpg", declaredSize=len(data), lane="high")

    outcome = service.ingest(settings.uploads_bucket, key)

    digest = hashlib.sha256(data).hexdigest()
    assert outcome.result == "stored"
    done = job(settings, job_id)
    assert (done["state"], done["plan"], done["hash"], done["contentType"]) == (
        "scanning",
        ["scan", "presets"],
        digest,
        "image/jpeg",
    )
    assert (done["width"], done["height"]) == (800, 600)
    stored = aws["s3"].get_object(Bucket=settings.store_bucket, Key=original_key(digest))["Body"].read()
    assert stored == data
    assert aws["s3"].list_objects_v2(Bucket=settings.uploads_bucket).get("KeyCount") == 0
    messages = aws["sqs"].receive_message(QueueUrl=settings.task_queues["scan"]["high"], MaxNumberOfMessages=10)
    assert [json.loads(m["Body"]) for m in messages["Messages"]] == [{"task": "scan", "lane": "high", "hash": digest}]
    # the presets wait for a clean verdict: the scan queues them (docpipe.scanning)
    presets = aws["sqs"].receive_message(QueueUrl=settings.task_queues["presets"]["high"], MaxNumberOfMessages=10)
    assert "Messages" not in presets


def test_a_text_file_is_queued_for_extraction_on_its_lane(aws, settings, service) -> None:
    job_id, key = new_upload(aws, settings, b"just words", "words.txt")

    service.ingest(settings.uploads_bucket, key)

    assert (job(settings, job_id)["state"], job(settings, job_id)["plan"]) == ("scanning", ["scan", "extract"])
    queue = settings.task_queues["scan"]["normal"]
    body = json.loads(aws["sqs"].receive_message(QueueUrl=queue)["Messages"][0]["Body"])
    assert (body["task"], body["lane"]) == ("scan", "normal")


def test_an_image_uploaded_for_ocr_plans_presets_and_ocr(aws, settings, service) -> None:
    job_id, key = new_upload(aws, settings, image_bytes("PNG", (50, 50)), "receipt.png", ocr=True)

    service.ingest(settings.uploads_bucket, key)

    assert job(settings, job_id)["plan"] == ["scan", "presets", "ocr"]


def test_the_same_image_twice_queues_its_scan_once(aws, settings, service) -> None:
    data = image_bytes("PNG", (50, 50))
    _, first = new_upload(aws, settings, data, "a.png")
    _, second = new_upload(aws, settings, data, "b.png")

    service.ingest(settings.uploads_bucket, first)
    service.ingest(settings.uploads_bucket, second)

    queue = settings.task_queues["scan"]["normal"]
    attrs = aws["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"


def test_the_same_bytes_from_another_user_are_matched_not_stored_again(aws, settings, service) -> None:
    data = docx_bytes("same bytes")
    _, first = new_upload(aws, settings, data, "a.docx", owner="alice")
    bob_job, second = new_upload(aws, settings, data, "b.docx", owner="bob")

    assert service.ingest(settings.uploads_bucket, first).result == "stored"
    assert service.ingest(settings.uploads_bucket, second).result == "deduplicated"

    assert stored_keys(aws, settings) == [original_key(hashlib.sha256(data).hexdigest())]
    assert job(settings, bob_job)["state"] == "scanning"  # the one scan (then extract) serves both jobs
    assert job(settings, bob_job)["owner"] == "bob"


def test_a_replayed_event_is_one_transition(aws, settings, service) -> None:
    job_id, key = new_upload(aws, settings, b"hello", "hello.txt")
    assert service.ingest(settings.uploads_bucket, key).result == "stored"
    before = job(settings, job_id)

    again = service.ingest(settings.uploads_bucket, key)

    assert (again.result, again.reason) == ("skipped", "job already scanning")
    assert job(settings, job_id) == before


@pytest.mark.parametrize(
    ("data", "name", "code"),
    [
        (b"", "empty.txt", "file.empty"),
        (image_bytes("JPEG"), "invoice.pdf", "file.type_mismatch"),
        (b"<!doctype html><html><body>hi</body></html>", "cat.png", "file.unsupported_type"),
        (b"MZ\x90\x00" + bytes(500), "setup.txt", "file.unsupported_type"),
        (b"\xff\xd8\xff" + bytes(3000), "broken.jpg", "file.corrupt"),
        (docx_bytes()[:300], "cut.docx", "file.corrupt"),
    ],
    ids=lambda value: (
        value if isinstance(value, str) else "data"
    ),  # named by name and code: a docx's bytes carry a time
)
def test_bad_files_fail_their_job_with_a_code_and_keep_the_upload(aws, settings, service, data, name, code) -> None:
    job_id, key = new_upload(aws, settings, data, name)

    outcome = service.ingest(settings.uploads_bucket, key)

    failed = job(settings, job_id)
    assert (outcome.result, failed["state"], failed["error"]["code"]) == ("failed", "failed", code)
    assert failed["error"]["message"]
    assert aws["s3"].head_object(Bucket=settings.uploads_bucket, Key=key)["ContentLength"] == len(data)
    assert stored_keys(aws, settings) == []


def test_a_file_over_the_limit_fails_without_being_read(aws, settings) -> None:
    small = dataclasses.replace(settings, max_upload_bytes=1000)
    service = IngestService(small, ObjectStore(), JobsRepository(small.jobs_table), FilesRepository(small.files_table))
    job_id, key = new_upload(aws, settings, bytes(1001), "big.txt")

    assert service.ingest(settings.uploads_bucket, key).reason == "file.too_large"
    assert job(settings, job_id)["error"]["code"] == "file.too_large"


def test_a_file_larger_than_declared_fails(aws, settings, service) -> None:
    job_id, key = new_upload(aws, settings, b"x" * 500, "notes.txt", declaredSize=100)

    service.ingest(settings.uploads_bucket, key)

    assert "declared" in job(settings, job_id)["error"]["message"]


def test_an_upload_no_job_was_issued_for_makes_no_job_and_keeps_the_object(aws, settings, service) -> None:
    job_id = new_job_id()
    key = upload_key("normal", "carol", job_id, "orphan.txt")
    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=key, Body=b"no job for me")

    outcome = service.ingest(settings.uploads_bucket, key)

    assert (outcome.result, outcome.reason) == ("skipped", "no such job")
    assert JobsRepository(settings.jobs_table).get(job_id) is None
    assert aws["s3"].head_object(Bucket=settings.uploads_bucket, Key=key)["ContentLength"] == 13
    assert stored_keys(aws, settings) == []


def test_a_key_other_than_the_one_issued_to_the_job_is_ignored(aws, settings, service) -> None:
    job_id, _ = new_upload(aws, settings, b"the real one", "real.txt", owner="dave")
    forged = upload_key("normal", "dave", job_id, "other.txt")
    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=forged, Body=b"something else")

    outcome = service.ingest(settings.uploads_bucket, forged)

    assert (outcome.result, outcome.reason) == ("skipped", "key mismatch")
    assert job(settings, job_id)["state"] == "uploading"


def test_a_vanished_upload_fails_its_job(aws, settings, service) -> None:
    job_id, key = new_upload(aws, settings, b"soon gone", "gone.txt")
    aws["s3"].delete_object(Bucket=settings.uploads_bucket, Key=key)

    service.ingest(settings.uploads_bucket, key)

    assert job(settings, job_id)["error"]["code"] == "upload.missing"


def test_a_delivery_failing_after_another_ingested_its_upload_is_skipped(aws, settings, service, monkeypatch) -> None:
    # given: S3 delivered the upload twice; the other delivery ingests it while this one reads the bytes,
    # and deletes the raw upload under it
    data = b"delivered twice, ingested once"
    job_id, key = new_upload(aws, settings, data, "twice.txt")
    other = IngestService(
        settings, ObjectStore(), JobsRepository(settings.jobs_table), FilesRepository(settings.files_table)
    )

    def read_while_the_other_ingests(*args: Any, **kwargs: Any) -> Any:
        assert other.ingest(settings.uploads_bucket, key).result == "stored"
        yield data[:5]  # and the stream ends early

    monkeypatch.setattr(service.store, "iter_chunks", read_while_the_other_ingests)

    outcome = service.ingest(settings.uploads_bucket, key)

    # then: nothing is left to retry
    state = job(settings, job_id)["state"]
    assert state != "uploading"
    assert (outcome.result, outcome.reason) == ("skipped", f"job already {state}")


def test_bytes_being_stored_by_another_writer_are_retried(aws, settings, service) -> None:
    data = b"contended bytes"
    digest = hashlib.sha256(data).hexdigest()
    FilesRepository(settings.files_table).claim({"hash": digest, "status": "storing", "leaseUntil": 2**40})
    job_id, key = new_upload(aws, settings, data, "c.txt")

    with pytest.raises(Transient):
        service.ingest(settings.uploads_bucket, key)
    assert job(settings, job_id)["state"] == "uploading"


def test_a_second_writer_waits_for_the_first_to_finish_storing(aws, settings) -> None:
    data = b"the first writer is copying these"
    digest = hashlib.sha256(data).hexdigest()
    files = FilesRepository(settings.files_table)
    files.claim({"hash": digest, "status": "storing", "leaseUntil": 2**40})
    job_id, key = new_upload(aws, settings, data, "w.txt")

    def first_writer_finishes(seconds: float) -> None:
        files.mark_stored(digest, {"size": len(data)})

    service = IngestService(
        settings, ObjectStore(), JobsRepository(settings.jobs_table), files, sleep=first_writer_finishes
    )

    assert service.ingest(settings.uploads_bucket, key).result == "deduplicated"
    assert job(settings, job_id)["state"] == "scanning"


def test_an_expired_claim_is_taken_over(aws, settings, service) -> None:
    data = b"a writer crashed while storing these"
    digest = hashlib.sha256(data).hexdigest()
    FilesRepository(settings.files_table).claim({"hash": digest, "status": "storing", "leaseUntil": 1})
    _, key = new_upload(aws, settings, data, "d.txt")

    assert service.ingest(settings.uploads_bucket, key).result == "stored"
    assert FilesRepository(settings.files_table).get(digest)["status"] == "stored"


class OverwritingStore(ObjectStore):
    """Overwrites the upload between hashing and copying, as a re-used presigned POST could."""

    def copy_pinned(self, bucket: str, key: str, etag: str, dest_bucket: str, dest_key: str) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=b"swapped content")
        super().copy_pinned(bucket, key, etag, dest_bucket, dest_key)


def test_content_swapped_after_hashing_is_never_stored_under_the_old_hash(aws, settings) -> None:
    service = IngestService(
        settings, OverwritingStore(), JobsRepository(settings.jobs_table), FilesRepository(settings.files_table)
    )
    _, key = new_upload(aws, settings, b"original content", "e.txt")

    with pytest.raises(ObjectChanged):
        service.ingest(settings.uploads_bucket, key)
    assert stored_keys(aws, settings) == []


def s3_event(bucket: str, *keys: str) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Post",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": k.replace("/", "%2F")}},
                }
                for k in keys
            ]
        }
    )


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:IngestNormalQueue",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def test_handler_reports_only_the_record_that_must_be_retried(aws, settings, lambda_context, caplog) -> None:
    from ingest import handler

    handler.service().store_wait_seconds = 0.3
    good_job, good = new_upload(aws, settings, b"good", "good.txt")
    data = b"busy"
    FilesRepository(settings.files_table).claim(
        {"hash": hashlib.sha256(data).hexdigest(), "status": "storing", "leaseUntil": 2**40}
    )
    _, busy = new_upload(aws, settings, data, "busy.txt")
    bad_job, bad = new_upload(aws, settings, b"", "bad.txt")
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})

    result = handler.lambda_handler(
        sqs_event(
            s3_event(settings.uploads_bucket, good),
            s3_event(settings.uploads_bucket, busy),
            s3_event(settings.uploads_bucket, bad),
            test_event,
        ),
        lambda_context,
    )

    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert job(settings, good_job)["state"] == "scanning"
    assert job(settings, bad_job)["error"]["code"] == "file.empty"
    # and its log says which record went back, and why
    handed_back = [r for r in caplog.records if r.getMessage() == "ingest handed the record back"]
    assert [(r.key, r.code) for r in handed_back] == [(busy, Transient.code)]  # type: ignore[attr-defined]


def test_a_record_left_without_time_is_handed_back_at_once(aws, lambda_context, monkeypatch) -> None:
    """A batch of large uploads on a busy stack: records that would outlive the invocation go back to the
    queue, visible again at once, instead of being killed with it and waiting out the visibility timeout."""
    from docpipe_local.pollers import sqs_event
    from ingest import handler

    url = aws["template"].attributes["IngestNormalQueue"]["QueueUrl"]
    arn = aws["template"].attributes["IngestNormalQueue"]["Arn"]
    aws["sqs"].send_message(QueueUrl=url, MessageBody=json.dumps({"Records": []}))
    received = aws["sqs"].receive_message(QueueUrl=url, VisibilityTimeout=300, AttributeNames=["All"])["Messages"]
    monkeypatch.setattr(lambda_context, "get_remaining_time_in_millis", lambda: handler.RECORD_BUDGET_MS - 1)

    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    with pytest.raises(BatchProcessingError):  # every record of the batch failed: the invocation fails
        handler.lambda_handler(sqs_event(received, arn, "us-east-1"), lambda_context)

    again = aws["sqs"].receive_message(QueueUrl=url)["Messages"]
    assert again[0]["MessageId"] == received[0]["MessageId"]


def test_text_bytes_read_differently_by_name_share_no_work(aws, settings, service) -> None:
    data = b"city,population\nLyon,522000\n"
    as_csv, csv_key = new_upload(aws, settings, data, "data.csv", owner="alice")
    as_text, text_key = new_upload(aws, settings, data, "notes.txt", owner="bob")
    again, again_key = new_upload(aws, settings, data, "copy.txt", owner="carol")

    outcomes = [service.ingest(settings.uploads_bucket, key) for key in (csv_key, text_key, again_key)]

    sha256 = hashlib.sha256(data).hexdigest()
    assert [o.result for o in outcomes] == ["stored", "stored", "deduplicated"]
    assert job(settings, as_text)["hash"] == job(settings, again)["hash"] == sha256  # plain text: the bytes' own
    assert job(settings, as_csv)["hash"] != sha256 and job(settings, as_csv)["sha256"] == sha256
    assert job(settings, as_csv)["type"] == "csv" and job(settings, as_text)["type"] == "text"


def test_with_owner_scope_each_owner_has_their_own_content_key(aws, settings) -> None:
    scoped = IngestService(
        dataclasses.replace(settings, dedupe_scope="owner"),
        ObjectStore(),
        JobsRepository(settings.jobs_table),
        FilesRepository(settings.files_table),
    )
    data = image_bytes("PNG", (64, 48), seed=3)
    keys = [new_upload(aws, settings, data, "p.png", owner=owner)[1] for owner in ("alice", "alice", "bob")]

    outcomes = [scoped.ingest(settings.uploads_bucket, key) for key in keys]

    assert [o.result for o in outcomes] == ["stored", "deduplicated", "stored"]
    assert outcomes[0].hash == outcomes[1].hash != outcomes[2].hash
    assert hashlib.sha256(data).hexdigest() not in {o.hash for o in outcomes}

"""docpipe.completion over moto (the template's bucket, queue and tables): a queued completion, its
redelivery after S3 completed it, its last attempt, and a job cancelled meanwhile."""

from __future__ import annotations

import json
from typing import Any

import pytest

from docpipe.adapters.dynamo import JobsRepository
from docpipe.adapters.multipart import CompletionQueue, MultipartUploads, Part
from docpipe.completion import COMPLETING, Completion
from docpipe.config import Settings
from docpipe.errors import Transient

MIB = 1024 * 1024


class FlakyS3(MultipartUploads):
    """S3 whose CompleteMultipartUpload keeps failing with a fault worth retrying."""

    def complete(self, bucket: str, key: str, upload_id: str, parts: list[Part]) -> str:
        raise Transient("S3 failed on CompleteMultipartUpload: InternalError")


def _queued(aws: dict[str, Any], uploads: MultipartUploads) -> tuple[Completion, dict[str, Any], str]:
    """A 9 MiB upload in two parts, its completion requested above the inline size: the service, the job
    and the queue's URL."""
    settings = Settings.from_env()
    key = "uploads/low/erin/3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f/notes.txt"
    upload_id = aws["s3"].create_multipart_upload(Bucket=settings.uploads_bucket, Key=key)["UploadId"]
    for number, size in ((1, 8 * MIB), (2, MIB)):
        aws["s3"].upload_part(
            Bucket=settings.uploads_bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=b"n" * size
        )
    job = {
        "jobId": "3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f",
        "owner": "erin",
        "name": "notes.txt",
        "state": "uploading",
        "lane": "low",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "uploadKey": key,
        "uploadId": upload_id,
        "declaredSize": 9 * MIB,
        "sizeDeclared": True,
        "partSize": 8 * MIB,
        "partCount": 2,
        "admittedAt": 1767225600,
    }
    jobs_repo = JobsRepository(settings.jobs_table)
    jobs_repo.create(job)
    url = aws["sqs"].get_queue_url(QueueName=aws["template"].physical_name("CompleteQueue"))["QueueUrl"]
    service = Completion(settings, uploads, jobs_repo, None, CompletionQueue(url), inline_bytes=0)
    queued_job, queued = Completion(settings, MultipartUploads(), jobs_repo, None, CompletionQueue(url), 0).request(
        job, None
    )
    assert queued and queued_job["step"] == COMPLETING
    return service, queued_job, url


def test_a_queued_completion_puts_one_message_and_completes_the_object(aws: dict[str, Any]) -> None:
    service, job, url = _queued(aws, MultipartUploads())
    (message,) = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"]) == {"jobId": job["jobId"]}

    assert service.complete_queued(job["jobId"], last_attempt=False) == "completed"

    head = aws["s3"].head_object(Bucket=service.settings.uploads_bucket, Key=job["uploadKey"])
    assert head["ContentLength"] == 9 * MIB
    # redelivered after S3 completed it (the invocation died before the message was deleted): nothing to do
    assert service.complete_queued(job["jobId"], last_attempt=False) == "completed"


def test_a_fault_is_retried_until_the_last_attempt_which_fails_the_job_upload_incomplete(aws: dict[str, Any]) -> None:
    service, job, _ = _queued(aws, FlakyS3())

    with pytest.raises(Transient):  # the message comes back
        service.complete_queued(job["jobId"], last_attempt=False)
    assert service.jobs.get(job["jobId"])["state"] == "uploading"

    assert service.complete_queued(job["jobId"], last_attempt=True) == "failed"
    failed = service.jobs.get(job["jobId"])
    assert (failed["state"], failed["error"]["code"]) == ("failed", "upload.incomplete")
    uploads = aws["s3"].list_multipart_uploads(Bucket=service.settings.uploads_bucket).get("Uploads", [])
    assert not uploads  # the parts are dropped


def test_a_job_cancelled_before_its_completion_runs_is_skipped(aws: dict[str, Any]) -> None:
    service, job, _ = _queued(aws, MultipartUploads())
    service.jobs.transition(job["jobId"], ("uploading",), {"state": "cancelled"})

    assert service.complete_queued(job["jobId"], last_attempt=False) == "skipped"
    assert aws["s3"].list_objects_v2(Bucket=service.settings.uploads_bucket).get("KeyCount") == 0

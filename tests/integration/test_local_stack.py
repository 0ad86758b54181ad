"""The whole path over real HTTP: API → presigned POST to the emulator's S3 → S3 notification → SQS →
poller → IngestFunction in a worker process → DynamoDB → API."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from docpipe_local.client import ApiError, DocpipeClient, post_file
from docpipe_local.stack import LocalStack
from tests.fixtures.files import docx_bytes, image_bytes


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def process(client: DocpipeClient, path: Path) -> dict[str, Any]:
    created = client.upload_file(path)
    return client.wait(created["jobId"], timeout=60)


def stored_originals(stack: LocalStack, digest: str) -> list[str]:
    listing = stack.client("s3").list_objects_v2(
        Bucket=stack.template.physical_name("StoreBucket"), Prefix=f"files/{digest}/"
    )
    return [o["Key"] for o in listing.get("Contents", [])]


def test_a_presigned_upload_becomes_a_ready_job_whose_original_downloads(stack, alice, tmp_path) -> None:
    data = image_bytes("JPEG", (1600, 1200), seed=11)
    job = process(alice, write(tmp_path, "photo.jpg", data))

    assert job["state"] == "ready", job
    assert (job["hash"], job["size"], job["contentType"]) == (hashlib.sha256(data).hexdigest(), len(data), "image/jpeg")
    assert (job["width"], job["height"]) == (1600, 1200)
    assert requests.get(alice.variant_url(job["hash"]), timeout=10).content == data


def test_the_same_bytes_from_another_user_are_stored_once(stack, alice, bob, tmp_path) -> None:
    data = docx_bytes("shared between two users")
    first = process(alice, write(tmp_path, "a.docx", data))
    second = process(bob, write(tmp_path, "b.docx", data))

    assert (first["state"], second["state"]) == ("ready", "ready")
    assert first["hash"] == second["hash"]
    assert stored_originals(stack, first["hash"]) == [f"files/{first['hash']}/original"]
    assert second["name"] == "b.docx"
    assert "alice" not in json.dumps(bob.job(second["jobId"])) + json.dumps(bob.file(second["hash"]))


def test_simultaneous_uploads_of_the_same_bytes_store_once(stack, alice, bob, tmp_path) -> None:
    data = image_bytes("PNG", (300, 300), seed=99)
    paths = [write(tmp_path, "x.png", data), write(tmp_path, "y.png", data)]
    results: dict[str, dict[str, Any]] = {}

    def go(name: str, client: DocpipeClient, path: Path) -> None:
        results[name] = process(client, path)

    threads = [threading.Thread(target=go, args=a) for a in (("alice", alice, paths[0]), ("bob", bob, paths[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert {r["state"] for r in results.values()} == {"ready"}
    assert stored_originals(stack, results["alice"]["hash"]) == [f"files/{results['alice']['hash']}/original"]


def test_users_see_only_their_own_jobs_and_files(alice, bob, tmp_path) -> None:
    mine = process(alice, write(tmp_path, "private.txt", b"alice's private notes " + bytes(str(tmp_path), "utf-8")))

    with pytest.raises(ApiError) as job_error:
        bob.job(mine["jobId"])
    with pytest.raises(ApiError) as file_error:
        bob.file(mine["hash"])
    with pytest.raises(ApiError) as original_error:
        bob.variant_url(mine["hash"])

    assert [e.value.status for e in (job_error, file_error, original_error)] == [404, 404, 404]
    assert mine["jobId"] not in {j["jobId"] for j in bob.jobs(limit=100)["jobs"]}
    assert mine["jobId"] in {j["jobId"] for j in alice.jobs(limit=100)["jobs"]}


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_requests_without_a_valid_token_are_401(stack, token) -> None:
    with pytest.raises(ApiError) as info:
        DocpipeClient(stack.api_url, token).jobs()
    assert (info.value.status, info.value.code) == (401, "auth.required")


def test_a_jpeg_named_pdf_fails_and_its_upload_is_kept(stack, alice, tmp_path) -> None:
    job = process(alice, write(tmp_path, "invoice.pdf", image_bytes("JPEG", (50, 50))))

    assert (job["state"], job["error"]["code"]) == ("failed", "file.type_mismatch")
    uploads = stack.client("s3").list_objects_v2(
        Bucket=stack.template.physical_name("UploadsBucket"), Prefix=f"uploads/{job['lane']}/alice/{job['jobId']}/"
    )
    assert uploads["KeyCount"] == 1


def test_an_upload_larger_than_declared_fails(alice, tmp_path) -> None:
    created = alice.create_upload("notes.txt", 10, "text/plain")
    post_file(created["upload"], write(tmp_path, "notes.txt", b"far more than ten bytes of text"))

    job = alice.wait(created["jobId"], timeout=30)

    assert (job["state"], job["error"]["code"]) == ("failed", "file.too_large")


def test_a_duplicated_s3_event_changes_nothing(stack, alice, tmp_path) -> None:
    job = process(alice, write(tmp_path, "once.txt", b"exactly once " + bytes(str(tmp_path), "utf-8")))
    sqs = stack.client("sqs")
    queue = stack.template.attributes["IngestHighQueue"]["QueueUrl"]
    key = f"uploads/high/alice/{job['jobId']}/once.txt"
    body = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Post",
                "s3": {"bucket": {"name": stack.template.physical_name("UploadsBucket")}, "object": {"key": key}},
            }
        ]
    }

    for _ in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    _wait_for_empty(sqs, queue)

    assert alice.job(job["jobId"]) == job
    assert stored_originals(stack, job["hash"]) == [f"files/{job['hash']}/original"]


def _wait_for_empty(sqs: Any, queue: str, timeout: float = 20) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
            return
        time.sleep(0.1)
    raise AssertionError("the ingest queue did not drain")


def test_a_mixed_batch_ends_with_every_job_ready_or_failed(alice, tmp_path) -> None:
    files = {
        "good1.txt": b"good one",
        "good2.jpg": image_bytes("JPEG", (120, 80), seed=5),
        "fake.png": b"<html><body>not an image</body></html>",
        "archive.docx": b"PK\x03\x04" + bytes(100),
        "good3.csv": b"a,b\n1,2\n",
    }
    jobs = {name: process(alice, write(tmp_path, name, data)) for name, data in files.items()}

    states = {name: (job["state"], job.get("error", {}).get("code")) for name, job in jobs.items()}
    assert states == {
        "good1.txt": ("ready", None),
        "good2.jpg": ("ready", None),
        "fake.png": ("failed", "file.unsupported_type"),
        "archive.docx": ("failed", "file.corrupt"),
        "good3.csv": ("ready", None),
    }


def test_the_local_stack_refuses_what_the_templates_rules_refuse(tmp_path) -> None:
    # a deployment stage with the local page's origins, which CloudFormation would refuse
    with pytest.raises(ValueError, match="AllowedOrigins"):
        LocalStack(state_dir=tmp_path, parameters={"Stage": "prod"}).start()


def test_the_buckets_cors_origins_follow_the_port_the_page_is_served_on(stack: LocalStack) -> None:
    cors = stack.client("s3").get_bucket_cors(Bucket=stack.template.physical_name("UploadsBucket"))

    origins = cors["CORSRules"][0]["AllowedOrigins"]
    assert origins == [f"http://localhost:{stack.gateway.port}", f"http://127.0.0.1:{stack.gateway.port}"]

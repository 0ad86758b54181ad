"""Keys: each S3 key is decoded exactly once, so user ids with ``+``, ``%`` or non-ASCII characters
work end to end; ingest takes events only from the uploads bucket, for keys the API issued."""

from __future__ import annotations

import uuid

import pytest
import requests

from docpipe_local.client import DocpipeClient


@pytest.mark.parametrize("user", ["pat+1", "q%41", "zoë"])
def test_a_user_id_that_a_second_decode_would_change_reaches_ready(stack, user, tmp_path) -> None:
    client = DocpipeClient(stack.api_url, stack.token_for(user))
    path = tmp_path / "hello.txt"
    path.write_bytes(f"hello from {user} {uuid.uuid4()}".encode())

    job = client.wait(client.upload_file(path)["jobId"], timeout=60)

    assert job["state"] == "ready", job
    assert requests.get(client.variant_url(job["hash"]), timeout=10).content == path.read_bytes()


def test_an_object_put_under_a_key_no_job_was_issued_for_makes_no_job(stack, alice) -> None:
    job_id = str(uuid.uuid4())
    key = f"uploads/high/alice/{job_id}/planted.txt"
    stack.client("s3").put_object(Bucket=stack.template.physical_name("UploadsBucket"), Key=key, Body=b"planted")
    created = alice.create_upload("after.txt", 5, "text/plain")  # something the pipeline did handle meanwhile
    requests.post(created["upload"]["url"], data=created["upload"]["fields"], files={"file": b"after"})
    assert alice.wait(created["jobId"], timeout=60)["state"] == "ready"

    response = alice.session.get(f"{alice.api_url}/jobs/{job_id}", timeout=10)

    assert (response.status_code, response.json()["code"]) == (404, "job.not_found")
    assert job_id not in {job["jobId"] for job in alice.jobs(limit=100)["jobs"]}

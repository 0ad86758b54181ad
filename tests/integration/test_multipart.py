"""Multipart uploads against the local stack over real HTTP: the CLI's resume, the declared size, abort, and
the Companion routes' refusal of another user's key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from docpipe_local.client import ApiError, DocpipeClient
from docpipe_local.multipart import STOP_AFTER_VARIABLE
from docpipe_local.stack import LocalStack
from tests.fixtures.cli import ROOT

MIB = 1024 * 1024


def generated(path: Path, size: int) -> str:
    """A text file of ``size`` bytes, no two MiB alike; its SHA-256."""
    digest = hashlib.sha256()
    line = (hashlib.sha256(path.name.encode()).hexdigest() + "\n").encode()
    block = (line * (MIB // len(line) + 1))[:MIB]
    with path.open("wb") as fh:
        for i in range(size // MIB):
            chunk = f"{i:08d}".encode() + block[8:]
            fh.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def api(client: DocpipeClient, method: str, path: str, **kwargs: object) -> dict:
    return dict(client._call(method, path, **kwargs).json())


def test_an_interrupted_cli_upload_resumes_with_exactly_the_missing_parts(
    stack: LocalStack, alice: DocpipeClient, tmp_path: Path
) -> None:
    # given an 80 MiB file (past the 64 MiB multipart threshold) whose upload in parts (two at once) is
    # interrupted after its first three parts
    big = tmp_path / "scan-archive.txt"
    sha256 = generated(big, 80 * MIB)
    state = tmp_path / "state"
    env = {**os.environ, "DOCPIPE_STATE_DIR": str(state)}
    command = [sys.executable, "-m", "docpipe_local.cli", "process", str(big), "--json", "--parallel", "2"]
    command += ["--api", stack.api_url, "--token", stack.token_for("alice"), "--timeout", "180"]
    first = subprocess.run(
        command, cwd=ROOT, env={**env, STOP_AFTER_VARIABLE: "3"}, capture_output=True, text=True, timeout=180
    )
    assert first.returncode == 130, first.stderr
    interrupted = json.loads(first.stdout)[0]
    assert (interrupted["state"], interrupted["error"]["code"]) == ("interrupted", "upload.interrupted")
    assert interrupted["parts"] == {"resumed": [], "sent": [1, 2, 3]}
    job_id = json.loads(next(state.glob("*.json")).read_text())["jobId"]
    parts = api(alice, "GET", f"/uploads/{job_id}/parts")
    held = [p["number"] for p in parts["parts"]]
    assert (held, parts["partCount"]) == ([1, 2, 3], 10)
    assert api(alice, "GET", f"/jobs/{job_id}")["parts"]["done"] == 3  # the job shows the parts' progress

    # when the same command runs again
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    # then it sends exactly the missing parts, and the job ends ready with the file's SHA-256
    result = json.loads(second.stdout)[0]
    assert (second.returncode, result["state"]) == (0, "ready"), (result.get("error"), second.stderr)
    assert result["jobId"] == job_id
    assert result["parts"]["resumed"] == held
    assert result["parts"]["sent"] == sorted(set(range(1, 11)) - set(held))
    assert (result["state"], result["hash"], result["size"]) == ("ready", sha256, 80 * MIB)
    assert result["history"][0]["parts"] == {"done": 10, "total": 10, "bytes": 80 * MIB}
    assert not list(state.glob("*.json"))  # nothing left to resume


def test_a_completion_with_more_bytes_than_declared_fails_the_job_file_too_large(
    stack: LocalStack, alice: DocpipeClient
) -> None:
    # given an upload that declares 16 MiB + 1 byte (parts of 8, 8 and 1 byte)
    upload = api(alice, "POST", "/uploads/multipart", json={"name": "lie.txt", "size": 16 * MIB + 1})
    job_id = upload["jobId"]
    assert (upload["partSize"], upload["partCount"]) == (8 * MIB, 3)
    signed = api(alice, "POST", f"/uploads/{job_id}/parts", json={"parts": [{"number": n} for n in (1, 2, 3)]})
    # when its last part holds 8 MiB instead of 1 byte (the emulator does not check the signed Content-Length)
    for part in signed["parts"]:
        assert requests.put(part["url"], data=b"x" * (8 * MIB), timeout=60).status_code == 200

    # then completing it is refused, the job has failed file.too_large and the parts are gone
    with pytest.raises(ApiError) as refused:
        api(alice, "POST", f"/uploads/{job_id}/complete", json={})
    assert (refused.value.status, refused.value.code) == (413, "file.too_large")
    job = alice.job(job_id)
    assert (job["state"], job["error"]["code"]) == ("failed", "file.too_large")
    s3 = stack.client("s3")
    with pytest.raises(ClientError):
        s3.list_parts(
            Bucket=stack.template.physical_name("UploadsBucket"), Key=_key(stack, job_id), UploadId=upload["uploadId"]
        )


def _key(stack: LocalStack, job_id: str) -> str:
    bucket = stack.template.physical_name("UploadsBucket")
    uploads = stack.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    found = [u["Key"] for u in uploads if f"/{job_id}/" in u["Key"]]
    return found[0] if found else f"uploads/low/alice/{job_id}/x"


def test_abort_cancels_the_job_and_drops_the_parts(stack: LocalStack, alice: DocpipeClient) -> None:
    # given an upload with one part sent
    upload = api(alice, "POST", "/uploads/multipart", json={"name": "video.txt", "size": 20 * MIB})
    job_id, bucket = upload["jobId"], stack.template.physical_name("UploadsBucket")
    part = api(alice, "POST", f"/uploads/{job_id}/parts", json={"parts": [{"number": 1}]})["parts"][0]
    assert requests.put(part["url"], data=b"y" * (8 * MIB), timeout=60).status_code == 200
    key = _key(stack, job_id)
    assert len(stack.client("s3").list_parts(Bucket=bucket, Key=key, UploadId=upload["uploadId"])["Parts"]) == 1

    # when it is aborted
    aborted = api(alice, "DELETE", f"/uploads/{job_id}")

    # then the job is cancelled and S3 holds neither the upload nor its parts
    assert aborted["state"] == "cancelled" == alice.job(job_id)["state"]
    with pytest.raises(ClientError):
        stack.client("s3").list_parts(Bucket=bucket, Key=key, UploadId=upload["uploadId"])
    uploads = stack.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert not [u for u in uploads if u["Key"] == key]


def test_the_companion_routes_refuse_another_users_key(
    stack: LocalStack, alice: DocpipeClient, bob: DocpipeClient
) -> None:
    # given alice's upload started through Uppy's route
    created = api(alice, "POST", "/s3/multipart", json={"filename": "a.txt", "type": "text/plain", "metadata": {}})
    upload_id, key = created["uploadId"], created["key"]
    assert key.startswith("uploads/low/alice/")

    # when bob uses her upload id and key, or she uses her upload id with another key
    for client, wanted_key in ((bob, key), (alice, key.replace("/alice/", "/bob/")), (alice, key + "x")):
        with pytest.raises(ApiError) as refused:
            api(client, "GET", f"/s3/multipart/{upload_id}/1", params={"key": wanted_key})
        # then the answer is 404, as for an upload that does not exist
        assert (refused.value.status, refused.value.code) == (404, "upload.not_found")

    # and alice herself gets a part URL and lists her (empty) parts
    assert api(alice, "GET", f"/s3/multipart/{upload_id}/1", params={"key": key})["url"].startswith("http")
    assert alice._call("GET", f"/s3/multipart/{upload_id}", params={"key": key}).json() == []
    api(alice, "DELETE", f"/s3/multipart/{upload_id}", params={"key": key})
    assert alice.job(created["jobId"])["state"] == "cancelled"

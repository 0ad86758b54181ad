"""Completion outside the API's request, against the local stack over real HTTP: an upload over
``MultipartCompleteInlineBytes`` is answered 202 with its job ``completing``, CompleteFunction (run by the
stack from the template) joins its parts, and a completion that cannot be done fails the job with its code."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from docpipe_local.client import ApiError, DocpipeClient
from docpipe_local.pollers import sqs_event
from docpipe_local.stack import LocalStack, project_root
from docpipe_local.template import Template

MIB = 1024 * 1024
TOKENS = {"tok-erin": "erin"}
# Every completion goes to CompleteFunction (0 bytes inline); small files go in parts (8 MiB threshold).
PARAMETERS = {"UploadsPerMinute": "600", "MultipartCompleteInlineBytes": "0", "MultipartThresholdBytes": str(8 * MIB)}


def _stack(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> Iterator[LocalStack]:
    with LocalStack(
        state_dir=tmp_path_factory.mktemp(name), tokens=dict(TOKENS), parameters=dict(PARAMETERS), **kwargs
    ) as local:
        yield local


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from _stack(tmp_path_factory, "complete-stack")


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack whose CompleteQueue is not polled (its event source ``Enabled: false``): a queued completion
    waits there until the test hands it to CompleteFunction itself, through the stack's Invoke API."""
    declared = Template.load(project_root() / "template.yaml").doc["Resources"]["CompleteFunction"]["Properties"]
    events = copy.deepcopy(declared["Events"])
    events["Completions"]["Properties"]["Enabled"] = False
    yield from _stack(tmp_path_factory, "held-complete-stack", overrides={"CompleteFunction": {"Events": events}})


def _lines(seed: str, size: int) -> bytes:
    """``size`` bytes of text, no two MiB alike."""
    line = (hashlib.sha256(seed.encode()).hexdigest() + "\n").encode()
    block = (line * (MIB // len(line) + 1))[:MIB]
    return b"".join(f"{i:08d}".encode() + block[8:] for i in range(size // MIB))


def _call(client: DocpipeClient, method: str, path: str, **kwargs: Any) -> requests.Response:
    return client._call(method, path, **kwargs)


def _upload_parts(client: DocpipeClient, data: bytes, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start a multipart upload of ``data`` through docpipe's routes and send every part; the upload and
    the signed parts (whose URLs stay valid for 15 minutes)."""
    upload = _call(client, "POST", "/uploads/multipart", json={"name": name, "size": len(data)}).json()
    numbers = range(1, upload["partCount"] + 1)
    signed = _call(
        client, "POST", f"/uploads/{upload['jobId']}/parts", json={"parts": [{"number": n} for n in numbers]}
    )
    parts = signed.json()["parts"]
    size = upload["partSize"]
    for part in parts:
        body = data[(part["number"] - 1) * size : part["number"] * size]
        assert requests.put(part["url"], data=body, timeout=60).status_code == 200
    return upload, parts


def test_a_completion_answered_202_is_completed_by_complete_function_and_ends_ready(
    stack: LocalStack,
) -> None:
    # given a 24 MiB upload whose three parts are all sent
    erin = DocpipeClient(stack.api_url, stack.token_for("erin"))
    data = _lines("big-report", 24 * MIB)
    upload, _ = _upload_parts(erin, data, "big-report.txt")
    job_id = upload["jobId"]

    # when it is completed
    answer = _call(erin, "POST", f"/uploads/{job_id}/complete", json={})

    # then the API answers 202 at once with the job completing, and the job ends ready with the file's SHA-256
    assert answer.status_code == 202
    assert (answer.json()["state"], answer.json()["step"]) == ("uploading", "completing")
    job = erin.wait(job_id, timeout=120)
    assert (job["state"], job["hash"], job["size"]) == ("ready", hashlib.sha256(data).hexdigest(), 24 * MIB)
    assert "step" not in job
    states = [entry["state"] for entry in job["history"]]
    assert states[:3] == ["uploading", "completing", "scanning"], states
    assert job["history"][1]["parts"] == {"done": 3, "total": 3, "bytes": 24 * MIB}


def test_uppys_complete_route_answers_202_with_the_location_it_needs(stack: LocalStack) -> None:
    # given an upload started and sent through Uppy's Companion routes, parts of 5 MiB as Uppy sends them
    erin = DocpipeClient(stack.api_url, stack.token_for("erin"))
    created = _call(erin, "POST", "/s3/multipart", json={"filename": "clip.txt", "type": "text/plain"}).json()
    key, upload_id = created["key"], created["uploadId"]
    data = _lines("clip", 11 * MIB)
    done = []
    for number, (start, end) in enumerate(((0, 5 * MIB), (5 * MIB, 10 * MIB), (10 * MIB, 11 * MIB)), start=1):
        url = _call(erin, "GET", f"/s3/multipart/{upload_id}/{number}", params={"key": key}).json()["url"]
        put = requests.put(url, data=data[start:end], timeout=60)
        done.append({"PartNumber": number, "ETag": put.headers["ETag"]})

    # when Uppy completes it (the body @uppy/aws-s3 4.3.2 sends)
    path = f"/s3/multipart/{upload_id}/complete"
    answer = _call(erin, "POST", path, params={"key": key}, json={"parts": done})

    # then: a 2xx JSON answer with location (all @uppy/companion-client and @uppy/aws-s3 read), and a ready job
    assert answer.status_code == 202
    assert answer.json()["location"] == f"{stack.api_url}/jobs/{created['jobId']}"
    assert "error" not in answer.json()  # @uppy/aws-s3's assertServerError fails an answer that has one
    assert erin.wait(created["jobId"], timeout=120)["state"] == "ready"


def test_a_completion_that_fails_in_complete_function_fails_the_job_with_its_code(held: LocalStack) -> None:
    # given a completion queued (202) while CompleteQueue is not polled
    erin = DocpipeClient(held.api_url, held.token_for("erin"))
    data = _lines("changed", 16 * MIB)
    upload, parts = _upload_parts(erin, data, "changed.txt")
    job_id = upload["jobId"]
    assert _call(erin, "POST", f"/uploads/{job_id}/complete", json={}).status_code == 202
    with pytest.raises(ApiError) as refused:  # it takes no more parts
        _call(erin, "POST", f"/uploads/{job_id}/parts", json={"parts": [{"number": 1}]})
    assert (refused.value.status, refused.value.code) == (409, "upload.completing")

    # and part 2 sent again with other bytes after the API checked the parts (its URL is still valid)
    assert requests.put(parts[1]["url"], data=b"z" * (8 * MIB), timeout=60).status_code == 200

    # when CompleteFunction receives the queued message (as its event source would deliver it)
    sqs = held.client("sqs")
    url = sqs.get_queue_url(QueueName=held.template.physical_name("CompleteQueue"))["QueueUrl"]
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=10, AttributeNames=["All"])
    (message,) = received["Messages"]
    arn = held.template.get_att("CompleteQueue", "Arn")
    event = sqs_event([message], arn, held.template.region)
    invoked = requests.post(
        f"{held.api_url}/2015-03-31/functions/CompleteFunction/invocations",
        json=event,
        headers={"Authorization": f"Bearer {held.invoke_token}"},
        timeout=120,
    )

    # then the record succeeded (nothing to retry), the job has failed with upload.parts_invalid, the parts are gone
    assert invoked.status_code == 200 and invoked.json() == {"batchItemFailures": []}, invoked.text
    job = erin.job(job_id)
    assert (job["state"], job["error"]["code"]) == ("failed", "upload.parts_invalid")
    uploads = held.client("s3").list_multipart_uploads(Bucket=held.template.physical_name("UploadsBucket"))
    assert not [u for u in uploads.get("Uploads", []) if f"/{job_id}/" in u["Key"]]

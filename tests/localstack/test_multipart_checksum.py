"""A part whose bytes are not the ones its SHA-256 was signed for is refused by S3, through docpipe's own routes
on LocalStack (which checks ``x-amz-checksum-sha256`` on ``UploadPart``; moto does not: see
``test_emulators.py``), and the upload goes on with the right bytes to a ``ready`` job."""

from __future__ import annotations

import base64
import hashlib

import pytest
import requests

from docpipe_local.client import DocpipeClient
from docpipe_local.stack import LocalStack
from tests.localstack.conftest import TOKENS

pytestmark = [pytest.mark.slow, pytest.mark.localstack]

MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_a_part_with_a_wrong_checksum_is_refused_and_the_right_bytes_complete_the_upload(stack: LocalStack) -> None:
    # given an upload in parts (8 MiB and 1 MiB of text) that signs each part with its SHA-256
    alice = DocpipeClient(stack.api_url, next(t for t, user in TOKENS.items() if user == "dev"))
    first, last = b"first part line\n" * (8 * MIB // 16), b"last part line.\n" * (MIB // 16)
    created = alice._call(
        "POST", "/uploads/multipart", json={"name": "big.txt", "size": 9 * MIB, "checksum": "sha256"}
    ).json()
    job_id = created["jobId"]
    wanted = [{"number": 1, "sha256": sha256(first)}, {"number": 2, "sha256": sha256(last)}]
    signed = {
        p["number"]: p for p in alice._call("POST", f"/uploads/{job_id}/parts", json={"parts": wanted}).json()["parts"]
    }

    # when part 1 is sent with other bytes (of the same length) under its signed checksum
    forged = requests.put(signed[1]["url"], data=first.upper(), headers=signed[1]["headers"], timeout=60)

    # then S3 refuses it and holds nothing of it
    assert forged.status_code == 400, forged.text[:300]
    assert "BadDigest" in forged.text or "InvalidRequest" in forged.text, forged.text[:300]
    assert alice._call("GET", f"/uploads/{job_id}/parts").json()["parts"] == []

    # and the right bytes are taken, and the upload completes to a ready job with their SHA-256
    for number, body in ((1, first), (2, last)):
        sent = requests.put(signed[number]["url"], data=body, headers=signed[number]["headers"], timeout=60)
        assert sent.status_code == 200, sent.text[:300]
    alice._call("POST", f"/uploads/{job_id}/complete", json={})
    job = alice.wait(job_id, timeout=120)
    assert (job["state"], job["hash"]) == ("ready", hashlib.sha256(first + last).hexdigest()), job.get("error")

"""What each emulator guarantees, asked of each directly: the README's table of emulators rests on these.

The same questions go to moto's server as the local stack embeds it and to LocalStack (host mode): is a
presigned POST's policy enforced, is a URL's signature checked, does an S3 upload notify its queue, does
a received message stay hidden for its visibility timeout. Where an emulator does not keep a promise,
the test says so by expecting it not to, so the table cannot drift from what the emulators do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
import requests

from docpipe_local.stack import CREDENTIALS, MotoServer

pytestmark = [pytest.mark.slow, pytest.mark.localstack]

EMULATORS = ("moto", "localstack")
LOCALSTACK_PART_CHECKSUM = True
# (emulator, guarantee) → kept? The README's table says the same.
KEPT = {
    ("moto", "post policy"): False,
    ("moto", "signature"): False,
    ("moto", "s3 events"): True,
    ("moto", "visibility timeout"): True,
    ("moto", "part checksum"): False,
    ("localstack", "post policy"): True,
    ("localstack", "signature"): True,
    ("localstack", "s3 events"): True,
    ("localstack", "visibility timeout"): True,
    ("localstack", "part checksum"): LOCALSTACK_PART_CHECKSUM,
}


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "emulator.log")
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()


@pytest.fixture(params=EMULATORS)
def emulator(request: pytest.FixtureRequest) -> tuple[str, str]:
    name = request.param
    fixture = "moto_url" if name == "moto" else "localstack_url"
    return name, request.getfixturevalue(fixture)


def client(service: str, url: str, secret: str | None = None) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def bucket(url: str, name: str) -> str:
    s3 = client("s3", url)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="here.txt", Body=b"here")
    return name


def test_a_presigned_posts_policy_is_enforced(emulator) -> None:
    name, url = emulator
    s3 = client("s3", url)
    target = bucket(url, f"policy-{int(time.time() * 1000)}")
    post = s3.generate_presigned_post(
        target,
        "k/a.txt",
        Fields={"Content-Type": "text/plain"},
        Conditions=[{"Content-Type": "text/plain"}, ["content-length-range", 1, 4]],
        ExpiresIn=2,
    )

    def status(body: bytes, **fields: str) -> int:
        data = {**post["fields"], **fields}
        files = {"file": ("a.txt", body, data["Content-Type"])}
        return requests.post(post["url"], data=data, files=files, timeout=10).status_code

    answers = [
        status(b"12345"),
        status(b""),
        status(b"12", key="k/b.txt"),
        status(b"12", **{"Content-Type": "text/html"}),
    ]
    time.sleep(2.5)
    answers.append(status(b"12"))  # after the policy's expiry

    refused = [answer >= 400 for answer in answers]
    assert refused == [KEPT[name, "post policy"]] * 5, answers


def test_a_presigned_gets_signature_is_checked(emulator) -> None:
    name, url = emulator
    target = bucket(url, f"signature-{int(time.time() * 1000)}")
    signed = client("s3", url).generate_presigned_url("get_object", Params={"Bucket": target, "Key": "here.txt"})
    forged = client("s3", url, secret="another").generate_presigned_url(
        "get_object", Params={"Bucket": target, "Key": "here.txt"}
    )

    assert requests.get(signed, timeout=10).status_code == 200
    assert (requests.get(forged, timeout=10).status_code == 403) is KEPT[name, "signature"]


def test_an_upload_notifies_its_queue(emulator) -> None:
    name, url = emulator
    sqs = client("sqs", url)
    queue = sqs.create_queue(QueueName=f"events-{int(time.time() * 1000)}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3 = client("s3", url)
    target = f"events-{int(time.time() * 1000)}"
    s3.create_bucket(Bucket=target)
    s3.put_bucket_notification_configuration(
        Bucket=target,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )

    s3.put_object(Bucket=target, Key="uploads/a.txt", Body=b"a")

    keys = []
    deadline = time.monotonic() + 10
    while not keys and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            body = json.loads(message["Body"])
            keys += [unquote_plus(r["s3"]["object"]["key"]) for r in body.get("Records", [])]
    assert (keys == ["uploads/a.txt"]) is KEPT[name, "s3 events"], keys


def test_a_received_message_stays_hidden_for_its_visibility_timeout(emulator) -> None:
    name, url = emulator
    sqs = client("sqs", url)
    queue = sqs.create_queue(QueueName=f"visibility-{int(time.time() * 1000)}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="once")

    first = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=2).get("Messages", [])
    hidden = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
    time.sleep(1.5)
    back = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2).get("Messages", [])

    assert len(first) == 1
    assert (hidden == [] and len(back) == 1) is KEPT[name, "visibility timeout"], (hidden, back)


def test_a_part_whose_bytes_do_not_match_its_signed_sha256_is_refused(emulator) -> None:
    # a part URL signed as docpipe signs them (upload id, part number, x-amz-checksum-sha256 of the part),
    # the header sent as the CLI and Uppy send it, and other bytes than the ones the checksum is of
    name, url = emulator
    s3 = client("s3", url)
    target = bucket(url, f"parts-{int(time.time() * 1000)}")
    upload = s3.create_multipart_upload(Bucket=target, Key="big.txt", ChecksumAlgorithm="SHA256")["UploadId"]
    good, bad = b"a" * (5 * 1024 * 1024), b"b" * (5 * 1024 * 1024)
    digest = base64.b64encode(hashlib.sha256(good).digest()).decode()

    def put(number: int, body: bytes) -> requests.Response:
        params = {"Bucket": target, "Key": "big.txt", "UploadId": upload, "PartNumber": number}
        signed = s3.generate_presigned_url("upload_part", Params={**params, "ChecksumSHA256": digest})
        return requests.put(signed, data=body, headers={"x-amz-checksum-sha256": digest}, timeout=30)

    assert put(1, good).status_code == 200
    refused = put(2, bad)

    held = [p["PartNumber"] for p in s3.list_parts(Bucket=target, Key="big.txt", UploadId=upload).get("Parts", [])]
    assert (refused.status_code == 400 and held == [1]) is KEPT[name, "part checksum"], (refused.text[:300], held)
    if KEPT[name, "part checksum"]:
        assert "BadDigest" in refused.text or "InvalidRequest" in refused.text, refused.text[:300]


def test_the_table_of_emulators_in_the_readme_says_what_these_tests_find() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {
        "post policy": "POST policy enforced",
        "signature": "signature checked",
        "s3 events": "S3 events",
        "visibility timeout": "visibility timeouts",
        "part checksum": "part's SHA-256 checked",
    }
    for guarantee, label in rows.items():
        row = next(line for line in readme.splitlines() if line.startswith("|") and label in line)
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        moto, localstack = cells[1], cells[2]
        assert moto.startswith("yes" if KEPT["moto", guarantee] else "no"), row
        assert localstack.startswith("yes" if KEPT["localstack", guarantee] else "no"), row

"""``DedupeScope=owner``: only one owner's uploads share bytes and work, so another user's upload of the
same bytes is processed (and stored) again and its timing says nothing; the API still shows the SHA-256."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from docpipe_local.client import DocpipeClient
from docpipe_local.stack import LocalStack
from tests.fixtures.files import image_bytes


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        state_dir=tmp_path_factory.mktemp("scoped"),
        tokens={"tok-ann": "ann", "tok-ben": "ben"},
        parameters={"DedupeScope": "owner", "UploadsPerMinute": "600"},
    ) as local:
        yield local


def stored_originals(stack: LocalStack) -> list[str]:
    listing = stack.client("s3").list_objects_v2(Bucket=stack.template.physical_name("StoreBucket"), Prefix="files/")
    return [o["Key"] for o in listing.get("Contents", [])]


def send(client: DocpipeClient, tmp_path: Path, name: str, data: bytes) -> dict:
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    (folder / name).write_bytes(data)
    return client.wait(client.upload_file(folder / name)["jobId"], timeout=90)


def test_each_owner_gets_their_own_copy_and_work_under_the_same_public_hash(scoped, tmp_path) -> None:
    ann = DocpipeClient(scoped.api_url, scoped.token_for("ann"))
    ben = DocpipeClient(scoped.api_url, scoped.token_for("ben"))
    photo = image_bytes("JPEG", (400, 300), seed=7)
    sha256 = hashlib.sha256(photo).hexdigest()

    first = send(ann, tmp_path, "a.jpg", photo)
    again = send(ann, tmp_path, "b.jpg", photo)  # the same owner's second upload shares the first's work
    other = send(ben, tmp_path, "c.jpg", photo)

    assert first["hash"] == again["hash"] == other["hash"] == sha256
    assert first["state"] == again["state"] == other["state"] == "ready"
    assert len(stored_originals(scoped)) == 2  # one per owner, none under the bare SHA-256
    assert not any(sha256 in key for key in stored_originals(scoped))
    for client, job in ((ann, first), (ben, other)):
        assert set(job["tasks"]["presets"]["variants"]) == {"ai-chat", "ai-vision", "thumbnail", "preview"}
        assert job["tasks"]["presets"]["variants"]["thumbnail"]["url"] == f"/files/{sha256}/thumbnail"
        assert client.file(sha256)["hash"] == sha256
        assert requests.get(client.variant_url(sha256), timeout=10).content == photo

"""Dedupe tells no one anything: bob's upload of bytes alice uploaded first looks, field by field, like a
fresh upload (only the time it takes differs; README, "Isolation")."""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import requests

from docpipe_local.client import ApiError, DocpipeClient
from tests.fixtures.files import image_bytes


def unique(data: bytes) -> bytes:
    """The same kind of file with bytes no other test uploaded (each test starts from fresh bytes)."""
    return data + f"\n{uuid.uuid4()}\n".encode()


def upload(client: DocpipeClient, tmp_path: Path, name: str, data: bytes, ocr: bool = False) -> dict[str, Any]:
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    (folder / name).write_bytes(data)
    created = client.upload_file(folder / name, ocr=ocr)
    return client.wait(created["jobId"], timeout=90)


def shape(job: dict[str, Any]) -> dict[str, Any]:
    """What a job says beyond its own name, bytes and times: the fields it has, its history's states,
    its state, plan, type and error, and each task's state, attempts and variant names."""
    return {
        "fields": sorted(job),
        "history": [entry["state"] for entry in job["history"]],
        **{k: job.get(k) for k in ("state", "progress", "plan", "lane", "type", "contentType", "error")},
        "tasks": {
            task: {
                "state": view["state"],
                "attempts": view.get("attempts"),
                "variants": sorted(view.get("variants", {})),
            }
            for task, view in job["tasks"].items()
        },
    }


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A PNG whose header declares 400 megapixels: ingest stores it, the presets refuse it (a task failure)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    tag = uuid.uuid4().bytes  # distinct bytes per run
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"id\0" + tag)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    )


def test_a_known_file_has_a_fresh_uploads_history_facts_and_task_views(alice, bob, tmp_path) -> None:
    csv = unique(b"city,population\nLyon,522000\nNantes,320000\n")
    fresh = upload(alice, tmp_path, "data.csv", csv)
    known = upload(bob, tmp_path, "notes.txt", csv)
    control = upload(bob, tmp_path, "other.txt", unique(b"city,population\nLille,236000\n"))

    assert fresh["hash"] == known["hash"] and fresh["state"] == known["state"] == "ready"
    assert [e["state"] for e in known["history"]] == ["uploading", "scanning", "queued", "processing", "ready"]
    assert shape(known) == shape(control)
    assert (known["type"], known["contentType"]) == ("text", "text/plain")  # bob's name, not alice's csv

    alice_text = requests.get(alice.variant_url(fresh["hash"], "text"), timeout=10).json()
    bob_text = requests.get(bob.variant_url(known["hash"], "text"), timeout=10).json()
    # bob's notes.txt is read as plain text, as a fresh notes.txt would be, not as alice's CSV
    assert (alice_text["kind"], bob_text["kind"]) == ("csv", "text")
    assert "delimiter" not in bob_text.get("metadata", {})
    meta = bob.file(known["hash"])
    assert (meta["type"], meta["contentType"], meta["variants"]) == ("text", "text/plain", ["original", "text"])
    original = requests.get(bob.variant_url(known["hash"]), timeout=10)
    assert original.content == csv
    assert original.headers["Content-Type"].startswith("text/plain")
    assert "notes.txt" in original.headers["Content-Disposition"]
    assert "data.csv" not in original.headers["Content-Disposition"]


def test_another_users_ocr_is_not_shown_or_served(alice, bob, tmp_path) -> None:
    photo = image_bytes("PNG", (320, 200), seed=int(time.time()))
    with_ocr = upload(alice, tmp_path, "scan.png", photo, ocr=True)
    without = upload(bob, tmp_path, "scan.png", photo)

    assert with_ocr["state"] == without["state"] == "ready" and with_ocr["hash"] == without["hash"]
    assert set(with_ocr["tasks"]) == {"scan", "presets", "ocr"} and set(without["tasks"]) == {"scan", "presets"}
    assert "text" not in bob.file(without["hash"])["variants"]
    assert "text" in alice.file(with_ocr["hash"])["variants"]
    response = bob.session.get(f"{bob.api_url}/files/{without['hash']}/text", allow_redirects=False, timeout=10)
    assert (response.status_code, response.json()["code"]) == (404, "variant.not_found")

    asked = upload(bob, tmp_path, "scan-again.png", photo, ocr=True)  # his own plan asks for it now

    assert asked["state"] == "ready" and "text" in bob.file(asked["hash"])["variants"]


def test_attempts_count_per_job_and_another_users_retries_never_show(alice, bob, tmp_path) -> None:
    bomb = png_bomb()
    first = upload(alice, tmp_path, "bomb.png", bomb)
    copy = upload(bob, tmp_path, "bomb.png", bomb)
    assert first["state"] == copy["state"] == "failed"
    assert first["error"]["code"] == copy["error"]["code"] == "image.too_many_pixels"
    assert shape(copy) == shape(first)  # history, error, tasks and attempts: the same as a fresh upload's

    for expected in (2, 3):
        bob.retry(copy["jobId"])
        again = bob.wait(copy["jobId"], timeout=60)
        assert (again["state"], again["tasks"]["presets"]["attempts"]) == ("failed", expected)

    assert alice.job(first["jobId"])["tasks"]["presets"]["attempts"] == 1


def test_a_file_of_another_user_answers_like_one_that_does_not_exist(alice, bob, tmp_path) -> None:
    mine = upload(alice, tmp_path, "private.txt", unique(b"alice only"))
    nobody = "0" * 64

    for digest in (mine["hash"], nobody):
        for path in (f"/files/{digest}", f"/files/{digest}/original", f"/files/{digest}/text"):
            response = bob.session.get(f"{bob.api_url}{path}", allow_redirects=False, timeout=10)
            assert (response.status_code, response.json()["code"]) == (404, "file.not_found"), path
    try:
        bob.job(mine["jobId"])
    except ApiError as error:
        assert (error.status, error.code) == (404, "job.not_found")
    else:
        raise AssertionError("bob read alice's job")

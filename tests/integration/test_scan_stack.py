"""The malware scan gate over the local stack (ClamAV with the project's test database, clamd warm):
every plan starts with ``scan``, and nothing is made or served from bytes before a clean verdict."""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docpipe_local import clamav
from docpipe_local.client import DocpipeClient
from docpipe_local.stack import LocalStack
from scan.engines import ClamdEngine
from tests.fixtures.files import docx_bytes, image_bytes
from tests.fixtures.malware import EICAR, eicar_docx, eicar_pdf, javascript_pdf, macro_docx
from tests.integration.conftest import BUSY_TESTER, TOKENS

pytestmark = pytest.mark.skipif(shutil.which("clamd") is None, reason="ClamAV is not installed (make clamav)")


def _upload(client: DocpipeClient, tmp_path: Path, name: str, data: bytes) -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    return client.upload_file(path)


def _original_status(client: DocpipeClient, digest: str) -> int:
    return client.session.get(
        f"{client.api_url}/files/{digest}/original", allow_redirects=False, timeout=10
    ).status_code


@pytest.mark.parametrize(
    ("name", "data"),
    [("eicar.txt", EICAR), ("letter.docx", eicar_docx()), ("invoice.pdf", eicar_pdf())],
    ids=["txt", "docx", "pdf"],
)
def test_eicar_fails_as_infected_and_nothing_is_made_or_served(
    stack: LocalStack, alice: DocpipeClient, tmp_path: Path, name: str, data: bytes
) -> None:
    # when
    job = alice.wait(_upload(alice, tmp_path, name, data)["jobId"], timeout=60)

    # then
    assert job["state"] == "failed"
    assert job["error"]["code"] == "file.infected"
    assert "Docpipe.Test.EICAR" in job["error"]["message"]
    assert job["plan"][0] == "scan"
    assert job["tasks"]["scan"]["state"] == "failed"
    assert all(view["state"] == "queued" and "variants" not in view for t, view in job["tasks"].items() if t != "scan")
    assert [h["state"] for h in job["history"]][:2] == ["uploading", "scanning"]
    assert _original_status(alice, job["hash"]) == 404  # to its own uploader too
    store = stack.client("s3")
    bucket = stack.template.physical_name("StoreBucket")
    keys = [o["Key"] for o in store.list_objects_v2(Bucket=bucket).get("Contents", [])]
    made = [k for k in keys if job["hash"] in k]
    assert made == [f"quarantine/{job['hash']}/original"]


def test_the_same_eicar_bytes_from_another_user_are_refused_at_once(
    alice: DocpipeClient, bob: DocpipeClient, tmp_path: Path
) -> None:
    # given
    data = EICAR + b"\n-- a second copy, so this test has its own bytes"
    first = alice.wait(_upload(alice, tmp_path, "first.txt", data)["jobId"], timeout=60)
    assert first["error"]["code"] == "file.infected"

    # when
    again = bob.wait(_upload(bob, tmp_path, "again.txt", data)["jobId"], timeout=60)

    # then: refused by ingest, from the verdict kept by SHA-256: no scan, no plan, no hash shown
    assert again["state"] == "failed"
    assert again["error"]["code"] == "file.infected"
    assert "Docpipe.Test.EICAR" in again["error"]["message"]
    assert again["plan"] == []
    assert "hash" not in again
    assert [h["state"] for h in again["history"]] == ["uploading", "failed"]


def test_a_clean_file_passes_with_its_scan_task_done(alice: DocpipeClient, tmp_path: Path) -> None:
    job = alice.wait(_upload(alice, tmp_path, "photo.jpg", image_bytes(seed=2001))["jobId"], timeout=60)

    assert job["state"] == "ready", job
    assert job["plan"] == ["scan", "presets"]
    assert job["tasks"]["scan"] == {"state": "done", "attempts": 1}
    assert [h["state"] for h in job["history"]] == ["uploading", "scanning", "queued", "processing", "ready"]
    assert _original_status(alice, job["hash"]) == 302


def test_a_docx_with_macros_fails_as_file_macro(alice: DocpipeClient, tmp_path: Path) -> None:
    job = alice.wait(_upload(alice, tmp_path, "invoice.docx", macro_docx())["jobId"], timeout=60)

    assert job["state"] == "failed"
    assert job["error"]["code"] == "file.macro"
    assert "word/vbaProject.bin" in job["error"]["message"]
    assert _original_status(alice, job["hash"]) == 404


def test_a_pdf_with_javascript_is_flagged_not_refused(alice: DocpipeClient, tmp_path: Path) -> None:
    job = alice.wait(_upload(alice, tmp_path, "form.pdf", javascript_pdf())["jobId"], timeout=60)

    assert job["tasks"]["scan"]["state"] == "done"
    assert job["flags"] == ["pdf.javascript"]


def _found_lines(logs: list[Path], until: Callable[[list[int]], bool], timeout: float = 10) -> list[int]:
    """The count of ``FOUND`` lines in each clamd log, once ``until`` holds of them (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [log.read_text().count(" FOUND") for log in logs]
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stoppable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of its own, whose clamd this module stops and starts again."""
    with LocalStack(
        state_dir=tmp_path_factory.mktemp("scanstack"), tokens=dict(TOKENS), parameters=BUSY_TESTER
    ) as local:
        yield local


def test_the_clamd_behind_the_stack_serves_only_the_scans_that_far_behind(
    stoppable: LocalStack, tmp_path: Path
) -> None:
    # given the stack's second clamd, BEHIND levels below it, for the scan's workers that far behind
    # (a stack of this module's own: on the shared one, alice may be a heavy tenant by now)
    stack, alice = stoppable, DocpipeClient(stoppable.api_url, stoppable.token_for("alice"))
    behind = stack.clamd_behind
    assert behind is not None and behind.process is not None and stack.clamd is not None
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, behind.process.pid) == min(19, own + clamav.BEHIND)
    assert stack.runtimes["ScanFunction"].behind == (clamav.BEHIND, {"CLAMD_ADDRESS": str(behind.socket)})
    assert ClamdEngine(str(behind.socket)).scan(io.BytesIO(EICAR)).infected  # it answers
    logs = [stack.clamd.dir / "clamd.log", behind.dir / "clamd.log"]
    before = _found_lines(logs, lambda found: found[1] >= 1)  # clamd logs a find after it answers

    # when a tenant alone on the stack, so never heavy, sends an 11 MB text (the low lane, 10 levels behind)
    # hiding EICAR's pattern at its end
    job = alice.wait(_upload(alice, tmp_path, "big.txt", b"x" * 11_000_000 + EICAR)["jobId"], timeout=120)

    # then it fails as infected, found by the stack's own clamd: the second is only for workers further behind
    assert (job["lane"], job["state"], job["error"]["code"]) == ("low", "failed", "file.infected")
    assert _found_lines(logs, lambda found: found[0] > before[0]) == [before[0] + 1, before[1]]


def test_scanner_stopped_ends_in_scan_unavailable_and_retry_works_once_it_is_back(
    stoppable: LocalStack, tmp_path: Path
) -> None:
    # given: clamd is down
    client = DocpipeClient(stoppable.api_url, stoppable.token_for("alice"))
    assert stoppable.clamd is not None
    stoppable.clamd.stop()
    try:
        # when: three attempts, backed off 5 s and 20 s
        started = time.monotonic()
        job = client.wait(_upload(client, tmp_path, "notes.docx", docx_bytes("scan me"))["jobId"], timeout=120)
    finally:
        stoppable.clamd.start()

    # then: never clean by default
    assert job["state"] == "failed"
    assert job["error"]["code"] == "scan.unavailable"
    assert job["tasks"]["scan"]["attempts"] == 3
    assert time.monotonic() - started > 20  # the retries were backed off, not spent at once
    assert _original_status(client, job["hash"]) == 404

    # when: the scanner is back
    client.retry(job["jobId"])
    again = client.wait(job["jobId"], timeout=60)

    # then
    assert again["state"] == "ready", again
    assert again["tasks"]["scan"]["state"] == "done"
    assert again["tasks"]["extract"]["state"] == "done"

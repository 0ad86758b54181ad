"""The malware scan: its engines against a real ClamAV with the project's test database, the checks made
at scan time, GuardDuty's events, and ScanService over moto (verdicts, quarantine, the rest of the plan)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from docpipe import scanning
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.adapters.sqs import TaskQueues
from docpipe.config import Settings
from docpipe.errors import ScanUnavailable
from docpipe.jobs import JobState, history_steps, settle
from docpipe.storage import original_key, upload_key
from docpipe_local import clamav
from scan import checks, guardduty
from scan.engines import ClamdEngine, ClamscanEngine, NoneEngine, Result
from scan.service import ScanService
from tests.fixtures.files import docx_bytes
from tests.fixtures.malware import EICAR, eicar_docx, eicar_pdf, javascript_pdf, macro_docx

ROOT = Path(__file__).resolve().parents[2]
needs_clamscan = pytest.mark.skipif(shutil.which("clamscan") is None, reason="ClamAV is not installed (make clamav)")
needs_clamd = pytest.mark.skipif(shutil.which("clamd") is None, reason="clamd is not installed (make clamav)")


# ------------------------------------------------------------------ engines


@needs_clamscan
@pytest.mark.parametrize("data", [EICAR, eicar_docx(), eicar_pdf()], ids=["txt", "docx", "pdf"])
def test_clamscan_with_the_test_database_finds_eicar_in_a_file_a_docx_and_a_pdf(data: bytes) -> None:
    result = ClamscanEngine(str(clamav.TEST_DATABASE)).scan(io.BytesIO(data))

    assert result.infected and result.signature and result.signature.startswith("Docpipe.Test.EICAR")
    assert result.engine == "clamav" and "ClamAV" in result.version


@needs_clamscan
def test_clamscan_passes_a_clean_file() -> None:
    assert not ClamscanEngine(str(clamav.TEST_DATABASE)).scan(io.BytesIO(docx_bytes("clean"))).infected


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[clamav.Clamd]:
    daemon = clamav.Clamd(tmp_path_factory.mktemp("clamd"), clamav.TEST_DATABASE).start()
    yield daemon
    daemon.stop()


@needs_clamd
def test_clamd_over_its_socket_finds_eicar_and_passes_clean_bytes(clamd: clamav.Clamd) -> None:
    engine = ClamdEngine(str(clamd.socket))

    found = engine.scan(io.BytesIO(EICAR))
    clean = engine.scan(io.BytesIO(b"nothing to see" * 100_000))  # 1.4 MB: more than one INSTREAM chunk

    assert (found.infected, found.signature) == (True, "Docpipe.Test.EICAR-1.UNOFFICIAL")
    assert not clean.infected and clean.version.startswith("ClamAV ")


@needs_clamd
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads each thread's priority from /proc (Linux)")
def test_a_clamd_started_behind_runs_every_thread_at_that_priority_and_scans(tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    daemon = clamav.Clamd(tmp_path, clamav.TEST_DATABASE, name="clamd-behind", nice=clamav.BEHIND).start()
    try:
        found = ClamdEngine(str(daemon.socket)).scan(io.BytesIO(b"x" * 2_000_000 + EICAR))  # threads started
        assert daemon.process is not None
        tasks = Path(f"/proc/{daemon.process.pid}/task")
        nices = {int((task / "stat").read_text().rsplit(")", 1)[1].split()[16]) for task in tasks.iterdir()}
    finally:
        daemon.stop()
    assert (found.infected, found.signature) == (True, "Docpipe.Test.EICAR-1.UNOFFICIAL")
    assert daemon.socket.parent == (tmp_path / "clamd-behind").resolve()
    assert nices == {min(19, own + clamav.BEHIND)}


@needs_clamd
def test_clamd_on_the_test_database_hashes_no_images_and_still_finds_a_signature_in_one(clamd: clamav.Clamd) -> None:
    from tests.fixtures.files import image_bytes

    engine = ClamdEngine(str(clamd.socket))
    photo = image_bytes("JPEG", (1200, 900))

    found = engine.scan(io.BytesIO(photo + EICAR))  # bytes after the image's end, where a payload hides
    clean = engine.scan(io.BytesIO(photo))

    assert "ScanImageFuzzyHash no" in (clamd.dir / "clamd.conf").read_text().splitlines()
    assert found.infected and not clean.infected


def test_clamd_that_does_not_answer_is_unavailable_never_clean(tmp_path: Path) -> None:
    with pytest.raises(ScanUnavailable):
        ClamdEngine(str(tmp_path / "no-such.sock")).scan(io.BytesIO(b"bytes"))


def test_clamscan_that_is_not_installed_is_unavailable() -> None:
    with pytest.raises(ScanUnavailable):
        ClamscanEngine(binary="no-such-clamscan").scan(io.BytesIO(b"bytes"))


def test_the_none_engine_says_it_did_not_scan() -> None:
    assert NoneEngine().scan(io.BytesIO(EICAR)) == Result(False, None, "none", "unscanned")


# ------------------------------------------------------------------ checks at scan time


def test_a_docx_with_a_vba_project_has_macros_and_a_plain_one_has_none() -> None:
    assert checks.macro_parts(io.BytesIO(macro_docx())) == ["word/vbaProject.bin"]
    assert checks.macro_parts(io.BytesIO(docx_bytes())) == []


def test_pdf_javascript_and_launch_actions_are_found_even_escaped_or_compressed() -> None:
    import zlib

    launch = b"%PDF-1.7\n1 0 obj\n<< /Type /Action /S /L#61unch /F (calc.exe) >>\nendobj\n"
    hidden = zlib.compress(b"<< /S /JavaScript /JS (app.alert(1)) >>")
    packed = b"%PDF-1.7\n1 0 obj\n<< /Type /ObjStm /Filter /FlateDecode >>\nstream\n" + hidden + b"\nendstream\n"

    assert checks.pdf_active_content(io.BytesIO(javascript_pdf())) == ["pdf.javascript"]
    assert checks.pdf_active_content(io.BytesIO(launch)) == ["pdf.launch"]
    assert checks.pdf_active_content(io.BytesIO(packed)) == ["pdf.javascript"]
    assert checks.pdf_active_content(io.BytesIO(eicar_pdf())) == []


# ------------------------------------------------------------------ job states


def test_a_job_is_scanning_until_its_scan_is_done_then_queued() -> None:
    plan = ["scan", "presets"]

    assert settle(plan, {"scanState": "queued"}) == (JobState.SCANNING, None)
    assert settle(plan, {"scanState": "running"}) == (JobState.SCANNING, None)
    assert settle(plan, {"scanState": "done"}) == (JobState.QUEUED, None)
    assert settle(plan, {"scanState": "done", "presetsState": "running"}) == (JobState.PROCESSING, None)
    error = {"code": "file.infected", "message": "The file contains malware: X."}
    assert settle(plan, {"scanState": "failed", "scanError": error}) == (JobState.FAILED, error)


def test_a_history_passes_scanning_on_the_way() -> None:
    assert history_steps("uploading", "scanning") == []
    assert history_steps("uploading", "ready") == ["scanning", "queued", "processing"]
    assert history_steps("scanning", "processing") == ["queued"]


def test_a_clean_verdict_older_than_rescan_after_days_is_stale() -> None:
    fresh = {"scanState": "done", "scanVerdict": scanning.verdict("clean", "clamav", "v")}
    old = {"scanState": "done", "scanVerdict": {**fresh["scanVerdict"], "scannedAt": "2020-01-01T00:00:00.000Z"}}

    now = time.time()
    assert not scanning.stale(fresh, now, 30)
    assert scanning.stale(old, now, 30)
    assert not scanning.stale(old, now, 0)  # 0: never redone
    assert scanning.tasks_to_queue(["scan", "presets"], {"scanState": "queued"}) == ["scan"]
    assert scanning.tasks_to_queue(["scan", "presets"], fresh) == ["scan", "presets"]


# ------------------------------------------------------------------ ScanService over moto


class Engine:
    """An engine that answers what it is told to (the real ones are tested above)."""

    name = "clamav"

    def __init__(self, signature: str | None = None, down: bool = False) -> None:
        self.signature, self.down, self.seen = signature, down, 0

    def scan(self, file: IO[bytes]) -> Result:
        self.seen += 1
        if self.down:
            raise ScanUnavailable()
        return Result(self.signature is not None, self.signature, "clamav", "ClamAV test")


@pytest.fixture
def settings(aws: dict[str, Any]) -> Settings:
    return dataclasses.replace(Settings.from_env(), scan_engine="clamav")


def stored(aws: dict[str, Any], settings: Settings, data: bytes, name: str, owner: str = "alice") -> tuple[str, str]:
    """Bytes stored under their hash, with an open job waiting on their scan; (digest, job id)."""
    digest = hashlib.sha256(data).hexdigest()
    aws["s3"].put_object(Bucket=settings.store_bucket, Key=original_key(digest), Body=data)
    file_type = name.rsplit(".", 1)[-1]
    files = FilesRepository(settings.files_table)
    if files.get(digest) is None:
        files.claim({"hash": digest, "status": "stored", "type": file_type, "scanState": "queued"})
    job_id = f"job-{owner}-{name}"
    plan = ["scan", "presets"] if file_type == "jpeg" else ["scan", "extract"]
    JobsRepository(settings.jobs_table).create(
        {
            "jobId": job_id,
            "owner": owner,
            "name": name,
            "lane": "high",
            "state": "scanning",
            "createdAt": "2026-01-01T00:00:00Z",
            "hash": digest,
            "sha256": digest,
            "openHash": digest,
            "plan": plan,
            "uploadKey": upload_key("high", owner, job_id, name),
        }
    )
    return digest, job_id


def service(settings: Settings, engine: Engine | None = None) -> ScanService:
    return ScanService(
        settings,
        ObjectStore(),
        JobsRepository.for_settings(settings),
        FilesRepository(settings.files_table),
        TaskQueues(settings.task_queues),
        engine or Engine(),
        sleep=lambda _: None,
    )


def messages(aws: dict[str, Any], url: str) -> list[dict]:
    return [
        json.loads(m["Body"])
        for m in aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    ]


def test_clean_bytes_are_done_and_the_rest_of_the_plan_is_queued_on_the_jobs_lane(aws, settings) -> None:
    digest, job_id = stored(aws, settings, docx_bytes("clean"), "notes.docx")

    assert service(settings).run(digest) == "done"

    file = FilesRepository(settings.files_table).get(digest)
    assert (file["scanState"], file["scanVerdict"]["result"], file["scanVerdict"]["engine"]) == (
        "done",
        "clean",
        "clamav",
    )
    assert messages(aws, settings.task_queues["extract"]["high"]) == [
        {"task": "extract", "lane": "high", "hash": digest}
    ]
    assert JobsRepository(settings.jobs_table).get(job_id)["state"] == "queued"


def test_infected_bytes_are_quarantined_recorded_by_sha256_and_their_jobs_fail(aws, settings) -> None:
    digest, job_id = stored(aws, settings, b"pretend malware", "notes.txt")

    assert service(settings, Engine("Docpipe.Test.EICAR-1")).run(digest) == "failed"

    job = JobsRepository(settings.jobs_table).get(job_id)
    assert (job["state"], job["error"]["code"]) == ("failed", "file.infected")
    assert "Docpipe.Test.EICAR-1" in job["error"]["message"]
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=settings.store_bucket).get("Contents", [])]
    assert keys == [scanning.quarantine_key(digest)]
    marker = FilesRepository(settings.files_table).get(scanning.infected_key(digest))
    assert marker["signature"] == "Docpipe.Test.EICAR-1"
    assert messages(aws, settings.task_queues["extract"]["high"]) == []


def test_a_macro_docx_fails_as_file_macro_unless_macros_are_allowed(aws, settings) -> None:
    digest, job_id = stored(aws, settings, macro_docx(), "invoice.docx")
    assert service(settings).run(digest) == "failed"
    assert JobsRepository(settings.jobs_table).get(job_id)["error"]["code"] == "file.macro"

    # when the stack allows macros, the same bytes pass, flagged
    files = FilesRepository(settings.files_table)
    files.update(digest, {"scanState": "queued", "scanError": None})
    assert service(dataclasses.replace(settings, allow_macros=True)).run(digest) == "done"
    assert files.get(digest)["scanFlags"] == ["office.macros"]


def test_an_unavailable_scanner_raises_for_a_retry_and_records_nothing(aws, settings) -> None:
    digest, job_id = stored(aws, settings, b"some words", "notes.txt")

    with pytest.raises(ScanUnavailable):
        service(settings, Engine(down=True)).run(digest)

    assert "scanVerdict" not in FilesRepository(settings.files_table).get(digest)
    assert JobsRepository(settings.jobs_table).get(job_id)["state"] == "scanning"


def fixture_event(case: str) -> dict[str, Any]:
    record = json.loads((ROOT / "events" / "ScanFunction" / f"guardduty-{case}.json").read_text())["Records"][0]
    return json.loads(record["body"])


@pytest.mark.parametrize(
    ("case", "state", "code"),
    [
        ("no-threats", "queued", None),
        ("threats-found", "failed", "file.infected"),
        ("unsupported", "failed", "scan.unsupported"),
        ("access-denied", "failed", "scan.unavailable"),
        ("failed", "failed", "scan.unavailable"),
    ],
)
def test_a_guardduty_result_decides_the_job(aws, settings, case: str, state: str, code: str | None) -> None:
    # given: the upload the event names, ingested and waiting for GuardDuty
    guarded = dataclasses.replace(settings, scan_engine="guardduty")
    event = fixture_event(case)
    key = event["detail"]["s3ObjectDetails"]["objectKey"]
    event["detail"]["s3ObjectDetails"]["bucketName"] = settings.uploads_bucket
    _, _, job_id, name = key.split("/")[1:]
    stored(aws, settings, f"bytes of {case}".encode(), name)
    jobs = JobsRepository(settings.jobs_table)
    jobs.create({**jobs.get(f"job-alice-{name}"), "jobId": job_id, "uploadKey": key})
    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=key, Body=b"raw")

    # when
    service(guarded).apply_guardduty(event)

    # then
    job = jobs.get(job_id)
    assert (job["state"], (job.get("error") or {}).get("code")) == (state, code)
    assert aws["s3"].list_objects_v2(Bucket=settings.uploads_bucket).get("KeyCount") == 0
    parsed = guardduty.parse(event)
    assert parsed.status == {"no-threats": "NO_THREATS_FOUND"}.get(case, case.upper().replace("-", "_"))


def test_a_retried_guardduty_scan_writes_the_original_back_for_guardduty(aws, settings) -> None:
    # given: GuardDuty FAILED on the upload, whose raw object went with that verdict; the job is retried
    guarded = dataclasses.replace(settings, scan_engine="guardduty")
    event = fixture_event("failed")
    key = event["detail"]["s3ObjectDetails"]["objectKey"]
    event["detail"]["s3ObjectDetails"]["bucketName"] = settings.uploads_bucket
    _, _, job_id, name = key.split("/")[1:]
    digest, _ = stored(aws, settings, b"bytes GuardDuty failed on", name)
    jobs = JobsRepository(settings.jobs_table)
    jobs.create({**jobs.get(f"job-alice-{name}"), "jobId": job_id, "uploadKey": key})
    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=key, Body=b"raw")
    service(guarded).apply_guardduty(event)
    assert aws["s3"].list_objects_v2(Bucket=settings.uploads_bucket).get("KeyCount") == 0
    FilesRepository(settings.files_table).update(digest, {"scanState": "queued", "scanError": None})
    jobs.transition(job_id, ("failed",), {"state": "scanning", "openHash": digest, "error": None})

    # when: the scan task runs again
    assert service(guarded).run(digest) == "running"

    # then: the original is back under the upload key, for GuardDuty to scan when it is written
    body = aws["s3"].get_object(Bucket=settings.uploads_bucket, Key=key)["Body"].read()
    assert body == b"bytes GuardDuty failed on"

"""Every fixture in ``events/`` replayed against the local stack: a new fixture is a new regression test."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from docpipe.adapters.dynamo import JobsRepository
from docpipe.storage import parse_upload_key
from docpipe_local.replay import replay, s3_objects
from docpipe_local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((ROOT / "events").glob("*Function/*.json"))
SEEDS = [ROOT / "samples", ROOT / "events" / "seed"]

# What each fixture must produce: an HTTP status for API events; job states (by file name) for ingest events.
EXPECTED: dict[str, object] = {
    "ApiFunction/health.json": 200,
    "ApiFunction/create-upload.json": 201,
    "ApiFunction/create-upload-too-large.json": 413,
    "ApiFunction/create-upload-unsupported.json": 415,
    "ApiFunction/list-jobs.json": 200,
    "ApiFunction/get-job-unknown.json": 404,
    "ApiFunction/list-jobs-without-identity.json": 401,
    "IngestFunction/upload-text.json": {"hello.txt": ("ready", None)},
    "IngestFunction/upload-photo.json": {"photo.jpg": ("ready", None)},
    "IngestFunction/upload-mislabeled.json": {"invoice.pdf": ("failed", "file.type_mismatch")},
    "IngestFunction/duplicate-delivery.json": {"letter.docx": ("ready", None)},
    "IngestFunction/s3-test-event.json": {},
    # A multipart upload's completion (seeded as one: its ETag is "<md5>-1"), as S3 notifies it.
    "IngestFunction/upload-multipart.json": {"report.pdf": ("ready", None)},
    # A task for report.pdf delivered again (or before its upload): done work is not redone, an unknown
    # hash is dropped; either way the batch succeeds.
    "ExtractFunction/redelivered-task.json": {},
    "OcrFunction/redelivered-scanned-pages.json": {},
    # A completion delivered again after its job moved on (completed and ingested, cancelled, or unknown): skipped.
    "CompleteFunction/redelivered-completion.json": {},
    # GuardDuty's verdicts reach a stack that scans with ClamAV: ignored, and the upload each one names
    # (seeded by the replay) is scanned by ClamAV instead (test_guardduty_replay replays them on GuardDuty)
    "ScanFunction/guardduty-no-threats.json": {"gd-clean.txt": ("ready", None)},
    "ScanFunction/guardduty-threats-found.json": {"gd-threat.txt": ("ready", None)},
    "ScanFunction/guardduty-unsupported.json": {"gd-unsupported.txt": ("ready", None)},
    "ScanFunction/guardduty-access-denied.json": {"gd-denied.txt": ("ready", None)},
    "ScanFunction/guardduty-failed.json": {"gd-failed.txt": ("ready", None)},
    # A job's change from the JobsTable stream, for an owner with no connection open: nothing is posted.
    "NotifierFunction/job-modified.json": {},
}


def test_every_fixture_has_an_expectation() -> None:
    assert {str(p.relative_to(ROOT / "events")) for p in FIXTURES} == set(EXPECTED)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_replays(stack: LocalStack, fixture: Path) -> None:
    name = f"{fixture.parent.name}/{fixture.name}"
    expected = EXPECTED[name]

    jobs_table = (
        stack.endpoints.get("dynamodb", stack.endpoint),
        stack.template.physical_name("JobsTable"),
        stack.region,
    )
    result = replay(fixture, stack.api_url, stack.endpoint, seed_dirs=SEEDS, jobs=jobs_table, token=stack.invoke_token)

    assert result.ok, result.body
    if isinstance(expected, int):
        assert result.body["statusCode"] == expected, result.body
        body = json.loads(result.body["body"] or "{}")
        if expected >= 400:
            assert body["code"] and body["message"]
        return
    assert result.body == {"batchItemFailures": []}
    jobs = JobsRepository(stack.template.physical_name("JobsTable"), client=stack.client("dynamodb"))
    outcomes = {}
    for _, key in s3_objects(json.loads(fixture.read_text())):
        _, _, job_id = parse_upload_key(key)
        job = settled(jobs, job_id)
        outcomes[key.rsplit("/", 1)[-1]] = (job["state"], (job.get("error") or {}).get("code"))
    assert outcomes == expected


def settled(jobs: JobsRepository, job_id: str, timeout: float = 60) -> dict:
    """The job once its tasks (run by the stack's pollers after ingest) have ended."""
    deadline = time.monotonic() + timeout
    while True:
        job = jobs.get(job_id) or {}
        if job.get("state") in ("ready", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)

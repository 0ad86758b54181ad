"""The GuardDuty path: each kind of scan result, as a fixture event (events/ScanFunction/), replayed through
``docpipe replay``'s code against a stack with ``ScanEngine=guardduty``. The replay seeds the upload the event
names and its job; ingest stores it and the job waits ``scanning`` (GuardDuty, not docpipe, scans it) until
the event's verdict is applied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from docpipe.adapters.dynamo import JobsRepository
from docpipe.storage import parse_upload_key
from docpipe_local.replay import replay, s3_objects
from docpipe_local.stack import LocalStack
from tests.integration.conftest import BUSY_TESTER, TOKENS
from tests.integration.test_replay import SEEDS, settled

ROOT = Path(__file__).resolve().parents[2]
OUTCOMES = {
    "guardduty-no-threats": ("ready", None),
    "guardduty-threats-found": ("failed", "file.infected"),
    "guardduty-unsupported": ("failed", "scan.unsupported"),
    "guardduty-access-denied": ("failed", "scan.unavailable"),
    "guardduty-failed": ("failed", "scan.unavailable"),
}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    parameters = {**BUSY_TESTER, "ScanEngine": "guardduty"}
    with LocalStack(state_dir=tmp_path_factory.mktemp("guardduty"), tokens=dict(TOKENS), parameters=parameters) as s:
        yield s


def test_every_guardduty_fixture_has_an_outcome() -> None:
    assert {p.stem for p in (ROOT / "events" / "ScanFunction").glob("guardduty-*.json")} == set(OUTCOMES)


@pytest.mark.parametrize("case", sorted(OUTCOMES))
def test_a_guardduty_verdict_decides_the_job(guarded: LocalStack, case: str) -> None:
    # given / when: the upload is seeded (and ingested), then GuardDuty's verdict on it arrives
    fixture = ROOT / "events" / "ScanFunction" / f"{case}.json"
    jobs_table = (
        guarded.endpoints.get("dynamodb", guarded.endpoint),
        guarded.template.physical_name("JobsTable"),
        guarded.region,
    )
    result = replay(
        fixture, guarded.api_url, guarded.endpoint, seed_dirs=SEEDS, jobs=jobs_table, token=guarded.invoke_token
    )

    # then
    assert result.ok and result.body == {"batchItemFailures": []}, result.body
    (key,) = [key for _, key in s3_objects(json.loads(fixture.read_text()))]
    _, _, job_id = parse_upload_key(key)
    job = settled(
        JobsRepository(guarded.template.physical_name("JobsTable"), client=guarded.client("dynamodb")), job_id
    )
    assert (job["state"], (job.get("error") or {}).get("code")) == OUTCOMES[case]
    uploads = guarded.client("s3").list_objects_v2(Bucket=guarded.template.physical_name("UploadsBucket"), Prefix=key)
    assert uploads.get("KeyCount") == 0  # the raw upload waited for its verdict, and went with it

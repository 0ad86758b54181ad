"""The sweeper over moto: uploads that never arrive end as ``upload.expired`` and give their quota back;
one that did arrive is given more time."""

from __future__ import annotations

import dataclasses

import pytest

from docpipe import quotas
from docpipe.adapters.dynamo import JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.adapters.usage import UsageRepository
from docpipe.config import Settings
from sweeper.service import Sweeper
from tests.unit.test_api import call, upload  # noqa: F401 - the API fixture

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def settings(monkeypatch) -> Settings:
    from api import handler

    short = dataclasses.replace(Settings.from_env(), upload_url_ttl_seconds=1, upload_grace_seconds=0)
    monkeypatch.setattr(handler, "settings", short)
    return short


def test_a_never_sent_upload_ends_as_upload_expired_and_frees_its_quota(call, settings) -> None:  # noqa: F811
    job_id = upload(call, "never.txt", 700, contentType="text/plain")["jobId"]
    usage = UsageRepository(settings.usage_table or "")
    sweeper = Sweeper(settings, JobsRepository.for_settings(settings), ObjectStore(), clock=lambda: 2**31)

    counts = sweeper.sweep()

    status, job, _ = call("GET", f"/jobs/{job_id}")
    assert counts == {"expired": 1, "extended": 0}
    assert (status, job["state"], job["error"]["code"]) == (200, "failed", "upload.expired")
    assert [h["state"] for h in job["history"]] == ["uploading", "failed"]
    assert usage.used("alice", [quotas.OPEN, quotas.STORED]) == {quotas.OPEN: 0, quotas.STORED: 0}
    assert sweeper.sweep() == {"expired": 0, "extended": 0}  # out of the index once ended


def test_an_upload_that_arrived_but_waits_for_ingest_gets_more_time(aws, call, settings) -> None:  # noqa: F811
    created = upload(call, "slow.txt", 5, contentType="text/plain")
    aws["s3"].put_object(Bucket=settings.uploads_bucket, Key=created["upload"]["fields"]["key"], Body=b"hello")
    sweeper = Sweeper(settings, JobsRepository.for_settings(settings), ObjectStore(), clock=lambda: 2**31)

    assert sweeper.sweep() == {"expired": 0, "extended": 1}
    assert call("GET", f"/jobs/{created['jobId']}")[1]["state"] == "uploading"


def test_jobs_within_their_deadline_are_left_alone(call, settings) -> None:  # noqa: F811
    upload(call, "soon.txt", 5, contentType="text/plain")
    sweeper = Sweeper(settings, JobsRepository.for_settings(settings), ObjectStore())

    assert sweeper.sweep() == {"expired": 0, "extended": 0}

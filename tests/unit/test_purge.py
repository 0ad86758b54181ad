"""Purge over moto: a job goes for good, its bytes with the last reference, and a re-upload racing a
purge never loses bytes that its job needs."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from docpipe import control
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.config import Settings
from docpipe.storage import derived_key, original_key, text_key
from ingest.service import IngestService
from tests.unit.test_ingest import new_upload

pytestmark = pytest.mark.usefixtures("aws")
DATA = b"the same bytes, uploaded by two people\n" * 20


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env()


def service(settings: Settings, store: ObjectStore | None = None, wait: float = 0.3) -> IngestService:
    return IngestService(
        settings,
        store or ObjectStore(),
        JobsRepository.for_settings(settings),
        FilesRepository(settings.files_table),
        store_wait_seconds=wait,
    )


def ingested(aws: dict[str, Any], settings: Settings, owner: str, data: bytes = DATA) -> dict[str, Any]:
    job_id, key = new_upload(aws, settings, data, "notes.txt", owner=owner)
    assert service(settings).ingest(settings.uploads_bucket, key).result in ("stored", "deduplicated")
    job = JobsRepository(settings.jobs_table).get(job_id)
    assert job is not None
    return job


def keys(aws: dict[str, Any], settings: Settings) -> set[str]:
    listing = aws["s3"].list_objects_v2(Bucket=settings.store_bucket)
    return {o["Key"] for o in listing.get("Contents", [])}


def purge(settings: Settings, job: dict[str, Any], store: ObjectStore | None = None) -> bool:
    jobs_repo = JobsRepository.for_settings(settings)
    current = jobs_repo.get(job["jobId"]) or job
    files = FilesRepository(settings.files_table)
    return control.purge(current, jobs_repo, files, store or ObjectStore(), settings.store_bucket, 2**31)


def test_the_bytes_go_with_the_last_job_that_references_them(aws, settings) -> None:
    alice, bob = ingested(aws, settings, "alice"), ingested(aws, settings, "bob")
    digest = alice["hash"]
    for made in (derived_key(digest, "preview", "jpg"), text_key(digest), f"text/{digest}/partial.json"):
        aws["s3"].put_object(Bucket=settings.store_bucket, Key=made, Body=b"made from the bytes")
    files = FilesRepository(settings.files_table)
    assert files.get(digest)["refs"] == 2

    first = purge(settings, alice)

    assert first is False and files.get(digest)["refs"] == 1
    assert original_key(digest) in keys(aws, settings)
    assert JobsRepository(settings.jobs_table).get(alice["jobId"]) is None

    last = purge(settings, bob)

    assert last is True
    assert keys(aws, settings) == set()  # original, preset, text and its pieces
    assert files.get(digest) is None


def test_purging_an_open_job_cancels_it_first(aws, settings) -> None:
    job = ingested(aws, settings, "alice")
    assert job["state"] == "scanning"

    purge(settings, job)

    assert JobsRepository(settings.jobs_table).get(job["jobId"]) is None
    assert FilesRepository(settings.files_table).get(job["hash"]) is None


def test_a_job_purged_twice_is_not_found_the_second_time(aws, settings) -> None:
    from docpipe.errors import NotFound

    job = ingested(aws, settings, "alice")
    purge(settings, job)
    with pytest.raises(NotFound):
        control.purge(
            job,
            JobsRepository.for_settings(settings),
            FilesRepository(settings.files_table),
            ObjectStore(),
            settings.store_bucket,
            2**31,
        )


class PausingStore(ObjectStore):
    """Pauses a purge in the middle of deleting a hash's objects, so another upload can race it."""

    def __init__(self) -> None:
        super().__init__()
        self.deleting = threading.Event()
        self.resume = threading.Event()

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        deleted = super().delete_prefix(bucket, prefix)
        if prefix.startswith("files/"):
            self.deleting.set()
            assert self.resume.wait(10)
        return deleted


def test_an_upload_racing_a_purge_stores_the_bytes_again_and_keeps_them(aws, settings) -> None:
    alice = ingested(aws, settings, "alice")
    digest = alice["hash"]
    store = PausingStore()
    purger = threading.Thread(target=purge, args=(settings, alice, store))
    purger.start()
    assert store.deleting.wait(10)  # the purge holds the file as "deleting" and its original is gone
    job_id, key = new_upload(aws, settings, DATA, "again.txt", owner="bob")
    outcome: dict[str, Any] = {}
    uploader = threading.Thread(
        target=lambda: outcome.update(o=service(settings, wait=10).ingest(settings.uploads_bucket, key))
    )
    uploader.start()

    threading.Timer(0.5, store.resume.set).start()  # the upload waits while the purge finishes
    purger.join(10)
    uploader.join(20)

    assert outcome["o"].result == "stored"  # stored again, not matched to bytes being deleted
    assert JobsRepository(settings.jobs_table).get(job_id)["state"] == "scanning"
    stored = aws["s3"].get_object(Bucket=settings.store_bucket, Key=original_key(digest))["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == digest
    file = FilesRepository(settings.files_table).get(digest)
    assert (file["status"], file["refs"]) == ("stored", 1)


def test_an_upload_that_referenced_the_bytes_first_keeps_them_from_the_purge(aws, settings) -> None:
    alice = ingested(aws, settings, "alice")
    bob = ingested(aws, settings, "bob")  # a dedupe hit: one more reference before the purge

    deleted = purge(settings, alice)

    assert deleted is False
    assert original_key(alice["hash"]) in keys(aws, settings)
    assert JobsRepository(settings.jobs_table).get(bob["jobId"])["hash"] == alice["hash"]


def test_bytes_stored_before_references_were_counted_are_never_purged(aws, settings) -> None:
    job = ingested(aws, settings, "alice")
    files = FilesRepository(settings.files_table)
    files.update(job["hash"], {"refsCounted": None, "refs": None})  # as a file stored by an older version

    assert purge(settings, job) is False
    assert original_key(job["hash"]) in keys(aws, settings)

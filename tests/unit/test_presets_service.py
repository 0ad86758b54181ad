"""PresetsService over moto: outputs written with their headers, files and jobs settled, failures coded."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from PIL import Image

from docpipe.adapters.dynamo import FilesRepository, JobsRepository, owner_hash
from docpipe.config import Settings
from docpipe.storage import original_key
from presets.service import PresetsService
from tests.fixtures.files import image_bytes

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture
def service(settings: Settings) -> PresetsService:
    return PresetsService.for_settings(settings)


def stored(
    aws: dict[str, Any], settings: Settings, data: bytes, owners: tuple[str, ...] = ("alice",)
) -> tuple[str, list[str]]:
    digest = hashlib.sha256(data).hexdigest()
    aws["s3"].put_object(Bucket=settings.store_bucket, Key=original_key(digest), Body=data)
    FilesRepository(settings.files_table).claim({"hash": digest, "status": "stored", "presetsState": "queued"})
    ids = []
    for i, owner in enumerate(owners):
        job_id = f"{owner}-{i}"
        JobsRepository(settings.jobs_table).create(
            {
                "jobId": job_id,
                "owner": owner,
                "name": "p.jpg",
                "state": "queued",
                "plan": ["presets"],
                "createdAt": f"2026-01-01T00:00:0{i}.000Z",
                "hash": digest,
                "ownerHash": owner_hash(owner, digest),
            }
        )
        ids.append(job_id)
    return digest, ids


def test_presets_are_written_recorded_and_every_waiting_job_is_ready(aws, settings, service) -> None:
    digest, ids = stored(aws, settings, image_bytes("JPEG", (3000, 2000)), owners=("alice", "bob"))

    assert service.run(digest) == "done"

    record = FilesRepository(settings.files_table).get(digest)
    artifacts = record["presetsArtifacts"]
    assert {n: (a["width"], a["height"], a["format"]) for n, a in artifacts.items()} == {
        "ai-vision": (2048, 1365, "jpeg"),
        "ai-chat": (1920, 1280, "jpeg"),
        "preview": (800, 533, "jpeg"),
        "thumbnail": (200, 133, "webp"),
    }
    thumb = aws["s3"].get_object(Bucket=settings.store_bucket, Key=f"derived/{digest}/thumbnail.webp")
    assert (thumb["ContentType"], thumb["CacheControl"]) == ("image/webp", "public, max-age=31536000, immutable")
    assert Image.open(io.BytesIO(thumb["Body"].read())).size == (200, 133)
    assert [JobsRepository(settings.jobs_table).get(i)["state"] for i in ids] == ["ready", "ready"]


def test_a_redelivered_task_changes_nothing(aws, settings, service) -> None:
    digest, ids = stored(aws, settings, image_bytes("PNG", (300, 200)))
    service.run(digest)
    before = (FilesRepository(settings.files_table).get(digest), JobsRepository(settings.jobs_table).get(ids[0]))

    assert service.run(digest) == "done"

    assert (
        FilesRepository(settings.files_table).get(digest),
        JobsRepository(settings.jobs_table).get(ids[0]),
    ) == before


def test_a_corrupt_image_fails_the_task_and_its_jobs_with_a_code(aws, settings, service) -> None:
    data = image_bytes("JPEG", (800, 600))
    digest, ids = stored(aws, settings, data[: len(data) // 3])

    assert service.run(digest) == "failed"

    job = JobsRepository(settings.jobs_table).get(ids[0])
    assert (job["state"], job["error"]["code"]) == ("failed", "file.corrupt")


def test_regeneration_renders_only_what_was_asked(aws, settings, service) -> None:
    digest, _ = stored(aws, settings, image_bytes("JPEG", (1000, 800)))
    service.run(digest)
    aws["s3"].delete_object(Bucket=settings.store_bucket, Key=f"derived/{digest}/preview.jpg")

    service.run(digest, only=["preview"])

    assert aws["s3"].head_object(Bucket=settings.store_bucket, Key=f"derived/{digest}/preview.jpg")["ContentLength"] > 0
    assert len(FilesRepository(settings.files_table).get(digest)["presetsArtifacts"]) == 4

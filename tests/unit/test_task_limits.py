"""Presets, extraction and OCR refuse what is too large for them from the file record, before reading a byte:
a multi-GiB original (uploaded in parts) fails its job with ``file.too_large`` at once, and an image whose
header says it has too many pixels with ``image.too_many_pixels``, instead of filling ``/tmp`` or timing out.

The records below name originals the store does not hold: a service that tried to download one would fail
otherwise (``upload.missing``/not found), so the codes asserted can only come from the record."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from docpipe import task_limits
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.config import Settings
from docpipe.jobs import new_job_id
from docpipe.storage import original_key
from extract.service import ExtractService
from ocr.engines import TesseractEngine
from ocr.service import OcrService
from presets.service import PresetsService

pytestmark = pytest.mark.usefixtures("aws")

GIB = 1024**3


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(Settings.from_env(), max_image_pixels=100_000_000)


def recorded(settings: Settings, task: str, facts: dict[str, Any]) -> tuple[str, str]:
    """A stored file's record with ``facts`` (no bytes in the store) and one job waiting on ``task``."""
    digest = hashlib.sha256(repr(facts).encode() + task.encode()).hexdigest()
    files = FilesRepository(settings.files_table)
    files.claim({"hash": digest, "status": "storing", "leaseUntil": 2**40})
    files.mark_stored(digest, facts)
    files.request_task(digest, task)
    job_id = new_job_id()
    JobsRepository(settings.jobs_table).create(
        {
            "jobId": job_id,
            "owner": "alice",
            "name": "big",
            "state": "processing",
            "hash": digest,
            "plan": [task],
            "createdAt": "2026-01-01T00:00:00Z",
        }
    )
    return digest, job_id


def outcome(settings: Settings, digest: str, job_id: str, task: str) -> tuple[str, str, str]:
    file = FilesRepository(settings.files_table).get(digest) or {}
    job = JobsRepository(settings.jobs_table).get(job_id) or {}
    return file[f"{task}State"], file[f"{task}Error"]["code"], job["error"]["code"]


def test_a_five_gib_text_file_is_refused_by_extraction_as_file_too_large(aws, settings) -> None:
    digest, job_id = recorded(settings, "extract", {"size": 5 * GIB, "type": "text", "contentType": "text/plain"})

    assert ExtractService.for_settings(settings).run(digest) == "failed"

    assert outcome(settings, digest, job_id, "extract") == ("failed", "file.too_large", "file.too_large")
    assert JobsRepository(settings.jobs_table).get(job_id)["state"] == "failed"
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=settings.store_bucket, Prefix=original_key(digest))


def test_a_two_gib_pdf_is_refused_by_extraction_as_file_too_large(settings) -> None:
    digest, job_id = recorded(settings, "extract", {"size": 2 * GIB, "type": "pdf"})

    assert ExtractService.for_settings(settings).run(digest) == "failed"

    assert outcome(settings, digest, job_id, "extract") == ("failed", "file.too_large", "file.too_large")


def test_a_one_gib_tiff_is_refused_by_the_presets_as_file_too_large(settings) -> None:
    facts = {"size": GIB, "type": "tiff", "width": 9000, "height": 9000}

    digest, job_id = recorded(settings, "presets", facts)

    assert PresetsService.for_settings(settings).run(digest) == "failed"
    assert outcome(settings, digest, job_id, "presets") == ("failed", "file.too_large", "file.too_large")


def test_an_image_whose_header_has_too_many_pixels_is_refused_before_its_download(settings) -> None:
    facts = {"size": 300 * 1024 * 1024, "type": "png", "width": 20_000, "height": 10_000}

    digest, job_id = recorded(settings, "presets", facts)

    assert PresetsService.for_settings(settings).run(digest) == "failed"
    assert outcome(settings, digest, job_id, "presets") == ("failed", "image.too_many_pixels", "image.too_many_pixels")


def test_ocr_of_a_one_gib_image_is_refused_as_file_too_large(settings) -> None:
    digest, job_id = recorded(settings, "ocr", {"size": GIB, "type": "tiff", "width": 5000, "height": 5000})

    assert OcrService.for_settings(settings, TesseractEngine).run(digest) == "failed"

    assert outcome(settings, digest, job_id, "ocr") == ("failed", "file.too_large", "file.too_large")


def test_the_limits_fit_in_the_functions_tmp_and_admit_what_the_pixel_limit_does() -> None:
    # every task's limit leaves room in Lambda's default /tmp (512 MB) for the spooled original
    assert max(task_limits.MAX_BYTES.values()) < 512 * 1000 * 1000
    # an image at the default pixel limit stored uncompressed (4 bytes a pixel) is still taken by the presets
    assert task_limits.refusal("presets", {"size": 4 * 100_000_000, "width": 10_000, "height": 10_000}, 10**8) is None
    assert task_limits.refusal("extract", {"size": 256 * 1024 * 1024}) is None

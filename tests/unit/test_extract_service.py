"""ExtractService and OcrService over moto: page ranges, the OCR hand-off of scanned pages, failures."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from typing import Any

import pytest

from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.config import Settings
from docpipe.errors import OcrUnavailable
from docpipe.jobs import new_job_id
from docpipe.storage import original_key, text_key
from extract.service import ExtractService
from ocr.engines import OcrPage, TesseractEngine
from ocr.service import OcrService
from tests.fixtures.documents import SENTENCES, pdf

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(Settings.from_env(), extract_range_pages=2, ocr_pages_per_task=2)


def stored(settings: Settings, data: bytes, kind: str = "pdf", plan: list[str] | None = None) -> tuple[str, str]:
    """An original in the store, its file record, and one job waiting on it."""
    digest = hashlib.sha256(data).hexdigest()
    ObjectStore().put(settings.store_bucket, original_key(digest), data, "application/pdf", "private")
    files = FilesRepository(settings.files_table)
    files.claim({"hash": digest, "status": "storing", "leaseUntil": 2**40})
    files.mark_stored(digest, {"size": len(data), "type": kind})
    plan = plan or ["extract"]
    for task in plan:
        files.request_task(digest, task)
    job_id = new_job_id()
    JobsRepository(settings.jobs_table).create(
        {
            "jobId": job_id,
            "owner": "alice",
            "name": f"doc.{kind}",
            "state": "queued",
            "hash": digest,
            "plan": plan,
            "createdAt": "2026-01-01T00:00:00Z",
        }
    )
    return digest, job_id


def extract_service(settings: Settings) -> ExtractService:
    return ExtractService.for_settings(settings)


def ocr_service(settings: Settings, engine: Any) -> OcrService:
    return OcrService.for_settings(settings, lambda: engine)


def drain(aws: dict[str, Any], settings: Settings, task: str, lane: str = "normal") -> list[dict[str, Any]]:
    url = settings.task_queues[task][lane]
    bodies = []
    while messages := aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            bodies.append(json.loads(m["Body"]))
            aws["sqs"].delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def text_doc(aws: dict[str, Any], settings: Settings, digest: str) -> dict[str, Any]:
    body = aws["s3"].get_object(Bucket=settings.store_bucket, Key=text_key(digest))["Body"].read()
    return json.loads(body)


def job_state(settings: Settings, job_id: str) -> str:
    return str((JobsRepository(settings.jobs_table).get(job_id) or {})["state"])


def test_a_text_pdf_is_extracted_and_its_job_is_ready(aws, settings) -> None:
    digest, job_id = stored(settings, pdf([SENTENCES, SENTENCES[:1]], title="Invoice"))

    assert extract_service(settings).run(digest) == "done"

    doc = text_doc(aws, settings, digest)
    assert [(p["number"], p["method"]) for p in doc["pages"]] == [(1, "text-layer"), (2, "text-layer")]
    assert doc["pages"][1]["text"] == SENTENCES[0]
    assert doc["metadata"]["title"] == "Invoice"
    artifact = FilesRepository(settings.files_table).get(digest)["extractArtifacts"]["text"]  # type: ignore[index]
    assert artifact["excerpt"].startswith("Invoice 2041 for the design")
    assert (artifact["pages"], artifact["methods"]) == (2, ["text-layer"])
    assert job_state(settings, job_id) == "ready"


def test_a_large_pdf_is_split_into_ranges_merged_in_page_order(aws, settings) -> None:
    pages = [[f"This is page number {n} of five."] for n in range(1, 6)]
    digest, job_id = stored(settings, pdf(pages))
    service = extract_service(settings)

    assert service.run(digest) == "running"
    ranges = drain(aws, settings, "extract")
    assert [m["range"] for m in ranges] == [[1, 2], [3, 4], [5, 5]]
    states = [service.run(digest, "normal", m["range"]) for m in reversed(ranges)]  # any order

    assert states == ["running", "running", "done"]
    doc = text_doc(aws, settings, digest)
    assert [p["text"] for p in doc["pages"]] == [f"This is page number {n} of five." for n in range(1, 6)]
    assert job_state(settings, job_id) == "ready"


def test_a_redelivered_range_does_not_merge_twice(aws, settings) -> None:
    digest, _ = stored(settings, pdf([["one"], ["two"], ["three"]]))
    service = extract_service(settings)
    service.run(digest)
    ranges = drain(aws, settings, "extract")
    for m in ranges:
        service.run(digest, "normal", m["range"])

    assert service.run(digest, "normal", ranges[0]["range"]) == "done"
    assert len(text_doc(aws, settings, digest)["pages"]) == 3


def test_scanned_pages_go_to_ocr_in_chunks_and_are_merged_back(aws, settings) -> None:
    settings = dataclasses.replace(settings, extract_range_pages=200, ocr_pages_per_task=1)
    pages = [SENTENCES[:2], SENTENCES[1:3], SENTENCES[2:4]]
    digest, job_id = stored(settings, pdf(pages, scanned=frozenset({2, 3})))

    assert extract_service(settings).run(digest) == "ocr"
    assert job_state(settings, job_id) == "processing"
    chunks = drain(aws, settings, "ocr")
    assert [(m["for"], m["pages"]) for m in chunks] == [("extract", [2]), ("extract", [3])]

    service = ocr_service(settings, TesseractEngine())
    assert [service.run(digest, m["pages"], "extract") for m in reversed(chunks)] == ["ocr", "done"]

    doc = text_doc(aws, settings, digest)
    assert [p["method"] for p in doc["pages"]] == ["text-layer", "ocr", "ocr"]
    assert "Payment is due within thirty days" in doc["pages"][1]["text"]
    assert "Questions about this invoice" in doc["pages"][2]["text"]
    assert not any("needs_ocr" in p for p in doc["pages"])
    assert job_state(settings, job_id) == "ready"


class Unavailable:
    name = "down"

    def image(self, data: bytes) -> OcrPage:
        raise OcrUnavailable("engine down")

    def pdf_pages(self, source: Any, pages: list[int]) -> list[OcrPage]:
        raise OcrUnavailable("engine down")


def test_an_unavailable_engine_is_retried_not_failed(aws, settings) -> None:
    digest, job_id = stored(settings, pdf([["scan"]], scanned=frozenset({1})))
    extract_service(settings).run(digest)
    (chunk,) = drain(aws, settings, "ocr")

    with pytest.raises(OcrUnavailable):
        ocr_service(settings, Unavailable()).run(digest, chunk["pages"], "extract")
    assert FilesRepository(settings.files_table).get(digest)["extractState"] == "ocr"  # type: ignore[index]
    assert job_state(settings, job_id) == "processing"


def test_an_encrypted_pdf_fails_its_job_with_pdf_encrypted(aws, settings) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf([["secret"]]))).pages:
        writer.add_page(page)
    writer.encrypt("open sesame")
    out = io.BytesIO()
    writer.write(out)
    digest, job_id = stored(settings, out.getvalue())

    assert extract_service(settings).run(digest) == "failed"
    job = JobsRepository(settings.jobs_table).get(job_id) or {}
    assert (job["state"], job["error"]["code"]) == ("failed", "pdf.encrypted")


def test_a_pdf_slower_than_the_seconds_it_is_given_fails_as_unsafe_in_that_time(aws, settings) -> None:
    # given a one-page PDF of millions of drawing operators (its page count is quick, its text is not)
    import time
    import zlib

    from tests.unit.test_extract_formats import _one_page_pdf

    drawing = _one_page_pdf(zlib.compress(b"0 0 1 1 re f\n" * 2_000_000, 9), "/Filter /FlateDecode")
    digest, job_id = stored(settings, drawing)

    # when the invocation leaves it 2 seconds in all, for counting and reading
    started = time.monotonic()
    assert extract_service(settings).run(digest, seconds=2.0) == "failed"

    # then its job fails as archive.unsafe within those seconds (plus the stack's round trips)
    assert time.monotonic() - started < 6
    job = JobsRepository(settings.jobs_table).get(job_id) or {}
    assert (job["state"], job["error"]["code"]) == ("failed", "archive.unsafe")


def test_a_photo_of_a_document_is_ocrd_as_the_ocr_task(aws, settings) -> None:
    from tests.fixtures.documents import page_image

    image = page_image(SENTENCES, dpi=150)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    digest, job_id = stored(settings, buffer.getvalue(), kind="png", plan=["ocr"])

    assert ocr_service(settings, TesseractEngine()).run(digest) == "done"

    doc = text_doc(aws, settings, digest)
    assert (doc["kind"], doc["pages"][0]["method"]) == ("image", "ocr")
    assert "Thank you for choosing our services" in doc["pages"][0]["text"]
    assert job_state(settings, job_id) == "ready"


def test_a_pdf_stopped_by_the_invocations_time_is_retried_not_failed(aws, settings) -> None:
    # given the slow PDF, and an invocation with 1 second left to read (its own limit being 90 s)
    import time
    import zlib

    from docpipe.errors import Transient
    from tests.unit.test_extract_formats import _one_page_pdf

    drawing = _one_page_pdf(zlib.compress(b"0 0 1 1 re f\n" * 2_000_000, 9), "/Filter /FlateDecode")
    digest, job_id = stored(settings, drawing)

    # when it is read, then the message is handed back to be read again in a new invocation
    with pytest.raises(Transient, match="too little time left"):
        extract_service(settings).run(digest, until=time.monotonic() + 1.0)
    assert job_state(settings, job_id) != "failed"
    assert (FilesRepository(settings.files_table).get(digest) or {}).get("extractState") != "failed"
    # and an invocation already out of time hands it back at once
    with pytest.raises(Transient):
        extract_service(settings).run(digest, until=time.monotonic() - 5)
    # as does one reading a page range of a long PDF (not recorded as that range's failure)
    with pytest.raises(Transient):
        extract_service(settings).run(digest, page_range=[1, 1], until=time.monotonic() + 1.0)


def test_a_pdf_is_read_until_the_invocation_has_only_the_time_to_store_the_result_left(lambda_context) -> None:
    import time

    from extract import handler

    # the context has 30 s left
    assert abs(handler._reading_until(lambda_context) - (time.monotonic() + 30 - handler.RESULT_SECONDS)) < 1

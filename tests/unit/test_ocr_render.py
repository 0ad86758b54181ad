"""Scanned PDF pages too large to render at 300 dpi: rendered at the highest resolution the pixel budget
allows and OCR'd, down to a floor below which they are refused as ``page.too_large``; pages holding
images of more pixels than an uploaded image may have are rendered and read, not refused."""

from __future__ import annotations

import time

import pytest

from docpipe.adapters.dynamo import JobsRepository
from docpipe.config import Settings
from docpipe.errors import PageTooLarge
from extract.service import ExtractService
from ocr.engines import PdfSource, TesseractEngine
from ocr.render import MAX_PIXELS, MIN_DPI, render_pdf_pages
from ocr.service import OcrService
from tests.fixtures.documents import accuracy
from tests.fixtures.real_world import HUGE_PAGE_LINES, big_scan_page, huge_page
from tests.unit.test_extract_service import drain, stored

TRUTH = "\n".join(HUGE_PAGE_LINES)


@pytest.fixture(scope="module")
def tesseract() -> TesseractEngine:
    return TesseractEngine()


@pytest.mark.parametrize(("points", "dpi"), [(3000, 152), (6000, 76)])
def test_a_page_too_large_for_300_dpi_is_rendered_at_the_highest_resolution_that_fits(points, dpi) -> None:
    # given a square page of 41.7 (or 83) inches: 156 MP (or 625 MP) at 300 dpi
    ((number, image),) = render_pdf_pages(huge_page(points), [1])

    assert number == 1
    assert image.width * image.height <= MAX_PIXELS
    assert image.width * image.height > 0.99 * MAX_PIXELS
    assert image.info["dpi"] == (dpi, dpi)


def test_a_page_too_large_for_300_dpi_is_ocrd_at_reduced_dpi(tesseract) -> None:
    (page,) = tesseract.pdf_pages(PdfSource(data=huge_page(3000)), [1])

    assert accuracy(page.text, TRUTH) >= 0.95


def test_a_page_holding_an_image_of_more_pixels_than_an_upload_may_have_is_read_not_refused(tesseract) -> None:
    # given a letter page holding a 10500 x 10500 JPEG scan (110 MP; an uploaded image may have 100 MP)
    started = time.monotonic()

    (page,) = tesseract.pdf_pages(PdfSource(data=big_scan_page(10_500)), [1])

    assert accuracy(page.text, TRUTH) >= 0.95
    assert time.monotonic() - started < 30  # about 1.5 s: PDFium decodes a JPEG as it draws it


def test_a_page_too_large_even_at_the_floor_is_refused_as_page_too_large_before_rendering() -> None:
    # given a page of 200 x 200 inches, the largest a PDF page may be: 32 dpi within the budget
    started = time.monotonic()

    with pytest.raises(PageTooLarge, match=r"200 x 200 inches.*32 dpi, below the 72 dpi") as refused:
        list(render_pdf_pages(huge_page(14_400), [1]))

    assert (refused.value.code, refused.value.retryable) == ("page.too_large", False)
    assert time.monotonic() - started < 5
    assert MIN_DPI == 72


@pytest.mark.usefixtures("aws")
def test_a_scanned_document_whose_only_page_is_too_large_fails_with_page_too_large(aws) -> None:
    settings = Settings.from_env()
    digest, job_id = stored(settings, huge_page(14_400))
    assert ExtractService.for_settings(settings).run(digest) == "ocr"
    (chunk,) = drain(aws, settings, "ocr")

    assert OcrService.for_settings(settings, TesseractEngine).run(digest, chunk["pages"], "extract") == "failed"

    job = JobsRepository(settings.jobs_table).get(job_id) or {}
    assert (job["state"], job["error"]["code"]) == ("failed", "page.too_large")

"""OCR of images as documents: every page of a multi-page TIFF (a fax), each within the pixel budget,
and grayscale wider than 8 bits read by its own range. Every file is built here."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import struct
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.config import Settings
from docpipe.errors import ImageTooManyPixels
from docpipe.jobs import new_job_id
from docpipe.storage import original_key, text_key
from ocr.engines import OcrPage, TesseractEngine
from ocr.pages import load_pages, page_count, prepare_image
from ocr.service import OcrService
from tests.fixtures.documents import accuracy

FAX = [
    ["Fax cover sheet for the harbor office.", "Three pages follow this line."],
    ["The shipment left the warehouse on Monday.", "It should arrive before Friday noon."],
    ["Please sign the delivery note and return it.", "Thank you for your patience."],
]


def fax_page(lines: list[str]) -> Image.Image:
    """A bilevel page of black words in Pillow's scalable default font, large enough for Tesseract."""
    font = ImageFont.load_default(size=40)
    image = Image.new("L", (1400, 140 + 90 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((80, 70 + 90 * i), line, fill=0, font=font)
    return image.convert("1")


def fax(pages: list[list[str]] = FAX) -> bytes:
    """A multi-page TIFF as a fax machine writes one: bilevel, CCITT Group 4, 200 dpi."""
    first, *rest = [fax_page(lines) for lines in pages]
    out = io.BytesIO()
    first.save(out, "TIFF", save_all=True, append_images=rest, compression="group4", dpi=(200, 200))
    return out.getvalue()


@pytest.fixture(scope="module")
def tesseract() -> TesseractEngine:
    return TesseractEngine()


# --- the engine ---------------------------------------------------------------------------------------


def test_a_multi_page_tiff_has_a_page_per_directory_and_other_images_one() -> None:
    animation = io.BytesIO()
    frames = [Image.new("RGB", (40, 30), (i * 80, 0, 0)) for i in range(3)]
    frames[0].save(animation, "GIF", save_all=True, append_images=frames[1:])

    assert page_count(fax()) == 3
    assert page_count(animation.getvalue()) == 1  # an animation's frames are not pages


def test_every_page_of_a_fax_is_read(tesseract: TesseractEngine) -> None:
    read = tesseract.image_pages(fax(), [1, 2, 3])

    assert [p.number for p in read] == [1, 2, 3]
    for page, lines in zip(read, FAX, strict=True):
        assert page.error is None
        assert accuracy(page.text, "\n".join(lines)) >= 0.95, page.text


def tiff(pages: list[tuple[int, int]]) -> bytes:
    """An uncompressed 8-bit gray TIFF whose directories declare the given sizes; each page's one strip
    holds a single row of pixels, so a page declared huge costs nothing unless it is decoded."""
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for index, (width, height) in enumerate(pages):
        here = len(out)
        count = 8
        strip = here + 2 + 12 * count + 4
        entries = [
            (256, 4, width),  # ImageWidth
            (257, 4, height),  # ImageLength
            (258, 3, 8),  # BitsPerSample
            (259, 3, 1),  # Compression: none
            (262, 3, 1),  # Photometric: BlackIsZero
            (273, 4, strip),  # StripOffsets
            (278, 4, height),  # RowsPerStrip
            (279, 4, width * height),  # StripByteCounts (the file holds one row: decoding would fail)
        ]
        out += struct.pack("<H", count)
        for tag, kind, value in entries:
            packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, kind, 1) + packed
        last = index == len(pages) - 1
        next_ifd = 0 if last else strip + min(width, 1 << 16)
        out += struct.pack("<I", next_ifd) + bytes(min(width, 1 << 16))
    return bytes(out)


def test_a_page_over_the_pixel_budget_is_refused_before_it_is_decoded_and_the_others_are_read() -> None:
    # given three pages whose second declares 60000 x 60000 pixels (3.6 GP)
    data = tiff([(64, 1), (60_000, 60_000), (32, 1)])

    pages = dict(load_pages(data, [1, 2, 3]))

    assert isinstance(pages[2], ImageTooManyPixels)
    assert "Page 2 of the image is 60000 x 60000 pixels" in pages[2].message
    assert [pages[n].size for n in (1, 3)] == [(64, 1), (32, 1)]


def test_a_32_bit_grayscale_page_is_prepared_by_its_range_not_clipped() -> None:
    # given a 32-bit integer page whose values run from 5000 to 104000 (a clip to 0-255 leaves one level)
    ramp = Image.linear_gradient("L").resize((300, 400)).convert("I").point(lambda v: v * 388 + 5000)

    prepared = prepare_image(ramp)

    assert prepared.mode == "L"
    assert len(set(prepared.get_flattened_data())) > 200
    assert prepared.getpixel((150, 0)) < 5 and prepared.getpixel((150, 399)) > 250


# --- the ocr task of an image -------------------------------------------------------------------------


@pytest.fixture
def settings(aws) -> Settings:
    return Settings.from_env()


def stored(settings: Settings, data: bytes) -> tuple[str, str]:
    """A TIFF original in the store, its file record, and one job waiting on its ocr task."""
    digest = hashlib.sha256(data).hexdigest()
    ObjectStore().put(settings.store_bucket, original_key(digest), data, "image/tiff", "private")
    files = FilesRepository(settings.files_table)
    files.claim({"hash": digest, "status": "storing", "leaseUntil": 2**40})
    files.mark_stored(digest, {"size": len(data), "type": "tiff"})
    files.request_task(digest, "ocr")
    job_id = new_job_id()
    JobsRepository(settings.jobs_table).create(
        {
            "jobId": job_id,
            "owner": "alice",
            "name": "fax.tif",
            "state": "queued",
            "hash": digest,
            "plan": ["ocr"],
            "createdAt": "2026-01-01T00:00:00Z",
        }
    )
    return digest, job_id


def text_doc(aws: dict[str, Any], settings: Settings, digest: str) -> dict[str, Any]:
    body = aws["s3"].get_object(Bucket=settings.store_bucket, Key=text_key(digest))["Body"].read()
    return json.loads(body)


def job(settings: Settings, job_id: str) -> dict[str, Any]:
    return JobsRepository(settings.jobs_table).get(job_id) or {}


def test_a_fax_ocrd_as_an_image_gives_a_text_page_per_page(aws, settings, tesseract) -> None:
    digest, job_id = stored(settings, fax())

    assert OcrService.for_settings(settings, lambda: tesseract).run(digest) == "done"

    doc = text_doc(aws, settings, digest)
    assert (doc["kind"], doc["metadata"]["pages"], doc["truncated"]) == ("image", 3, False)
    assert [(p["number"], p["method"]) for p in doc["pages"]] == [(1, "ocr"), (2, "ocr"), (3, "ocr")]
    for page, lines in zip(doc["pages"], FAX, strict=True):
        assert accuracy(page["text"], "\n".join(lines)) >= 0.95, page["text"]
    assert job(settings, job_id)["state"] == "ready"


class PageNumbers:
    """An engine that reads each page as its number, and refuses the pages it is told to."""

    name = "numbers"

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.refuse, self.asked = refuse, []

    def image(self, data: bytes) -> OcrPage:
        return self.image_pages(data, [1])[0]

    def image_pages(self, data: bytes, pages: list[int]) -> list[OcrPage]:
        self.asked.append(pages)
        error = ImageTooManyPixels("too big").to_dict()
        return [OcrPage(n, "", None, error=error) if n in self.refuse else OcrPage(n, f"page {n}", 90.0) for n in pages]

    def pdf_pages(self, source: Any, pages: list[int]) -> list[OcrPage]:
        raise AssertionError("not a PDF")


def test_pages_past_the_per_task_limit_are_left_out_and_the_result_says_so(aws, settings) -> None:
    digest, _ = stored(settings, fax())
    engine = PageNumbers()
    limited = dataclasses.replace(settings, ocr_pages_per_task=2)

    OcrService.for_settings(limited, lambda: engine).run(digest)

    doc = text_doc(aws, settings, digest)
    assert engine.asked == [[1, 2]]
    assert [p["text"] for p in doc["pages"]] == ["page 1", "page 2"]
    assert (doc["metadata"]["pages"], doc["truncated"]) == (3, True)


def test_a_page_that_cannot_be_read_is_marked_and_the_task_fails_only_when_none_can(aws, settings) -> None:
    digest, job_id = stored(settings, fax())
    OcrService.for_settings(settings, lambda: PageNumbers(frozenset({2}))).run(digest)

    doc = text_doc(aws, settings, digest)
    assert [p["method"] for p in doc["pages"]] == ["ocr", "failed", "ocr"]
    assert doc["pages"][1]["error"]["code"] == "image.too_many_pixels"
    assert job(settings, job_id)["state"] == "ready"

    other, other_job = stored(settings, fax(FAX[:2]))
    OcrService.for_settings(settings, lambda: PageNumbers(frozenset({1, 2}))).run(other)

    assert (job(settings, other_job)["state"], job(settings, other_job)["error"]["code"]) == (
        "failed",
        "image.too_many_pixels",
    )


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's, on the cut directory
def test_an_image_that_cannot_be_opened_fails_the_task_as_corrupt(aws, settings) -> None:
    digest, job_id = stored(settings, fax()[:100])

    assert OcrService.for_settings(settings, lambda: PageNumbers()).run(digest) == "failed"

    assert job(settings, job_id)["error"]["code"] == "file.corrupt"

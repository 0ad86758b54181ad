"""Word, Excel and PowerPoint documents, once :func:`~extract.formats.ooxml.check_ooxml` has passed them.

The Office libraries are imported when a file of theirs comes: a PDF-only cold start does not pay
for python-docx, openpyxl and python-pptx. In the text of a table, cells are joined by `` | ``
(Word, PowerPoint) or a tab (sheets) and a newline or tab inside a cell becomes a space;
``Page.rows`` keeps the cell values exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import IO, Any

from extract.formats.common import (
    MAX_COLUMNS,
    Budget,
    Chunk,
    Source,
    as_stream,
    failures_as_corrupt,
    make_page,
    named,
    pages_within,
    row_line,
    squeeze,
    tabular_chunks,
    tidy,
)
from extract.formats.ooxml import CORE_PROPERTIES, check_ooxml
from extract.model import Extraction, Page

_SHEET_CHUNK = 1024 * 1024
_SHEET_OVERLAP = 4096  # more than a <row …> tag or a value's opening tag
_SHEET_HEAD = 64 * 1024  # where the root element must start
_SHEET_ROOT = re.compile(rb"<(?:([A-Za-z_][\w.-]*):)?worksheet[\s>]")
_ROW_NUMBER = re.compile(rb"""\sr\s*=\s*["'](\d+)["']""")
# The last row an Excel sheet has. openpyxl fills every row missing before a row's number with an empty
# one, so a row numbered 4294967295 would have it yield four billion rows; rows past this are read as none.
SHEET_MAX_ROW = 1_048_576


# ------------------------------------------------------------------------------------------ Word


def extract_docx(source: Source, budget: Budget) -> Extraction:
    names = check_ooxml(source, required="word/document.xml")
    with failures_as_corrupt("Word document"):
        import docx

        document = docx.Document(as_stream(source))
        headers, footers = _headers_and_footers(document)
        body = list(_block_chunks(document.element.body, document))
        chunks = squeeze([*headers, *body, *footers])
        properties = document.core_properties
        metadata = named(properties.title, properties.author) if CORE_PROPERTIES in names else {}
    return Extraction(kind="docx", pages=[make_page(1, chunks, budget)], metadata=metadata)


def _block_chunks(element: Any, parent: Any) -> Iterator[Chunk]:
    """Paragraphs and table rows in document order, content controls (``w:sdt``) opened up."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in element.iterchildren():
        if child.tag == qn("w:p"):
            yield Chunk(tidy(Paragraph(child, parent).text))
        elif child.tag == qn("w:tbl"):
            yield from _docx_table(Table(child, parent))
        elif child.tag == qn("w:sdt"):
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _block_chunks(content, parent)


def _docx_table(table: Any) -> Iterator[Chunk]:
    """A row's cells, each once (a cell merged down reads as the cell it continues). Not ``row.cells``:
    it holds a cell once per grid column it spans, and a ``w:gridSpan`` of 2147483648 made that tuple
    (minutes, then gigabytes) out of a 1 KB document."""
    from docx.table import _Cell

    for row in table.rows:
        cells, previous = [], None
        for tc in row._tr.tc_lst:
            while tc.vMerge == "continue":  # python-docx's own rule: the cell above in the same grid column
                tc = tc._tc_above
            if tc is not previous:
                cells.append(tidy(_Cell(tc, table).text))
                previous = tc
        yield Chunk(row_line(cells, " | "), cells)


def _headers_and_footers(document: Any) -> tuple[list[Chunk], list[Chunk]]:
    """Every header and footer defined by a section, each distinct one once."""
    headers: dict[tuple[str, ...], list[Chunk]] = {}
    footers: dict[tuple[str, ...], list[Chunk]] = {}
    for section in document.sections:
        parts = (
            (headers, (section.header, section.first_page_header, section.even_page_header)),
            (footers, (section.footer, section.first_page_footer, section.even_page_footer)),
        )
        for seen, variants in parts:
            for variant in variants:
                if variant.is_linked_to_previous:
                    continue
                chunks = squeeze(_block_chunks(variant._element, variant))
                key = tuple(chunk.text for chunk in chunks)
                if chunks:
                    seen.setdefault(key, chunks)
    return [c for cs in headers.values() for c in cs], [c for cs in footers.values() for c in cs]


# ----------------------------------------------------------------------------------------- Excel


def extract_xlsx(source: Source, budget: Budget) -> Extraction:
    names = check_ooxml(source)
    with failures_as_corrupt("Excel workbook"):
        import openpyxl

        workbook = openpyxl.load_workbook(as_stream(source), read_only=True, data_only=True, keep_links=False)
        try:
            sheets = workbook.worksheets
            pages = pages_within(budget, sheets, lambda number, sheet: _sheet_page(number, sheet, budget))
            properties = workbook.properties
            metadata = named(properties.title, properties.creator) if CORE_PROPERTIES in names else {}
        finally:
            workbook.close()
    return Extraction(kind="xlsx", pages=pages, metadata={**metadata, "pages": len(sheets)})


def _sheet_page(number: int, sheet: Any, budget: Budget) -> Page:
    sheet.reset_dimensions()  # the dimension tag may understate the data, or claim a million rows
    with sheet._get_source() as part:
        last = last_value_row(part)
    values = () if last == 0 else sheet.iter_rows(max_row=min(last or SHEET_MAX_ROW, SHEET_MAX_ROW), values_only=True)
    chunks = tabular_chunks((_sheet_cells(row, budget) for row in values), "\t", budget)
    return make_page(number, chunks, budget, label=sheet.title, tabular=True)


def last_value_row(part: IO[bytes]) -> int | None:
    """The number of the last row of a worksheet part that holds a value (0: none), found in its bytes.

    A sheet formatted down to its last row (1 048 576) holds a ``<row>`` element, often with styled
    empty cells, for every row: openpyxl would take a minute to parse them all, and 115 MB of such XML
    scan here in about a second. A value is a ``<v>`` (numbers, shared strings, formula results) or an
    ``<is>`` (inline string) element; the row is the ``r`` of the ``<row>`` it is in. ``None`` when
    that cannot be told from the bytes (rows without ``r``, a root element not found).
    """
    head = b""
    while (root := _SHEET_ROOT.search(head)) is None and len(head) < _SHEET_HEAD:
        if not (more := part.read(_SHEET_CHUNK)):
            return None
        head += more
    if root is None:
        return None
    prefix = root.group(1) + b":" if root.group(1) else b""
    rows = (b"<" + prefix + b"row ", b"<" + prefix + b"row>")
    values = tuple(b"<" + prefix + tag for tag in (b"v>", b"v ", b"is>", b"is "))
    end = b"</" + prefix + b"sheetData>"
    last, current = 0, 0  # the last row with a value; the row open where the window starts
    window, chunk = b"", head
    while chunk:
        window += chunk
        done = window.find(end)
        if done >= 0:
            window = window[:done]
        value = max(window.rfind(tag) for tag in values)
        if value >= 0:
            number = _row_before(window, value, rows, current)
            if number is None:
                return None
            last = max(last, number)
        if done >= 0:
            return last
        # the next window keeps this one's end, so that a tag cut by the chunk's end is whole in it
        keep = max(len(window) - _SHEET_OVERLAP, 0)
        opened = _row_before(window, keep + len(rows[0]) - 1, rows, current)  # by a tag starting before it
        if opened is None:
            return None
        current, window = opened, window[keep:]
        chunk = part.read(_SHEET_CHUNK)
    return last


def _row_before(window: bytes, end: int, rows: tuple[bytes, ...], before: int) -> int | None:
    """The ``r`` of the last ``<row>`` tag whose name ends before ``end`` in ``window`` and whose
    attributes the window holds whole; ``before`` when there is none; ``None`` when it has no ``r``."""
    while (start := max(window.rfind(tag, 0, end) for tag in rows)) >= 0:
        close = window.find(b">", start)
        if close >= 0:
            number = _ROW_NUMBER.search(window, start, close)
            return int(number.group(1)) if number else None
        end = start  # cut off by the window's end: the one before it
    return before


def _sheet_cells(values: tuple[Any, ...], budget: Budget) -> list[str]:
    if len(values) > MAX_COLUMNS:
        if values[MAX_COLUMNS:].count(None) < len(values) - MAX_COLUMNS:
            budget.cut = True
        values = values[:MAX_COLUMNS]
    cells = ["" if value is None else str(value) for value in values]
    while cells and not cells[-1]:
        cells.pop()
    return cells


# ------------------------------------------------------------------------------------ PowerPoint


def extract_pptx(source: Source, budget: Budget) -> Extraction:
    names = check_ooxml(source)
    with failures_as_corrupt("PowerPoint presentation"):
        import pptx

        presentation = pptx.Presentation(as_stream(source))
        slides = list(presentation.slides)
        pages = pages_within(budget, slides, lambda number, slide: _slide_page(number, slide, budget))
        properties = presentation.core_properties
        metadata = named(properties.title, properties.author) if CORE_PROPERTIES in names else {}
    return Extraction(kind="pptx", pages=pages, metadata={**metadata, "pages": len(slides)})


def _slide_page(number: int, slide: Any, budget: Budget) -> Page:
    chunks = list(_shape_chunks(slide.shapes))
    if slide.has_notes_slide:
        frame = slide.notes_slide.notes_text_frame
        notes = tidy(frame.text) if frame is not None else ""
        if notes:
            chunks += [Chunk("Notes:"), Chunk(notes)]
    return make_page(number, chunks, budget, label=_slide_title(slide))


def _slide_title(slide: Any) -> str | None:
    shape = slide.shapes.title
    if shape is None or not shape.has_text_frame:
        return None
    return " ".join(shape.text_frame.text.split()) or None


def _shape_chunks(shapes: Iterable[Any]) -> Iterator[Chunk]:
    from pptx.shapes.graphfrm import GraphicFrame
    from pptx.shapes.group import GroupShape

    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _shape_chunks(shape.shapes)
        elif shape.has_text_frame:
            text = tidy(shape.text_frame.text)
            if text:
                yield Chunk(text)
        elif isinstance(shape, GraphicFrame) and shape.has_table:
            for row in shape.table.rows:
                cells = [tidy(cell.text) for cell in row.cells]
                yield Chunk(row_line(cells, " | "), cells)

"""Word, Excel and PowerPoint documents, once :func:`~extract.formats.ooxml.check_ooxml` has passed them.

The Office libraries are imported when a file of theirs comes: a PDF-only cold start does not pay
for python-docx, openpyxl and python-pptx. In the text of a table, cells are joined by `` | ``
(Word, PowerPoint) or a tab (sheets) and a newline or tab inside a cell becomes a space;
``Page.rows`` keeps the cell values exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

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
    for row in table.rows:
        cells, previous = [], None
        for cell in row.cells:
            if cell._tc is not previous:
                cells.append(tidy(cell.text))
                previous = cell._tc
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
    sheet.reset_dimensions()
    chunks = tabular_chunks(
        (_sheet_cells(values, budget) for values in sheet.iter_rows(values_only=True)), "\t", budget
    )
    while chunks and not chunks[-1].row:
        chunks.pop()
    return make_page(number, chunks, budget, label=sheet.title, tabular=True)


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

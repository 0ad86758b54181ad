"""Text out of documents: PDF, Word, Excel, PowerPoint, plain text, Markdown, CSV and JSON.

:func:`extract` takes a document's bytes, or a seekable binary file (always read from its start),
and returns an :class:`~extract.model.Extraction`; :func:`pdf_page_count` lets the caller split a
large PDF into page ranges first. Nothing here touches the network or the disk.

Decisions worth knowing:

* **PDF** text comes from PDFium (pypdfium2): fast, and it keeps reading order. A page with fewer
  than :data:`OCR_MIN_CHARS` visible characters is a scan when it carries an image, or when it has
  no text at all but does have content (vector-outlined text, a drawing): it is stored empty with
  ``needs_ocr`` for the OCR lanes. A page with no content at all is blank and is not sent to OCR;
  a short text page without images (“The End”) keeps its text. PDFium opens a PDF whose user
  password is empty by itself; its password and security-handler errors become
  :class:`PdfEncrypted`, every other failure :class:`FileCorrupt`. PDFium already survives page
  trees with loops (the missing pages fail to load); absurd page counts, and counts whose last page
  is missing, are refused outright. PDFium runs in forked processes with a memory share and a
  deadline (:mod:`docpipe.sandbox`): a PDF that inflates or parses into more than that (a stream
  bomb, millions of drawing operators) is refused as :class:`ArchiveUnsafe`, and one that crashes
  PDFium as :class:`FileCorrupt`, without harm to the function.
* **Office files are zip archives** and are checked by :func:`check_ooxml` before any Office
  library opens them: bombs (too many entries, too much declared data, extreme compression, parts
  that inflate past their declared size) and any XML part carrying a DTD are refused as
  :class:`ArchiveUnsafe`. A DTD has no business in OOXML; refusing it stops entity expansion and
  external entities whatever parser reads the part later. XML parts are those with an XML name
  (``.xml``, ``.rels``, ``.vml``) or an XML content type in ``[Content_Types].xml``, so an SVG
  image with its usual DOCTYPE is left alone.
* The Office and PDF libraries fail on hostile input with all kinds of exceptions (``KeyError``,
  ``lxml`` syntax errors, ``zipfile.BadZipFile``…): inside a parser every failure becomes
  :class:`FileCorrupt`, while our own :class:`DocpipeError` subclasses pass through.
* **One character budget** (``max_chars``) spans the pages: the page that crosses it is cut, later
  pages are dropped and ``truncated`` is set. Table rows (``Page.rows``) are kept only for lines
  the cut text still holds whole. Row caps (:data:`MAX_ROWS` per sheet or CSV, and
  :data:`MAX_COLUMNS` per row) also set ``truncated``; reading stops once the budget is spent.
* **Text encodings**: a BOM decides; then strict UTF-8 (unless the bytes hold NULs, the mark of
  UTF-16 without a BOM); then charset-normalizer. On short Western text charset-normalizer ranks
  many single-byte code pages equal (``café crème`` comes back as cp1006 or cp1250); among its
  equally good answers cp1252, the most common legacy encoding, wins. Last resort: cp1252, then
  Latin-1, which decodes anything. Plain text and Markdown keep their trailing spaces (a Markdown
  line break); only newlines are normalised. PDF and Office text drop trailing spaces per line.
* The Office libraries are imported when a file of theirs comes: a PDF-only cold start does not
  pay for python-docx, openpyxl and python-pptx.
* JSON nesting is measured on the text (brackets outside strings) after ``json.loads`` has proved
  it valid, which is faster than walking the parsed value; nesting deep enough to exhaust the
  parser's recursion is reported the same way. Parsed JSON takes up to 20 times its size in memory
  (``[{},{},…]``: 3 bytes of text, a 64-byte dict), so JSON of more than :data:`MAX_JSON_VALUES`
  values (counted by their commas and brackets) is not parsed: its text is stored as it came.
* In the text of a table, cells are joined by `` | `` (Word, PowerPoint) or a tab (sheets, CSV)
  and a newline or tab inside a cell becomes a space; ``Page.rows`` keeps the cell values exact.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import multiprocessing
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, TypeAlias

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from charset_normalizer import from_bytes
from defusedxml import ElementTree as SafeElementTree

from docpipe import sandbox
from docpipe.errors import ArchiveUnsafe, DocpipeError, FileCorrupt, PdfEncrypted, UnsupportedType
from extract.model import Extraction, Page

Source: TypeAlias = bytes | IO[bytes]

KINDS = ("pdf", "docx", "xlsx", "pptx", "text", "markdown", "csv", "json")
OCR_MIN_CHARS = 16
MAX_PDF_PAGES = 100_000
PDF_SECONDS = 90.0  # a PDF's reading time at most (counting pages and reading them, in all), below the
# function's Timeout (120 s); the handler gives less when its invocation has less left. See docpipe.sandbox.
MAX_ROWS = 100_000
MAX_COLUMNS = 2_000
MAX_JSON_DEPTH = 200
MAX_JSON_VALUES = 2_000_000  # about 60 bytes each once parsed: 3 bytes of "{}," become a 64-byte dict

ZIP_MAX_ENTRIES = 2_000
ZIP_MAX_TOTAL = 200 * 1024 * 1024
ZIP_MAX_RATIO = 200
ZIP_RATIO_MIN_SIZE = 10 * 1024 * 1024

_CHUNK = 1024 * 1024
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_CONTENT_TYPES = "[Content_Types].xml"
_CORE_PROPERTIES = "docProps/core.xml"
_CT_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_DTD_MARKERS = ("<!DOCTYPE", "<!ENTITY")
_LINE_BREAKS = str.maketrans({"\r": "\n", "\v": "\n"})
_CELL_BREAKS = re.compile(r"[\t\r\n\v]+")
_SNIFF_CHARS = 32 * 1024
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_JSON_VALUE_MARKS = (",", "[", "{")  # at least one per value after the first (inside strings too: an overestimate)
_WESTERN = "cp1252"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def extract(
    source: Source,
    kind: str,
    *,
    max_chars: int = 5_000_000,
    pages: tuple[int, int] | None = None,
    workers: int | None = None,
    timeout: float = PDF_SECONDS,
) -> Extraction:
    """The text of a document of ``kind``; ``pages`` (1-based, inclusive) selects a range of a PDF.

    ``workers``: processes reading a long PDF (default: the CPUs this process may use, see :func:`_workers`).
    ``timeout``: seconds a PDF may take before it is refused as ``archive.unsafe``.
    """
    if max_chars < 0:
        raise ValueError("max_chars must not be negative")
    budget = _Budget(max_chars)
    if kind == "pdf":
        result = _extract_pdf(source, budget, pages, workers, timeout)
    elif kind in _READERS:
        result = _READERS[kind](source, budget)
    else:
        raise UnsupportedType(f"There is no text extractor for {kind!r} files.")
    result.truncated = budget.cut
    return result


def pdf_page_count(source: Source, timeout: float = PDF_SECONDS) -> int:
    """How many pages a PDF has; raises like :func:`extract` for an encrypted, corrupt or hostile one."""
    data = source if isinstance(source, bytes) else _stream(source).read()
    [(count, _)] = sandbox.run(_pdf_facts, [(data,)], time.monotonic() + timeout)
    return count


# ---------------------------------------------------------------------------------------- shared


class _Budget:
    """The characters still allowed in the stored text, and whether any text was cut."""

    def __init__(self, max_chars: int) -> None:
        self.left = max_chars
        self.cut = False

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def take(self, text: str) -> str:
        if len(text) > self.left:
            text, self.cut = text[: self.left], True
        self.left -= len(text)
        return text


@dataclass
class _Chunk:
    """A block of a page's text (a paragraph, a shape, a table row) and, for a table row, its cells."""

    text: str
    row: list[str] | None = None


def _page(
    number: int, chunks: list[_Chunk], budget: _Budget, *, label: str | None = None, tabular: bool = False
) -> Page:
    text = budget.take("\n".join(chunk.text for chunk in chunks))
    rows: list[list[str]] = []
    end = -1
    for chunk in chunks:
        end += len(chunk.text) + 1
        if end > len(text):
            break
        if chunk.row is not None:
            rows.append(chunk.row)
    has_rows = tabular or any(chunk.row is not None for chunk in chunks)
    return Page(number=number, text=text, label=label, rows=rows if has_rows else None)


def _pages_within(budget: _Budget, items: Iterable[Any], build: Callable[[int, Any], Page]) -> list[Page]:
    pages = []
    for number, item in enumerate(items, start=1):
        if budget.spent:
            budget.cut = True
            break
        pages.append(build(number, item))
    return pages


def _row_line(cells: list[str], separator: str) -> str:
    return separator.join(_CELL_BREAKS.sub(" ", cell) for cell in cells)


def _tidy(text: str) -> str:
    """Newlines (and PowerPoint's ``\\v`` line breaks) as ``\\n``, no trailing spaces, no blank lines at either end."""
    lines = text.replace("\x00", "").replace("\r\n", "\n").translate(_LINE_BREAKS).split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def _squeeze(chunks: Iterable[_Chunk]) -> list[_Chunk]:
    """Runs of empty paragraphs become one blank line; none at either end."""
    out: list[_Chunk] = []
    for chunk in chunks:
        if chunk.text or chunk.row is not None or (out and out[-1].text):
            out.append(chunk)
    while out and not out[-1].text and out[-1].row is None:
        out.pop()
    return out


def _stream(source: Source) -> IO[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)
    source.seek(0)
    return source


def _data(source: Source) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    source.seek(0)
    return source.read()


@contextmanager
def _failures_as_corrupt(what: str) -> Iterator[None]:
    try:
        yield
    except (DocpipeError, MemoryError):
        raise
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise FileCorrupt(f"The {what} is corrupt or truncated ({reason[:200]}).") from exc


def _named(title: str | None, author: str | None) -> dict[str, Any]:
    pairs = (("title", title), ("author", author))
    return {key: value.strip() for key, value in pairs if isinstance(value, str) and value.strip()}


# ------------------------------------------------------------------------------------------- PDF


def _open_pdf(source: Source) -> Any:
    data = source if isinstance(source, bytes) else _stream(source)
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise PdfEncrypted() from exc
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise PdfEncrypted("The PDF is encrypted with a scheme that cannot be opened.") from exc
        raise FileCorrupt(f"The PDF is corrupt or truncated ({exc}).") from exc


def _checked_page_count(document: Any) -> int:
    """The page count the page tree claims, once its last page is found where the count says.

    PDFium takes the count from the root of the page tree; a tree that claims 99 999 pages over one
    would have the caller split it into hundreds of page ranges that all fail.
    """
    count = len(document)
    if count > MAX_PDF_PAGES:
        raise FileCorrupt(f"The PDF claims {count} pages; more than {MAX_PDF_PAGES} are not read.")
    if count:
        try:
            document[count - 1].close()
        except pdfium.PdfiumError as exc:
            raise FileCorrupt(f"The PDF claims {count} pages, but page {count} cannot be read.") from exc
    return count


def _page_span(pages: tuple[int, int] | None, count: int) -> range:
    if pages is None:
        return range(1, count + 1)
    first, last = pages
    if first < 1 or last < first:
        raise ValueError(f"invalid page range {pages!r}")
    return range(first, min(last, count) + 1)


def _extract_pdf(
    source: Source, budget: _Budget, pages: tuple[int, int] | None, workers: int | None, seconds: float
) -> Extraction:
    data = source if isinstance(source, bytes) else _stream(source).read()
    deadline = time.monotonic() + seconds
    [(count, metadata)] = sandbox.run(_pdf_facts, [(data,)], deadline)
    span = _page_span(pages, count)
    parts = _split(span, _workers(len(span)) if workers is None else workers)
    read = sandbox.run(_pdf_part, [(data, part, budget.left) for part in parts], deadline)
    found = _pages_within(
        budget, itertools.chain.from_iterable(p for p, _ in read), lambda _, page: _rebudget(page, budget)
    )
    budget.cut = budget.cut or any(cut for _, cut in read)
    return Extraction(kind="pdf", pages=found, metadata=metadata)


def _pdf_facts(data: bytes) -> tuple[int, dict[str, Any]]:
    """The checked page count and the metadata (title, author, pages) of a PDF."""
    document = _open_pdf(data)
    try:
        count = _checked_page_count(document)
        title, author = document.get_metadata_value("Title"), document.get_metadata_value("Author")
        return count, {**_named(title, author), "pages": count}
    finally:
        document.close()


def _pdf_part(data: bytes, span: range, max_chars: int) -> tuple[list[Page], bool]:
    """The pages of one run of a PDF, within its own character budget, and whether that budget cut any."""
    budget = _Budget(max_chars)
    document = _open_pdf(data)
    try:
        found = _pages_within(budget, span, lambda _, number: _pdf_page(document, number, budget))
    finally:
        document.close()
    return found, budget.cut


# PDFium runs in forked processes, never in this one (:mod:`docpipe.sandbox`: a memory share and a
# deadline per process; PDF_SECONDS for a document's pages in all).
#
# PDFium is not thread-safe either, so a long PDF is read by several such processes, one contiguous
# run of pages each, results sent back over pipes. Each process reads the bytes it inherited. Worth it
# from PARALLEL_MIN_PAGES pages, on as many CPUs as this process may use: on Lambda, one per
# LAMBDA_MB_PER_VCPU of memory (so an ExtractFunction of 1024 MB reads in one process; one of 3538 MB
# in two).
PARALLEL_MIN_PAGES = 64
LAMBDA_MB_PER_VCPU = 1769


def _workers(pages: int) -> int:
    if pages < PARALLEL_MIN_PAGES or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    memory_mb = sandbox.lambda_memory_mb()
    if memory_mb:  # Lambda shows every CPU but grants one vCPU's time per 1769 MB of memory
        usable = min(usable, max(1, memory_mb // LAMBDA_MB_PER_VCPU))
    return max(1, min(usable, pages // (PARALLEL_MIN_PAGES // 2)))


def _split(span: range, parts: int) -> list[range]:
    if parts <= 1:
        return [span]
    edges = [span.start + round(len(span) * i / parts) for i in range(parts + 1)]
    return [range(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _rebudget(page: Page, budget: _Budget) -> Page:
    """A page read in a child, counted against this document's one budget."""
    page.text = budget.take(page.text)
    return page


def _pdf_page(document: Any, number: int, budget: _Budget) -> Page:
    try:
        page = document[number - 1]
    except pdfium.PdfiumError as exc:
        raise FileCorrupt(f"Page {number} of the PDF cannot be read.") from exc
    try:
        text = _tidy(page.get_textpage().get_text_range())
        visible = len("".join(text.split()))
        if visible >= OCR_MIN_CHARS:
            return Page(number=number, text=budget.take(text))
        if _has_images(page) or (visible == 0 and _has_content(page)):
            return Page(number=number, text="", method="none", needs_ocr=True)
        if visible == 0:
            return Page(number=number, text="", method="none")
        return Page(number=number, text=budget.take(text))
    except pdfium.PdfiumError as exc:
        raise FileCorrupt(f"The text of page {number} of the PDF cannot be read.") from exc
    finally:
        page.close()


def _has_images(page: Any) -> bool:
    return next(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]), None) is not None


def _has_content(page: Any) -> bool:
    return next(page.get_objects(max_depth=1), None) is not None


# ------------------------------------------------------------------------------ OOXML safety


def check_ooxml(source: Source, required: str | None = None) -> frozenset[str]:
    """Refuse an Office file that is unsafe to unpack; returns the names of its parts.

    Raises :class:`ArchiveUnsafe` for a zip bomb or an XML part with a DTD, :class:`FileCorrupt`
    for something that is not a readable zip, has no ``[Content_Types].xml`` or lacks ``required``.
    """
    with _failures_as_corrupt("Office document"), zipfile.ZipFile(_stream(source)) as archive:
        _check_sizes(archive.infolist())
        entries = [info for info in archive.infolist() if not info.is_dir()]
        names = frozenset(info.filename for info in entries)
        for name in (_CONTENT_TYPES, required):
            if name and name not in names:
                raise FileCorrupt(f"The Office document has no {name}.")
        xml_parts = _xml_part_names(archive, names)
        for info in entries:
            if info.filename in xml_parts:
                _scan_xml_part(archive, info)
        return names


def _check_sizes(entries: list[zipfile.ZipInfo]) -> None:
    if len(entries) > ZIP_MAX_ENTRIES:
        raise ArchiveUnsafe(f"The archive has {len(entries)} entries; at most {ZIP_MAX_ENTRIES} are opened.")
    total = sum(info.file_size for info in entries)
    if total > ZIP_MAX_TOTAL:
        raise ArchiveUnsafe(f"The archive unpacks to {total} bytes; at most {ZIP_MAX_TOTAL} are opened.")
    for info in entries:
        if info.file_size > ZIP_RATIO_MIN_SIZE and info.file_size > ZIP_MAX_RATIO * max(info.compress_size, 1):
            raise ArchiveUnsafe(f"The archive entry {info.filename} is compressed more than {ZIP_MAX_RATIO} to 1.")


def _xml_part_names(archive: zipfile.ZipFile, names: frozenset[str]) -> frozenset[str]:
    """Parts with an XML name, or an XML content type by extension or override."""
    _scan_xml_part(archive, archive.getinfo(_CONTENT_TYPES))
    root = SafeElementTree.fromstring(archive.read(_CONTENT_TYPES), forbid_dtd=True)
    extensions = {
        item.get("Extension", "").lower()
        for item in root.iter(f"{_CT_NS}Default")
        if _is_xml_type(item.get("ContentType", ""))
    }
    overrides = {
        item.get("PartName", "").lstrip("/")
        for item in root.iter(f"{_CT_NS}Override")
        if _is_xml_type(item.get("ContentType", ""))
    }
    return frozenset(
        name
        for name in names
        if name.lower().endswith(_XML_SUFFIXES) or name.rpartition(".")[2].lower() in extensions or name in overrides
    )


def _is_xml_type(content_type: str) -> bool:
    return content_type.endswith(("+xml", "/xml"))


def _scan_xml_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Stream one XML part, refusing a DTD and any byte past its declared size."""
    markers: tuple[bytes, ...] = ()
    tail = b""
    read = 0
    with archive.open(info) as part:
        while chunk := part.read(_CHUNK):
            read += len(chunk)
            if read > info.file_size:
                raise ArchiveUnsafe(f"The archive entry {info.filename} unpacks past its declared size.")
            markers = markers or _markers_for(chunk)
            window = tail + chunk
            if any(marker in window for marker in markers):
                raise ArchiveUnsafe(f"The XML part {info.filename} declares a DTD or entities.")
            tail = window[-32:]


def _markers_for(head: bytes) -> tuple[bytes, ...]:
    """The DTD markers in the encoding the part's first bytes show (UTF-8 or UTF-16)."""
    if head.startswith((codecs.BOM_UTF16_LE, b"<\x00")):
        encoding = "utf-16-le"
    elif head.startswith((codecs.BOM_UTF16_BE, b"\x00<")):
        encoding = "utf-16-be"
    else:
        encoding = "utf-8"
    return tuple(marker.encode(encoding) for marker in _DTD_MARKERS)


# ------------------------------------------------------------------------------------------ Word


def _extract_docx(source: Source, budget: _Budget) -> Extraction:
    names = check_ooxml(source, required="word/document.xml")
    with _failures_as_corrupt("Word document"):
        import docx

        document = docx.Document(_stream(source))
        headers, footers = _headers_and_footers(document)
        body = list(_block_chunks(document.element.body, document))
        chunks = _squeeze([*headers, *body, *footers])
        properties = document.core_properties
        metadata = _named(properties.title, properties.author) if _CORE_PROPERTIES in names else {}
    return Extraction(kind="docx", pages=[_page(1, chunks, budget)], metadata=metadata)


def _block_chunks(element: Any, parent: Any) -> Iterator[_Chunk]:
    """Paragraphs and table rows in document order, content controls (``w:sdt``) opened up."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in element.iterchildren():
        if child.tag == qn("w:p"):
            yield _Chunk(_tidy(Paragraph(child, parent).text))
        elif child.tag == qn("w:tbl"):
            yield from _docx_table(Table(child, parent))
        elif child.tag == qn("w:sdt"):
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _block_chunks(content, parent)


def _docx_table(table: Any) -> Iterator[_Chunk]:
    for row in table.rows:
        cells, previous = [], None
        for cell in row.cells:
            if cell._tc is not previous:
                cells.append(_tidy(cell.text))
                previous = cell._tc
        yield _Chunk(_row_line(cells, " | "), cells)


def _headers_and_footers(document: Any) -> tuple[list[_Chunk], list[_Chunk]]:
    """Every header and footer defined by a section, each distinct one once."""
    headers: dict[tuple[str, ...], list[_Chunk]] = {}
    footers: dict[tuple[str, ...], list[_Chunk]] = {}
    for section in document.sections:
        parts = (
            (headers, (section.header, section.first_page_header, section.even_page_header)),
            (footers, (section.footer, section.first_page_footer, section.even_page_footer)),
        )
        for seen, variants in parts:
            for variant in variants:
                if variant.is_linked_to_previous:
                    continue
                chunks = _squeeze(_block_chunks(variant._element, variant))
                key = tuple(chunk.text for chunk in chunks)
                if chunks:
                    seen.setdefault(key, chunks)
    return [c for cs in headers.values() for c in cs], [c for cs in footers.values() for c in cs]


# ----------------------------------------------------------------------------------------- Excel


def _extract_xlsx(source: Source, budget: _Budget) -> Extraction:
    names = check_ooxml(source)
    with _failures_as_corrupt("Excel workbook"):
        import openpyxl

        workbook = openpyxl.load_workbook(_stream(source), read_only=True, data_only=True, keep_links=False)
        try:
            sheets = workbook.worksheets
            pages = _pages_within(budget, sheets, lambda number, sheet: _sheet_page(number, sheet, budget))
            properties = workbook.properties
            metadata = _named(properties.title, properties.creator) if _CORE_PROPERTIES in names else {}
        finally:
            workbook.close()
    return Extraction(kind="xlsx", pages=pages, metadata={**metadata, "pages": len(sheets)})


def _sheet_page(number: int, sheet: Any, budget: _Budget) -> Page:
    sheet.reset_dimensions()
    chunks = _tabular_chunks(
        (_sheet_cells(values, budget) for values in sheet.iter_rows(values_only=True)), "\t", budget
    )
    while chunks and not chunks[-1].row:
        chunks.pop()
    return _page(number, chunks, budget, label=sheet.title, tabular=True)


def _sheet_cells(values: tuple[Any, ...], budget: _Budget) -> list[str]:
    if len(values) > MAX_COLUMNS:
        if values[MAX_COLUMNS:].count(None) < len(values) - MAX_COLUMNS:
            budget.cut = True
        values = values[:MAX_COLUMNS]
    cells = ["" if value is None else str(value) for value in values]
    while cells and not cells[-1]:
        cells.pop()
    return cells


def _tabular_chunks(rows: Iterable[list[str]], separator: str, budget: _Budget) -> list[_Chunk]:
    """Rows as lines, reading no more than :data:`MAX_ROWS` rows or what the budget can hold."""
    chunks: list[_Chunk] = []
    size = 0
    for row in itertools.islice(rows, MAX_ROWS + 1):
        if len(chunks) == MAX_ROWS or size > budget.left:
            budget.cut = True
            break
        line = _row_line(row, separator)
        chunks.append(_Chunk(line, row))
        size += len(line) + 1
    return chunks


# ------------------------------------------------------------------------------------ PowerPoint


def _extract_pptx(source: Source, budget: _Budget) -> Extraction:
    names = check_ooxml(source)
    with _failures_as_corrupt("PowerPoint presentation"):
        import pptx

        presentation = pptx.Presentation(_stream(source))
        slides = list(presentation.slides)
        pages = _pages_within(budget, slides, lambda number, slide: _slide_page(number, slide, budget))
        properties = presentation.core_properties
        metadata = _named(properties.title, properties.author) if _CORE_PROPERTIES in names else {}
    return Extraction(kind="pptx", pages=pages, metadata={**metadata, "pages": len(slides)})


def _slide_page(number: int, slide: Any, budget: _Budget) -> Page:
    chunks = list(_shape_chunks(slide.shapes))
    if slide.has_notes_slide:
        frame = slide.notes_slide.notes_text_frame
        notes = _tidy(frame.text) if frame is not None else ""
        if notes:
            chunks += [_Chunk("Notes:"), _Chunk(notes)]
    return _page(number, chunks, budget, label=_slide_title(slide))


def _slide_title(slide: Any) -> str | None:
    shape = slide.shapes.title
    if shape is None or not shape.has_text_frame:
        return None
    return " ".join(shape.text_frame.text.split()) or None


def _shape_chunks(shapes: Iterable[Any]) -> Iterator[_Chunk]:
    from pptx.shapes.graphfrm import GraphicFrame
    from pptx.shapes.group import GroupShape

    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _shape_chunks(shape.shapes)
        elif shape.has_text_frame:
            text = _tidy(shape.text_frame.text)
            if text:
                yield _Chunk(text)
        elif isinstance(shape, GraphicFrame) and shape.has_table:
            for row in shape.table.rows:
                cells = [_tidy(cell.text) for cell in row.cells]
                yield _Chunk(_row_line(cells, " | "), cells)


# ---------------------------------------------------------------------------- text, CSV, JSON


def decode_text(data: bytes) -> tuple[str, str]:
    """The text and the name of its encoding: BOM, strict UTF-8, charset-normalizer, cp1252, Latin-1."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding.removesuffix("-sig"), errors="replace"), encoding
    if b"\x00" not in data:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    guessed = _guess_encoding(data)
    if guessed is not None:
        return guessed
    try:
        return data.decode(_WESTERN), _WESTERN
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _guess_encoding(data: bytes) -> tuple[str, str] | None:
    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    tied = [m for m in matches if m.chaos <= best.chaos and m.coherence >= best.coherence]
    if any(_WESTERN in match.could_be_from_charset for match in tied):
        try:
            return data.decode(_WESTERN), _WESTERN
        except UnicodeDecodeError:
            pass
    return str(best), codecs.lookup(best.encoding).name


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _text_reader(kind: str) -> Callable[[Source, _Budget], Extraction]:
    def read(source: Source, budget: _Budget) -> Extraction:
        text, encoding = decode_text(_data(source))
        page = Page(number=1, text=budget.take(_newlines(text)))
        return Extraction(kind=kind, pages=[page], encoding=encoding)

    return read


def _extract_csv(source: Source, budget: _Budget) -> Extraction:
    text, encoding = decode_text(_data(source))
    delimiter = _delimiter(text)
    # A quoted field may be as long as the file (Python's csv module stops at 128 KB by default); the
    # file's size is bounded before it is read. The limit is the process's: it only ever grows.
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    with _failures_as_corrupt("CSV file"):
        rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        chunks = _tabular_chunks(rows, "\t", budget)
    page = _page(1, chunks, budget, tabular=True)
    return Extraction(kind="csv", pages=[page], metadata={"delimiter": delimiter}, encoding=encoding)


def _delimiter(text: str) -> str:
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _extract_json(source: Source, budget: _Budget) -> Extraction:
    text, encoding = decode_text(_data(source))
    if sum(text.count(mark) for mark in _JSON_VALUE_MARKS) > MAX_JSON_VALUES:
        page = Page(number=1, text=budget.take(_newlines(text)))  # stored as it came, not parsed
        return Extraction(kind="json", pages=[page], encoding=encoding)
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise FileCorrupt(f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.") from exc
    except ValueError as exc:
        raise FileCorrupt(f"The JSON is not valid ({exc}).") from exc
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise FileCorrupt(f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.")
    pretty = budget.take(_pretty_json(value, budget.left))
    return Extraction(kind="json", pages=[Page(number=1, text=pretty)], encoding=encoding)


def _json_depth(text: str) -> int:
    """How deep arrays and objects nest in valid JSON: its brackets counted outside strings.

    Without its escapes valid JSON alternates outside and inside of strings at every quote.
    """
    outside = "".join(text.replace("\\\\", "").replace('\\"', "").split('"')[::2])
    brackets = _NOT_BRACKET.sub("", outside)
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _pretty_json(value: Any, limit: int) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)``, produced only as far as ``limit`` needs."""
    parts, size = [], 0
    for part in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(value):
        parts.append(part)
        size += len(part)
        if size > limit:
            break
    return "".join(parts)


_READERS: dict[str, Callable[[Source, _Budget], Extraction]] = {
    "docx": _extract_docx,
    "xlsx": _extract_xlsx,
    "pptx": _extract_pptx,
    "text": _text_reader("text"),
    "markdown": _text_reader("markdown"),
    "csv": _extract_csv,
    "json": _extract_json,
}

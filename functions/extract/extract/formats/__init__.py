"""Text out of documents: PDF, Word, Excel, PowerPoint, plain text, Markdown, CSV and JSON.

:func:`extract` takes a document's bytes, or a seekable binary file (always read from its start),
and returns an :class:`~extract.model.Extraction`; :func:`pdf_page_count` lets the caller split a
large PDF into page ranges first. Nothing here touches the network or the disk. One reader per
format, each in a module of its own:

* :mod:`~extract.formats.pdf`: PDF, through PDFium in forked processes with a memory share and a
  deadline (:mod:`docpipe.sandbox`); short text pages with images, and pages of outlines only, are
  marked ``needs_ocr``.
* :mod:`~extract.formats.ooxml`: the zip and XML checks every Office file passes first.
* :mod:`~extract.formats.office`: DOCX, XLSX and PPTX.
* :mod:`~extract.formats.text`: plain text, Markdown, CSV and JSON, and how their encoding is found.

Decisions they share (:mod:`~extract.formats.common`):

* The Office and PDF libraries fail on hostile input with all kinds of exceptions (``KeyError``,
  ``lxml`` syntax errors, ``zipfile.BadZipFile``…): inside a parser every failure becomes
  :class:`FileCorrupt`, while our own :class:`DocpipeError` subclasses pass through.
* **One character budget** (``max_chars``) spans the pages: the page that crosses it is cut, later
  pages are dropped and ``truncated`` is set. Table rows (``Page.rows``) are kept only for lines
  the cut text still holds whole. Row caps (:data:`MAX_ROWS` per sheet or CSV, and
  :data:`MAX_COLUMNS` per row) also set ``truncated``; reading stops once the budget is spent.
* PDF and Office text drop trailing spaces per line; plain text and Markdown keep them.
"""

from __future__ import annotations

from collections.abc import Callable

from docpipe.errors import UnsupportedType
from extract.formats.common import MAX_COLUMNS, MAX_ROWS, Budget, Source
from extract.formats.office import extract_docx, extract_pptx, extract_xlsx
from extract.formats.ooxml import ZIP_MAX_ENTRIES, ZIP_MAX_RATIO, ZIP_MAX_TOTAL, check_ooxml
from extract.formats.pdf import (
    LAMBDA_MB_PER_VCPU,
    MAX_PDF_PAGES,
    OCR_MIN_CHARS,
    PARALLEL_MIN_PAGES,
    PDF_SECONDS,
    extract_pdf,
    pdf_page_count,
)
from extract.formats.pdf import _workers as _workers  # the tests size the process pool through it
from extract.formats.text import MAX_JSON_DEPTH, MAX_JSON_VALUES, decode_text, extract_csv, extract_json, text_reader
from extract.model import Extraction

__all__ = [
    "KINDS",
    "LAMBDA_MB_PER_VCPU",
    "MAX_COLUMNS",
    "MAX_JSON_DEPTH",
    "MAX_JSON_VALUES",
    "MAX_PDF_PAGES",
    "MAX_ROWS",
    "OCR_MIN_CHARS",
    "PARALLEL_MIN_PAGES",
    "PDF_SECONDS",
    "ZIP_MAX_ENTRIES",
    "ZIP_MAX_RATIO",
    "ZIP_MAX_TOTAL",
    "Source",
    "check_ooxml",
    "decode_text",
    "extract",
    "pdf_page_count",
]

KINDS = ("pdf", "docx", "xlsx", "pptx", "text", "markdown", "csv", "json")

_READERS: dict[str, Callable[[Source, Budget], Extraction]] = {
    "docx": extract_docx,
    "xlsx": extract_xlsx,
    "pptx": extract_pptx,
    "text": text_reader("text"),
    "markdown": text_reader("markdown"),
    "csv": extract_csv,
    "json": extract_json,
}


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

    ``workers``: processes reading a long PDF (default: the CPUs this process may use, see
    :func:`~extract.formats.pdf._workers`). ``timeout``: seconds a PDF may take before it is refused
    as ``archive.unsafe``.
    """
    if max_chars < 0:
        raise ValueError("max_chars must not be negative")
    budget = Budget(max_chars)
    if kind == "pdf":
        result = extract_pdf(source, budget, pages, workers, timeout)
    elif kind in _READERS:
        result = _READERS[kind](source, budget)
    else:
        raise UnsupportedType(f"There is no text extractor for {kind!r} files.")
    result.truncated = budget.cut
    return result

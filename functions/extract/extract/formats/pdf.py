"""PDF text through PDFium (pypdfium2), read in forked processes (:mod:`docpipe.sandbox`).

PDFium is fast and keeps reading order. A page's text is its text layer, then the values of the
form fields on it (:mod:`~extract.formats.pdf_forms`). A page with fewer than :data:`OCR_MIN_CHARS`
visible characters in its text layer is a scan when it carries an image, or when it has no text at
all but does have content (vector-outlined text, a drawing): it is marked ``needs_ocr`` for the OCR
lanes and keeps what text it has, which OCR may add to but never replace with less
(:func:`docpipe.text_results.with_ocr`). A page with no content at all is blank and is not sent to
OCR; a short text page without images (“The End”) keeps its text. PDFium opens a PDF whose user password is empty by itself; its
password and security-handler errors become :class:`PdfEncrypted`, every other failure
:class:`FileCorrupt`. PDFium already survives page trees with loops (the missing pages fail to
load); absurd page counts, and counts whose last page is missing, are refused outright. A PDF that
inflates or parses into more than a reader process's memory share or time (a stream bomb, millions
of drawing operators) is refused as :class:`ArchiveUnsafe`, and one that crashes PDFium as
:class:`FileCorrupt`, without harm to the function.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from docpipe import sandbox
from docpipe.errors import FileCorrupt, PdfEncrypted
from extract.formats.common import Budget, Source, as_stream, named, pages_within, tidy
from extract.formats.pdf_forms import field_values, form_of
from extract.model import Extraction, Page

OCR_MIN_CHARS = 16
MAX_PDF_PAGES = 100_000
PDF_SECONDS = 90.0  # a PDF's reading time at most (counting pages and reading them, in all), below the
# function's Timeout (120 s); the handler gives less when its invocation has less left. See docpipe.sandbox.


def pdf_page_count(source: Source, timeout: float = PDF_SECONDS) -> int:
    """How many pages a PDF has; raises like :func:`extract_pdf` for an encrypted, corrupt or hostile one."""
    data = source if isinstance(source, bytes) else as_stream(source).read()
    [(count, _)] = sandbox.run(_pdf_facts, [(data,)], time.monotonic() + timeout)
    return count


def _open_pdf(source: Source) -> Any:
    data = source if isinstance(source, bytes) else as_stream(source)
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


def extract_pdf(
    source: Source, budget: Budget, pages: tuple[int, int] | None, workers: int | None, seconds: float
) -> Extraction:
    """The pages of a PDF (``pages``: a 1-based inclusive range), read by ``workers`` processes within ``seconds``."""
    data = source if isinstance(source, bytes) else as_stream(source).read()
    deadline = time.monotonic() + seconds
    [(count, metadata)] = sandbox.run(_pdf_facts, [(data,)], deadline)
    span = _page_span(pages, count)
    parts = _split(span, _workers(len(span)) if workers is None else workers)
    read = sandbox.run(_pdf_part, [(data, part, budget.left) for part in parts], deadline)
    found = pages_within(
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
        return count, {**named(title, author), "pages": count}
    finally:
        document.close()


def _pdf_part(data: bytes, span: range, max_chars: int) -> tuple[list[Page], bool]:
    """The pages of one run of a PDF, within its own character budget, and whether that budget cut any."""
    budget = Budget(max_chars)
    document = _open_pdf(data)
    try:
        form = form_of(document)  # before any page is loaded
        found = pages_within(budget, span, lambda _, number: _pdf_page(document, form, number, budget))
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


def _rebudget(page: Page, budget: Budget) -> Page:
    """A page read in a child, counted against this document's one budget."""
    page.text = budget.take(page.text)
    return page


def _pdf_page(document: Any, form: Any | None, number: int, budget: Budget) -> Page:
    """One page's text layer, then its form fields' values (:mod:`~extract.formats.pdf_forms`).

    Whether the page is a scan is decided on its text layer alone.
    """
    try:
        page = document[number - 1]
    except pdfium.PdfiumError as exc:
        raise FileCorrupt(f"Page {number} of the PDF cannot be read.") from exc
    try:
        layer = tidy(page.get_textpage().get_text_range())
        visible = len("".join(layer.split()))
        text = "\n".join(part for part in (layer, *(field_values(form, page) if form else ())) if part)
        if visible >= OCR_MIN_CHARS:
            return Page(number=number, text=budget.take(text))
        scanned = _has_images(page) or (visible == 0 and _has_content(page))
        kept = budget.take(text)
        return Page(number=number, text=kept, method="text-layer" if kept else "none", needs_ocr=scanned)
    except pdfium.PdfiumError as exc:
        raise FileCorrupt(f"The text of page {number} of the PDF cannot be read.") from exc
    finally:
        page.close()


def _has_images(page: Any) -> bool:
    return next(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]), None) is not None


def _has_content(page: Any) -> bool:
    return next(page.get_objects(max_depth=1), None) is not None

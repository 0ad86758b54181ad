"""What docpipe's functions run on an upload's bytes, in the order a job runs it, without AWS around it.

:func:`process` is one job: ingest's checks (size, streaming hash with type detection from the head, the
OOXML directory for a zip, the header's dimensions of an image), then the tasks of the job's plan
(:func:`docpipe.jobs.plan_for`): an image's presets and its OCR page reading (every image is read as a
photo of a document, so that code runs too), or a document's text extraction and the OCR rendering of
the pages it marks as scanned. Tesseract and Textract are not called: the bytes they would get are made
(the pages decoded and prepared, or the image as Textract's synchronous call takes it, or each page
rendered at the engines' resolution), which is all of OCR that reads the upload.

Each stage runs under its function's limits from ``template.yaml``: ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` is
set to that function's memory, so the sandboxed PDF readers get the share they get on Lambda, and the
stage's peak resident memory is measured against it (the process's high-water mark is reset between
stages). PDF reading and rendering get :attr:`Limits.sandbox_seconds` instead of the functions' 90 s and
30 s: past it they are refused as ``archive.unsafe`` the way the functions refuse them, only sooner.

The job ends ``ready``, or ``failed`` with the code of the first stage that refused it (an OCR stage
fails only when none of the pages it read could be read, as the OCR function decides). The tasks of a
plan run in functions of their own: each runs, whatever the others made of the bytes.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from docpipe import jobs
from docpipe.errors import DocpipeError
from docpipe.filetypes import FileType
from docpipe.sandbox import rss_bytes

MIB = 1024 * 1024
# The function each stage runs in (template.yaml's logical names).
FUNCTIONS = {
    "ingest": "IngestFunction",
    "scan": "ScanFunction",
    "presets": "PresetsFunction",
    "extract": "ExtractFunction",
    "ocr": "OcrFunction",
}


@dataclass(frozen=True)
class Limits:
    """The functions' settings and budgets (template.yaml's defaults), and the fuzz suite's shorter PDF deadline."""

    memory_mb: dict[str, int]  # by stage
    max_upload_bytes: int = 100 * MIB
    hash_chunk_bytes: int = 4 * MIB
    max_image_pixels: int = 100_000_000
    max_text_chars: int = 5_000_000
    extract_range_pages: int = 200
    ocr_pages_per_task: int = 8
    sandbox_seconds: float = 5.0

    @classmethod
    def from_template(cls, template: Any, settings: Any, sandbox_seconds: float) -> Limits:
        return cls(
            memory_mb={stage: template.function(name).memory_mb for stage, name in FUNCTIONS.items()},
            max_upload_bytes=settings.max_upload_bytes,
            hash_chunk_bytes=settings.hash_chunk_bytes,
            max_image_pixels=settings.max_image_pixels,
            max_text_chars=settings.max_text_chars,
            extract_range_pages=settings.extract_range_pages,
            ocr_pages_per_task=settings.ocr_pages_per_task,
            sandbox_seconds=sandbox_seconds,
        )


@dataclass
class Job:
    """How one upload ended: ``ready``, or ``failed`` with ``code``; each stage's seconds and peak memory."""

    status: str = "ready"
    code: str | None = None
    type: str | None = None
    stages: dict[str, tuple[float, int]] = field(default_factory=dict)

    def over_budget(self, limits: Limits) -> list[str]:
        """The stages whose peak resident memory passed their function's memory."""
        return [name for name, (_, peak) in self.stages.items() if peak > limits.memory_mb[name] * MIB]


_baseline = 0  # resident memory once the stages' code is imported (warm_up), the runtime a function holds


def warm_up() -> None:
    """Import what the stages import lazily, as a function holds it once it has run, and take the resident
    memory then as every stage's starting point (see :class:`_stage`)."""
    import docx  # noqa: F401
    import openpyxl  # noqa: F401
    import pptx  # noqa: F401

    import extract.formats  # noqa: F401
    import ingest.content  # noqa: F401
    import ocr.engines  # noqa: F401
    import presets.render  # noqa: F401
    import scan.checks  # noqa: F401

    global _baseline
    _baseline = rss_bytes()


def process(data: bytes, name: str, limits: Limits, job: Job | None = None, engine: Any = None) -> Job:
    """Run one upload of ``data`` named ``name`` through ingest and its plan's tasks, recording into ``job``.
    ``engine``: an OCR engine (:class:`ocr.engines.TesseractEngine`) to read the OCR pages with, as the OCR
    function does; without one they are made and not read.

    A :class:`DocpipeError` at ingest ends the job ``failed``; the tasks run in functions of their own,
    so each runs whatever another made of the bytes, and the job fails with the code of the first that
    failed. Any other exception propagates: it is what the fuzz suite looks for."""
    job = job or Job()
    try:
        with _stage(job, "ingest", limits):
            file_type = _ingest(data, name, limits)
    except DocpipeError as exc:
        job.status, job.code = "failed", exc.code
        return job
    job.type = file_type.name
    for task in jobs.plan_for(file_type.mime, file_type.family, ocr=True):
        try:
            _TASKS[task](job, data, file_type, limits, engine)
        except DocpipeError as exc:
            if job.status == "ready":
                job.status, job.code = "failed", exc.code
    return job


class _stage:
    """Runs a stage under its function's memory size and records its seconds and peak resident memory.

    The peak is what the stage grew this process by, over the resident memory of a process that has just
    imported the stages' code (:func:`warm_up`): what a function's process holding the same libraries
    would reach. Memory a worker kept from earlier uploads (freed but not given back) is not counted."""

    def __init__(self, job: Job, name: str, limits: Limits) -> None:
        self.job, self.name, self.limits = job, name, limits

    def __enter__(self) -> None:
        os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(self.limits.memory_mb[self.name])
        reset_peak_memory()
        self.resident = rss_bytes()
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self.started
        peak = (_baseline or self.resident) + max(0, peak_memory() - self.resident)
        previous = self.job.stages.get(self.name, (0.0, 0))
        self.job.stages[self.name] = (previous[0] + seconds, max(previous[1], peak))


def reset_peak_memory() -> None:
    """Reset this process's resident high-water mark (``VmHWM``), where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_memory() -> int:
    """This process's resident high-water mark in bytes (since it started or was last reset), 0 if unknown."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


# ------------------------------------------------------------------------------------------ ingest


def _ingest(data: bytes, name: str, limits: Limits) -> FileType:
    """As IngestService._ingest does it, on bytes: the size, the hash with the type from the head, the
    image's dimensions from its header."""
    from ingest import content

    content.check_size(len(data), limits.max_upload_bytes)
    detected: list[FileType] = []

    def on_head(head: bytes) -> None:
        detected.append(content.classify(head, name, lambda: io.BytesIO(data)))

    content.scan(_chunks(data, limits.hash_chunk_bytes), min(limits.max_upload_bytes, len(data)), on_head)
    file_type = detected[0]
    if file_type.family == "image" and file_type.name != "heic":
        content.image_size(io.BytesIO(data))
    return file_type


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# ------------------------------------------------------------------------------------------ tasks


def _scan(job: Job, data: bytes, file_type: FileType, limits: Limits, engine: Any) -> None:
    """The scan task's checks on the bytes themselves (an Office file's macro parts, a PDF's active content);
    the malware engine is not run here (tests/unit/test_scan.py runs it)."""
    from scan.checks import OFFICE_TYPES, macro_parts, pdf_active_content

    with _stage(job, "scan", limits):
        if file_type.name in OFFICE_TYPES:
            macro_parts(io.BytesIO(data))
        if file_type.name == "pdf":
            pdf_active_content(io.BytesIO(data))


def _presets(job: Job, data: bytes, file_type: FileType, limits: Limits, engine: Any) -> None:
    from presets.render import PRESETS, render

    with _stage(job, "presets", limits):
        rendered = render(io.BytesIO(data), PRESETS, max_pixels=limits.max_image_pixels)
    assert {r.preset for r in rendered} == {p.name for p in PRESETS}


def _image_ocr(job: Job, data: bytes, file_type: FileType, limits: Limits, engine: Any) -> None:
    """The OCR task of an image: its pages prepared as Tesseract gets them (and read, by ``engine``), and
    a one-page image as Textract's synchronous call takes it; failed only when no page can be read."""
    from ocr.engines import sync_image_bytes
    from ocr.pages import load_pages, page_count

    with _stage(job, "ocr", limits):
        pages = page_count(data)
        numbers = list(range(1, min(pages, limits.ocr_pages_per_task) + 1))
        errors: list[Any] = []
        if engine is not None:
            errors = [page.error for page in engine.image_pages(data, numbers) if page.error is not None]
        else:
            for _, page in load_pages(data, numbers):
                if isinstance(page, DocpipeError):
                    errors.append(page)
                else:
                    page.close()
        if numbers == [1]:
            sync_image_bytes(data)
    if errors and len(errors) == len(numbers):
        raise _error(errors[0])


def _error(error: DocpipeError | dict[str, str]) -> DocpipeError:
    """An error as raised, or as an engine records it on a page (``{"code", "message"}``)."""
    return error if isinstance(error, DocpipeError) else DocpipeError(error["message"], code=error["code"])


def _extract(job: Job, data: bytes, file_type: FileType, limits: Limits, engine: Any) -> None:
    """The extract task: a PDF's pages counted first (a long one is read by ranges: the first range
    here), all within one deadline; then its scanned pages rendered for OCR."""
    from extract.formats import extract, pdf_page_count

    with _stage(job, "extract", limits):
        deadline = time.monotonic() + limits.sandbox_seconds
        pages = None
        if file_type.name == "pdf":
            count = pdf_page_count(data, timeout=deadline - time.monotonic())
            if count > limits.extract_range_pages:
                pages = (1, limits.extract_range_pages)
        doc = extract(
            data,
            file_type.name,
            max_chars=limits.max_text_chars,
            pages=pages,
            timeout=deadline - time.monotonic(),
        )
    scanned = [page.number for page in doc.pages if page.needs_ocr]
    if scanned:
        _pdf_ocr(job, data, scanned[: limits.ocr_pages_per_task], len(doc.pages), limits, engine)


def _pdf_ocr(job: Job, data: bytes, numbers: list[int], pages: int, limits: Limits, engine: Any) -> None:
    """Scanned pages rendered as the OCR engines render them (and read, by ``engine``); the document fails
    only when none of its pages can be read (every page is scanned and none renders)."""
    from ocr.engines import DPI, PdfSource
    from ocr.render import render_pdf_pages

    errors: list[DocpipeError] = []
    with _stage(job, "ocr", limits):
        for number in numbers:
            try:
                if engine is not None:  # rendered as the engine renders, within the function's RENDER_SECONDS
                    engine.pdf_pages(PdfSource(data=data), [number])
                    continue
                for _, image in render_pdf_pages(data, [number], dpi=DPI, seconds=limits.sandbox_seconds):
                    image.close()
            except DocpipeError as exc:
                errors.append(exc)
    if errors and len(errors) == pages:
        raise errors[0]


_TASKS: dict[str, Callable[[Job, bytes, FileType, Limits, Any], None]] = {
    "scan": _scan,
    "presets": _presets,
    "ocr": _image_ocr,
    "extract": _extract,
}

"""OCR of scanned PDF pages (for the extract task) and of document photos (the ``ocr`` task of an image).

Messages: ``{"task": "ocr", "hash": …, "for": "extract", "pages": [3, 4, …]}`` — a chunk of scanned
pages of a PDF whose text layer the extract task already read; each chunk is stored on its own and
the last chunk to finish merges them into the extract task's result — or ``{"task": "ocr", "hash":
…}`` for an image uploaded with ``ocr: true``, whose text becomes the ``ocr`` task's result: one text
page per page of the image (a multi-page TIFF, such as a fax, is a document; other images have one
page), at most ``OCR_PAGES_PER_TASK`` of them; a document with more pages keeps its first ones, with
``truncated`` set and ``metadata.pages`` saying how many it has. A page of it that cannot be read is
marked ``failed`` with its error; the task fails only when none can.

``ocr.unavailable`` (engine missing or unreachable) is retryable: the message comes back, and after
three receives lands in the lane's DLQ. Unreadable input fails its task with ``file.corrupt``; pages
OCR refuses (``page.too_large``, ``image.too_many_pixels``, ``file.corrupt``) are marked ``failed`` in the result, with
their error, and the document's task fails with that error only when no page of it could be read. A
scanned page that came with some text (a short text layer, form values) keeps it whatever OCR reads
(:func:`docpipe.text_results.with_ocr`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from docpipe import task_limits
from docpipe import text_results as results
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.config import Settings
from docpipe.errors import DocpipeError
from docpipe.observability import MetricUnit, logger, metrics
from docpipe.storage import original_key
from docpipe.worker import claimed_record
from ocr.engines import OcrEngine, OcrPage, PdfSource
from ocr.pages import page_count

TASK = "ocr"


def page_dict(page: OcrPage) -> dict[str, Any]:
    if page.error is not None:
        return {"number": page.number, "text": "", "method": "failed", "chars": 0, "error": page.error}
    text = page.text.strip()
    out: dict[str, Any] = {"number": page.number, "text": text, "method": "ocr", "chars": len(text)}
    if page.confidence is not None:
        out["confidence"] = round(page.confidence, 1)
    return out


class OcrService:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        jobs_repo: JobsRepository,
        files_repo: FilesRepository,
        engine: Callable[[], OcrEngine],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.store, self.jobs, self.files = settings, store, jobs_repo, files_repo
        self.engine, self.clock = engine, clock

    @classmethod
    def for_settings(cls, settings: Settings, engine: Callable[[], OcrEngine]) -> OcrService:
        return cls(
            settings,
            ObjectStore(),
            JobsRepository.for_settings(settings),
            FilesRepository(settings.files_table),
            engine,
        )

    def run(self, digest: str, pages: list[int] | None = None, for_task: str | None = None) -> str:
        logger.append_keys(hash=digest, task=TASK, forTask=for_task)
        file = claimed_record(digest) or self.files.get(digest)  # the claim answered it, mostly
        if file is None or file.get("status") != "stored":
            logger.warning("no stored original for this hash; message dropped")
            return "missing"
        if for_task == "extract" and pages:
            return self._scanned_pages(digest, file, pages)
        return self._image(digest, file)

    def _scanned_pages(self, digest: str, file: dict[str, Any], pages: list[int]) -> str:
        if file.get("extractState") != "ocr":
            self._settle(digest)  # a redelivery after the merge
            return str(file.get("extractState"))
        started = time.perf_counter()
        source: PdfSource | None = None
        try:
            data = self._original(digest)
            source = PdfSource(data=data, bucket=self.settings.store_bucket, key=original_key(digest))
            read = [page_dict(p) for p in self.engine().pdf_pages(source, pages)]
        except DocpipeError as exc:
            if exc.retryable:
                raise
            if source is not None and len(pages) > 1:  # one bad page (too large, unreadable) fails alone
                read = self._page_by_page(source, pages)
            else:
                read = [_failed(n, exc) for n in pages]
        self._measure(started, len(pages))
        results.put_json(self.store, self.settings, results.piece_key(digest, "ocr", pages[0]), {"pages": read})
        done = self.files.add_member(digest, "extractOcrDone", str(pages[0]))
        if len(done) < int((self.files.get(digest) or {}).get("extractOcrChunks", 0)):
            return "ocr"
        doc = results.get_json(self.store, self.settings, results.partial_key(digest))
        for first in sorted(int(f) for f in done):
            piece = results.get_json(self.store, self.settings, results.piece_key(digest, "ocr", first))
            doc = results.merge_ocr_pages(doc, piece["pages"])  # a page's own text is kept
        for page in doc["pages"]:
            page.pop("needs_ocr", None)
        failed = [p for p in doc["pages"] if p.get("method") == "failed"]
        if failed and len(failed) == len(doc["pages"]):  # nothing of the document could be read
            error = next((p["error"] for p in failed if p.get("error")), None) or {
                "code": "file.corrupt",
                "message": "No page of the document could be read.",
            }
            now = int(self.clock())
            results.fail("extract", digest, error, self.files, self.jobs, self.settings, now)
            return "failed"
        results.finish("extract", digest, doc, self.store, self.files, self.jobs, self.settings, int(self.clock()))
        return "done"

    def _image(self, digest: str, file: dict[str, Any]) -> str:
        if file.get(f"{TASK}State") in ("done", "failed"):
            self._settle(digest)
            return str(file[f"{TASK}State"])
        self._settle(digest)  # queued → processing (the worker's claim marked the task running)
        started = time.perf_counter()
        try:
            too_big = task_limits.refusal(TASK, file, self.settings.max_image_pixels)
            if too_big is not None:  # from the file record: nothing is downloaded
                raise too_big
            data = self._original(digest)
            pages = page_count(data)
            numbers = list(range(1, min(pages, self.settings.ocr_pages_per_task) + 1))
            read = self.engine().image_pages(data, numbers)
        except DocpipeError as exc:
            if exc.retryable:
                raise
            results.fail(TASK, digest, exc.to_dict(), self.files, self.jobs, self.settings, int(self.clock()))
            return "failed"
        self._measure(started, len(numbers))
        failed = [p.error for p in read if p.error is not None]
        if len(failed) == len(read):  # no page of the image could be read
            error = failed[0] if failed else {"code": "file.corrupt", "message": "The image has no page to read."}
            results.fail(TASK, digest, error, self.files, self.jobs, self.settings, int(self.clock()))
            return "failed"
        doc = {
            "version": 1,
            "kind": "image",
            "metadata": {"pages": pages},
            "encoding": None,
            "truncated": len(numbers) < pages,  # pages past OCR_PAGES_PER_TASK were left out
            "pages": [page_dict(p) for p in read],
        }
        results.finish(TASK, digest, doc, self.store, self.files, self.jobs, self.settings, int(self.clock()))
        return "done"

    def _original(self, digest: str) -> bytes:
        with self.store.download(self.settings.store_bucket, original_key(digest)) as f:
            return f.read()

    def _page_by_page(self, source: PdfSource, pages: list[int]) -> list[dict[str, Any]]:
        """A chunk the engine refused as a whole, read again a page at a time: each page that cannot be
        read is ``failed`` with its own error, and the others are read (the rare path: no cost otherwise)."""
        read: list[dict[str, Any]] = []
        for number in pages:
            try:
                read += [page_dict(p) for p in self.engine().pdf_pages(source, [number])]
            except DocpipeError as exc:
                if exc.retryable:
                    raise
                read.append(_failed(number, exc))
        return read

    def _measure(self, started: float, pages: int) -> None:
        metrics.add_metric(name="OcrPages", unit=MetricUnit.Count, value=pages)
        metrics.add_metric(
            name="OcrMilliseconds", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
        )

    def _settle(self, digest: str) -> None:
        results.settle(digest, self.files, self.jobs, self.settings, int(self.clock()))


def _failed(number: int, error: DocpipeError) -> dict[str, Any]:
    return {"number": number, "text": "", "method": "failed", "chars": 0, "error": error.to_dict()}

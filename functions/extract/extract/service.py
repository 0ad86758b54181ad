"""Extract the text of one stored document, record it, and settle the jobs waiting on it.

A message is ``{"task": "extract", "hash": …, "lane": …}``, or with ``"range": [first, last]`` for
one page range of a large PDF. The task's state on the file record moves ``queued → running →
done | failed``, with ``ocr`` in between when scanned pages wait on the OCR lanes (the job reads it
as running). Large PDFs (more than ``EXTRACT_RANGE_PAGES`` pages) fan out into range messages on the
same lane; each range is stored on its own and the last one to finish merges them, so a range that
fails is retried alone and one that cannot be read costs only its own pages (marked ``failed`` in
the result, with the error) — the task fails only when every range does.

Idempotent: a redelivered message finds the state done, or rewrites the same piece under the same key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import IO, Any

from docpipe import task_limits
from docpipe import text_results as results
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.adapters.sqs import TaskQueues
from docpipe.config import Settings
from docpipe.errors import DocpipeError, TooSlow, Transient
from docpipe.observability import MetricUnit, logger, metrics
from docpipe.storage import original_key
from docpipe.worker import claimed_record
from extract.formats import PDF_SECONDS, extract, pdf_page_count

TASK = "extract"


class ExtractService:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        jobs_repo: JobsRepository,
        files_repo: FilesRepository,
        tasks: TaskQueues,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.store, self.jobs, self.files = settings, store, jobs_repo, files_repo
        self.tasks, self.clock = tasks, clock

    @classmethod
    def for_settings(cls, settings: Settings) -> ExtractService:
        return cls(
            settings,
            ObjectStore(),
            JobsRepository.for_settings(settings),
            FilesRepository(settings.files_table),
            TaskQueues(settings.task_queues),
        )

    def run(
        self,
        digest: str,
        lane: str = "normal",
        page_range: list[int] | None = None,
        seconds: float = PDF_SECONDS,
        until: float = math.inf,
    ) -> str:
        """Extract a document (or one page range of it). Returns the task's state afterwards.

        ``seconds``: how long reading a PDF may take in all (counting its pages, then reading them) before
        it is refused as ``archive.unsafe``. ``until`` (``time.monotonic()``): when the invocation must
        stop reading, to keep time to store the result; a PDF stopped by that sooner limit is not the
        file's fault, and raises :class:`Transient` for the message to be read again in a new invocation.
        """
        own = time.monotonic() + seconds
        cut_short = until < own
        deadline = min(own, until)
        logger.append_keys(hash=digest, task=TASK)
        file = claimed_record(digest) or self.files.get(digest)  # the claim answered it, mostly
        if file is None or file.get("status") != "stored":
            logger.warning("no stored original for this hash; message dropped")
            return "missing"
        state = file.get(f"{TASK}State")
        if state in ("done", "failed", "ocr"):
            self._settle(digest)  # a redelivery: the work is done or handed to OCR
            return str(state)
        if page_range is None:
            self._settle(digest)  # queued → processing (the worker's claim marked the task running)
            too_big = task_limits.refusal(TASK, file)
            if too_big is not None:  # from the file record: nothing is downloaded
                return self._fail(digest, too_big)
        started = time.perf_counter()
        try:
            with self.store.download(self.settings.store_bucket, original_key(digest)) as original:
                if page_range is not None:
                    return self._range(digest, lane, original, page_range, deadline, cut_short)
                kind = str(file.get("type"))
                if kind == "pdf":
                    count = pdf_page_count(original, timeout=deadline - time.monotonic())
                    if count > self.settings.extract_range_pages:
                        return self._split(digest, lane, count)
                    original.seek(0)
                left = deadline - time.monotonic()
                doc = extract(original, kind, max_chars=self.settings.max_text_chars, timeout=left).to_dict()
        except DocpipeError as exc:
            _retry_if_cut_short(exc, cut_short)
            if exc.retryable:
                raise
            return self._fail(digest, exc)
        metrics.add_metric(
            name="ExtractMilliseconds", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
        )
        return self._after_text(digest, lane, doc)

    # ------------------------------------------------------------------ page ranges
    def _split(self, digest: str, lane: str, count: int) -> str:
        size = self.settings.extract_range_pages
        ranges = [[first, min(first + size - 1, count)] for first in range(1, count + 1, size)]
        self.files.update(digest, {"extractRanges": len(ranges), "extractPageCount": count})
        for page_range in ranges:
            self.tasks.send(TASK, lane, {"hash": digest, "range": page_range})
        logger.info("document split into page ranges", extra={"pages": count, "ranges": len(ranges)})
        return "running"

    def _range(
        self, digest: str, lane: str, original: IO[bytes], page_range: list[int], deadline: float, cut_short: bool
    ) -> str:
        first, last = int(page_range[0]), int(page_range[1])
        left = deadline - time.monotonic()
        try:
            read = extract(original, "pdf", max_chars=self.settings.max_text_chars, pages=(first, last), timeout=left)
            piece = read.to_dict()
        except DocpipeError as exc:
            _retry_if_cut_short(exc, cut_short)
            if exc.retryable:
                raise
            piece = {
                "kind": "pdf",
                "error": exc.to_dict(),
                "pages": [{"number": n, "text": "", "method": "failed", "chars": 0} for n in range(first, last + 1)],
            }
        self.store_piece(digest, first, piece)
        done = self.files.add_member(digest, "extractRangesDone", str(first))
        file = self.files.get(digest) or {}
        if len(done) < int(file.get("extractRanges", 0)):
            return "running"
        return self._merge_ranges(digest, lane, sorted(int(f) for f in done))

    def store_piece(self, digest: str, first: int, piece: dict[str, Any]) -> None:
        results.put_json(self.store, self.settings, results.piece_key(digest, "ranges", first), piece)

    def _merge_ranges(self, digest: str, lane: str, firsts: list[int]) -> str:
        pieces = [results.get_json(self.store, self.settings, results.piece_key(digest, "ranges", f)) for f in firsts]
        errors = [
            {"pages": [p["pages"][0]["number"], p["pages"][-1]["number"]], **p["error"]}
            for p in pieces
            if p.get("error")
        ]
        if len(errors) == len(pieces):
            first = pieces[0]["error"]
            return self._fail_with(digest, {"code": first["code"], "message": first["message"]})
        base = next(p for p in pieces if not p.get("error"))
        doc = {
            **base,
            "truncated": any(p.get("truncated") for p in pieces),
            "pages": [page for p in pieces for page in p["pages"]],
        }
        if errors:
            doc["errors"] = errors
        return self._after_text(digest, lane, doc)

    # ------------------------------------------------------------------ OCR hand-off and the end
    def _after_text(self, digest: str, lane: str, doc: dict[str, Any]) -> str:
        scanned = [int(p["number"]) for p in doc["pages"] if p.get("needs_ocr")]
        if not scanned:
            results.finish(TASK, digest, doc, self.store, self.files, self.jobs, self.settings, int(self.clock()))
            metrics.add_metric(name="DocumentsExtracted", unit=MetricUnit.Count, value=1)
            return "done"
        results.put_json(self.store, self.settings, results.partial_key(digest), doc)
        chunk = self.settings.ocr_pages_per_task
        chunks = [scanned[i : i + chunk] for i in range(0, len(scanned), chunk)]
        self.files.update(digest, {f"{TASK}State": "ocr", "extractOcrChunks": len(chunks)})
        for pages in chunks:
            self.tasks.send("ocr", lane, {"hash": digest, "for": TASK, "pages": pages})
        metrics.add_metric(name="PagesSentToOcr", unit=MetricUnit.Count, value=len(scanned))
        logger.info("scanned pages sent to OCR", extra={"pages": len(scanned), "chunks": len(chunks)})
        self._settle(digest)
        return "ocr"

    def _fail(self, digest: str, exc: DocpipeError) -> str:
        logger.info("extraction refused", extra={"code": exc.code})
        return self._fail_with(digest, exc.to_dict())

    def _fail_with(self, digest: str, error: dict[str, str]) -> str:
        results.fail(TASK, digest, error, self.files, self.jobs, self.settings, int(self.clock()))
        return "failed"

    def _settle(self, digest: str) -> None:
        results.settle(digest, self.files, self.jobs, self.settings, int(self.clock()))


def _retry_if_cut_short(exc: DocpipeError, cut_short: bool) -> None:
    """A PDF stopped by the invocation's time rather than its own limit is read again, not failed."""
    if isinstance(exc, TooSlow) and cut_short:
        raise Transient(
            "The invocation had too little time left to read the PDF; it is read again in a new one."
        ) from exc

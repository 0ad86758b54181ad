"""The text result of a file (``text/{hash}.json``), shared by the extract and OCR stages.

The document is the JSON of ``extract.model.Extraction``. Work on one document can be split (page
ranges of a large PDF, chunks of scanned pages): each piece is stored on its own under
``text/{hash}/…`` and counted in a string set on the file's record; whoever adds the last member
merges the pieces, so a failed or redelivered piece is redone alone and nothing is merged twice
into a different result. A finished document is written once under :func:`storage.text_key` and
published as the task's ``text`` artifact, which the job view shows with an excerpt.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.config import Settings
from docpipe.settlement import settle_jobs
from docpipe.storage import text_key

EXCERPT_CHARS = 280
CACHE_CONTROL = "private, max-age=31536000, immutable"
_WORD = re.compile(r"\w+")


def piece_key(digest: str, kind: str, first_page: int) -> str:
    return f"text/{digest}/{kind}/{first_page:06d}.json"


def partial_key(digest: str) -> str:
    return f"text/{digest}/partial.json"


def put_json(store: ObjectStore, settings: Settings, key: str, doc: dict[str, Any]) -> None:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    store.put(settings.store_bucket, key, body, "application/json; charset=utf-8", CACHE_CONTROL)


def get_json(store: ObjectStore, settings: Settings, key: str) -> dict[str, Any]:
    with store.download(settings.store_bucket, key) as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def excerpt(doc: dict[str, Any], limit: int = EXCERPT_CHARS) -> str:
    text = " ".join(" ".join(str(p.get("text", "")).split()) for p in doc.get("pages", []) if p.get("text"))
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summary(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """The artifact facts the job view shows: where, how much, how it was read, and the first lines."""
    methods = sorted({str(p.get("method")) for p in doc.get("pages", [])})
    facts: dict[str, Any] = {
        "key": key,
        "contentType": "application/json",
        "kind": doc.get("kind"),
        "pages": len(doc.get("pages", [])),
        "chars": sum(int(p.get("chars", 0)) for p in doc.get("pages", [])),
        "methods": methods,
        "truncated": bool(doc.get("truncated")),
        "excerpt": excerpt(doc),
    }
    if doc.get("encoding"):
        facts["encoding"] = doc["encoding"]
    return facts


def merge_pages(doc: dict[str, Any], pages: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` with the given pages put in place (by number) and in page order."""
    by_number = {int(p["number"]): p for p in doc.get("pages", [])}
    for page in pages:
        by_number[int(page["number"])] = page
    return {**doc, "pages": [by_number[n] for n in sorted(by_number)]}


def merge_ocr_pages(doc: dict[str, Any], pages: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` with what OCR read of some of its pages, each page merged with its text by :func:`with_ocr`."""
    by_number = {int(p["number"]): p for p in doc.get("pages", [])}
    return merge_pages(doc, [with_ocr(by_number.get(int(page["number"]), {}), page) for page in pages])


def with_ocr(page: dict[str, Any], read: dict[str, Any]) -> dict[str, Any]:
    """A scanned page with what OCR ``read`` of it: its own text (a short text layer, form values) is never lost.

    A page without text takes the reading as it is. Otherwise the reading replaces the text only if it
    holds every word of it (``ocr``); a reading of no more characters than the text is dropped
    (``text-layer``: a text layer of "Test" over an image is not traded for OCR's "est"); a longer one
    follows the text (``text-layer+ocr``). A page OCR could not read keeps its text and the error.
    """
    text = str(page.get("text") or "")
    if not text:
        return read
    found = str(read.get("text") or "")
    kept = {**page, "method": "text-layer"}
    if read.get("method") == "failed":
        return {**kept, "error": read["error"]} if read.get("error") else kept
    words = Counter(_words(text))
    if words and not words - Counter(_words(found)):
        return read
    if len(found) <= len(text):
        return kept
    both = f"{text}\n{found}"
    merged = {**page, "text": both, "method": "text-layer+ocr", "chars": len(both)}
    if read.get("confidence") is not None:
        merged["confidence"] = read["confidence"]
    return merged


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def finish(
    task: str,
    digest: str,
    doc: dict[str, Any],
    store: ObjectStore,
    files: FilesRepository,
    jobs: JobsRepository,
    settings: Settings,
    now: int,
) -> None:
    """Store the finished document, publish it as the task's ``text`` artifact, and settle the jobs."""
    key = text_key(digest)
    doc = {**doc, "chars": sum(int(p.get("chars", 0)) for p in doc.get("pages", []))}
    put_json(store, settings, key, doc)
    files.update(
        digest, {f"{task}State": "done", f"{task}Artifacts": {"text": summary(doc, key)}, f"{task}Error": None}
    )
    settle(digest, files, jobs, settings, now)


def fail(
    task: str,
    digest: str,
    error: dict[str, str],
    files: FilesRepository,
    jobs: JobsRepository,
    settings: Settings,
    now: int,
) -> None:
    files.update(digest, {f"{task}State": "failed", f"{task}Error": error})
    settle(digest, files, jobs, settings, now)


def settle(digest: str, files: FilesRepository, jobs: JobsRepository, settings: Settings, now: int) -> None:
    settle_jobs(jobs, files, digest, now + settings.job_ttl_days * 86400)

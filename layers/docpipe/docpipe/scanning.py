"""The malware scan gate: ``scan`` is the first task of every plan, and nothing else runs or is served
from some bytes before their scan is ``done`` (a clean verdict).

- Ingest queues the ``scan`` task alone (:func:`tasks_to_queue`); the scan worker, on a clean verdict,
  queues the rest of each waiting job's plan (:func:`send_tasks`). A clean verdict older than
  ``RescanAfterDays`` is redone on the next upload (:func:`stale`).
- A verdict lives on the file record: ``scanVerdict`` ``{result, engine, signature, version, scannedAt}``.
  An infected verdict is also kept by SHA-256 under :func:`infected_key` in FilesTable, so the same bytes
  are refused at once on any later upload, whatever the ``DedupeScope`` made their content key.
- The workers of the other tasks drop an opening message whose bytes are not clean (:func:`is_clean`),
  and the API serves nothing of bytes that are not clean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from docpipe.adapters.dynamo import FilesRepository
from docpipe.adapters.sqs import TaskQueues
from docpipe.errors import DocpipeError
from docpipe.jobs import SCAN
from docpipe.observability import logger

QUARANTINE_PREFIX = "quarantine/"
CLEAN, INFECTED = "clean", "infected"


def infected_key(sha256: str) -> str:
    """The FilesTable key of an infected verdict, by the bytes' own SHA-256 (never a content key: with
    ``DedupeScope=owner`` another owner's upload of the same bytes has another content key)."""
    return f"infected#{sha256}"


def quarantine_key(digest: str) -> str:
    """Where infected bytes are moved to in the store bucket: no API route serves this prefix."""
    return f"{QUARANTINE_PREFIX}{digest}/original"


def is_clean(file: Mapping[str, Any] | None) -> bool:
    """True when the bytes' scan is done with a clean verdict: only then is anything made or served."""
    return bool(file) and file.get(f"{SCAN}State") == "done"  # type: ignore[union-attr]


def scanned_at(file: Mapping[str, Any]) -> datetime | None:
    raw = (file.get("scanVerdict") or {}).get("scannedAt")
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")) if raw else None
    except ValueError:
        return None


def stale(file: Mapping[str, Any], now: float, rescan_after_days: int) -> bool:
    """A clean verdict older than ``rescan_after_days`` (0: never redone), to be redone before more work."""
    if not is_clean(file) or rescan_after_days <= 0:
        return False
    at = scanned_at(file)
    return at is None or now - at.timestamp() > rescan_after_days * 86400


def tasks_to_queue(plan: Iterable[str], file: Mapping[str, Any] | None) -> list[str]:
    """The tasks of ``plan`` that may be queued now: only the scan before a clean verdict."""
    return [task for task in plan if task == SCAN or is_clean(file)]


def send_tasks(
    files: FilesRepository,
    queues: TaskQueues,
    digest: str,
    tasks: Iterable[str],
    lane: str,
    tenant: str,
    marked: Iterable[str] = (),
) -> list[str]:
    """Queue each task once per content (a task with a state already is not queued again); the ones sent.
    ``marked``: tasks the caller has marked ``queued`` itself (:meth:`FilesRepository.mark_stored`)."""
    sent, marked = [], set(marked)
    for task in tasks:
        if task not in marked and files.request_task(digest, task) is not None:
            continue
        try:
            queues.send(task, lane, {"hash": digest}, tenant=tenant)
        except DocpipeError:
            files.update(digest, {f"{task}State": None})  # let the retry queue it again
            raise
        sent.append(task)
        logger.info("task queued", extra={"task": task, "lane": lane})
    return sent


def verdict(result: str, engine: str, version: str, signature: str | None = None) -> dict[str, Any]:
    """A verdict as stored on the file record (and shown to no one but operators)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"result": result, "engine": engine, "version": version, "signature": signature, "scannedAt": stamp}

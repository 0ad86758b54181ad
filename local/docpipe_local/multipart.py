"""``docpipe process BIGFILE``: a file over the API's ``multipartThresholdBytes`` is uploaded in parts,
several at once, and resumes after an interruption.

A small state file says which upload a file belongs to. It is keyed by the API, the file's absolute
path, its size and its modification time (so an edited file starts again), and kept in a directory of
the user's own (``$DOCPIPE_STATE_DIR``, else ``$XDG_STATE_HOME/docpipe/uploads``, else
``~/.local/state/docpipe/uploads``, mode 0700). Running the same command again lists the parts S3
already holds (``GET /uploads/{jobId}/parts``) and sends only the missing ones. Each part carries its
SHA-256, which S3 checks. Ctrl-C (SIGINT) stops after the parts in flight; a part whose connection
breaks is tried again a few times, then the upload stops and keeps its state for the next run.

``$DOCPIPE_STOP_AFTER_PARTS=N`` stops a run as Ctrl-C would once it has sent N parts (no part is started
after the N-th): an interruption at a known point, for the resume test and for trying resume by hand.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from docpipe_local.client import ApiError, DocpipeClient, UploadError

DEFAULT_THRESHOLD = 64 * 1024 * 1024
PART_ATTEMPTS = 3
STOP_AFTER_VARIABLE = "DOCPIPE_STOP_AFTER_PARTS"
STOP = threading.Event()  # set by the CLI's SIGINT handler: the uploads stop after the parts in flight


class Interrupted(Exception):
    """The upload stopped before all its parts were sent; its state is kept to resume from."""


def state_dir() -> Path:
    base = os.environ.get("DOCPIPE_STATE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "docpipe" / "uploads"


def threshold(client: DocpipeClient) -> int:
    """The size above which the API wants parts (its ``/health`` says; else 64 MiB)."""
    with contextlib.suppress(requests.RequestException, ValueError, KeyError, TypeError):
        return int(client.health()["uploads"]["multipartThresholdBytes"])
    return DEFAULT_THRESHOLD


class State:
    """The state file of one (API, path, size, mtime)."""

    def __init__(self, api: str, path: Path, folder: Path | None = None) -> None:
        stat = path.stat()
        identity = json.dumps([api, str(path.resolve()), stat.st_size, stat.st_mtime_ns])
        self.file = (folder or state_dir()) / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.json"

    def load(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.file.read_text()))
        except (OSError, ValueError):
            return None

    def save(self, upload: dict[str, Any]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(upload))
        tmp.replace(self.file)

    def clear(self) -> None:
        self.file.unlink(missing_ok=True)


class _PartReader:
    """One part of the file as a request body, read as it is sent; counts the bytes sent."""

    def __init__(self, path: Path, offset: int, size: int, sent: Callable[[int], None]) -> None:
        self._file = path.open("rb")
        self._file.seek(offset)
        self._left, self._sent = size, sent
        self.size = size

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        if STOP.is_set() and self._left:
            raise Interrupted("interrupted")
        n = self._left if n < 0 else min(n, self._left)
        data = self._file.read(n)
        self._left -= len(data)
        self._sent(len(data))
        return data

    def close(self) -> None:
        self._file.close()


def _part_sha256(path: Path, offset: int, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        fh.seek(offset)
        left = size
        while left:
            chunk = fh.read(min(left, 1024 * 1024))
            if not chunk:
                raise UploadError(f"{path} is shorter than when its upload started")
            digest.update(chunk)
            left -= len(chunk)
    return base64.b64encode(digest.digest()).decode()


class MultipartUpload:
    """One file's upload in parts through docpipe's own routes."""

    def __init__(
        self,
        client: DocpipeClient,
        path: Path,
        *,
        priority: str | None = None,
        ocr: bool = False,
        parallel: int = 4,
        progress: Callable[[int, int], None] | None = None,
        folder: Path | None = None,
        stop_after: int | None = None,
    ) -> None:
        self.client, self.path, self.priority, self.ocr = client, path, priority, ocr
        self.stop_after = stop_after  # parts this run sends at most before it stops as if interrupted
        self.parallel = max(1, parallel)
        self.progress = progress or (lambda done, total: None)
        self.size = path.stat().st_size
        self.state = State(client.api_url, path, folder)
        self._lock = threading.Lock()
        self._done_bytes = 0
        self.resumed: list[int] = []  # parts S3 held when this run started
        self.sent: list[int] = []  # parts this run sent

    def _api(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return dict(self.client._call(method, path, **kwargs).json())

    def _start(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.path.name, "size": self.size, "checksum": "sha256"}
        if self.priority:
            body["priority"] = self.priority
        if self.ocr:
            body["ocr"] = True
        upload = self._api("POST", "/uploads/multipart", json=body)
        self.state.save(upload)
        return upload

    def _resume(self) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """The upload to continue and the parts S3 holds of it; a new upload when there is none to resume."""
        saved = self.state.load()
        if saved:
            try:
                listed = self._api("GET", f"/uploads/{saved['jobId']}/parts")
                return saved, {p["number"]: p for p in listed["parts"]}
            except ApiError as exc:
                if exc.status not in (404, 409):  # the job ended or is gone: start again
                    raise
                self.state.clear()
        return self._start(), {}

    def _sent(self, n: int) -> None:
        with self._lock:
            self._done_bytes += n
            done = self._done_bytes
        self.progress(done, self.size)

    def _length(self, upload: dict[str, Any], number: int) -> int:
        part_size, count = int(upload["partSize"]), int(upload["partCount"])
        return part_size if number < count else self.size - part_size * (count - 1)

    def _send_part(self, upload: dict[str, Any], number: int) -> str:
        offset, length = (number - 1) * int(upload["partSize"]), self._length(upload, number)
        digest = _part_sha256(self.path, offset, length)
        last: Exception | None = None
        for attempt in range(PART_ATTEMPTS):
            if STOP.is_set():
                raise Interrupted("interrupted")
            signed = self._api(
                "POST", f"/uploads/{upload['jobId']}/parts", json={"parts": [{"number": number, "sha256": digest}]}
            )["parts"][0]
            body = _PartReader(self.path, offset, length, self._sent)
            try:
                response = requests.put(signed["url"], data=body, headers=signed["headers"], timeout=300)
            except requests.RequestException as exc:
                last = exc
                self._sent(-(length - body._left))  # what went out of this attempt is sent again
                time.sleep(0.5 * (attempt + 1))
                continue
            finally:
                body.close()
            if response.status_code >= 300:
                self._sent(-length)
                raise UploadError(f"the storage refused part {number}: {response.status_code} {response.text[:300]}")
            return str(response.headers["ETag"])
        raise UploadError(f"part {number} could not be sent: {last}")

    def run(self) -> dict[str, Any]:
        """Upload what is missing and complete; the job as ``POST /uploads/{jobId}/complete`` answers it."""
        upload, held = self._resume()
        count = int(upload["partCount"])
        held = {n: p for n, p in held.items() if p["size"] == self._length(upload, n)}
        self.resumed = sorted(held)
        self._sent(sum(p["size"] for p in held.values()))
        etags = {n: p["etag"] for n, p in held.items()}
        missing = [n for n in range(1, count + 1) if n not in held]
        numbers: Iterator[int] = iter(missing[: self.stop_after] if self.stop_after is not None else missing)
        take = threading.Lock()

        def worker() -> None:
            while not STOP.is_set():
                with take:
                    number = next(numbers, None)
                if number is None:
                    return
                etag = self._send_part(upload, number)
                with self._lock:
                    etags[number] = etag
                    self.sent.append(number)

        with ThreadPoolExecutor(max_workers=min(self.parallel, max(1, len(missing)))) as pool:
            futures = [pool.submit(worker) for _ in range(min(self.parallel, max(1, len(missing))))]
            errors = [f.exception() for f in futures]
        failure = next((e for e in errors if e is not None and not isinstance(e, Interrupted)), None)
        if failure is not None:
            raise failure
        if STOP.is_set() or len(etags) < count:  # Ctrl-C, or stopped after ``stop_after`` parts
            raise Interrupted(f"{len(etags)} of {count} parts are uploaded: run the same command again to resume")
        parts = [{"number": n, "etag": etags[n]} for n in range(1, count + 1)]
        try:
            job = self._api("POST", f"/uploads/{upload['jobId']}/complete", json={"parts": parts})
        except ApiError as exc:
            if exc.status in (404, 409, 413):  # the upload is over either way: nothing left to resume
                self.state.clear()
            raise
        self.state.clear()
        return {"jobId": upload["jobId"], **job}

    def report(self) -> dict[str, Any]:
        return {"resumed": self.resumed, "sent": sorted(self.sent)}


def send(
    client: DocpipeClient,
    path: Path,
    *,
    limit: int,
    priority: str | None = None,
    ocr: bool = False,
    parallel: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Upload ``path``: in one presigned POST up to ``limit`` bytes, else in parts. The upload's answer (with
    ``jobId``), and for parts ``{"parts": {"resumed": [...], "sent": [...]}}``. :class:`Interrupted` carries
    the same report in ``.report``."""
    if path.stat().st_size <= limit:
        return client.upload_file(path, priority=priority, progress=progress, ocr=ocr), {}
    stop_after = os.environ.get(STOP_AFTER_VARIABLE)
    upload = MultipartUpload(
        client,
        path,
        priority=priority,
        ocr=ocr,
        parallel=parallel,
        progress=progress,
        stop_after=int(stop_after) if stop_after else None,
    )
    try:
        created = upload.run()
    except Interrupted as exc:
        exc.report = {"parts": upload.report()}  # type: ignore[attr-defined]
        raise
    return created, {"parts": upload.report()}

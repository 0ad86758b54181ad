"""A client of docpipe's HTTP API, over real HTTP: presigned uploads, jobs, files, health."""

from __future__ import annotations

import contextlib
import mimetypes
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor

TERMINAL = ("ready", "failed", "cancelled")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class UploadError(Exception):
    pass


class DocpipeClient:
    def __init__(self, api_url: str, token: str | None, timeout: float = 30, max_wait: float = 300) -> None:
        """``max_wait``: how long, in all, an upload request waits out 429s and their ``Retry-After``."""
        self.max_wait = max_wait
        self.api_url = api_url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(
            method, f"{self.api_url}{path}", timeout=self.timeout, allow_redirects=False, **kwargs
        )
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            retry_after = response.headers.get("Retry-After")
            raise ApiError(
                response.status_code,
                body.get("code", "http.error"),
                body.get("message", response.text[:200]),
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return response

    def health(self) -> dict[str, Any]:
        return dict(self.session.get(f"{self.api_url}/health", timeout=self.timeout).json())

    def create_upload(
        self, name: str, size: int, content_type: str | None = None, priority: str | None = None, ocr: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "size": size}
        if content_type:
            body["contentType"] = content_type
        if priority:
            body["priority"] = priority
        if ocr:
            body["ocr"] = True
        waited = 0.0
        while True:
            try:
                return dict(self._call("POST", "/uploads", json=body).json())
            except ApiError as exc:  # a rate limit says when to come back: wait, as a good client does
                if exc.status != 429 or exc.retry_after is None or waited + exc.retry_after > self.max_wait:
                    raise
                time.sleep(exc.retry_after)
                waited += exc.retry_after

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{job_id}").json())

    def jobs(self, limit: int = 25, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return dict(self._call("GET", "/jobs", params=params).json())

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/jobs/{job_id}").json())

    def purge(self, job_id: str) -> dict[str, Any]:
        """Remove a job for good (and its bytes, when no other job of anyone references them)."""
        return dict(self._call("DELETE", f"/jobs/{job_id}", params={"purge": "true"}).json())

    def usage(self) -> dict[str, Any]:
        return dict(self._call("GET", "/usage").json())

    def retry(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/jobs/{job_id}/retry").json())

    def config(self) -> dict[str, Any]:
        """``GET /config``: where to connect for live updates (``push.url``)."""
        return dict(self._call("GET", "/config").json())

    def queues(self) -> dict[str, Any]:
        return dict(self._call("GET", "/queues").json())

    def file(self, digest: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/files/{digest}").json())

    def variant_url(self, digest: str, variant: str = "original", timeout: float = 60) -> str:
        """The signed URL of a file's variant; a preset or text being (re)made answers 202, so wait and ask again."""
        deadline = time.monotonic() + timeout
        while True:
            response = self._call("GET", f"/files/{digest}/{variant}")
            if response.status_code != 202:
                return str(response.headers["Location"])
            if time.monotonic() > deadline:
                raise ApiError(202, "variant.pending", f"{variant} was still being made after {timeout} s")
            time.sleep(min(float(response.headers.get("Retry-After", 1)), 2.0))

    def upload_file(
        self,
        path: Path,
        priority: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        ocr: bool = False,
    ) -> dict[str, Any]:
        """Ask for a presigned POST and stream the file straight to S3. Returns the upload response (with ``jobId``)."""
        size = path.stat().st_size
        content_type = mimetypes.guess_type(path.name)[0]
        created = self.create_upload(path.name, size, content_type, priority, ocr)
        try:
            post_file(created["upload"], path, progress)
        except (UploadError, requests.RequestException):
            # The storage refused the file or the connection broke: the job would wait for an upload that
            # never comes, so end it now rather than leave it to the sweeper (best effort).
            with contextlib.suppress(ApiError, requests.RequestException):
                self.cancel(created["jobId"])
            raise
        return created

    def wait(
        self,
        job_id: str,
        timeout: float = 120,
        interval: float = 0.1,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a job until it is ``ready``, ``failed`` or ``cancelled`` (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job["state"] in TERMINAL or time.monotonic() > deadline:
                return job
            time.sleep(interval)
            interval = min(interval * 1.5, 1.0)


def post_file(upload: dict[str, Any], path: Path, progress: Callable[[int, int], None] | None = None) -> None:
    """A browser-style form POST of ``path`` to a presigned POST; streamed, never read whole into memory."""
    with path.open("rb") as fh:
        encoder = MultipartEncoder(
            fields={**upload["fields"], "file": (path.name, fh, upload["fields"].get("Content-Type"))}
        )
        monitor = MultipartEncoderMonitor(encoder, (lambda m: progress(m.bytes_read, m.len)) if progress else None)
        response = requests.post(
            upload["url"], data=monitor, headers={"Content-Type": monitor.content_type}, timeout=600
        )
    if response.status_code >= 300:
        raise UploadError(f"the storage refused the upload: {response.status_code} {response.text[:300]}")

"""Live job updates for the command line: the push protocol's client (README, "Live progress").

:class:`JobFeed` asks ``GET /config`` where to connect and keeps one WebSocket open (``?token=`` the
client's own token) on a background thread. Every ``{"type": "job"}`` frame updates the jobs it follows.
After every (re)connect it re-reads ``GET /jobs/{id}`` for each followed job that has not ended, so a
terminal state pushed while it was disconnected is never missed. While the socket is down (or the stack
has no push channel, or refuses the token) :meth:`JobFeed.wait` polls, as before; while it is up, it
does not poll at all.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import websocket

from docpipe_local.client import TERMINAL, ApiError, DocpipeClient

RECONNECT_SECONDS = (0.2, 0.5, 1, 2, 5)  # backoff between attempts; the last repeats
PING_SECONDS = 60  # API Gateway closes a connection idle for 10 minutes


class JobFeed:
    def __init__(self, client: DocpipeClient, url: str | None) -> None:
        self.client, self.url = client, url
        self.jobs: dict[str, dict[str, Any]] = {}
        self.followed: set[str] = set()
        self.changed = threading.Condition()
        self.up = threading.Event()
        self.refused: str | None = None  # why the server refused the connection, when it did
        self.frames = 0
        self._stop = threading.Event()
        self._socket: websocket.WebSocket | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, client: DocpipeClient, connect_seconds: float = 5) -> JobFeed:
        """A feed of ``client``'s jobs, connected when the stack has a push channel (else it only polls)."""
        try:
            push = (client.config().get("push") or {}).get("url")
        except ApiError:
            push = None
        feed = cls(client, push)
        if push:
            feed._thread = threading.Thread(target=feed._run, name="docpipe-push", daemon=True)
            feed._thread.start()
            feed.up.wait(connect_seconds)
        return feed

    def close(self) -> None:
        self._stop.set()
        if self._socket is not None:
            self._socket.abort()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> JobFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ following jobs
    def follow(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.followed.add(job_id)
            if job_id not in self.jobs:
                self._store(self.client.job(job_id))

    def _store(self, job: dict[str, Any]) -> None:
        """Keep ``job`` unless what is known is newer: a later ``updatedAt``, or the same one with more progress.
        Two frames can arrive out of the order their views were read in (a job's record and its bytes' are
        pushed by invocations of their own), and a poll answered late is as old as its read."""
        with self.changed:
            known = self.jobs.get(job["jobId"])
            if known is None or _newer_or_same(job, known):
                self.jobs[job["jobId"]] = job
            self.changed.notify_all()

    def wait(
        self,
        job_id: str,
        timeout: float = 120,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.1,
    ) -> dict[str, Any]:
        """The job once it ends (or ``timeout`` passes): by push while the socket is up, else by polling."""
        self.follow([job_id])
        deadline = time.monotonic() + timeout
        shown: dict[str, Any] | None = None
        while True:
            job = self.jobs[job_id]
            if on_update and job != shown:
                on_update(job)
                shown = job
            if job["state"] in TERMINAL or time.monotonic() > deadline:
                return job
            if self.up.is_set():
                with self.changed:
                    self.changed.wait(min(1.0, max(deadline - time.monotonic(), 0.01)))
            else:  # no socket: poll, as the client did before push
                self._store(self.client.job(job_id))
                time.sleep(interval)
                interval = min(interval * 1.5, 1.0)

    # ------------------------------------------------------------------ the socket
    def _run(self) -> None:
        attempt = 0
        token = str(self.client.session.headers.get("Authorization", "")).removeprefix("Bearer ")
        while not self._stop.is_set():
            try:
                self._socket = websocket.create_connection(f"{self.url}?token={token}", timeout=PING_SECONDS)
            except websocket.WebSocketBadStatusException as exc:
                self.refused = f"{exc.status_code}: {exc.resp_body!r}"
                if exc.status_code in (401, 403):
                    return  # the token will not do: poll for good
            except (OSError, websocket.WebSocketException):
                pass
            else:
                attempt = 0
                self._connected()
            self.up.clear()
            with self.changed:
                self.changed.notify_all()  # waiters fall back to polling at once
            self._stop.wait(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
            attempt += 1

    def _connected(self) -> None:
        assert self._socket is not None
        self.up.set()
        for job_id in list(self.followed):  # resume: what ended while the socket was down is read now
            if self.jobs.get(job_id, {}).get("state") not in TERMINAL:
                with contextlib.suppress(ApiError):
                    self._store(self.client.job(job_id))
        while not self._stop.is_set():
            try:
                raw = self._socket.recv()
            except websocket.WebSocketTimeoutException:
                self._socket.send(json.dumps({"action": "ping"}))
                continue
            except (OSError, websocket.WebSocketException):
                return
            if not raw:
                return
            try:
                frame = json.loads(raw)
            except ValueError:
                continue
            if isinstance(frame, dict) and frame.get("type") == "job" and isinstance(frame.get("job"), dict):
                self.frames += 1
                self._store(frame["job"])


def _newer_or_same(job: dict[str, Any], known: dict[str, Any]) -> bool:
    """Whether ``job`` is no older than ``known`` (see :meth:`JobFeed._store`): progress only grows between two
    changes of the job itself (a retry, which starts again from 0, is one)."""
    updated, was = str(job.get("updatedAt", "")), str(known.get("updatedAt", ""))
    return updated > was or (updated == was and int(job.get("progress") or 0) >= int(known.get("progress") or 0))

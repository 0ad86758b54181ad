"""The shared harness: clients, the uploader, what the watchers saw, the watchers, waiting for jobs.

Time-to-ready runs from just before ``POST /uploads`` to the first API answer that shows the job
``ready``. Watcher threads poll the API: every page of ``GET /jobs`` (100 a page) or, when few jobs are
open, ``GET /jobs/{id}`` of each open one, whichever costs the emulator less, pausing a multiple of the
last round's time so the watcher does not become the load it measures; or each open job's own GET at a
fixed pause, for the few photos whose seconds matter. The round period is reported as the polling
granularity, and the server-side time (the job's ``updatedAt`` when it became ready, same machine
clock) next to it: polling does not blur that one. Or, as the upload page and ``docpipe`` watch a
user's jobs, over the push channel (:func:`push_feed`): each job frame is an observation when it
arrives, and the stack does no work for a job that does not change.

A ``POST /uploads`` refused with 429 (a per-user quota) is asked again after its ``Retry-After``; the
retries are counted per upload, and the wait is part of that upload's time-to-ready.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from requests import Response

from docpipe_local.client import TERMINAL, DocpipeClient, post_file
from docpipe_local.live import JobFeed

from .corpus import Item
from .stats import pct, sec

# ---------------------------------------------------------------------------------------------- uploads


@dataclass
class Upload:
    item: Item
    job_id: str | None = None
    lane: str | None = None
    requested: float = 0.0  # just before POST /uploads
    created: float = 0.0  # POST /uploads answered with the job
    posted: float = 0.0  # the presigned POST to S3 answered
    error: str | None = None
    throttled: int = 0  # POST /uploads answered 429 this many times (each retried after Retry-After)


class Clients:
    """One DocpipeClient (one HTTP session) per thread. The client itself waits out a 429's
    ``Retry-After`` and asks again; each thread counts the 429 answers its session saw."""

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url, self.token = api_url, token
        self.local = threading.local()

    def get(self) -> DocpipeClient:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = DocpipeClient(self.api_url, self.token)
            client.session.hooks["response"].append(self.remember)
        return client

    def remember(self, response: Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code == 429:
            self.local.throttled = getattr(self.local, "throttled", 0) + 1

    def take_throttled(self) -> int:
        """The 429 answers this thread's session saw since the last call."""
        seen, self.local.throttled = getattr(self.local, "throttled", 0), 0
        return int(seen)


class Uploader:
    """Create the job, register its id with the watchers (``ids``), POST the file to the presigned URL.
    A 429 is waited out by the client (its ``Retry-After``), for up to ``patience`` seconds in all."""

    def __init__(self, clients: Clients, ids: list[str], patience: float = 1800) -> None:
        self.clients, self.ids, self.patience = clients, ids, patience

    def __call__(self, upload: Upload) -> Upload:
        item = upload.item
        upload.requested = time.time()
        try:
            created = self.create(upload)
            upload.created = time.time()
            upload.job_id, upload.lane = created["jobId"], created["lane"]
            self.ids.append(created["jobId"])
            post_file(created["upload"], item.path)
            upload.posted = time.time()
        except Exception as exc:  # counted and shown, never fatal to the run
            upload.error = f"{type(exc).__name__}: {exc}"[:300]
        return upload

    def create(self, upload: Upload) -> dict[str, Any]:
        client = self.clients.get()
        client.max_wait = self.patience
        self.clients.take_throttled()
        try:
            return client.create_upload(upload.item.path.name, upload.item.size, upload.item.content_type)
        finally:
            upload.throttled += self.clients.take_throttled()


def trickle(uploader: Uploader, uploads: list[Upload], every: float) -> float:
    """Upload one file every ``every`` seconds (each on its own thread, so a slow one delays no other)."""
    start = time.time()
    with ThreadPoolExecutor(8) as pool:
        futures = []
        for n, upload in enumerate(uploads):
            pause = start + n * every - time.time()
            if pause > 0:
                time.sleep(pause)
            futures.append(pool.submit(uploader, upload))
        for f in futures:
            f.result()
    return start


# ------------------------------------------------------------------------------------------- observers


def iso_epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Observations:
    """What the watchers saw: per job, when each state was first seen (client clock, when the response
    arrived) with the job's ``updatedAt`` then (server clock: the moment it entered that state)."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, tuple[float, float]]] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def record(self, job: dict[str, Any], at: float) -> None:
        with self.lock:
            self.latest[job["jobId"]] = job
            states = self.seen.setdefault(job["jobId"], {})
            if job["state"] not in states:
                states[job["state"]] = (at, iso_epoch(job["updatedAt"]))

    def terminal(self, job_id: str | None) -> tuple[str, float, float] | None:
        """``(state, observed, updatedAt)`` of the job's first terminal observation, or None."""
        with self.lock:
            states = self.seen.get(job_id or "", {})
            for state in TERMINAL:
                if state in states:
                    return (state, *states[state])
        return None

    def state(self, job_id: str | None) -> str:
        with self.lock:
            return str((self.latest.get(job_id or "") or {}).get("state", "unseen"))


# What one job costs the emulator per look, measured on this machine (moto 5, idle stack): listed in a
# page of GET /jobs about 3.5 ms of its CPU, one GET /jobs/{id} about 15 ms (two GetItems, whole items).
LIST_COST_MS, GET_COST_MS = 3.5, 15.0


def push_feed(client: DocpipeClient, observations: Observations) -> JobFeed:
    """The user's push channel (:class:`~docpipe_local.live.JobFeed`, what the page and ``docpipe`` use),
    every job frame recorded in ``observations`` as it arrives. Polling each open job instead costs the
    stack a ``GET /jobs/{id}`` (about 25 ms of its CPU on this machine) per job per round, a load that
    grows with the backlog it measures; a frame is sent only when a job changes."""

    class Recording(JobFeed):
        def _store(self, job: dict[str, Any]) -> None:
            observations.record(job, time.time())
            super()._store(job)

    feed = Recording.open(client)
    if not feed.up.is_set():
        feed.close()
        raise RuntimeError(f"the stack's push channel did not connect: {feed.refused or 'no push URL in /config'}")
    return feed


class Watcher(threading.Thread):
    """Follows the jobs in ``ids`` through the API until stopped. Each round either lists the owner's
    jobs (``GET /jobs``, 100 a page, every page) or GETs each open job (``GET /jobs/{id}`` on ``workers``
    threads), whichever costs the emulator less (``mode="auto"``), or always GETs (``mode="get"``). It
    then pauses ``pace`` times as long as the round took, between ``interval`` and 3 x ``interval`` s, so
    that on a loaded stack it backs off instead of adding to the load it measures."""

    def __init__(
        self,
        clients: Clients,
        observations: Observations,
        ids: list[str],
        interval: float,
        pace: float = 0.0,
        mode: str = "auto",
        workers: int = 4,
    ) -> None:
        super().__init__(name="watcher", daemon=True)
        self.clients, self.obs, self.ids = clients, observations, ids
        self.interval, self.pace, self.mode, self.workers = interval, pace, mode, workers
        self.rounds: list[tuple[float, float, str, int]] = []  # start, end, "list"|"get", requests
        self.errors: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with ThreadPoolExecutor(self.workers) as pool:
            while not self.stop_event.is_set():
                started = time.time()
                open_ids = [i for i in list(self.ids) if not self.obs.terminal(i)]
                pages = max(1, math.ceil(len(self.ids) / 100))
                try:
                    if not open_ids:
                        requests = 0
                        kind = "idle"
                    elif self.mode == "get" or len(open_ids) * GET_COST_MS < pages * 100 * LIST_COST_MS:
                        list(pool.map(self.get_one, open_ids))
                        kind, requests = "get", len(open_ids)
                    else:
                        kind, requests = "list", self.list_all()
                except Exception as exc:  # a failed round is retried; the errors are counted
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    self.stop_event.wait(1)
                    continue
                took = time.time() - started
                if kind != "idle":
                    self.rounds.append((started, started + took, kind, requests))
                self.stop_event.wait(min(max(self.interval, self.pace * took), 3 * self.interval))

    def get_one(self, job_id: str) -> None:
        job = self.clients.get().job(job_id)
        self.obs.record(job, time.time())

    def list_all(self) -> int:
        cursor, pages = None, 0
        while True:
            page = self.clients.get().jobs(limit=100, cursor=cursor)
            at = time.time()
            for job in page["jobs"]:
                self.obs.record(job, at)
            pages += 1
            cursor = page.get("nextCursor")
            if not cursor:
                return pages

    def describe(self) -> str:
        """Polling granularity: the period between rounds, and how the rounds went."""
        starts = [r[0] for r in self.rounds]
        gaps = [b - a for a, b in pairwise(starts)]
        lists = sum(1 for r in self.rounds if r[2] == "list")
        gets = sum(r[3] for r in self.rounds if r[2] == "get")
        return (
            f"round period p50 {sec(pct(gaps, 0.5))} s, p95 {sec(pct(gaps, 0.95))} s; {len(self.rounds)} rounds: "
            f"{lists} listings of every page, {gets} job GETs; {len(self.errors)} errors"
        )

    def period(self) -> tuple[float, float]:
        starts = [r[0] for r in self.rounds]
        gaps = [b - a for a, b in pairwise(starts)]
        return pct(gaps, 0.5), pct(gaps, 0.95)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=60)


# -------------------------------------------------------------------------------------------- phases


@dataclass
class Phase:
    """One phase's uploads and what the watchers saw of them."""

    uploads: list[Upload]
    obs: Observations
    watcher: Watcher  # the one whose granularity is reported for this phase
    started: float  # the first upload request
    finished: float  # the last terminal observation, or the deadline
    counts: dict[str, int] = field(default_factory=dict)

    def ready_times(self, select: Callable[[Upload], bool] = lambda u: True) -> tuple[list[float], list[float]]:
        """Observed and server-side time-to-ready (from the upload request) of the selected ready jobs."""
        observed, server = [], []
        for u in self.uploads:
            end = self.obs.terminal(u.job_id) if u.job_id and select(u) else None
            if end and end[0] == "ready":
                observed.append(end[1] - u.requested)
                server.append(end[2] - u.requested)
        return observed, server


def count(uploads: list[Upload], obs: Observations) -> dict[str, int]:
    counts = dict.fromkeys(("submitted", "ready", "failed", "cancelled", "lost", "upload errors"), 0)
    for u in uploads:
        counts["submitted"] += 1
        if u.error:
            counts["upload errors"] += 1
            continue  # never became a job with an upload: not lost, refused
        end = obs.terminal(u.job_id)
        counts[end[0] if end else "lost"] += 1
    return counts


def follow_lists(clients: dict[str, Clients], obs: Observations, stop: threading.Event, every: float) -> None:
    """Each user lists their jobs (``GET /jobs``, all pages) every ``every`` s until ``stop`` is set, as a
    client waiting would: a few requests a round whatever the number of open jobs."""
    while not stop.wait(every):
        for user_clients in clients.values():
            cursor = None
            try:
                while True:
                    page = user_clients.get().jobs(limit=100, cursor=cursor)
                    at = time.time()
                    for job in page["jobs"]:
                        obs.record(job, at)
                    cursor = page.get("nextCursor")
                    if not cursor:
                        break
            except Exception as exc:  # a missed round is only a later observation
                logging.getLogger("bench").warning("listing jobs failed: %s", exc)


def wait_ingested(client: DocpipeClient, job_ids: list[str], deadline: float) -> None:
    """Wait until every job has left ``uploading``: stored, with its tasks queued on their lanes."""
    waiting = list(job_ids)
    while waiting and time.time() < deadline:
        waiting = [j for j in waiting if client.job(j)["state"] == "uploading"]
        if waiting:
            time.sleep(1.0)


def wait_terminal(uploads: list[Upload], obs: Observations, deadline: float, label: str) -> float:
    """Wait until every job is terminal (or the deadline); returns the last terminal observation."""
    last_report = time.time()
    while True:
        ends = [obs.terminal(u.job_id) for u in uploads]
        waiting = [u for u, e in zip(uploads, ends, strict=True) if e is None and u.job_id]
        if not waiting or time.time() > deadline:
            done = [e[1] for e in ends if e]
            return max(done) if done and not waiting else time.time()
        if time.time() - last_report > 60:
            last_report = time.time()
            by_state: dict[str, int] = {}
            for u in waiting:
                state = obs.state(u.job_id)
                by_state[state] = by_state.get(state, 0) + 1
            print(f"  [{label}] {len(uploads) - len(waiting)}/{len(uploads)} terminal; open: {by_state}", flush=True)
        time.sleep(0.2)


def by_lane(lane: str) -> Callable[[Upload], bool]:
    return lambda u: u.lane == lane


def by_kind(kind: str) -> Callable[[Upload], bool]:
    return lambda u: u.item.kind == kind


def throttled(uploads: list[Upload]) -> int:
    """429 answers to these uploads' ``POST /uploads``, each waited out and retried."""
    return sum(u.throttled for u in uploads)

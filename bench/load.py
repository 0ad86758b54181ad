"""Load: a burst of mixed uploads, then chat-photo latency while big files fill the low lanes, in one run.

    python bench/load.py [--uploads 500] [--scans N] [--docx N] [--mid N] [--threads 16]
                         [--large 40] [--small 50] [--small-every 1.0] [--baseline 10] [--timeout 1800] [--keep]
    python bench/load.py --uploads 60 --large 8 --small 10     # a quick check, a few minutes

The script starts its own embedded LocalStack (state in a temporary folder; ``--keep`` keeps it, with
the function logs under ``logs/``), and makes every file before the stack starts, each with distinct
bytes, so no upload is a dedupe shortcut (checked: the hashes are counted).

1. **Burst**: ``--uploads`` files in a shuffled mix, posted through presigned POSTs over real HTTP by
   ``--threads`` client threads as fast as they go: JPEG photos of 0.1-0.5 MB (the rest of the mix;
   high lane), ``--mid`` JPEGs of about 3 MB (normal lane; default 5 %), ``--docx`` DOCX files (high;
   10 %) and ``--scans`` scanned PDFs of about 20 MB (5 %): 2 pages at 420 dpi or 3 at 350 dpi, grey
   with scanner noise, so the low lane extracts them, finds no text layer and OCRs every page at 300 dpi
   (Tesseract, about 1.6 s a page on one core, one page chunk at a time on the OCR low lane). Every job
   is followed until ready, failed or cancelled; lost = not terminal by ``--timeout``. Prints throughput
   (files/min from the first upload request to the last terminal observation) and p50/p95 time-to-ready
   by lane and by kind.
2. **Priority**: on the drained stack (checked: every queue empty), ``--baseline`` small photos alone,
   as a reference; then ``--large`` low-lane files (half ~20 MB scans, half ~13 MB JPEGs), and right
   after them ``--small`` photos under 1 MB (high lane), one every ``--small-every`` seconds. Prints their
   time-to-ready p50/p95/max (target: p95 < 3 s) next to the baseline's, how many large files were done
   when the last small one was ready (by the server's clock), and where the small ones' time went:
   upload, ingest wait and ingest, presets wait and presets, settle and polling, alone and loaded.

Time-to-ready runs from just before ``POST /uploads`` to the first API answer that shows the job
``ready``. Watcher threads poll the API: in the burst, every page of ``GET /jobs`` (100 a page) or, when
few jobs are open, ``GET /jobs/{id}`` of each open one, whichever costs the emulator less (a listed job
costs moto ~3.5 ms of CPU, a job GET ~15 ms), pausing 9x as long as the last round took (5-15 s) so the
watcher does not become the load it measures; in the priority test each open small photo is fetched
every ``--small-poll`` s. The round period is printed as the polling granularity, and the server-side
time (the job's ``updatedAt`` when it became ready, same machine clock) next to it: polling does not
blur that one.

To say where time goes, the harness also times every invocation the local stack makes (wrapping each
runtime's ``invoke_acquired`` in this process; product code untouched): per function and queue, the
wait from a message being sent (``SentTimestamp``) to its invocation, and the invocation's run time.
A sampler records queue depths, the emulator's round-trip time and CPU by process (this process, the
emulator, each function's workers, and everything else on the machine, which other work can skew).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "local"), str(ROOT)]

from PIL import Image, ImageChops, ImageDraw  # noqa: E402

from docpipe_local.client import TERMINAL, DocpipeClient, post_file  # noqa: E402
from docpipe_local.stack import LocalStack  # noqa: E402
from tests.fixtures import documents  # noqa: E402
from tests.fixtures.files import docx_bytes  # noqa: E402

# ---------------------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Kind:
    name: str
    ext: str
    content_type: str
    about: str


KINDS = {
    "photo": Kind("photo", ".jpg", "image/jpeg", "JPEG photo 0.1-0.5 MB"),
    "photo-3mb": Kind("photo-3mb", ".jpg", "image/jpeg", "JPEG photo ~3 MB (3000x2000)"),
    "docx": Kind(
        "docx",
        ".docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "DOCX, a few paragraphs",
    ),
    "scan": Kind("scan", ".pdf", "application/pdf", "scanned PDF ~20 MB, 2-3 noisy pages, no text layer"),
    "photo-13mb": Kind("photo-13mb", ".jpg", "image/jpeg", "JPEG photo ~13 MB (5000x3500)"),
}

WORDS = ["invoice", "payment", "quarter", "design", "pipeline", "document", "thirty", "billing", "support", "service"]


@dataclass(frozen=True)
class Item:
    path: Path
    kind: str
    size: int
    sha256: str
    pages: int = 0

    @property
    def content_type(self) -> str:
        return KINDS[self.kind].content_type


def photo(size: tuple[int, int], seed: int, noise: float) -> Image.Image:
    """Photo-like content that JPEG cannot squeeze to nothing: gradients with grain, shapes, a label."""
    rng = random.Random(seed)
    ramp = Image.linear_gradient("L").rotate(rng.randrange(360)).resize(size)
    grain = Image.effect_noise(size, noise)
    image = Image.merge(
        "RGB",
        (
            ImageChops.add(ramp, grain, scale=1.6, offset=-40),
            ImageChops.add(ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT), grain, scale=1.6, offset=-40),
            Image.effect_noise(size, noise),
        ),
    )
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(12):
        x, y = rng.randrange(w), rng.randrange(h)
        draw.ellipse((x, y, x + w // 6, y + h // 5), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw.text((10, 10), f"docpipe load {seed}", fill=(0, 0, 0))
    return image


def jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def scan_lines(seed: int, page: int) -> list[str]:
    return [
        f"{seed}.{page}.{n} " + " ".join(WORDS[(seed + page * 7 + n * 3 + i) % len(WORDS)] for i in range(8))
        for n in range(30)
    ]


def scanned_pdf(seed: int) -> tuple[bytes, int]:
    """About 20 MB: 2 letter pages at 420 dpi or 3 at 350 dpi, grey, with scanner noise, as JPEG images."""
    pages, dpi, noise = (2, 420, 48) if seed % 2 == 0 else (3, 350, 40)
    lines = [scan_lines(seed, page) for page in range(pages)]
    return documents.pdf(lines, frozenset(range(1, pages + 1)), dpi=dpi, noise=noise, quality=92), pages


def make_file(kind: str, seed: int, folder: str) -> Item:
    """One file of ``kind``, distinct by ``seed`` (runs in a pool process)."""
    rng = random.Random(seed)
    pages = 0
    if kind == "photo":
        width = rng.randint(760, 1400)
        data = jpeg(photo((width, width * 3 // 4), seed, 20), 85)
    elif kind == "photo-3mb":
        data = jpeg(photo((3000, 2000), seed, 64), 90)
    elif kind == "photo-13mb":
        data = jpeg(photo((5000, 3500), seed, 64), 95)
    elif kind == "docx":
        text = " ".join(
            f"Paragraph {seed}.{n}: " + " ".join(rng.choice(WORDS) for _ in range(40)) + "." for n in range(6)
        )
        data = docx_bytes(text)
    elif kind == "scan":
        data, pages = scanned_pdf(seed)
    else:
        raise ValueError(kind)
    path = Path(folder) / f"{kind}-{seed:05d}{KINDS[kind].ext}"
    path.write_bytes(data)
    return Item(path, kind, len(data), hashlib.sha256(data).hexdigest(), pages)


def make_corpus(specs: list[tuple[str, int]], folder: Path) -> list[Item]:
    workers = len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(make_file, *zip(*specs, strict=True), [str(folder)] * len(specs), chunksize=4))


def describe(items: list[Item]) -> str:
    parts = []
    for kind in KINDS:
        sizes = [i.size for i in items if i.kind == kind]
        if sizes:
            pages = [i.pages for i in items if i.kind == kind and i.pages]
            extra = f", {min(pages)}-{max(pages)} pages ({sum(pages)} in all)" if pages else ""
            if max(sizes) < 1e5:
                span = f"{min(sizes) / 1e3:.1f}-{max(sizes) / 1e3:.1f} KB"
            else:
                span = f"{min(sizes) / 1e6:.2f}-{max(sizes) / 1e6:.2f} MB"
            parts.append(f"{len(sizes)} {kind} ({span}{extra})")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------- uploads


@dataclass
class Upload:
    item: Item
    job_id: str | None = None
    lane: str | None = None
    requested: float = 0.0  # just before POST /uploads
    posted: float = 0.0  # the presigned POST to S3 answered
    error: str | None = None


class Clients:
    """One DocpipeClient (one HTTP session) per thread."""

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url, self.token = api_url, token
        self.local = threading.local()

    def get(self) -> DocpipeClient:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = DocpipeClient(self.api_url, self.token)
        return client


class Uploader:
    """Create the job, register its id with the watchers (``ids``), POST the file to the presigned URL."""

    def __init__(self, clients: Clients, ids: list[str]) -> None:
        self.clients, self.ids = clients, ids

    def __call__(self, upload: Upload) -> Upload:
        item = upload.item
        upload.requested = time.time()
        try:
            created = self.clients.get().create_upload(item.path.name, item.size, item.content_type)
            upload.job_id, upload.lane = created["jobId"], created["lane"]
            self.ids.append(created["jobId"])
            post_file(created["upload"], item.path)
            upload.posted = time.time()
        except Exception as exc:  # counted and shown, never fatal to the run
            upload.error = f"{type(exc).__name__}: {exc}"[:300]
        return upload


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


@dataclass
class Sample:
    at: float
    busy: float  # the machine's CPU busy fraction since the last sample
    depths: dict[str, int]  # visible + in flight, per queue
    rtt_ms: float  # median round trip of this sample's GetQueueAttributes calls to the emulator
    cpu: dict[str, float]  # CPU seconds so far, per process group (see cpu_by_group)


class Sampler(threading.Thread):
    """Every ``every`` seconds: queue depths, the emulator's round-trip time, CPU busy and CPU by process."""

    def __init__(self, stack: LocalStack, every: float = 2.0) -> None:
        super().__init__(name="sampler", daemon=True)
        assert stack.template is not None
        self.sqs = stack.client("sqs")
        queues = stack.template.of_type("AWS::SQS::Queue")
        self.urls = {n: stack.template.attributes[n]["QueueUrl"] for n in queues if not n.endswith("DLQ")}
        self.dlqs = {n: stack.template.attributes[n]["QueueUrl"] for n in queues if n.endswith("DLQ")}
        self.state_dir = stack.state_dir
        self.moto_pid = stack.moto.process.pid if stack.moto else None
        self.every = every
        self.samples: list[Sample] = []
        self.stop_event = threading.Event()

    def depths(self, urls: dict[str, str], rtts: list[float] | None = None) -> dict[str, int]:
        out = {}
        for name, url in urls.items():
            started = time.perf_counter()
            a = self.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            if rtts is not None:
                rtts.append((time.perf_counter() - started) * 1000)
            out[name] = int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])
        return out

    def take(self, before: tuple[float, float]) -> tuple[float, float]:
        now = cpu_times()
        busy = (now[0] - before[0]) / max(1e-9, now[1] - before[1])
        rtts: list[float] = []
        depths = self.depths(self.urls, rtts)
        cpu = cpu_by_group(self.state_dir, self.moto_pid)
        self.samples.append(Sample(time.time(), busy, depths, pct(rtts, 0.5), cpu))
        return now

    def run(self) -> None:
        before = cpu_times()
        while not self.stop_event.wait(self.every):
            try:
                before = self.take(before)
            except Exception:  # a missed sample is only a gap in the picture
                continue

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]

    def nearest(self, at: float) -> Sample | None:
        return min(self.samples, key=lambda s: abs(s.at - at)) if self.samples else None

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Average cores used per process group between two times (from the nearest samples)."""
        first, last = self.nearest(start), self.nearest(end)
        if not first or not last or last.at - first.at < 1:
            return {}
        span = last.at - first.at
        return {g: max(0.0, v - first.cpu.get(g, 0.0)) / span for g, v in last.cpu.items()}

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [float(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def log_times(path: Path, message: str, key: str) -> dict[str, float]:
    """``{value of key: epoch}`` of the first ``message`` line per key in a function's JSON log."""
    out: dict[str, float] = {}
    if not path.exists():
        return out
    with path.open(errors="replace") as fh:
        for line in fh:
            if message not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == message and record.get(key) and record[key] not in out:
                out[record[key]] = datetime.strptime(record["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
    return out


@dataclass
class Call:
    """One invocation of a function by the local stack: for SQS sources, the queue, when each message was
    sent (``SentTimestamp``), and what it was about (the job id of an upload, the hash of a task)."""

    function: str
    queue: str
    start: float
    end: float
    ok: bool
    sent: list[float]
    receives: list[int]
    keys: list[str]


class Recorder:
    """Times every invocation the stack makes, by wrapping each runtime's ``invoke_acquired`` in this
    process (instrumentation of the harness only: the product code is untouched)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()

    def attach(self, stack: LocalStack) -> None:
        for name, runtime in stack.runtimes.items():
            runtime.invoke_acquired = self.timed(name, runtime.invoke_acquired)  # type: ignore[method-assign]

    def timed(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        """``original`` with its calls recorded; any further arguments the runtime takes pass through."""

        def call(event: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            start = time.time()
            invocation = original(event, *args, **kwargs)
            self.record(name, event, start, time.time(), invocation.ok)
            return invocation

        return call

    def record(self, function: str, event: dict[str, Any], start: float, end: float, ok: bool) -> None:
        records = event.get("Records") if isinstance(event, dict) else None
        if not records or not isinstance(records, list) or "eventSourceARN" not in records[0]:
            call = Call(function, "direct", start, end, ok, [], [], [])
        else:
            keys = []
            for record in records:
                try:
                    body = json.loads(record["body"])
                except ValueError:
                    continue
                if isinstance(body, dict) and "Records" in body:  # an S3 notification: uploads/{owner}/{jobId}/...
                    for s3 in body["Records"]:
                        parts = unquote_plus(s3.get("s3", {}).get("object", {}).get("key", "")).split("/")
                        keys.append(parts[2] if len(parts) > 3 else "")
                elif isinstance(body, dict):
                    keys.append(str(body.get("hash", "")))
            queue = records[0]["eventSourceARN"].rsplit(":", 1)[-1].removeprefix("docpipe-local-")
            call = Call(
                function,
                queue,
                start,
                end,
                ok,
                [int(r["attributes"].get("SentTimestamp", 0)) / 1000 for r in records],
                [int(r["attributes"].get("ApproximateReceiveCount", 1)) for r in records],
                keys,
            )
        with self.lock:
            self.calls.append(call)

    def between(self, start: float, end: float) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if start <= c.start <= end]

    def first_for(self, key: str, function: str) -> Call | None:
        with self.lock:
            return next((c for c in self.calls if c.function == function and key in c.keys), None)


def cpu_by_group(state_dir: Path, moto_pid: int | None) -> dict[str, float]:
    """CPU seconds used so far by this process (the bench and the stack's gateway and pollers), the
    emulator, and each function's workers (found by the log file their stdout goes to)."""
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    logs = str(state_dir / "logs")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / hz
            if int(pid) == os.getpid():
                group = "bench + stack"
            elif int(pid) == moto_pid:
                group = "emulator"
            else:
                target = os.readlink(f"/proc/{pid}/fd/1")
                if not target.startswith(logs) or not target.endswith("Function.log"):
                    continue
                group = Path(target).stem
        except (OSError, IndexError, ValueError):
            continue
        out[group] = out.get(group, 0.0) + seconds
    return out


# ------------------------------------------------------------------------------------------- numbers


def pct(values: Iterable[float], q: float) -> float:
    s = sorted(v for v in values if v is not None and not math.isnan(v))
    if not s:
        return math.nan
    k = (len(s) - 1) * q
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def sec(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """Plain text, aligned: the first ``left`` columns to the left, the rest to the right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


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


def burst(stack: LocalStack, token: str, items: list[Item], args: argparse.Namespace) -> Phase:
    clients, obs, ids = Clients(stack.api_url, token), Observations(), list[str]()
    watcher = Watcher(clients, obs, ids, args.poll, pace=9.0)
    watcher.start()
    uploads = [Upload(i) for i in items]
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(Uploader(clients, ids), uploads))
    first = min(u.requested for u in uploads)
    posted = max((u.posted for u in uploads), default=time.time())
    megabytes = sum(u.item.size for u in uploads) / 1e6
    print(
        f"  posted {len(uploads)} files, {megabytes:.0f} MB, in {posted - first:.1f} s "
        f"({megabytes / max(1e-9, posted - first):.1f} MB/s); waiting for the jobs",
        flush=True,
    )
    finished = wait_terminal(uploads, obs, time.time() + args.timeout, "burst")
    watcher.stop()
    return Phase(uploads, obs, watcher, first, finished, count(uploads, obs))


def drain(sampler: Sampler, timeout: float = 120) -> dict[str, int]:
    """Wait until every queue is empty (or the timeout); returns the last depths."""
    deadline = time.time() + timeout
    while True:
        depths = sampler.depths(sampler.urls)
        if not any(depths.values()) or time.time() > deadline:
            return depths
        time.sleep(1)


@dataclass
class Priority:
    alone: Phase | None  # the baseline: small photos on the drained stack before any large file
    large: Phase
    small: Phase
    small_start: float
    last_small_ready: float  # observed
    large_done_at_start: int
    large_done_at_last: int  # by the server's clocks: terminal before the last small photo was ready
    low_queued_at_last: dict[str, int]


WARM_UP = 6  # photos uploaded at once before the priority test's baseline, not measured


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


def priority(
    stack: LocalStack,
    token: str,
    large: list[Item],
    small: list[Item],
    baseline: list[Item],
    warm: list[Item],
    args: argparse.Namespace,
    sampler: Sampler,
) -> Priority:
    clients, obs = Clients(stack.api_url, token), Observations()
    large_ids: list[str] = []
    small_ids: list[str] = []
    slow = Watcher(clients, obs, large_ids, 2.0, pace=9.0)  # the large files: minutes, seconds suffice
    fast = Watcher(clients, obs, small_ids, args.small_poll, mode="get")  # each small photo's own GET
    slow.start()
    fast.start()
    if warm:  # start the workers a few concurrent photos need, so the baseline has no cold starts
        warming = [Upload(i) for i in warm]
        with ThreadPoolExecutor(len(warming)) as pool:
            list(pool.map(Uploader(clients, small_ids), warming))
        wait_terminal(warming, obs, time.time() + args.timeout, "priority, warm-up")
    alone = None
    if baseline:
        solo = [Upload(i) for i in baseline]
        solo_start = trickle(Uploader(clients, small_ids), solo, args.small_every)
        solo_end = wait_terminal(solo, obs, time.time() + args.timeout, "priority, alone")
        alone = Phase(solo, obs, fast, solo_start, solo_end, count(solo, obs))
        print(f"  baseline: {len(solo)} small photos alone, one every {args.small_every} s, all terminal", flush=True)
    big = [Upload(i) for i in large]
    with ThreadPoolExecutor(min(args.threads, 8)) as pool:
        list(pool.map(Uploader(clients, large_ids), big))
    large_start = min(u.requested for u in big)
    posted = max(u.posted for u in big) - large_start
    if args.start_small == "queued":  # the scenario: the large files wait in their lanes first
        wait_ingested(clients.get(), [u.job_id for u in big if u.job_id], time.time() + args.timeout)
    print(
        f"  {len(big)} large files posted in {posted:.1f} s"
        + (f", all ingested and queued after {time.time() - large_start:.1f} s" if args.start_small == "queued" else "")
        + f"; now {len(small)} small photos, one every {args.small_every} s",
        flush=True,
    )
    chats = [Upload(i) for i in small]
    large_done_at_start = sum(1 for u in big if obs.terminal(u.job_id))
    small_start = trickle(Uploader(clients, small_ids), chats, args.small_every)
    deadline = time.time() + args.timeout
    small_finished = wait_terminal(chats, obs, deadline, "priority, small")
    fast.stop()
    ends = [e for e in (obs.terminal(u.job_id) for u in chats) if e]
    last_small_ready = max((e[1] for e in ends), default=small_finished)
    then = sampler.nearest(last_small_ready)
    low_queued = {k: v for k, v in (then.depths if then else {}).items() if "Low" in k}
    large_finished = wait_terminal(big, obs, deadline, "priority, large")
    slow.stop()
    last_server = max((e[2] for e in ends), default=math.inf)
    large_done_at_last = sum(1 for e in (obs.terminal(u.job_id) for u in big) if e and e[2] <= last_server)
    return Priority(
        alone,
        Phase(big, obs, slow, large_start, large_finished, count(big, obs)),
        Phase(chats, obs, fast, small_start, small_finished, count(chats, obs)),
        small_start,
        last_small_ready,
        large_done_at_start,
        large_done_at_last,
        low_queued,
    )


# --------------------------------------------------------------------------------------------- report


def stage_table(calls: list[Call]) -> str:
    """Per function and source queue: invocations, messages, queue wait per message, run time per invocation."""
    groups: dict[tuple[str, str], list[Call]] = {}
    for call in calls:
        if call.queue != "direct":
            groups.setdefault((call.function.removesuffix("Function"), call.queue), []).append(call)
    rows = []
    for (function, queue), group in sorted(groups.items()):
        waits = [c.start - sent for c in group for sent in c.sent if sent]
        runs = [c.end - c.start for c in group]
        rows.append(
            [
                function,
                queue,
                str(len(group)),
                str(sum(len(c.sent) for c in group)),
                sec(pct(waits, 0.5)),
                sec(pct(waits, 0.95)),
                sec(pct(runs, 0.5)),
                sec(pct(runs, 0.95)),
                sec(max(runs)),
                str(sum(1 for c in group if not c.ok)),
                str(sum(1 for c in group for r in c.receives if r > 1)),
            ]
        )
    header = ["function", "queue", "calls", "msgs", "wait p50", "p95", "run p50", "p95", "max", "failed", "redeliv."]
    return table(header, rows, left=2)


def machine_line(sampler: Sampler, start: float, end: float) -> str:
    cores = sampler.cores(start, end)
    window = sampler.between(start, end)
    cpus = os.cpu_count() or 1
    busy = sum(s.busy for s in window) / len(window) if window else math.nan
    cores["other processes on the machine"] = max(0.0, busy * cpus - sum(cores.values()))
    rtt50, rtt95 = pct([s.rtt_ms for s in window], 0.5), pct([s.rtt_ms for s in window], 0.95)
    spent = ", ".join(f"{g.removesuffix('Function')} {v:.2f}" for g, v in sorted(cores.items(), key=lambda x: -x[1]))
    return (
        f"CPU busy {busy * 100:.0f} % of {cpus} cores on average; cores used by: {spent}\n"
        f"  emulator round trip (GetQueueAttributes, sampled every {sampler.every:.0f} s): "
        f"p50 {rtt50:.0f} ms, p95 {rtt95:.0f} ms"
    )


def by_lane(lane: str) -> Callable[[Upload], bool]:
    return lambda u: u.lane == lane


def by_kind(kind: str) -> Callable[[Upload], bool]:
    return lambda u: u.item.kind == kind


def report_burst(out: Phase, recorder: Recorder, sampler: Sampler, rows: list[list[str]], summary: list[str]) -> None:
    c = out.counts
    minutes = (out.finished - out.started) / 60
    rate = c["submitted"] / minutes if minutes > 0 else math.nan
    period50, period95 = out.watcher.period()
    print(
        f"  submitted {c['submitted']}, ready {c['ready']}, failed {c['failed']}, cancelled {c['cancelled']}, "
        f"lost {c['lost']}, refused at upload {c['upload errors']}"
    )
    print(f"  first upload request to last terminal: {minutes * 60:.1f} s = {rate:.0f} files/min")
    print(f"  polling (each pause 9x the last round, 5-15 s): {out.watcher.describe()}")
    for u in out.uploads:
        if u.error:
            print(f"  upload error: {u.item.kind}: {u.error}")
    for u in out.uploads:
        if (out.obs.terminal(u.job_id) or ("",))[0] == "failed":
            error = (out.obs.latest.get(u.job_id or "") or {}).get("error")
            print(f"  failed: {u.item.kind} {u.item.size / 1e6:.1f} MB: {error}")
    groups = [(f"lane {lane}", by_lane(lane)) for lane in ("high", "normal", "low")]
    groups += [(f"kind {kind}", by_kind(kind)) for kind in KINDS]
    lines = []
    for label, select in groups:
        observed, server = out.ready_times(select)
        if observed:
            lines.append(
                [
                    label,
                    str(len(observed)),
                    sec(pct(observed, 0.5)),
                    sec(pct(observed, 0.95)),
                    sec(max(observed)),
                    sec(pct(server, 0.5)),
                    sec(pct(server, 0.95)),
                ]
            )
    print(table(["time-to-ready, s", "n", "p50", "p95", "max", "server p50", "server p95"], lines))
    print("stages (wait: from the message being sent to its invocation starting; run: per invocation), s:")
    print(stage_table(recorder.between(out.started, out.finished)))
    print(machine_line(sampler, out.started, out.finished))
    rows.append(
        [
            "burst",
            "submitted/ready/failed/cancelled/lost/refused",
            "/".join(str(c[k]) for k in ("submitted", "ready", "failed", "cancelled", "lost", "upload errors")),
            "lost 0",
        ]
    )
    rows.append(["burst", "throughput, files/min", f"{rate:.0f}", ""])
    for label, select in groups[:3]:
        observed, _ = out.ready_times(select)
        if observed:
            p50, p95 = sec(pct(observed, 0.5)), sec(pct(observed, 0.95))
            rows.append(["burst", f"{label} time-to-ready p50 / p95, s", f"{p50} / {p95}", ""])
    rows.append(["burst", "polling round period p50 / p95, s", f"{sec(period50)} / {sec(period95)}", ""])
    high, _ = out.ready_times(lambda u: u.lane == "high")
    summary.append(
        f"burst {c['submitted']} uploads: {c['ready']} ready, {c['failed']} failed, {c['lost']} lost, "
        f"{rate:.0f} files/min, high lane p50 {sec(pct(high, 0.5))} s p95 {sec(pct(high, 0.95))} s"
    )


SEGMENTS = ["upload", "ingest wait", "ingest", "presets wait", "presets", "settle + poll", "total"]


def breakdown(phase: Phase, recorder: Recorder, logs: Path) -> list[dict[str, float]]:
    """Where each small photo's time went, from the client's clocks, the recorded invocations and the ingest log."""
    ingested = log_times(logs / "IngestFunction.log", "upload ingested", "job_id")
    out = []
    for u in phase.uploads:
        end = phase.obs.terminal(u.job_id)
        if not end or end[0] != "ready" or not u.job_id:
            continue
        digest = str((phase.obs.latest.get(u.job_id) or {}).get("hash", ""))
        ingest = recorder.first_for(u.job_id, "IngestFunction")
        presets = recorder.first_for(digest, "PresetsFunction")
        nan = math.nan
        done = ingested.get(u.job_id, ingest.end if ingest else nan)
        sent = presets.sent[presets.keys.index(digest)] if presets else nan
        out.append(
            {
                "requested": u.requested - phase.started,
                "upload": u.posted - u.requested,
                "ingest wait": (ingest.start if ingest else nan) - u.posted,
                "ingest": done - (ingest.start if ingest else nan),
                "batch": float(len(ingest.keys)) if ingest else nan,
                "presets wait": (presets.start if presets else nan) - sent,
                "presets": (presets.end - presets.start) if presets else nan,
                "settle + poll": end[1] - (presets.end if presets else nan),
                "total": end[1] - u.requested,
            }
        )
    return out


def report_priority(
    p: Priority, recorder: Recorder, sampler: Sampler, logs: Path, rows: list[list[str]], summary: list[str]
) -> None:
    small, large = p.small, p.large
    observed, server = small.ready_times()
    p50, p95, worst = pct(observed, 0.5), pct(observed, 0.95), max(observed, default=math.nan)
    ok = p95 < 3
    c, cl = small.counts, large.counts
    n_large = len(large.uploads)
    print(
        f"  small: submitted {c['submitted']}, ready {c['ready']}, failed {c['failed']}, lost {c['lost']}, "
        f"refused at upload {c['upload errors']}; large: submitted {cl['submitted']}, ready {cl['ready']}, "
        f"failed {cl['failed']}, lost {cl['lost']}, refused at upload {cl['upload errors']}"
    )
    print(
        f"  small time-to-ready: p50 {sec(p50)} s, p95 {sec(p95)} s, max {sec(worst)} s "
        f"(server-side p50 {sec(pct(server, 0.5))}, p95 {sec(pct(server, 0.95))}); target p95 < 3 s: "
        f"{'ok' if ok else 'MISSED'}"
    )
    alone, alone_server = p.alone.ready_times() if p.alone else ([], [])
    if p.alone:
        print(
            f"  the same photos alone on the drained stack ({len(alone)} ready): p50 {sec(pct(alone, 0.5))} s, "
            f"p95 {sec(pct(alone, 0.95))} s (server-side p50 {sec(pct(alone_server, 0.5))}, "
            f"p95 {sec(pct(alone_server, 0.95))}); loaded / alone p95: {p95 / pct(alone, 0.95):.1f}x"
        )
    print(f"  polling the small photos: GET /jobs/{{id}} of each open one, {small.watcher.describe()}")
    print(f"  polling the large files (each pause 9x the last round, 2-6 s): {large.watcher.describe()}")
    print(
        f"  large files done when the first small photo was requested: {p.large_done_at_start}/{n_large}; "
        f"when the last was ready ({p.last_small_ready - p.small_start:.1f} s later): "
        f"{p.large_done_at_last}/{n_large}; low-lane messages then: {p.low_queued_at_last}"
    )
    print(f"  all large files terminal {large.finished - large.started:.0f} s after the first large request")
    for phase in (small, large):
        for u in phase.uploads:
            if u.error:
                print(f"  refused at upload: {u.item.kind}: {u.error}")
            elif (phase.obs.terminal(u.job_id) or ("",))[0] == "failed":
                print(f"  failed: {u.item.kind}: {(phase.obs.latest.get(u.job_id or '') or {}).get('error')}")
    parts = breakdown(small, recorder, logs)
    solo = breakdown(p.alone, recorder, logs) if p.alone else []
    lines = []
    for s in [*SEGMENTS[:3], "batch", *SEGMENTS[3:]]:
        values = [b[s] for b in parts if not math.isnan(b[s])]
        base = [b[s] for b in solo if not math.isnan(b[s])]
        stats = [pct(base, 0.5), pct(base, 0.95), pct(values, 0.5), pct(values, 0.95), max(values, default=math.nan)]
        lines.append([s, *(sec(v) for v in stats)])
    print(
        "where the small photos' time went, s, alone (baseline) and behind the large files (ingest wait: S3 event\n"
        "+ ingest queue; ingest: its invocation until 'upload ingested'; batch: messages in that invocation;\n"
        "presets wait: message sent to invocation start; settle + poll: invocation end to observed ready):"
    )
    print(table(["segment", "alone p50", "p95", "loaded p50", "p95", "max"], lines))
    slow = sorted(parts, key=lambda b: b["total"], reverse=True)[:5]
    if slow:
        print("slowest small photos, s:")
        print(
            table(["requested", *SEGMENTS], [[f"+{b['requested']:.1f}", *(sec(b[s]) for s in SEGMENTS)] for b in slow])
        )
    print("stages while the small photos ran, s:")
    print(stage_table(recorder.between(p.small_start, p.last_small_ready)))
    print(machine_line(sampler, p.small_start, p.last_small_ready))
    rows.append(
        [
            "priority",
            "small submitted/ready/failed/lost/refused",
            "/".join(str(c[k]) for k in ("submitted", "ready", "failed", "lost", "upload errors")),
            "lost 0",
        ]
    )
    rows.append(
        [
            "priority",
            "small time-to-ready p50 / p95 / max, s",
            f"{sec(p50)} / {sec(p95)} / {sec(worst)}",
            f"p95 < 3: {'ok' if ok else 'missed'}",
        ]
    )
    rows.append(
        ["priority", "small server-side p50 / p95, s", f"{sec(pct(server, 0.5))} / {sec(pct(server, 0.95))}", ""]
    )
    if p.alone:
        rows.append(
            [
                "priority",
                "small alone (baseline) p50 / p95, s",
                f"{sec(pct(alone, 0.5))} / {sec(pct(alone, 0.95))}",
                f"loaded/alone p95 {p95 / pct(alone, 0.95):.1f}x",
            ]
        )
    rows.append(["priority", "large done at last small ready", f"{p.large_done_at_last}/{n_large}", f"< {n_large}"])
    rows.append(
        [
            "priority",
            "large submitted/ready/failed/lost/refused",
            "/".join(str(cl[k]) for k in ("submitted", "ready", "failed", "lost", "upload errors")),
            "lost 0",
        ]
    )
    summary.append(
        f"priority {len(small.uploads)} small photos behind {n_large} low-lane files: p50 {sec(p50)} s, "
        f"p95 {sec(p95)} s (target < 3 s: {'ok' if ok else 'missed'}), max {sec(worst)} s, "
        f"{p.large_done_at_last}/{n_large} large done at the last small ready"
    )


def revision() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    if commit.returncode != 0:
        return "unknown (not a git checkout)"
    changed = [line for line in dirty.stdout.splitlines() if not line.endswith("bench/load.py")]
    return commit.stdout.strip() + (f" + {len(changed)} uncommitted files" if changed else "")


def split_mix(total: int, scans: int | None, docx: int | None, mid: int | None) -> dict[str, int]:
    scans = round(total * 0.05) if scans is None else scans
    docx = round(total * 0.10) if docx is None else docx
    mid = round(total * 0.05) if mid is None else mid
    photos = total - scans - docx - mid
    if photos < 0:
        raise SystemExit("--scans + --docx + --mid exceed --uploads")
    return {"photo": photos, "photo-3mb": mid, "docx": docx, "scan": scans}


class Stack:
    """A LocalStack with the harness's recorder and sampler attached."""

    def __init__(self, state: Path, tokens: dict[str, str]) -> None:
        self.local = LocalStack(state_dir=state, tokens=dict(tokens)).start()
        self.recorder = Recorder()
        self.recorder.attach(self.local)
        self.sampler = Sampler(self.local)
        self.sampler.start()

    def stop(self) -> None:
        self.sampler.stop()
        self.local.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=500, help="burst size (default 500)")
    parser.add_argument("--scans", type=int, help="~20 MB scanned PDFs in the burst (default 5%% of --uploads)")
    parser.add_argument("--docx", type=int, help="DOCX files in the burst (default 10%%)")
    parser.add_argument("--mid", type=int, help="~3 MB JPEGs (normal lane) in the burst (default 5%%)")
    parser.add_argument("--threads", type=int, default=16, help="client upload threads (default 16)")
    parser.add_argument("--large", type=int, default=40, help="low-lane files queued first (default 40)")
    parser.add_argument(
        "--start-small",
        choices=("queued", "posted"),
        default="queued",
        help="start the small photos once every large file is ingested and queued in its lane (default), "
        "or as soon as the large files are posted, while ingest still works through them",
    )
    parser.add_argument("--small", type=int, default=50, help="small high-lane photos after them (default 50)")
    parser.add_argument("--small-every", type=float, default=1.0, help="seconds between small photos (default 1)")
    parser.add_argument(
        "--baseline", type=int, default=10, help="small photos uploaded alone first, for comparison (default 10)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="per phase, seconds (default 1800)")
    parser.add_argument(
        "--poll",
        type=float,
        default=5.0,
        help="least pause between burst polling rounds, s (default 5; paced, at most 15)",
    )
    parser.add_argument(
        "--small-poll", type=float, default=0.2, help="pause between GETs of each open small photo, s (default 0.2)"
    )
    parser.add_argument("--only", choices=("burst", "priority"), help="run one phase")
    parser.add_argument("--fresh", action="store_true", help="a new stack for the priority phase")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (files, stack logs) after the run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="docpipe-load-"))
    try:
        run(args, work)
    finally:
        if args.keep:
            print(f"kept: {work} (function logs in {work}/stack*/logs)")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    files = work / "files"
    files.mkdir()
    mix = split_mix(args.uploads, args.scans, args.docx, args.mid) if args.only != "priority" else {}
    seed = args.seed * 100_000
    specs: list[tuple[str, int]] = []
    for kind, n in mix.items():
        specs += [(kind, seed + len(specs) + i) for i in range(n)]
    n_burst = len(specs)
    n_large = args.large if args.only != "burst" else 0
    if n_large:
        specs += [("scan", seed + len(specs) + i) for i in range(n_large // 2)]
        specs += [("photo-13mb", seed + len(specs) + i) for i in range(n_large - n_large // 2)]
        specs += [("photo", seed + len(specs) + i) for i in range(args.small + args.baseline + WARM_UP)]
    started = time.time()
    corpus = make_corpus(specs, files)
    burst_items = corpus[:n_burst]
    random.Random(args.seed).shuffle(burst_items)
    large_items = corpus[n_burst : n_burst + n_large]
    random.Random(args.seed + 1).shuffle(large_items)
    photos = corpus[n_burst + n_large :] if n_large else []
    small_items = photos[: args.small]
    baseline_items = photos[args.small : args.small + args.baseline]
    warm_items = photos[args.small + args.baseline :]
    distinct = len({i.sha256 for i in corpus})
    print(f"docpipe load bench, revision {revision()}, {len(os.sched_getaffinity(0))} CPUs")
    print("kinds: " + "; ".join(f"{k.name} = {k.about}" for k in KINDS.values()))
    print(
        f"made {len(corpus)} files ({sum(i.size for i in corpus) / 1e6:.0f} MB) in {time.time() - started:.0f} s; "
        f"distinct bytes: {distinct} hashes for {len(corpus)} files"
    )
    if distinct != len(corpus):
        raise SystemExit("some generated files share bytes; the run would measure dedupe")

    tokens = {"tok-burst": "burst", "tok-priority": "priority"}
    warnings_log = work / "stack-warnings.log"
    logging.basicConfig(
        level=logging.WARNING, filename=str(warnings_log), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    state = work / "stack"
    stack = Stack(state, tokens)
    rows: list[list[str]] = []
    summary: list[str] = []
    try:
        time.sleep(5)  # a few samples of the idle stack
        idle = [s.rtt_ms for s in stack.sampler.samples]
        print(
            f"stack up: api {stack.local.api_url}, state {state}; emulator round trip when idle "
            f"p50 {pct(idle, 0.5):.0f} ms (GetQueueAttributes)"
        )
        if args.only != "priority":
            print(f"\n1. burst: {len(burst_items)} uploads, {args.threads} client threads: {describe(burst_items)}")
            out = burst(stack.local, stack.local.token_for("burst"), burst_items, args)
            report_burst(out, stack.recorder, stack.sampler, rows, summary)
        if n_large:
            fresh = args.fresh or args.only == "priority"
            if args.fresh and args.only != "priority":
                stack.stop()
                state = work / "stack-priority"
                stack = Stack(state, tokens)
            depths = drain(stack.sampler)
            print(
                f"\n2. priority: {len(warm_items)} small photos at once (warm-up, not measured), "
                f"{len(baseline_items)} alone one every {args.small_every} s (baseline); then "
                f"{describe(large_items)} uploaded ({min(args.threads, 8)} threads), then "
                f"{describe(small_items)}, one every {args.small_every} s"
            )
            print(
                f"  stack {'fresh' if fresh else 'reused after the burst'}; queues before: "
                f"{'all empty' if not any(depths.values()) else depths}"
            )
            prio = priority(
                stack.local,
                stack.local.token_for("priority"),
                large_items,
                small_items,
                baseline_items,
                warm_items,
                args,
                stack.sampler,
            )
            report_priority(prio, stack.recorder, stack.sampler, state / "logs", rows, summary)
        dead = stack.sampler.depths(stack.sampler.dlqs)
        print(f"\nfunctions (this stack): {describe_runtimes(stack.local)}")
        print(f"dead-letter queues: {({k: v for k, v in dead.items() if v}) or 'all empty'}")
        warnings = warnings_log.read_text().count(" WARNING ") if warnings_log.exists() else 0
        print(f"local stack warnings: {warnings}" + (f" (see {warnings_log})" if warnings else ""))
        rows.append(["run", "dead-lettered messages", str(sum(dead.values())), "0"])
        rows.append(["run", "local stack warnings", str(warnings), ""])
        print("\nresults")
        print(table(["phase", "measure", "value", "target"], rows, left=2))
        print("\nload: " + "; ".join(summary))
    finally:
        stack.stop()


def describe_runtimes(stack: LocalStack) -> str:
    return ", ".join(
        f"{name.removesuffix('Function')} {r.invocations} invocations ({r.failures} failed, {r.spawned} workers)"
        for name, r in sorted(stack.runtimes.items())
    )


if __name__ == "__main__":
    main()

"""A mixed workload on a fresh local stack, metered for pricing (``bench/cost.py``, issue 21).

The workload is the load bench's mix (``corpus.split_mix``: photos of 0.1-0.4 MB, 3 MB photos, DOCX,
20 MB scanned PDFs of 2-3 pages; no scans when OCR is off) uploaded over real HTTP by several users,
a share ``dedupe`` of the uploads being the same bytes as another user's upload of the mix (taken per
kind in the mix's proportions, so the duplicates cost what the rest costs). What it meters:

- every function invocation's billed duration (the runtime's ``Invocation.billed_ms``: rounded up to
  1 ms) and peak memory (``Invocation.peak_memory_mb``), and its CPU (``measure.CPU``);
- every request the emulator answered after the stack went idle, by calling function, service and
  operation (``docpipe_local.emulator.count_requests``; the caller is the SDK's application id the
  local stack gives each function, ``-`` for the stack's own event source pollers);
- the bytes each function logged, the metric series their EMF lines define, and the store bucket's
  objects by prefix at the end;
- Tesseract's word accuracy on the scans, whose text is known (``corpus.scan_lines``).
"""

from __future__ import annotations

import difflib
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docpipe_local.emulator import request_counts
from docpipe_local.runtime import Invocation, Worker
from docpipe_local.stack import LocalStack

from .corpus import Item, make_corpus, scan_lines, split_mix
from .harness import Clients, Observations, Upload, Uploader, count, follow_lists, wait_terminal
from .measure import CPU, json_lines, store_bucket
from .stack import unlimited_parameters


class Invocations:
    """Each function invocation's (billed ms, peak MB, status), recorded around ``Worker.invoke``
    (bench instrumentation, as ``measure.InvocationCpu``: the product code is untouched). A worker's
    initialization is waited for before its first invocation and left out of the records: at 10 million
    uploads a day the functions' environments stay warm, and cold starts are a fixed cost per
    environment, not per file (here they are counted; on a loaded machine one can take tens of seconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_function: dict[str, list[tuple[int, float, str]]] = {}
        self.cold: dict[str, int] = {}  # cold starts by function, not in the records
        self.installed = False

    def install(self) -> None:
        if self.installed:
            return
        self.installed = True
        invoke = Worker.invoke

        def recorded(worker: Worker, event: dict[str, Any]) -> Invocation:
            if not worker.ready:  # a cold start: initialized apart, so the record is a warm invocation's
                failed = worker._await_ready(time.time() + worker.spec.timeout)
                with self.lock:
                    self.cold[worker.spec.logical] = self.cold.get(worker.spec.logical, 0) + 1
                if failed is not None:
                    return failed
            out: Invocation = invoke(worker, event)
            with self.lock:
                entry = (out.billed_ms, out.peak_memory_mb, out.status)
                self.by_function.setdefault(worker.spec.logical, []).append(entry)
            return out

        Worker.invoke = recorded  # type: ignore[method-assign]

    def take(self) -> dict[str, list[tuple[int, float, str]]]:
        with self.lock:
            out, self.by_function = self.by_function, {}
        return out


INVOCATIONS = Invocations()


@dataclass
class Workload:
    uploads: list[tuple[str, Item]]  # (user, file) in upload order
    distinct: list[Item]

    def kinds(self, items: list[Item] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in items if items is not None else [i for _, i in self.uploads]:
            out[item.kind] = out.get(item.kind, 0) + 1
        return out


def build_workload(files: int, dedupe: float, ocr: bool, users: int, seed: int, folder: Path) -> Workload:
    """``files`` uploads of the bench mix, a share ``dedupe`` of them the bytes of another user's upload."""
    distinct_n = max(1, round(files * (1 - dedupe)))
    mix = split_mix(distinct_n, max(1, round(distinct_n * 0.05)) if ocr else 0, None, None)
    specs = [(kind, seed * 10_000 + n) for kind, k in mix.items() for n in range(k)]
    distinct = make_corpus(specs, folder)
    rng = random.Random(seed)
    owners = {item.sha256: n % users for n, item in enumerate(distinct)}
    uploads = [(f"user-{owners[i.sha256]}", i) for i in distinct]
    again = files - distinct_n  # per kind in the mix's proportions, largest remainders first
    shares = {k: again * len([i for i in distinct if i.kind == k]) / distinct_n for k in mix}
    quota = {k: int(v) for k, v in shares.items()}
    for k in sorted(shares, key=lambda k: shares[k] - quota[k], reverse=True)[: again - sum(quota.values())]:
        quota[k] += 1
    for kind, n in quota.items():
        of_kind = [i for i in distinct if i.kind == kind]
        for j in range(n):
            item = of_kind[j % len(of_kind)]
            uploads.append((f"user-{(owners[item.sha256] + 1 + j) % users}", item))  # another user's upload
    rng.shuffle(uploads)
    return Workload(uploads, distinct)


@dataclass
class Metered:
    workload: Workload
    seconds: float = 0.0  # first upload to the last job's end
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # the uploads refused, each error once
    invocations: dict[str, list[tuple[int, float, str]]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    requests: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    log_bytes: dict[str, int] = field(default_factory=dict)
    metric_series: int = 0
    store: dict[str, tuple[int, int]] = field(default_factory=dict)
    ocr_accuracy: list[tuple[str, int, float]] = field(default_factory=list)  # (file, words, word accuracy)
    load: float = (
        0.0  # the machine's 1-minute load average (the larger of start and end): others' work shares its cores
    )
    memory_mb: dict[str, int] = field(default_factory=dict)
    architecture: dict[str, str] = field(default_factory=dict)


def merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Sum nested ``{caller: {service: {operation: [n, items, cpu seconds]}}}`` counts."""
    for key, value in other.items():
        if isinstance(value, dict):
            merge(into.setdefault(key, {}), value)
        else:
            old = into.setdefault(key, [0] * len(value))
            into[key] = [a + b for a, b in zip(old, value, strict=True)]


def log_sizes(logs: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_size for p in logs.glob("*Function.log")}


def metric_series(logs: Path) -> int:
    """Distinct metric series (namespace, name, dimension values) the functions' EMF lines define."""
    series: set[tuple[str, ...]] = set()
    for path in logs.glob("*Function.log"):
        for record in json_lines(path):
            for directive in (record.get("_aws") or {}).get("CloudWatchMetrics") or []:
                dims = tuple(f"{d}={record.get(d)}" for group in directive.get("Dimensions") or [] for d in group)
                for metric in directive.get("Metrics") or []:
                    series.add((directive.get("Namespace", ""), metric["Name"], *dims))
    return len(series)


def word_accuracy(expected: list[str], read: str) -> float:
    """Share of the expected words found, in order, in what was read (difflib's matching blocks)."""
    got = read.split()
    matcher = difflib.SequenceMatcher(a=expected, b=got, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / max(1, len(expected))


def ocr_accuracy(stack: LocalStack, scans: list[Item]) -> list[tuple[str, int, float]]:
    assert stack.template is not None
    s3 = stack.client("s3")
    out = []
    for item in scans:
        seed = int(item.path.stem.split("-")[-1])
        expected = [w for page in range(item.pages) for line in scan_lines(seed, page) for w in line.split()]
        try:
            body = s3.get_object(Bucket=stack.template.physical_name("StoreBucket"), Key=f"text/{item.sha256}.json")
            doc = json.loads(body["Body"].read())
        except Exception:  # no text: nothing read
            out.append((item.path.name, len(expected), 0.0))
            continue
        text = " ".join(str(p.get("text") or "") for p in doc.get("pages") or [])
        out.append((item.path.name, len(expected), word_accuracy(expected, text)))
    return out


def run(
    workload: Workload,
    work: Path,
    *,
    threads: int = 4,
    poll: float = 2.0,
    timeout: float = 900,
    parameters: dict[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Metered:
    """Upload ``workload`` to a fresh local stack (quotas off), wait for every job to end, and meter it."""
    CPU.install()
    INVOCATIONS.install()
    users = sorted({u for u, _ in workload.uploads})
    tokens = {f"tok-{u}": u for u in users}
    stack = LocalStack(
        state_dir=work,
        tokens=tokens,
        parameters={**unlimited_parameters(), **(parameters or {})},
        overrides=overrides,
    ).start()
    result = Metered(workload)
    try:
        assert stack.template is not None
        for logical, spec in stack.template.functions().items():
            result.memory_mb[logical] = spec.memory_mb
            props = stack.template.resources[logical].get("Properties") or {}
            arch = props.get("Architectures") or stack.template.doc["Globals"]["Function"].get("Architectures")
            result.architecture[logical] = str((arch or ["x86_64"])[0])
        urls = [m.url for m in (stack.moto, stack.moto_dynamodb) if m is not None]
        if not urls:
            raise SystemExit("the cost bench needs the embedded emulator (its request counts)")
        clients = {u: Clients(stack.api_url, stack.token_for(u)) for u in users}
        warm_up(clients[users[0]], time.time() + 300)
        time.sleep(3)  # the stack's start-up work done
        logs = stack.state_dir / "logs"
        sizes_before = log_sizes(logs)
        for url in urls:
            request_counts(url, reset=True)
        CPU.reset()
        INVOCATIONS.take()
        result.load = os.getloadavg()[0]
        uploaders = {u: Uploader(clients[u], []) for u in users}
        uploads = [(u, Upload(item)) for u, item in workload.uploads]
        obs = Observations()
        stop = threading.Event()
        watcher = threading.Thread(target=follow_lists, args=(clients, obs, stop, poll), daemon=True)
        watcher.start()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda pair: uploaders[pair[0]](pair[1]), uploads))
        plain = [u for _, u in uploads]
        wait_terminal(plain, obs, plain[0].requested + timeout, "cost")
        stop.set()
        watcher.join(timeout=60)
        time.sleep(1)  # the last invocations' records (a settle's notifier) in
        ends = [end[2] for end in (obs.terminal(u.job_id) for u in plain) if end]
        result.seconds = (max(ends) if ends else time.time()) - min(u.requested for u in plain)
        result.counts = count(plain, obs)
        result.load = max(result.load, os.getloadavg()[0])
        result.errors = sorted({u.error for u in plain if u.error})
        for url in urls:
            merge(result.requests, request_counts(url))
        result.invocations = INVOCATIONS.take()
        with CPU.lock:
            result.cpu = dict(CPU.work)
        result.log_bytes = {k: v - sizes_before.get(k, 0) for k, v in log_sizes(logs).items()}
        result.metric_series = metric_series(logs)
        result.store = store_bucket(stack)
        result.ocr_accuracy = ocr_accuracy(stack, [i for i in workload.distinct if i.kind == "scan"])
        return result
    finally:
        stack.stop()


def warm_up(clients: Clients, deadline: float) -> None:
    """Wait until the API answers (its first worker initialized: minutes on a loaded machine), so that no
    upload of the run meets a cold start that outlives the API's 10 s timeout."""
    while True:
        try:
            clients.get().jobs(limit=1)
            return
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(2)

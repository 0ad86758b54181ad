"""What ``DedupeScope=owner`` costs on the load bench's mix: the same uploads on a ``global`` stack and an ``owner`` stack.

    python bench/dedupe_scope.py [--users 4] [--files 16] [--shared 0.5] [--scans 2] [--docx 2] [--mid 2]
                                 [--threads 4] [--poll 2] [--timeout 900] [--seed 1] [--keep]

Every user uploads ``--files`` files in the load bench's kinds (photos of 0.1-0.4 MB, 3 MB photos,
DOCX, 20 MB scanned PDFs of 2-3 pages; ``--scans``, ``--docx`` and ``--mid`` of them, the rest
photos). A share ``--shared`` of them, taken per kind and spread over each kind's sizes and pages so
that the shared part costs what the rest costs, are the same bytes for every user; the rest are each
user's own: twins of the same pictures and documents (``loadbench.corpus.twin``, the same work at the
same size), and scans made from seeds of their own, with as many pages. Every file is made before the
first stack starts.

For each scope, ``global`` then ``owner``, a fresh local stack (quotas off) takes every user's uploads
over real HTTP from ``--threads`` client threads, the users' files interleaved, each user's in its own
shuffled order, the same order for both scopes; one thread lists each user's jobs every ``--poll`` s
until every job has ended (lost: not ended by ``--timeout``). Per scope it records:

- the wall time from the first ``POST /uploads`` to the last job's end (the server's ``updatedAt``);
- the CPU seconds of every function invocation, read from the worker's ``/proc`` entry before and
  after it (with the PDF readers it forks), and of the workers' start-ups apart; and the emulator's
  (``loadbench.probes.cpu_by_group``, from the stack going idle to the last job's end);
- the task runs (attempts on the FilesTable), the task messages the workers ran to the end (their
  ``TaskSucceeded`` and ``TaskFailed`` metrics) and their ``TaskDuration``;
- the objects and bytes in the store bucket, and the dedupe hits (ingest's ``UploadsDeduplicated``:
  jobs whose bytes were stored already), with the time-to-ready of hits beside the others'.

It prints both scopes side by side with owner/global, the ratios the corpus predicts for work and
storage (``global`` does each distinct file once, ``owner`` once per user who has it), and what that
means on AWS.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadbench.corpus import KINDS, Item, describe, make_corpus, split_mix, twin
from loadbench.harness import Clients, Observations, Upload, Uploader, count, follow_lists, wait_terminal
from loadbench.measure import CPU, emf_totals, files_table, ingest_outcomes, store_bucket
from loadbench.probes import cpu_by_group
from loadbench.stack import unlimited_parameters
from loadbench.stats import pct, sec, table

from docpipe_local.stack import LocalStack

SCOPES = ("global", "owner")
TASK_FUNCTIONS = ("PresetsFunction", "ExtractFunction", "OcrFunction")
SCAN_SEED_STEP = 1000  # another user's scan: seed + 1000 x user (even: the same page count)

# ---------------------------------------------------------------------------------------------- corpus


def shared_counts(mix: dict[str, int], shared: float) -> dict[str, int]:
    """Per kind, how many files every user shares: ``round(total x shared)`` in all, spread over the
    kinds in proportion (largest remainders; ties to the kind listed first)."""
    exact = {kind: n * shared for kind, n in mix.items()}
    out = {kind: math.floor(v) for kind, v in exact.items()}
    short = round(sum(mix.values()) * shared) - sum(out.values())
    for kind in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[:short]:
        out[kind] += 1
    return out


@dataclass
class Corpus:
    users: list[str]
    files: dict[str, list[Item]]  # per user, in upload order
    shared: set[str]  # SHA-256 of the files every user has

    @property
    def order(self) -> list[tuple[str, Item]]:
        """Every user's uploads, interleaved: each user's first file, then each one's second, and so on."""
        longest = max(len(items) for items in self.files.values())
        return [(u, self.files[u][n]) for n in range(longest) for u in self.users if n < len(self.files[u])]

    def distinct(self) -> int:
        return len({i.sha256 for items in self.files.values() for i in items})

    def uploads(self) -> int:
        return sum(len(items) for items in self.files.values())

    def bytes_ratio(self) -> float:
        """Bytes uploaded over distinct bytes: what ``owner`` stores over what ``global`` stores, as originals."""
        every = [i for items in self.files.values() for i in items]
        return sum(i.size for i in every) / sum({i.sha256: i.size for i in every}.values())


def scan_seed(base: int, n: int) -> int:
    """The seed of a user's ``n``-th scan: scans come in pairs with the same page count (a seed's parity
    sets 2 or 3 pages), so splitting a kind in halves gives each half the same pages."""
    return base + 2 * n + (n // 2) % 2


def spread(items: list[Item], k: int) -> list[Item]:
    """``k`` of ``items`` evenly spread over them in order of cost (pages, then size): a shared part
    that costs the pipeline what the rest costs, file for file, not just the same count."""
    ranked = sorted(items, key=lambda i: (i.pages, i.size))
    return [ranked[round((n + 0.5) * len(ranked) / k - 0.5)] for n in range(k)] if k else []


def build_corpus(args: argparse.Namespace, folder: Path) -> Corpus:
    """One user's files (the mix); those every user shares; each other user's own copies of the rest:
    twins (the same picture or document, fresh bytes) or, for scans, scans with seeds of their own."""
    mix = split_mix(args.files, args.scans, args.docx, args.mid)
    base_seed = args.seed * 100_000
    specs: list[tuple[str, int]] = []
    for kind, n in mix.items():
        if kind == "scan":
            specs += [(kind, scan_seed(base_seed + 50_000, i)) for i in range(n)]
        else:
            specs += [(kind, base_seed + len(specs) + i) for i in range(n)]
    base = make_corpus(specs, folder)
    seed_of = {item.sha256: seed for item, (_, seed) in zip(base, specs, strict=True)}
    shared: list[Item] = []
    for kind, n in shared_counts(mix, args.shared).items():
        shared += spread([i for i in base if i.kind == kind], n)
    own = [i for i in base if i not in shared]
    users = [f"user-{n + 1}" for n in range(args.users)]
    scans = [(i, u) for i in own if i.kind == "scan" for u in range(1, args.users)]
    made = make_corpus([("scan", seed_of[i.sha256] + SCAN_SEED_STEP * u) for i, u in scans], folder) if scans else []
    own_scans = dict(zip(((i.sha256, u) for i, u in scans), made, strict=True))
    files: dict[str, list[Item]] = {}
    for u, user in enumerate(users):
        items = list(shared)
        for item in own:
            if u == 0:
                items.append(item)
            elif item.kind == "scan":
                items.append(own_scans[(item.sha256, u)])
            else:
                items.append(twin(item, user, folder))
        random.Random(args.seed * 1000 + u).shuffle(items)
        files[user] = items
    return Corpus(users, files, {i.sha256 for i in shared})


# ------------------------------------------------------------------------------------------------- run


@dataclass
class Run:
    scope: str
    uploads: list[tuple[str, Upload]]
    obs: Observations
    started: float = 0.0  # the first POST /uploads
    finished: float = 0.0  # the last job's end, server side (updatedAt)
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, per process group (emulator, this process)
    work: dict[str, float] = field(default_factory=dict)  # CPU seconds in invocations, per function
    startup: dict[str, float] = field(default_factory=dict)  # CPU seconds of worker start-ups, per function
    starts: int = 0
    unread: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # summed over every function's EMF lines
    deduplicated: dict[str, bool] = field(default_factory=dict)  # per job id, from ingest's log
    file_items: int = 0
    attempts: int = 0
    store: dict[str, tuple[int, int]] = field(default_factory=dict)  # prefix: (objects, bytes)
    counts: dict[str, int] = field(default_factory=dict)


def run_scope(scope: str, corpus: Corpus, args: argparse.Namespace, work: Path) -> Run:
    tokens = {f"tok-{user}": user for user in corpus.users}
    parameters = {"DedupeScope": scope, **unlimited_parameters()}
    stack = LocalStack(state_dir=work / f"stack-{scope}", tokens=tokens, parameters=parameters).start()
    try:
        moto_pids = {m.process.pid for m in (stack.moto, stack.moto_dynamodb) if m is not None}
        time.sleep(3)  # the stack's start-up work done
        cpu_before = cpu_by_group(stack.state_dir, moto_pids)
        CPU.reset()
        clients = {user: Clients(stack.api_url, stack.token_for(user)) for user in corpus.users}
        uploaders = {user: Uploader(clients[user], []) for user in corpus.users}
        obs = Observations()
        result = Run(scope, [(user, Upload(item)) for user, item in corpus.order], obs)
        stop = threading.Event()
        watcher = threading.Thread(target=follow_lists, args=(clients, obs, stop, args.poll), daemon=True)
        watcher.start()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda pair: uploaders[pair[0]](pair[1]), result.uploads))
        uploads = [u for _, u in result.uploads]
        wait_terminal(uploads, obs, uploads[0].requested + args.timeout, scope)
        result.cpu = {g: v - cpu_before.get(g, 0.0) for g, v in cpu_by_group(stack.state_dir, moto_pids).items()}
        with CPU.lock:
            result.work, result.startup = dict(CPU.work), dict(CPU.startup)
            result.starts, result.unread = sum(CPU.starts.values()), CPU.unread
        stop.set()
        watcher.join(timeout=60)
        result.started = min(u.requested for u in uploads)
        ends = [end[2] for end in (obs.terminal(u.job_id) for u in uploads) if end]
        result.finished = max(ends) if ends else math.nan
        result.counts = count(uploads, obs)
        logs = stack.state_dir / "logs"
        result.metrics = emf_totals(logs)
        result.deduplicated = ingest_outcomes(logs / "IngestFunction.log")
        result.file_items, result.attempts = files_table(stack)
        result.store = store_bucket(stack)
        return result
    finally:
        stack.stop()


# --------------------------------------------------------------------------------------------- report


def worker_cpu(run: Run) -> float:
    """CPU seconds of every function's invocations, start-ups apart."""
    return sum(run.work.values())


def task_cpu(run: Run) -> float:
    """CPU seconds of the task workers: the work shared under a content key (ingest and the API run per upload)."""
    return sum(v for g, v in run.work.items() if g in TASK_FUNCTIONS)


def task_messages(run: Run) -> float:
    """Task messages run to the end: a task's opening message and its follow-ups (a scan's OCR chunks)."""
    return run.metrics.get("TaskSucceeded", 0.0) + run.metrics.get("TaskFailed", 0.0)


def stored(run: Run, prefix: str | None = None) -> tuple[int, int]:
    if prefix is not None:
        return run.store.get(prefix, (0, 0))
    return sum(n for n, _ in run.store.values()), sum(b for _, b in run.store.values())


def ready_seconds(run: Run, deduplicated: bool) -> list[float]:
    """Server-side time-to-ready of the ready jobs whose bytes were (or were not) stored already."""
    out = []
    for _, u in run.uploads:
        end = run.obs.terminal(u.job_id)
        if end and end[0] == "ready" and run.deduplicated.get(u.job_id or "") is deduplicated:
            out.append(end[2] - u.requested)
    return out


def ratio(a: float, b: float) -> str:
    return "-" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}"


def report(runs: dict[str, Run], corpus: Corpus, args: argparse.Namespace) -> None:
    g, o = runs["global"], runs["owner"]
    rows: list[list[str]] = []

    def row(measure: str, value: Any, fmt: str = "{:.0f}", show_ratio: bool = True) -> None:
        a, b = value(g), value(o)
        rows.append([measure, fmt.format(a), fmt.format(b), ratio(b, a) if show_ratio else ""])

    for key in ("ready", "failed", "lost", "upload errors"):
        row(f"jobs {key}", lambda r, k=key: r.counts.get(k, 0), show_ratio=False)
    row("dedupe hits (UploadsDeduplicated)", lambda r: r.metrics.get("UploadsDeduplicated", 0), show_ratio=False)
    row("content keys (FilesTable items)", lambda r: r.file_items)
    row("wall time to all ended, s", lambda r: r.finished - r.started, "{:.1f}")
    row("CPU s, function invocations", worker_cpu, "{:.1f}")
    for function in sorted({k for r in runs.values() for k in r.work}):
        row(f"  {function.removesuffix('Function')}", lambda r, f=function: r.work.get(f, 0.0), "{:.1f}")
    row("  tasks (presets, extract, OCR)", task_cpu, "{:.1f}")
    row("worker start-ups", lambda r: r.starts, show_ratio=False)
    row("CPU s, worker start-ups", lambda r: sum(r.startup.values()), "{:.1f}")
    row("CPU s, emulator", lambda r: r.cpu.get("emulator", 0.0), "{:.1f}")
    row("CPU s, bench + gateway + pollers", lambda r: r.cpu.get("bench + stack", 0.0), "{:.1f}")
    row("task runs (FilesTable *Attempts)", lambda r: r.attempts)
    row("task messages run (TaskSucceeded + TaskFailed)", task_messages)
    row("task time, s (TaskDuration)", lambda r: r.metrics.get("TaskDuration", 0.0) / 1000, "{:.1f}")
    row("OCR pages", lambda r: r.metrics.get("OcrPages", 0.0))
    row("store objects", lambda r: stored(r)[0])
    row("store MB", lambda r: stored(r)[1] / 1e6, "{:.1f}")
    row("  originals MB (files/)", lambda r: stored(r, "files")[1] / 1e6, "{:.1f}")
    row("  presets MB (derived/)", lambda r: stored(r, "derived")[1] / 1e6, "{:.1f}")
    row("  text MB (text/)", lambda r: stored(r, "text")[1] / 1e6, "{:.2f}")
    rows.append(
        [
            "time-to-ready p50, stored first / dedupe hit, s",
            f"{sec(pct(ready_seconds(g, False), 0.5))} / {sec(pct(ready_seconds(g, True), 0.5))}",
            f"{sec(pct(ready_seconds(o, False), 0.5))} / {sec(pct(ready_seconds(o, True), 0.5))}",
            "",
        ]
    )
    print("\n" + table(["measure", "global", "owner", "owner/global"], rows))

    n_users, share = len(corpus.users), len(corpus.shared) / max(1, args.files)
    runs_expected, bytes_expected = corpus.uploads() / corpus.distinct(), corpus.bytes_ratio()
    print(
        f"\nexpected owner/global: task runs {runs_expected:.2f} ({corpus.uploads()} uploads of {corpus.distinct()} "
        f"distinct files: global does each once, owner once per user who has it), originals stored "
        f"{bytes_expected:.2f} (bytes uploaded over distinct bytes); {n_users} users sharing {share:.0%} of their files"
    )
    lost = sum(r.counts.get(k, 0) for r in runs.values() for k in ("lost", "failed", "upload errors"))
    print(
        f"\ndedupe_scope: owner/global wall {ratio(o.finished - o.started, g.finished - g.started)}, "
        f"function CPU {ratio(worker_cpu(o), worker_cpu(g))} (tasks {ratio(task_cpu(o), task_cpu(g))}), "
        f"task runs {ratio(o.attempts, g.attempts)} (expected {runs_expected:.2f}), "
        f"stored bytes {ratio(stored(o)[1], stored(g)[1])} (originals {ratio(stored(o, 'files')[1], stored(g, 'files')[1])}, "
        f"expected {bytes_expected:.2f}); {lost} jobs failed, lost or refused"
    )
    fresh, hit = pct(ready_seconds(g, False), 0.5), pct(ready_seconds(g, True), 0.5)
    print(
        "\nOn AWS: with DedupeScope=owner each user's copy of bytes another user also uploaded is stored and "
        "processed again, so the presets, extract and OCR Lambda time (billed by the GB-second; these tasks "
        "are CPU-bound), the S3 storage of originals, presets and text, and their S3 and DynamoDB requests grow "
        "with the share of uploads that other users also upload; ingest and the API run once per upload in "
        f"either scope. Here {n_users} users sharing {share:.0%} of their files means {runs_expected:.2f}x the task "
        f"runs and {bytes_expected:.2f}x the original bytes; where users share nothing, owner costs nothing more. "
        "In exchange, how fast a job ends tells a user nothing about other users' uploads: under global a file "
        f"another user had stored is a dedupe hit that skips the copy and reuses finished work (here ready "
        f"p50 {sec(hit)} s against {sec(fresh)} s for bytes stored first), a timing signal; under owner the "
        f"only hits are one user's own repeats ({o.metrics.get('UploadsDeduplicated', 0):.0f} in this run)."
    )


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=4, help="users, each uploading the same set (default 4)")
    parser.add_argument("--files", type=int, default=16, help="files each user uploads (default 16)")
    parser.add_argument(
        "--shared", type=float, default=0.5, help="share of each user's files that are the same bytes for all (0.5)"
    )
    parser.add_argument("--scans", type=int, default=2, help="~20 MB scanned PDFs per user (default 2)")
    parser.add_argument("--docx", type=int, default=2, help="DOCX files per user (default 2)")
    parser.add_argument("--mid", type=int, default=2, help="~3 MB JPEGs per user (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="client upload threads (default 4)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between listings of the jobs (default 2)")
    parser.add_argument("--timeout", type=float, default=900, help="per scope, seconds (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (files, stack logs) after the run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.users < 2 or args.files < 1 or not 0 <= args.shared <= 1:
        parser.error("needs --users >= 2, --files >= 1 and 0 <= --shared <= 1")

    work = Path(tempfile.mkdtemp(prefix="docpipe-dedupe-scope-"))
    logging.basicConfig(level=logging.WARNING, filename=str(work / "warnings.log"))
    try:
        files = work / "files"
        files.mkdir()
        started = time.time()
        corpus = build_corpus(args, files)
        if corpus.distinct() != len(corpus.shared) + args.users * (args.files - len(corpus.shared)):
            raise SystemExit("the generated files do not have the planned number of distinct hashes")
        print("kinds: " + "; ".join(f"{k.name} = {k.about}" for k in KINDS.values() if k.name != "photo-13mb"))
        print(
            f"{args.users} users x {args.files} files: {describe(corpus.files[corpus.users[0]])} each; "
            f"{len(corpus.shared)} of them the same bytes for every user, the rest each user's own; "
            f"{corpus.uploads()} uploads of {corpus.distinct()} distinct files, made in {time.time() - started:.0f} s"
        )
        CPU.install()
        runs: dict[str, Run] = {}
        for scope in SCOPES:
            print(f"\nDedupeScope={scope}: a fresh stack, {args.threads} client threads", flush=True)
            runs[scope] = run = run_scope(scope, corpus, args, work)
            print(
                f"  {run.counts}; all ended {run.finished - run.started:.1f} s after the first upload; "
                f"function invocations {worker_cpu(run):.1f} CPU s"
                + (f" ({run.unread} not read: their worker was gone)" if run.unread else ""),
                flush=True,
            )
        report(runs, corpus, args)
    finally:
        if args.keep:
            print(f"kept: {work} (function logs in {work}/stack-*/logs)")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

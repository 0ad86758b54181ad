"""Run mutations through the functions' code on a pool of worker processes, each watched from here.

A worker (started with ``spawn``) imports the functions' code once and then, like a warm Lambda
environment taking one message after another, runs each mutation it is sent through
:func:`tests.fuzz.pipeline.process` in its own process: PDFs are still read in the sandbox's forked
processes, as in the functions. This process hands out the mutations one at a time and watches every
worker: a worker that outgrows the largest function memory (with a margin), runs past the time limit on
one mutation, or dies, is killed or reaped, its mutation reported, and a new worker started. (Forking a
process per mutation would isolate them further, but costs 10 to 25 ms a fork on this kind of machine
for a process holding Pillow, PDFium and the Office libraries, about as much as a mutation's own work.)

Every mutation ends as a :class:`Record`:

- ``ready`` or ``failed`` (with its ``code``): what the functions would have made of the upload;
- ``exception``: an exception other than a :class:`~docpipe.errors.DocpipeError` escaped (the function
  would have let it propagate: its message retried, then dead-lettered);
- ``memory``: a stage's peak resident memory passed its function's memory size, or the worker was
  killed for growing past them all;
- ``timeout``: the mutation ran past the time limit;
- ``died``: the worker was ended by a signal (a crash in native code, the kernel's OOM killer).

Every outcome but the first two is a finding. What a worker's libraries print (libtiff's complaints,
Pillow's warnings) goes to a file of its own, read back into a finding's record.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import resource
import signal
import tempfile
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz import pipeline, seeds
from tests.fuzz.mutate import mutate

MIB = 1024 * 1024
FINDINGS = ("exception", "memory", "timeout", "died")
_KILL_MARGIN = 512 * MIB  # past the largest function memory, a worker is killed as it grows
_ADDRESS_SPACE = 8 * 1024 * MIB  # a worker's address space on top of what it started with (RLIMIT_AS)
_WATCH_SECONDS = 0.02
_OUTPUT_TAIL = 2000  # characters of a worker's output kept in a finding


@dataclass
class Record:
    index: int
    seed_name: str
    ops: tuple[str, ...]
    status: str
    code: str | None = None
    type: str | None = None
    seconds: float = 0.0
    peak: int = 0  # the largest stage peak of resident memory, bytes
    stages: dict[str, tuple[float, int]] = field(default_factory=dict)
    error: str | None = None  # the exception, signal or budget, for a finding
    tesseract: bool = False  # whether Tesseract read its OCR pages

    @property
    def finding(self) -> bool:
        return self.status in FINDINGS


@dataclass(frozen=True)
class Run:
    """One run: its seed, the functions' limits, and how long one mutation may take."""

    seed: int
    limits: pipeline.Limits
    seconds: float
    tesseract_every: int = 0  # Tesseract reads the OCR pages of every this-many-th mutation (0: none)


# ------------------------------------------------------------------------------------------ a worker


def _worker(conn: Any, run: Run, output: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    corpus = seeds.load()
    pipeline.warm_up()
    engine = _tesseract() if run.tesseract_every else None
    _limit_address_space()
    while True:
        index = conn.recv()
        if index is None:
            return
        os.ftruncate(fd, 0)
        conn.send(run_one(corpus, index, run, engine))


def _tesseract() -> Any:
    """A Tesseract engine as the OCR function makes one, or None where Tesseract is not installed."""
    from docpipe.errors import OcrUnavailable
    from ocr.engines import TesseractEngine

    engine = TesseractEngine()
    try:
        engine._ensure_api()
    except OcrUnavailable:
        return None
    return engine


def run_one(corpus: dict[str, bytes], index: int, run: Run, engine: Any = None) -> Record:
    """Mutation ``index`` of the run through the functions' code, in this process; its OCR pages read by
    ``engine`` when it is the turn of this index (:attr:`Run.tesseract_every`)."""
    mutation = mutate(corpus, run.seed, index)
    record = Record(index, mutation.seed_name, mutation.ops, "exception")
    job = pipeline.Job()
    if engine is None or index % max(run.tesseract_every, 1):
        engine = None
    started = time.perf_counter()
    try:
        pipeline.process(mutation.data, mutation.seed_name, run.limits, job, engine)
    except BaseException as exc:  # anything but a DocpipeError: a finding
        trace = "".join(traceback.format_exception(exc)[-6:])
        record.error = f"{type(exc).__name__}: {str(exc)[:300]}\n{trace[-3000:]}"
    else:
        record.status, record.code, record.type = job.status, job.code, job.type
        over = job.over_budget(run.limits)
        if over:
            record.status = "memory"
            record.error = ", ".join(
                f"{stage} peaked at {job.stages[stage][1] // MIB} MB resident, over its function's "
                f"{run.limits.memory_mb[stage]} MB"
                for stage in over
            )
    record.seconds = time.perf_counter() - started
    record.stages = job.stages
    record.tesseract = engine is not None and "ocr" in job.stages
    record.peak = max((peak for _, peak in job.stages.values()), default=0)
    return record


def _limit_address_space() -> None:
    """A ceiling well above every budget, so that a runaway allocation fails in the worker instead of
    taking the machine's memory between two looks at it."""
    try:
        with open("/proc/self/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + _ADDRESS_SPACE, resource.RLIM_INFINITY))
    except (OSError, ValueError):
        pass


# ------------------------------------------------------------------------------------------ the pool


class _Worker:
    def __init__(self, run: Run, folder: str, number: int) -> None:
        self.output = os.path.join(folder, f"worker-{number}.log")
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, run, self.output), daemon=True)
        self.process.start()
        child.close()
        self.index: int | None = None
        self.sent = 0.0

    def send(self, index: int) -> None:
        self.index, self.sent = index, time.monotonic()
        self.conn.send(index)

    def rss(self) -> int:
        try:
            with open(f"/proc/{self.process.pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            return 0

    def output_tail(self) -> str:
        try:
            with open(self.output, errors="replace") as fh:
                return fh.read()[-_OUTPUT_TAIL:]
        except OSError:
            return ""

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            with contextlib.suppress(OSError):
                self.conn.send(None)
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def run(
    settings: Run,
    indices: Iterable[int],
    workers: int = 2,
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Every mutation of ``indices`` on ``workers`` processes; records in index order."""
    corpus = seeds.load()
    pending = deque(indices)
    records: list[Record] = []
    kill_at = max(settings.limits.memory_mb.values()) * MIB + _KILL_MARGIN

    def lost(worker: _Worker, status: str, error: str) -> Record:
        assert worker.index is not None
        mutation = mutate(corpus, settings.seed, worker.index)
        tail = worker.output_tail().strip()
        record = Record(worker.index, mutation.seed_name, mutation.ops, status, error=error)
        record.seconds = time.monotonic() - worker.sent
        if tail:
            record.error = f"{error}\n{tail}"
        return record

    with tempfile.TemporaryDirectory(prefix="docpipe-fuzz-") as folder:
        pool = [_Worker(settings, folder, number) for number in range(workers)]
        started = len(pool)
        try:
            while pending or any(w.index is not None for w in pool):
                for worker in pool:
                    if worker.index is None and pending:
                        worker.send(pending.popleft())
                busy = [w for w in pool if w.index is not None]
                ready = set(mp_connection.wait([w.conn for w in busy], timeout=_WATCH_SECONDS))
                for slot, worker in enumerate(pool):
                    if worker.index is None:
                        continue
                    record, answered = None, False
                    if worker.conn in ready:
                        try:
                            record, answered = worker.conn.recv(), True
                            if record.finding:
                                tail = worker.output_tail().strip()
                                record.error = f"{record.error}\n{tail}" if tail else record.error
                        except EOFError:
                            worker.process.join(5)
                            code = worker.process.exitcode
                            why = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
                            record = lost(worker, "died", f"the worker died ({why})")
                    elif time.monotonic() - worker.sent > settings.seconds:
                        record = lost(worker, "timeout", f"killed after {settings.seconds:g} s")
                    elif worker.rss() > kill_at:
                        record = lost(worker, "memory", f"killed past {kill_at // MIB} MB resident")
                    if record is None:
                        continue
                    records.append(record)
                    if on_record is not None:
                        on_record(record)
                    if answered:
                        worker.index = None  # it takes the next one
                    else:  # killed, dead or stuck: a new worker in its place
                        worker.stop(kill=True)
                        pool[slot] = _Worker(settings, folder, started)
                        started += 1
        finally:
            for worker in pool:
                worker.stop(kill=worker.index is not None)
    return sorted(records, key=lambda r: r.index)


def save(records: Iterable[Record], seed: int, folder: Path) -> list[Path]:
    """Write the bytes of each record's mutation (made again from its seed and index) into ``folder``."""
    corpus = seeds.load()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for record in records:
        path = folder / f"{seed}-{record.index}-{record.seed_name}"
        path.write_bytes(mutate(corpus, seed, record.index).data)
        paths.append(path)
    return paths


def summary(records: list[Record], seed: int, wall: float, workers: int) -> str:
    """The counts of a run as a table: outcomes, codes, findings, the slowest, the largest peak of memory."""
    statuses = Counter(r.status for r in records)
    codes = Counter(r.code for r in records if r.status == "failed")
    lines = [
        f"fuzz seed {seed}: {len(records)} mutations in {wall:.1f} s on {workers} workers "
        f"({len(records) / max(wall, 1e-9):.0f}/s)",
        f"  {'ready':<34}{statuses['ready']:>6}",
        f"  {'failed':<34}{statuses['failed']:>6}",
    ]
    lines += [f"    {code:<32}{count:>6}" for code, count in sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))]
    names = {"exception": "other exceptions", "memory": "over memory", "timeout": "over time", "died": "crashed"}
    lines += [f"  {names[status]:<34}{statuses[status]:>6}" for status in FINDINGS]
    read = sum(r.tesseract for r in records)
    lines.append(f"  {'OCR pages read by Tesseract':<34}{read:>6}  (of sampled mutations; the others' are only made)")
    by_seed: dict[str, Counter[str]] = {}
    for r in records:
        by_seed.setdefault(r.seed_name, Counter())[r.status] += 1
    lines.append("  by seed file, ready/failed/findings:")
    cells = [f"{name} {c['ready']}/{c['failed']}/{sum(c[s] for s in FINDINGS)}" for name, c in sorted(by_seed.items())]
    lines += ["    " + "  ".join(cells[i : i + 5]) for i in range(0, len(cells), 5)]
    if records:
        for rank, r in enumerate(sorted(records, key=lambda r: r.seconds, reverse=True)[:3], 1):
            lines.append(
                f"  slowest #{rank}: {r.seconds:.2f} s, index {r.index} ({r.status} {r.code or ''}) "
                f"{r.seed_name}: {'; '.join(r.ops)[:120]}"
            )
        heaviest = max(records, key=lambda r: r.peak)
        stage = max(heaviest.stages.items(), key=lambda kv: kv[1][1])[0] if heaviest.stages else "-"
        lines.append(
            f"  peak memory: {heaviest.peak / MIB:.0f} MB resident in {stage}, index {heaviest.index} "
            f"({heaviest.status} {heaviest.code or ''}) {heaviest.seed_name}"
        )
    return "\n".join(lines)

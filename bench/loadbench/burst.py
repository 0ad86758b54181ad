"""Phase 1, burst: ``--uploads`` files in a shuffled mix, posted as fast as ``--threads`` threads go.

The mix: JPEG photos of 0.1-0.5 MB (the rest of the mix; high lane), ``--mid`` JPEGs of about 3 MB
(normal lane; default 5 %), ``--docx`` DOCX files (high; 10 %) and ``--scans`` scanned PDFs of about
20 MB (5 %): 2 pages at 420 dpi or 3 at 350 dpi, grey with scanner noise, so the low lane extracts
them, finds no text layer and OCRs every page at 300 dpi (Tesseract, about 1.6 s a page on one core,
one page chunk at a time on the OCR low lane). Every job is followed until ready, failed or cancelled;
lost = not terminal by ``--timeout``. Prints throughput (files/min from the first upload request to the
last terminal observation) and p50/p95 time-to-ready by lane and by kind.

The watcher lists every page of ``GET /jobs`` (100 a page) or, when few jobs are open, GETs each open
one, whichever costs the emulator less (a listed job costs moto ~3.5 ms of CPU, a job GET ~15 ms),
pausing 9x as long as the last round took (5-15 s).
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ThreadPoolExecutor

from docpipe_local.stack import LocalStack

from .corpus import KINDS, Item
from .harness import (
    Clients,
    Observations,
    Phase,
    Upload,
    Uploader,
    Watcher,
    by_kind,
    by_lane,
    count,
    throttled,
    wait_terminal,
)
from .probes import Recorder, Sampler, counts_cell, print_stages
from .stats import pct, sec, table


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


def report_burst(out: Phase, recorder: Recorder, sampler: Sampler, rows: list[list[str]], summary: list[str]) -> None:
    c = out.counts
    minutes = (out.finished - out.started) / 60
    rate = c["submitted"] / minutes if minutes > 0 else math.nan
    period50, period95 = out.watcher.period()
    print(
        f"  submitted {c['submitted']}, ready {c['ready']}, failed {c['failed']}, cancelled {c['cancelled']}, "
        f"lost {c['lost']}, refused at upload {c['upload errors']}"
    )
    if throttled(out.uploads):
        print(f"  429 answers to POST /uploads, each waited out (Retry-After) and retried: {throttled(out.uploads)}")
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
    print_stages(recorder, sampler, out.started, out.finished)
    rows.append(
        [
            "burst",
            "submitted/ready/failed/cancelled/lost/refused",
            counts_cell(c, ("submitted", "ready", "failed", "cancelled", "lost", "upload errors")),
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

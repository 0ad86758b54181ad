"""Phase 2, priority: chat photos while big files fill the low lanes.

On the drained stack (checked: every queue empty), ``--baseline`` small photos alone, as a reference;
then ``--large`` low-lane files (half ~20 MB scans, half ~13 MB JPEGs), and right after them ``--small``
photos under 1 MB (high lane), one every ``--small-every`` seconds. Prints their time-to-ready
p50/p95/max (target: p95 < 3 s) next to the baseline's, how many large files were done when the last
small one was ready (by the server's clock), and where the small ones' time went: upload, ingest wait
and ingest, presets wait and presets, settle and polling, alone and loaded. Each open small photo is
fetched every ``--small-poll`` s.
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from docpipe_local.stack import LocalStack

from .corpus import Item
from .harness import (
    Clients,
    Observations,
    Phase,
    Upload,
    Uploader,
    Watcher,
    count,
    throttled,
    trickle,
    wait_ingested,
    wait_terminal,
)
from .probes import Recorder, Sampler, counts_cell, log_times, print_stages
from .stats import pct, sec, table


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


SEGMENTS = [
    "POST /uploads",
    "S3 POST",
    "ingest wait",
    "ingest",
    "scan wait",
    "scan",
    "presets wait",
    "presets",
    "settle + poll",
    "total",
]


def segment_lines(parts: list[dict[str, float]], solo: list[dict[str, float]]) -> list[list[str]]:
    """One row per segment: p50 and p95 alone, then p50, p95 and max loaded."""
    lines = []
    for s in [*SEGMENTS[:4], "batch", *SEGMENTS[4:]]:
        values = [b[s] for b in parts if not math.isnan(b[s])]
        base = [b[s] for b in solo if not math.isnan(b[s])]
        stats = [pct(base, 0.5), pct(base, 0.95), pct(values, 0.5), pct(values, 0.95), max(values, default=math.nan)]
        lines.append([s, *(sec(v) for v in stats)])
    return lines


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
        scan = recorder.first_for(digest, "ScanFunction")
        presets = recorder.first_for(digest, "PresetsFunction")
        nan = math.nan
        done = ingested.get(u.job_id, ingest.end if ingest else nan)
        scan_sent = scan.sent[scan.keys.index(digest)] if scan else nan
        sent = presets.sent[presets.keys.index(digest)] if presets else nan
        out.append(
            {
                "requested": u.requested - phase.started,
                "POST /uploads": u.created - u.requested,
                "S3 POST": u.posted - u.created,
                "ingest wait": (ingest.start if ingest else nan) - u.posted,
                "ingest": done - (ingest.start if ingest else nan),
                "batch": float(len(ingest.keys)) if ingest else nan,
                "scan wait": (scan.start if scan else nan) - scan_sent,
                "scan": (scan.end - scan.start) if scan else nan,
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
    retried = throttled([*small.uploads, *large.uploads, *(p.alone.uploads if p.alone else [])])
    if retried:
        print(f"  429 answers to POST /uploads, each waited out (Retry-After) and retried: {retried}")
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
    lines = segment_lines(parts, solo)
    print(
        "where the small photos' time went, s, alone (baseline) and behind the large files (ingest wait: S3 event\n"
        "+ ingest queue; ingest: its invocation until 'upload ingested'; batch: messages in that invocation;\n"
        "scan / presets wait: task message sent to invocation start; settle + poll: invocation end to observed ready):"
    )
    print(table(["segment", "alone p50", "p95", "loaded p50", "p95", "max"], lines))
    slow = sorted(parts, key=lambda b: b["total"], reverse=True)[:5]
    if slow:
        print("slowest small photos, s:")
        print(
            table(["requested", *SEGMENTS], [[f"+{b['requested']:.1f}", *(sec(b[s]) for s in SEGMENTS)] for b in slow])
        )
    print("stages while the small photos ran, s:")
    print_stages(recorder, sampler, p.small_start, p.last_small_ready)
    rows.append(
        [
            "priority",
            "small submitted/ready/failed/lost/refused",
            counts_cell(c, ("submitted", "ready", "failed", "lost", "upload errors")),
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

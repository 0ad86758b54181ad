"""Load: a burst of mixed uploads, chat-photo latency while big files fill the low lanes, and fair share among users.

The options and the run: make every file, start the stack, run the phases (``burst``, ``priority``,
``tenants``; ``--only`` picks one), print each phase's report and a results table. ``bench/load.py``
calls :func:`main`; so does ``python -m loadbench`` from ``bench/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import ROOT, tenants
from .burst import burst, report_burst
from .corpus import KINDS, describe, make_corpus, split_mix
from .priority import WARM_UP, priority, report_priority
from .probes import drain
from .stack import Stack, describe_runtimes, lift_quotas, unlimited_parameters
from .stats import pct, table

PHASES = ("burst", "priority", "tenants")


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
        "--baseline",
        type=int,
        default=30,
        help="small photos uploaded alone first, for comparison (default 30; in the tenants phase, by B and C each)",
    )
    parser.add_argument(
        "--tenant-uploads", type=int, default=500, help="user A's burst in the tenants phase (default 500)"
    )
    parser.add_argument(
        "--tenant-small",
        type=int,
        default=30,
        help="photos users B and C send each during A's burst, at least (default 30; more while A still posts)",
    )
    parser.add_argument(
        "--tenant-every", type=float, default=1.0, help="seconds between B's (and C's) photos (default 1)"
    )
    parser.add_argument(
        "--tenant-quotas",
        choices=("default", "lifted"),
        default="default",
        help="user A's quotas in the tenants phase: the stack's defaults, as deployed (default), or lifted "
        "(0, unlimited) to measure the pipeline's fairness without admission control",
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
    parser.add_argument("--only", choices=PHASES, help="run one phase")
    parser.add_argument("--fresh", action="store_true", help="a new stack for the priority phase")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (files, stack logs) after the run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.only in (None, "tenants") and args.tenant_uploads < 1:
        parser.error("--tenant-uploads must be at least 1")

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
    phases = (args.only,) if args.only else PHASES
    mix = split_mix(args.uploads, args.scans, args.docx, args.mid) if "burst" in phases else {}
    seed = args.seed * 100_000
    specs: list[tuple[str, int]] = []
    for kind, n in mix.items():
        specs += [(kind, seed + len(specs) + i) for i in range(n)]
    n_burst = len(specs)
    n_large = args.large if "priority" in phases else 0
    if n_large:
        specs += [("scan", seed + len(specs) + i) for i in range(n_large // 2)]
        specs += [("photo-13mb", seed + len(specs) + i) for i in range(n_large - n_large // 2)]
        specs += [("photo", seed + len(specs) + i) for i in range(args.small + args.baseline + WARM_UP)]
    n_before = len(specs)
    if "tenants" in phases:
        specs += tenants.specs(args, seed + n_before)
    started = time.time()
    corpus = make_corpus(specs, files)
    burst_items = corpus[:n_burst]
    random.Random(args.seed).shuffle(burst_items)
    large_items = corpus[n_burst : n_burst + n_large]
    random.Random(args.seed + 1).shuffle(large_items)
    photos = corpus[n_burst + n_large : n_before] if n_large else []
    small_items = photos[: args.small]
    baseline_items = photos[args.small : args.small + args.baseline]
    warm_items = photos[args.small + args.baseline :]
    tenant_files = tenants.files(corpus[n_before:], args, files, args.seed + 2) if "tenants" in phases else None
    twins = tenant_files.reference if tenant_files else []
    distinct = len({i.sha256 for i in [*corpus, *twins]})
    print(f"docpipe load bench, revision {revision()}, {len(os.sched_getaffinity(0))} CPUs")
    print("kinds: " + "; ".join(f"{k.name} = {k.about}" for k in KINDS.values()))
    made = f"{len(corpus)} files" + (f" and {len(twins)} twins" if twins else "")
    total = len(corpus) + len(twins)
    print(
        f"made {made} ({sum(i.size for i in [*corpus, *twins]) / 1e6:.0f} MB) in {time.time() - started:.0f} s; "
        f"distinct bytes: {distinct} hashes for {total} files"
    )
    if distinct != total:
        raise SystemExit("some generated files share bytes; the run would measure dedupe")

    tokens = {"tok-burst": "burst", "tok-priority": "priority"}
    warnings_log = work / "stack-warnings.log"
    logging.basicConfig(
        level=logging.WARNING, filename=str(warnings_log), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    rows: list[list[str]] = []
    summary: list[str] = []
    dead = 0
    stack: Stack | None = None
    try:
        if "burst" in phases or "priority" in phases:
            unlimited = unlimited_parameters()  # one user per phase: quotas would only throttle the bench
            state = work / "stack"
            stack = Stack(state, tokens, unlimited)
            stack_up(stack, state, unlimited)
            if "burst" in phases:
                print(f"\n1. burst: {len(burst_items)} uploads, {args.threads} client threads: {describe(burst_items)}")
                out = burst(stack.local, stack.local.token_for("burst"), burst_items, args)
                report_burst(out, stack.recorder, stack.sampler, rows, summary)
            if n_large:
                fresh = args.fresh or args.only == "priority"
                if args.fresh and args.only != "priority":
                    stack.stop()
                    state = work / "stack-priority"
                    stack = Stack(state, tokens, unlimited)
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
        if tenant_files is not None:
            if stack is not None:  # the users' quotas are the stack's defaults: a stack of their own
                dead += close(stack)
                stack.stop()
                stack = None
            state = work / "stack-tenants"
            stack = Stack(state, tenants.TOKENS)
            lifted = lift_quotas(stack.local, tenants.USERS["A"]) if args.tenant_quotas == "lifted" else ([], "")
            stack_up(stack, state, {})
            f = tenant_files
            print(
                f"\n3. tenants: user A posts {describe(f.burst)} ({args.threads} threads); users B and C each send "
                f"a photo every {args.tenant_every} s until A's burst is posted (at least {args.tenant_small} each). "
                f"Before: {len(f.warm)} photos at once (warm-up, not measured), B and C {args.baseline} photos each "
                f"alone (baseline), A's {len(f.reference)} sub-1 MB files as a burst alone (reference: "
                f"{describe(f.reference)})"
            )
            names, note = lifted
            quotas_of_a = (
                f"A's quotas lifted (0, unlimited): {', '.join(names) or 'none'}" + (f"; note: {note}" if note else "")
                if args.tenant_quotas == "lifted"
                else "A keeps the default quotas (admission limits A's burst, as deployed)"
            )
            print(f"  stack fresh, users {', '.join(tenants.USERS.values())}; {quotas_of_a}; B and C keep the defaults")
            result = tenants.tenants(stack.local, f, args, stack.sampler)
            tenants.report_tenants(
                result, stack.recorder, stack.sampler, state / "logs", rows, summary, stack.local.tenant_usage
            )
        if stack is not None:
            dead += close(stack)
        warnings = warnings_log.read_text().count(" WARNING ") if warnings_log.exists() else 0
        print(f"local stack warnings: {warnings}" + (f" (see {warnings_log})" if warnings else ""))
        rows.append(["run", "dead-lettered messages", str(dead), "0"])
        rows.append(["run", "local stack warnings", str(warnings), ""])
        print("\nresults")
        print(table(["phase", "measure", "value", "target"], rows, left=2))
        print("\nload: " + "; ".join(summary))
    finally:
        if stack is not None:
            stack.stop()


def stack_up(stack: Stack, state: Path, unlimited: dict[str, str]) -> None:
    time.sleep(5)  # a few samples of the idle stack
    idle = [s.rtt_ms for s in stack.sampler.samples]
    print(
        f"stack up: api {stack.local.api_url}, state {state}; emulator round trip when idle "
        f"p50 {pct(idle, 0.5):.0f} ms (GetQueueAttributes)"
    )
    if unlimited:
        print(f"  quotas off on this stack (template parameters at 0): {', '.join(unlimited)}")


def close(stack: Stack) -> int:
    """Print what the stack's functions did and what its dead-letter queues hold; returns the dead count."""
    dead = stack.sampler.depths(stack.sampler.dlqs)
    print(f"\nfunctions (this stack): {describe_runtimes(stack.local)}")
    print(f"dead-letter queues: {({k: v for k, v in dead.items() if v}) or 'all empty'}")
    return sum(dead.values())


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
    changed = [
        line
        for line in dirty.stdout.splitlines()
        if not line.endswith("bench/load.py") and not line[3:].startswith("bench/loadbench/")
    ]
    return commit.stdout.strip() + (f" + {len(changed)} uncommitted files" if changed else "")


if __name__ == "__main__":
    main()

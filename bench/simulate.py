"""A discrete-event simulation of docpipe's lanes and fair queues at 10 million uploads a day (issue 21).

    .venv/bin/python bench/simulate.py [--seconds 120] [--durations measured.json] [--seed 1]

Where measuring is impossible (a laptop cannot run 116 uploads a second, let alone 1,157), this plays
the pipeline's queues: uploads arrive as a Poisson process at 1x, 5x (the peak) and 10x the mean load of
10 M/day; each is ingested on its lane, scanned, then its tasks (presets, extract, OCR) run on their
concern's lane. A lane is a pool of ``concurrency`` workers (its event source's MaximumConcurrency)
serving a fair queue: one FIFO per tenant (SQS fair queues by ``MessageGroupId``), served round robin,
so a heavy tenant's backlog waits behind itself. Tenants are drawn Zipf-like (a few heavy users).

Service times are lognormal around the measured means (``MEASURED``: the bench's per-task durations on
this machine, see README "Cost and scale"; ``--durations`` takes a JSON of the same shape). Each lane's
concurrency is sized for the 5x peak at 70 % utilisation (``size_for_peak``), as docs/scale.md says the
template's MaximumConcurrency must be raised to for 10 M/day. 30 % of uploads are duplicates and run
no tasks. Prints each lane's p95 queue wait (ms) at each load.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
from collections import defaultdict, deque
from dataclasses import dataclass, field

UPLOADS_PER_DAY = 10_000_000
PEAK = 5
DEDUPE = 0.30
# Mean seconds of one task at the template's MemorySize, measured (README "Cost and scale").
MEASURED = {
    "ingest": 0.12,
    "scan": 0.25,
    "presets": 0.45,
    "extract": 0.30,
    "ocr": 3.0,  # one scanned page, Tesseract (Textract: about 1.5 s, called, not computed)
}
# The bench mix: (share of uploads, lane, tasks after the scan, pages to OCR).
MIX = [
    (0.55, "high", ("presets",), 0),  # photos under 1 MB
    (0.20, "normal", ("presets",), 0),  # photos of 1-10 MB
    (0.15, "normal", ("extract",), 0),  # documents with text
    (0.05, "normal", ("extract", "ocr"), 2),  # scans
    (0.05, "low", ("presets",), 0),  # over 10 MB
]


@dataclass(order=True)
class Event:
    at: float
    seq: int
    kind: str = field(compare=False)
    lane: str = field(compare=False)
    payload: tuple = field(compare=False, default=())


class Lane:
    """Workers serving per-tenant FIFOs round robin."""

    def __init__(self, name: str, concurrency: int) -> None:
        self.name, self.free = name, concurrency
        self.queues: dict[str, deque] = defaultdict(deque)
        self.ring: deque[str] = deque()
        self.waits: list[float] = []

    def push(self, tenant: str, item: tuple) -> None:
        if not self.queues[tenant]:
            self.ring.append(tenant)
        self.queues[tenant].append(item)

    def pop(self) -> tuple | None:
        if not self.ring:
            return None
        tenant = self.ring.popleft()
        item = self.queues[tenant].popleft()
        if self.queues[tenant]:
            self.ring.append(tenant)
        return item


def size_for_peak(durations: dict[str, float], utilisation: float = 0.7) -> dict[str, int]:
    """Each lane's workers for the 5x peak at ``utilisation``: arrival rate x mean service / utilisation."""
    peak = UPLOADS_PER_DAY / 86400 * PEAK
    work: dict[str, float] = defaultdict(float)
    for share, lane, tasks, pages in MIX:
        work[f"ingest-{lane}"] += peak * share * durations["ingest"]
        fresh = peak * share * (1 - DEDUPE)
        work[f"scan-{lane}"] += fresh * durations["scan"]
        for task in tasks:
            work[f"{task}-{lane}"] += fresh * durations[task] * (pages if task == "ocr" else 1)
    return {name: max(1, math.ceil(load / utilisation)) for name, load in work.items()}


def simulate(load: float, seconds: float, durations: dict[str, float], sizes: dict[str, int], seed: int) -> dict:
    rng = random.Random(seed)
    lanes = {name: Lane(name, n) for name, n in sizes.items()}
    events: list[Event] = []
    seq = 0
    rate = UPLOADS_PER_DAY / 86400 * load
    tenants = [f"t{i}" for i in range(2000)]
    weights = [1 / (i + 1) ** 1.1 for i in range(len(tenants))]
    shares = [m[0] for m in MIX]

    def service(task: str, pages: int) -> float:
        mean = durations[task] * (pages if task == "ocr" and pages else 1)
        return rng.lognormvariate(math.log(mean) - 0.125, 0.5)

    def submit(now: float, lane: str, item: tuple) -> None:
        nonlocal seq
        target = lanes[lane]
        target.push(item[0], (now, *item))
        while target.free and target.ring:
            start(now, target)

    def start(now: float, lane: Lane) -> None:
        nonlocal seq
        queued = lane.pop()
        if queued is None:
            return
        enqueued, tenant, task, mix, pages = queued
        lane.waits.append(now - enqueued)
        lane.free -= 1
        seq += 1
        heapq.heappush(events, Event(now + service(task, pages), seq, "done", lane.name, (tenant, task, mix, pages)))

    now = 0.0
    while now < seconds:
        now += rng.expovariate(rate)
        seq += 1
        mix = rng.choices(range(len(MIX)), shares)[0]
        tenant = rng.choices(tenants, weights)[0]
        heapq.heappush(events, Event(now, seq, "arrive", "", (tenant, "ingest", mix, MIX[mix][3])))
    while events:
        ev = heapq.heappop(events)
        tenant, task, mix, pages = ev.payload
        _, lane, tasks, _ = MIX[mix]
        if ev.kind == "arrive":
            submit(ev.at, f"ingest-{lane}", (tenant, "ingest", mix, pages))
            continue
        done = lanes[ev.lane]
        done.free += 1
        if done.ring:
            start(ev.at, done)
        if task == "ingest" and rng.random() >= DEDUPE:
            submit(ev.at, f"scan-{lane}", (tenant, "scan", mix, pages))
        elif task == "scan":
            for follow in tasks:
                submit(ev.at, f"{follow}-{lane}", (tenant, follow, mix, pages))
    return {name: lane.waits for name, lane in lanes.items()}


def p95(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="simulated seconds of arrivals per load")
    parser.add_argument("--durations", help="JSON of mean seconds per task (ingest, scan, presets, extract, ocr)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    durations = dict(MEASURED)
    if args.durations:
        with open(args.durations) as fh:
            durations.update(json.load(fh))
    sizes = size_for_peak(durations)
    loads = (1, 5, 10)
    results = {load: simulate(load, args.seconds, durations, sizes, args.seed) for load in loads}
    mean = UPLOADS_PER_DAY / 86400
    print(f"10 M uploads/day = {mean:.0f}/s mean, {mean * PEAK:.0f}/s at the 5x peak; {DEDUPE:.0%} duplicates;")
    print(f"lanes sized for the peak at 70 % busy; {args.seconds:g} s of arrivals per load; p95 queue wait (ms)")
    print(f"{'lane':<16}{'workers':>8}" + "".join(f"{f'{load}x':>12}" for load in loads))
    for name in sorted(sizes):
        cells = "".join(f"{p95(results[load][name]) * 1000:>12.0f}" for load in loads)
        print(f"{name:<16}{sizes[name]:>8}{cells}")
    print(f"{'total workers':<16}{sum(sizes.values()):>8}")


if __name__ == "__main__":
    main()

"""How long a quiet worker's DynamoDB calls wait on the embedded emulator while a busy tenant's workers keep it busy.

Two comparisons, each setting a fresh server on loopback, in turns in the same run:

Default, the gate:

- reference: two tagged requests answered at once, Python's default switch interval (5 ms);
- docpipe's: ``request_priority.SLOTS`` and ``moto_server.SWITCH_INTERVAL``.

The busy tenant is three processes at ``nice`` 10 (a heavy tenant's workers), four threads each, that
query 100 items of a 300-item partition and update one, as fast as they go. The quiet worker is two
threads at the caller's priority that each update and read one item, pausing 20 ms between pairs.
Every request is tagged with its process's priority, as the stack's workers tag theirs.

``--yielding``: how far behind the stack a far-behind worker's answer runs (``request_priority.Yielding``),
with the server 20 levels ahead of the caller as the local stack runs it (needs root or ``CAP_SYS_NICE``),
the busy tenant at ``--busy-nice`` (19: a heavy tenant's low-lane work) and one process per core at the
caller's priority that only computes (the stack's workers' own CPU):

- docpipe's: at most ``request_priority.LOWEST`` levels behind the stack (19: the busy tenant's own nice);
- 10 behind: at most 10 levels behind the stack (ae349d0's setting);
- the stack's: at the caller's nice (``lowest`` 0).

    python bench/emulator_priority.py [--seconds 20] [--rounds 3] [--yielding [--busy-nice 19]]

Prints, per round and setting, the quiet pair's p50 / p95 and the busy tenant's requests a second,
then docpipe's over each other setting's (lower is better for the pair; the busy tenant's rate shows what
the quiet tenant's turn costs it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "local")]

import boto3  # noqa: E402

from docpipe_local import request_priority  # noqa: E402
from docpipe_local.moto_server import CREDENTIALS, SWITCH_INTERVAL, MotoServer  # noqa: E402

TABLE = "bench"
SETTINGS = {"reference": (2, 0.005), "docpipe": (request_priority.SLOTS, SWITCH_INTERVAL)}
# --yielding: Yielding's lowest (docpipe's: 19, the worker's own priority)
LOWEST = {"docpipe": request_priority.LOWEST, "10 behind": 10, "the stack's": 0}


def _dynamodb(url: str):  # type: ignore[no-untyped-def]
    os.environ.update(CREDENTIALS)
    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")


def _busy(url: str, until: float, first: int, threads: int, done: Any, nice: int = 10) -> None:
    """A heavy tenant's worker process: its requests tagged ``nice`` levels behind the caller."""
    os.nice(nice)
    request_priority.tag_requests()

    def loop(n: int) -> None:
        client = _dynamodb(url)
        key = {"pk": {"S": "busy"}, "sk": {"S": f"{n:05}"}}
        while time.time() < until:
            client.query(
                TableName=TABLE,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "busy"}},
                Limit=100,
            )
            client.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="ADD n :one SET w = :w",
                ExpressionAttributeValues={":one": {"N": "1"}, ":w": {"S": "y"}},
            )
            with done.get_lock():
                done.value += 2

    workers = [threading.Thread(target=loop, args=(first + i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _compute(until: float) -> None:
    """A worker's own CPU, at the caller's priority: it computes and calls nothing."""
    n = 0
    while time.time() < until:
        n += 1


def measure(server: MotoServer, seconds: float, busy_nice: int = 10, hogs: int = 0) -> tuple[float, float, float]:
    """The quiet pair's p50 and p95 (s) and the busy tenant's requests a second, on ``server``, beside
    ``hogs`` processes that only compute."""
    try:
        server.wait_ready()
        client = _dynamodb(server.url)
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(300):
            client.put_item(TableName=TABLE, Item={"pk": {"S": "busy"}, "sk": {"S": f"{i:05}"}, "v": {"S": "x" * 200}})
        client.put_item(TableName=TABLE, Item={"pk": {"S": "quiet"}, "sk": {"S": "1"}, "n": {"N": "0"}})
        request_priority.tag_requests()  # this process's priority: the quiet worker's
        until = time.time() + seconds
        done = multiprocessing.Value("i", 0)
        others = [
            multiprocessing.Process(target=_busy, args=(server.url, until, k * 10, 4, done, busy_nice))
            for k in range(3)
        ]
        others += [multiprocessing.Process(target=_compute, args=(until,)) for _ in range(hogs)]
        for p in others:
            p.start()
        pairs: list[float] = []

        def quiet() -> None:
            own = _dynamodb(server.url)
            key = {"pk": {"S": "quiet"}, "sk": {"S": "1"}}
            while time.time() < until:
                started = time.perf_counter()
                own.update_item(
                    TableName=TABLE,
                    Key=key,
                    UpdateExpression="ADD n :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )
                own.get_item(TableName=TABLE, Key=key)
                pairs.append(time.perf_counter() - started)
                time.sleep(0.02)

        probes = [threading.Thread(target=quiet) for _ in range(2)]
        for t in probes:
            t.start()
        for t in probes:
            t.join()
        for p in others:
            p.join()
        return statistics.median(pairs), statistics.quantiles(pairs, n=20)[18], done.value / seconds
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--yielding", action="store_true", help="compare how far behind a far-behind answer runs")
    parser.add_argument("--busy-nice", type=int, default=19, help="the busy tenant's nice, with --yielding")
    args = parser.parse_args()
    names = list(LOWEST if args.yielding else SETTINGS)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            for name in names:
                log = Path(tmp) / f"{name}.log"
                if args.yielding:
                    server = MotoServer(log, ahead=20, lowest=LOWEST[name])
                    server.wait_ready()  # the server raises its own priority as it starts
                    if not server.ahead:
                        server.stop()
                        raise SystemExit("--yielding needs a server ahead of this process: run as root")
                    measured = measure(server, args.seconds, args.busy_nice, os.cpu_count() or 1)
                    label = f"answered at most {LOWEST[name]} levels behind"
                else:
                    slots, interval = SETTINGS[name]
                    server = MotoServer(log, slots=slots, switch_interval=interval)
                    measured = measure(server, args.seconds)
                    label = f"{slots} slot(s), switch {interval * 1000:g} ms"
                results[name].append(measured)
                p50, p95, rate = measured
                print(
                    f"round {round_} {name:12} ({label}): quiet update+get p50 {p50 * 1000:.0f} ms, "
                    f"p95 {p95 * 1000:.0f} ms; busy {rate:.0f} requests/s",
                    flush=True,
                )
    ours = results["docpipe"]
    for other in (n for n in names if n != "docpipe"):
        for label, i in (("quiet pair p50", 0), ("quiet pair p95", 1), ("busy requests/s", 2)):
            ratios = sorted(o[i] / r[i] for o, r in zip(ours, results[other], strict=True))
            print(f"docpipe / {other}, {label}: " + ", ".join(f"{x:.2f}" for x in ratios))


if __name__ == "__main__":
    main()

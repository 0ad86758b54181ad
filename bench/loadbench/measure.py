"""What a bench run cost, read from the local stack and its processes: each function invocation's CPU
(read from the worker's ``/proc`` entry around ``Worker.invoke``), the emulator's requests and CPU by
operation, the metrics the functions wrote in their logs, the FilesTable's items and the store bucket's
objects. Shared by the benches that compare
runs by what they cost (``bench/dedupe_scope.py``)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from docpipe_local.cpu_share import cpu_seconds
from docpipe_local.emulator import request_counts
from docpipe_local.runtime import Worker
from docpipe_local.stack import LocalStack

# ------------------------------------------------------------------------------------------------- CPU

Operation = tuple[str, str, str]  # (service, caller, operation)


def emulator_operations(urls: list[str]) -> tuple[Counter[Operation], Counter[Operation]]:
    """The requests the emulator's servers at ``urls`` answered since their counts were last reset, and the
    CPU seconds they spent answering them, per (service, caller, operation)
    (:func:`docpipe_local.emulator.request_counts`)."""
    requests: Counter[Operation] = Counter()
    seconds: Counter[Operation] = Counter()
    for url in urls:
        for caller, services in request_counts(url).items():
            for service, operations in services.items():
                for operation, (n, _, spent) in operations.items():
                    requests[(service, caller, operation)] += int(n)
                    seconds[(service, caller, operation)] += spent
    return requests, seconds


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds of a process and of its children it has reaped (utime, stime, cutime, cstime), or
    None once it is gone (:func:`docpipe_local.cpu_share.cpu_seconds`)."""
    return None if not pid else cpu_seconds(pid)


class InvocationCpu:
    """The CPU of every function invocation, read from the worker's ``/proc`` entry around
    ``Worker.invoke``, with a worker's start-up (its handler's imports, before its first invocation)
    counted apart. Instrumentation of the bench only: it wraps the class's methods in this process,
    the product code is untouched. It counts what a snapshot of the live processes would miss: workers
    retired during the run and the PDF readers a worker forks and reaps."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.work: dict[str, float] = {}  # by function, seconds
            self.startup: dict[str, float] = {}
            self.starts: dict[str, int] = {}
            self.unread = 0  # invocations whose worker was gone before its CPU could be read
            self.ready_at: dict[int, float] = {}  # pid: CPU when the worker became ready

    def install(self) -> None:
        invoke, await_ready = Worker.invoke, Worker._await_ready

        def timed_ready(worker: Worker, deadline: float) -> Any:
            cold = not worker.ready
            out = await_ready(worker, deadline)
            cpu = process_cpu(worker.process.pid) if cold and worker.ready else None
            if cpu is not None and worker.process.pid:
                with self.lock:
                    self.ready_at[worker.process.pid] = cpu
                    self.startup[worker.spec.logical] = self.startup.get(worker.spec.logical, 0.0) + cpu
                    self.starts[worker.spec.logical] = self.starts.get(worker.spec.logical, 0) + 1
            return out

        def timed_invoke(worker: Worker, event: dict[str, Any]) -> Any:
            pid = worker.process.pid or 0
            before = process_cpu(pid) if worker.ready else None
            out = invoke(worker, event)
            after = process_cpu(pid)
            with self.lock:
                before = self.ready_at.pop(pid, None) if before is None else before
                if before is None or after is None:
                    self.unread += 1
                else:
                    name = worker.spec.logical
                    self.work[name] = self.work.get(name, 0.0) + max(0.0, after - before)
            return out

        Worker._await_ready = timed_ready  # type: ignore[method-assign]
        Worker.invoke = timed_invoke  # type: ignore[method-assign]


CPU = InvocationCpu()


# -------------------------------------------------------------------------------------------- measures


def json_lines(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    with path.open(errors="replace") as fh:
        for line in fh:
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    return out


def emf_totals(logs: Path) -> dict[str, float]:
    """Every metric the functions wrote (EMF lines in their logs), summed over all of them."""
    totals: dict[str, float] = {}
    for path in logs.glob("*Function.log"):
        for record in json_lines(path):
            for directive in (record.get("_aws") or {}).get("CloudWatchMetrics") or []:
                for metric in directive.get("Metrics") or []:
                    value = record.get(metric["Name"])
                    values = value if isinstance(value, list) else [value]
                    total = sum(v for v in values if isinstance(v, int | float))
                    totals[metric["Name"]] = totals.get(metric["Name"], 0.0) + total
    return totals


def ingest_outcomes(path: Path) -> dict[str, bool]:
    """``{job id: deduplicated}`` from ingest's ``upload ingested`` lines."""
    return {
        str(r["job_id"]): bool(r.get("deduplicated"))
        for r in json_lines(path)
        if r.get("message") == "upload ingested" and r.get("job_id")
    }


def files_table(stack: LocalStack) -> tuple[int, int]:
    """Items in the FilesTable (one per content key) and their task attempts (``*Attempts``) in all."""
    assert stack.template is not None
    dynamodb = stack.client("dynamodb")
    items, attempts = 0, 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=stack.template.physical_name("FilesTable")):
        for item in page["Items"]:
            items += 1
            attempts += sum(int(v["N"]) for k, v in item.items() if k.endswith("Attempts") and "N" in v)
    return items, attempts


def store_bucket(stack: LocalStack) -> dict[str, tuple[int, int]]:
    """Objects and bytes in the store bucket, per top-level prefix (``files``, ``derived``, ``text``)."""
    assert stack.template is not None
    s3 = stack.client("s3")
    out: dict[str, tuple[int, int]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.template.physical_name("StoreBucket")):
        for obj in page.get("Contents", []):
            prefix = obj["Key"].split("/", 1)[0]
            n, size = out.get(prefix, (0, 0))
            out[prefix] = (n + 1, size + obj["Size"])
    return out

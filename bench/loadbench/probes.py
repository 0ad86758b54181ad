"""What the harness measures besides the API: queue depths, the emulator, CPU, and every invocation.

To say where time goes, the harness times every invocation the local stack makes (wrapping each
runtime's ``invoke_acquired`` in this process; product code untouched): per function and queue, the
wait from a message being sent (``SentTimestamp``) to its invocation, and the invocation's run time.
A sampler records queue depths, the emulator's round-trip time and CPU by process (this process, the
emulator, each function's workers, and everything else on the machine, which other work can skew).

Queues are found in the template (``AWS::SQS::Queue``), dead-letter queues by the redrive policies that
name them, so lanes can be added or renamed; an upload's job id is the key's second-to-last segment,
in ``uploads/{owner}/{jobId}/{name}`` and in ``uploads/{lane}/{owner}/{jobId}/{name}`` alike.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from docpipe_local.stack import LocalStack
from docpipe_local.template import Template

from .stats import pct, sec, table


@dataclass
class Sample:
    at: float
    busy: float  # the machine's CPU busy fraction since the last sample
    depths: dict[str, int]  # visible + in flight, per queue
    rtt_ms: float  # median round trip of this sample's GetQueueAttributes calls to the emulator
    cpu: dict[str, float]  # CPU seconds so far, per process group (see cpu_by_group)
    dynamodb_ms: float = math.nan  # round trip of one GetItem (of no item) to the DynamoDB emulator
    stolen: float = 0.0  # the fraction of the machine's CPU time its hypervisor gave to others (steal)


def dead_letter_queues(template: Template) -> set[str]:
    """Logical ids of the queues that some queue's redrive policy sends to (and any named ``...DLQ``)."""
    queues = template.of_type("AWS::SQS::Queue")
    out = {n for n in queues if n.endswith("DLQ")}
    for spec in queues.values():
        target = (spec.get("Properties", {}).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if isinstance(target, dict) and "Fn::GetAtt" in target:
            out.add(target["Fn::GetAtt"][0])
    return out


class Sampler(threading.Thread):
    """Every ``every`` seconds: queue depths, the emulator's round-trip time, CPU busy and CPU by process."""

    def __init__(self, stack: LocalStack, every: float = 5.0) -> None:
        super().__init__(name="sampler", daemon=True)
        assert stack.template is not None
        self.sqs = stack.client("sqs")
        self.dynamodb = stack.client("dynamodb")
        tables = stack.template.of_type("AWS::DynamoDB::Table")
        probed = "JobsTable" if "JobsTable" in tables else next(iter(tables), None)
        self.table = stack.template.attributes[probed]["Ref"] if probed else None
        self.missing_key = self._missing_key() if self.table else {}
        queues, dead = stack.template.of_type("AWS::SQS::Queue"), dead_letter_queues(stack.template)
        self.urls = {n: stack.template.attributes[n]["QueueUrl"] for n in queues if n not in dead}
        self.dlqs = {n: stack.template.attributes[n]["QueueUrl"] for n in queues if n in dead}
        self.state_dir = stack.state_dir
        self.moto_pids = {m.process.pid for m in (stack.moto, stack.moto_dynamodb) if m is not None}
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

    def take(self, before: tuple[float, float, float]) -> tuple[float, float, float]:
        now = cpu_times()
        busy = (now[0] - before[0]) / max(1e-9, now[1] - before[1])
        stolen = (now[2] - before[2]) / max(1e-9, now[1] - before[1])
        rtts: list[float] = []
        depths = self.depths(self.urls, rtts)
        dynamodb = math.nan
        if self.table:
            started = time.perf_counter()
            self.dynamodb.get_item(TableName=self.table, Key=self.missing_key)
            dynamodb = (time.perf_counter() - started) * 1000
        cpu = cpu_by_group(self.state_dir, self.moto_pids)
        self.samples.append(Sample(time.time(), busy, depths, pct(rtts, 0.5), cpu, dynamodb, stolen))
        return now

    def _missing_key(self) -> dict[str, Any]:
        """A key of no item in the probed table, of its key schema's attributes."""
        schema = self.dynamodb.describe_table(TableName=self.table)["Table"]
        types = {a["AttributeName"]: a["AttributeType"] for a in schema["AttributeDefinitions"]}
        return {k["AttributeName"]: {types[k["AttributeName"]]: "0"} for k in schema["KeySchema"]}

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


def drain(sampler: Sampler, timeout: float = 120) -> dict[str, int]:
    """Wait until every queue is empty (or the timeout); returns the last depths."""
    deadline = time.time() + timeout
    while True:
        depths = sampler.depths(sampler.urls)
        if not any(depths.values()) or time.time() > deadline:
            return depths
        time.sleep(1)


def cpu_times() -> tuple[float, float, float]:
    """(busy, total, stolen) jiffies of the whole machine, from /proc/stat. Busy counts the stolen ones:
    time the hypervisor gave another machine, which the host's speed varies by from run to run."""
    with open("/proc/stat") as fh:
        values = [float(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    # guest time is counted in user time already
    total = sum(values[:8])
    return total - idle, total, values[7] if len(values) > 7 else 0.0


def cpu_by_group(state_dir: Path, moto_pids: set[int]) -> dict[str, float]:
    """CPU seconds used so far by this process (the bench and the stack's gateway and pollers), the
    emulator (its processes), and each function's workers (found by the log file their stdout goes to)."""
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
            elif int(pid) in moto_pids:
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


def upload_job_id(key: str) -> str:
    """The job id in an upload's S3 key, ``uploads/{owner}/{jobId}/{name}`` or
    ``uploads/{lane}/{owner}/{jobId}/{name}`` (the name never holds a slash)."""
    parts = unquote_plus(key).split("/")
    return parts[-2] if len(parts) > 3 else ""


class Recorder:
    """Times every invocation the stack makes, by wrapping each runtime's ``invoke_acquired`` in this
    process (instrumentation of the harness only: the product code is untouched)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()

    def attach(self, stack: LocalStack) -> None:
        for name, runtime in stack.runtimes.items():
            runtime.invoke_acquired = self.timed(name, runtime.invoke_acquired)  # type: ignore[method-assign]
        if stack.gateway is not None:  # an API request at the gateway: its wait for a worker, then its run
            invoke_api = stack.gateway._invoke_api

            def at_gateway(user: str | None, event: dict[str, Any]) -> Any:
                start = time.time()
                invocation = invoke_api(user, event)
                self.record(f"API gateway, {user}", event, start, time.time(), invocation.ok)
                return invocation

            stack.gateway._invoke_api = at_gateway  # type: ignore[method-assign]

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
        elif "dynamodb" in records[0]:  # a table's stream (the notifier): records, each when it was written
            table = records[0]["eventSourceARN"].split(":table/", 1)[-1].split("/", 1)[0]
            created = [float(r["dynamodb"].get("ApproximateCreationDateTime", start)) for r in records]
            call = Call(function, f"{table.removeprefix('docpipe-local-')} stream", start, end, ok, created, [], [])
        else:
            keys = []
            for record in records:
                try:
                    body = json.loads(record["body"])
                except ValueError:
                    continue
                if isinstance(body, dict) and "Records" in body:  # an S3 notification of an upload
                    for s3 in body["Records"]:
                        keys.append(upload_job_id(s3.get("s3", {}).get("object", {}).get("key", "")))
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


def stage_table(calls: list[Call]) -> str:
    """Per function and source queue: invocations, messages, queue wait per message, run time per invocation.
    Invocations of no queue (the HTTP API's, a replay's) are a row ``direct`` of their function: their run
    time is the invocation's, without the wait for a worker."""
    groups: dict[tuple[str, str], list[Call]] = {}
    for call in calls:
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


def print_stages(recorder: Recorder, sampler: Sampler, start: float, end: float) -> None:
    """The stage table of the invocations between ``start`` and ``end``, and who used the machine then."""
    print(stage_table(recorder.between(start, end)))
    print(machine_line(sampler, start, end))


def counts_cell(counts: dict[str, int], keys: tuple[str, ...]) -> str:
    """``counts``' values for ``keys``, joined by "/" (a results-table cell)."""
    return "/".join(str(counts[k]) for k in keys)


def stolen_share(sampler: Sampler, start: float, end: float) -> float:
    """The share of the machine's CPU time its hypervisor gave to others between two times (nan: no sample).

    The same code's latencies vary from run to run with the host; this is the part of that the guest sees."""
    window = sampler.between(start, end + sampler.every)  # a sample covers the interval before it
    return sum(s.stolen for s in window) / len(window) if window else math.nan


def machine_line(sampler: Sampler, start: float, end: float) -> str:
    cores = sampler.cores(start, end)
    window = sampler.between(start, end)
    cpus = os.cpu_count() or 1
    busy = sum(s.busy for s in window) / len(window) if window else math.nan
    stolen = sum(s.stolen for s in window) / len(window) if window else math.nan
    cores["other processes on the machine"] = max(0.0, (busy - stolen) * cpus - sum(cores.values()))
    cores["the hypervisor (steal)"] = stolen * cpus
    rtt50, rtt95 = pct([s.rtt_ms for s in window], 0.5), pct([s.rtt_ms for s in window], 0.95)
    ddb50, ddb95 = pct([s.dynamodb_ms for s in window], 0.5), pct([s.dynamodb_ms for s in window], 0.95)
    spent = ", ".join(f"{g.removesuffix('Function')} {v:.2f}" for g, v in sorted(cores.items(), key=lambda x: -x[1]))
    return (
        f"CPU busy {busy * 100:.0f} % of {cpus} cores on average; cores used by: {spent}\n"
        f"  emulator round trip (GetQueueAttributes, sampled every {sampler.every:.0f} s): "
        f"p50 {rtt50:.0f} ms, p95 {rtt95:.0f} ms; DynamoDB's (GetItem): p50 {ddb50:.0f} ms, p95 {ddb95:.0f} ms"
    )

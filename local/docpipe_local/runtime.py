"""Run a function's handler the way Lambda does: in warm worker processes, one invocation at a time each.

A worker is a separate process (``spawn``) with the function's environment from the template and
its code and layer on ``sys.path``; it imports the handler once and then serves invocations over a
pipe. An invocation that outlives the function's ``Timeout`` or grows past its ``MemorySize`` is
killed like Lambda would kill it, and a worker that crashes takes down only its own invocation: the
pool replaces it on the next call. Each invocation reports its duration (billed rounded up to 1 ms, as
Lambda bills) and its peak memory; with ``DOCPIPE_CPU_SHARE=1`` a worker gets CPU in proportion to its
MemorySize, as on Lambda (:mod:`docpipe_local.cpu_share`). Concurrency is capped per function (``ReservedConcurrentExecutions``
or the sum of its event sources' ``MaximumConcurrency``).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docpipe_local import cpu_share, heavy_group, request_priority, worker_memory
from docpipe_local.slots import FairSemaphore
from docpipe_local.template import FunctionSpec

_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "PYTHONPATH", "VIRTUAL_ENV")


@dataclass
class Invocation:
    status: str  # ok | error | timeout | crashed | out_of_memory
    result: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    # The most memory the environment held during the invocation: the worker's peak resident set
    # (VmHWM, reset before the invocation where the kernel allows) or the runtime's samples of it and
    # of the processes it started, whichever is larger. 0 when the invocation never ran.
    peak_memory_mb: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def billed_ms(self) -> int:
        """The duration Lambda bills: rounded up to the millisecond."""
        return math.ceil(self.duration_ms)


class _Context:
    """The ``context`` object Lambda passes to a handler."""

    def __init__(self, name: str, memory_mb: int, arn: str, request_id: str, deadline: float) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = arn
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _worker_main(
    conn: Any, handler: str, paths: list[str], env: dict[str, str], log_path: str, meta: dict[str, Any]
) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    for key in list(os.environ):
        if key not in _KEEP_ENV:
            del os.environ[key]
    os.environ.update(env)
    sys.path[:0] = paths
    request_priority.tag_requests()  # the embedded emulator serves AWS calls in the order of CPU priority
    try:
        module_name, _, function_name = handler.rpartition(".")
        module = __import__(module_name, fromlist=[function_name])
        function = getattr(module, function_name)
    except BaseException as exc:  # an import error is an init error: report it for every invocation
        init_error = {
            "errorType": type(exc).__name__,
            "errorMessage": str(exc),
            "stackTrace": traceback.format_exc().splitlines(),
        }
        traceback.print_exc()
        conn.send(json.dumps({"status": "init_error", "error": init_error}))
        return
    # The CPU priority applies to invocations, not to the start: a worker started for a low lane or a busy
    # tenant while the machine is loaded must not take so long to import its handler that it times out.
    if meta.get("nice"):
        os.nice(meta["nice"])
    heavy_group.join(meta.get("group"))  # a heavy tenant's worker: the CPU nobody else wants
    conn.send(json.dumps({"status": "ready"}))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        request_id, deadline, event = message["requestId"], message["deadline"], json.loads(message["event"])
        context = _Context(meta["name"], meta["memory_mb"], meta["arn"], request_id, deadline)
        worker_memory.reset_peak()
        try:
            result = function(event, context)
            reply = {"status": "ok", "result": result}
        except Exception as exc:
            traceback.print_exc()
            error = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exc().splitlines(),
            }
            reply = {"status": "error", "error": error}
        conn.send(json.dumps({**reply, "peakMemoryMb": worker_memory.peak_mb()}, default=str))


# How often a running invocation's memory is read: each read walks the worker's threads' children in /proc,
# in the stack's own process. At 0.05 s, with thirty invocations running under the tenants bench, the reads
# were a sixth of the pollers' time in that process; the answer is still taken as soon as it comes.
MEMORY_EVERY = 0.1
# Lambda's Init phase has 10 s of its own: an invocation's timeout runs from the end of the cold start (an
# init past it is retried within the first invocation's timeout; here it goes on, under that same budget).
INIT_SECONDS = 10.0


# Libraries that read no environment at import time. A module missing here is simply not preloaded.
_PRELOAD = [
    "boto3",
    "botocore.session",
    "pydantic",
    "aws_lambda_powertools",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.event_handler.openapi.models",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.data_classes",
    "aws_lambda_powertools.utilities.typing",
]


def _context() -> Any:
    """Workers fork from a server process that has already imported the heavy, environment-free
    libraries (boto3, pydantic), so a cold start costs milliseconds instead of a second of CPU.
    Handler modules are imported only in the worker, after its environment is set."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


class Worker:
    """One warm execution environment."""

    _ctx = _context()

    def __init__(
        self,
        spec: FunctionSpec,
        env: dict[str, str],
        log_path: Path,
        arn: str,
        nice: int = 0,
        group: str | None = None,
        init_seconds: float = INIT_SECONDS,
    ) -> None:
        """``group``: the ``cgroup.procs`` of the CPU group the worker joins once ready (:mod:`docpipe_local.heavy_group`);
        ``init_seconds``: its Init phase's own time (:data:`INIT_SECONDS`)."""
        self.spec = spec
        self.init_seconds = init_seconds
        self.nice = nice
        self.group = group
        self.conn, child = self._ctx.Pipe()
        paths = [str(spec.code_uri), *(str(p) for p in spec.layers)]
        meta = {"name": spec.name, "memory_mb": spec.memory_mb, "arn": arn, "nice": nice, "group": group}
        self.process = self._ctx.Process(
            target=_worker_main, args=(child, spec.handler, paths, env, str(log_path), meta), daemon=True
        )
        self.process.start()
        child.close()
        self.ready = False
        self.init_error: dict[str, Any] | None = None
        self.peak_memory_mb = 0.0
        self.invocation_peak_mb = 0.0  # sampled during the current invocation (with the processes it started)
        self.cpu_limit = (
            cpu_share.Limit(self.process.pid or 0, spec.memory_mb, worker_memory.descendants)
            if cpu_share.enabled()
            else None
        )
        self._ending = threading.Lock()  # the stack's stop and the invoking thread may both end a worker
        self._ended = False

    def _await_ready(self, deadline: float) -> Invocation | None:
        if self.ready:
            return None
        if not self._wait(deadline):
            if self.peak_memory_mb > self.spec.memory_mb:
                return self._kill("out_of_memory", f"initialization exceeded MemorySize {self.spec.memory_mb} MB")
            return self._kill("timeout", "the function did not finish initializing within its init phase and timeout")
        try:
            hello = json.loads(self.conn.recv())
        except (EOFError, OSError):
            return self._crashed("the worker died while initializing")
        if hello["status"] == "init_error":
            self.init_error = hello["error"]
            self.kill()
            return Invocation("error", error=hello["error"])
        self.ready = True
        return None

    def _wait(self, deadline: float) -> bool:
        """Wait for a message until ``deadline``, killing the worker if it exceeds its memory size (its
        memory, with the processes it started, is read every :data:`MEMORY_EVERY` seconds meanwhile)."""
        while time.time() < deadline:
            try:
                if self.conn.poll(MEMORY_EVERY):
                    return True
            except OSError:
                return True  # ended by another thread (the stack stopping); recv() will raise OSError
            if not self.process.is_alive():
                return True  # recv() will raise EOFError
            memory = worker_memory.memory_mb(self.process.pid or 0)
            self.peak_memory_mb = max(self.peak_memory_mb, memory)
            self.invocation_peak_mb = max(self.invocation_peak_mb, memory)
            if memory > self.spec.memory_mb:
                return False
        return False

    def invoke(self, event: dict[str, Any]) -> Invocation:
        started = time.time()
        deadline = started + self.spec.timeout
        if not self.ready:  # a cold start: Lambda's Init phase, then the timeout (INIT_SECONDS)
            failed = self._await_ready(started + self.init_seconds + self.spec.timeout)
            if failed:
                return failed
            deadline = min(time.time(), started + self.init_seconds) + self.spec.timeout
        request_id = str(uuid.uuid4())
        try:
            payload = json.dumps(event)
        except (TypeError, ValueError) as exc:
            return Invocation("error", error={"errorType": "InvalidRequestContentException", "errorMessage": str(exc)})
        self.invocation_peak_mb = 0.0
        try:
            self.conn.send({"requestId": request_id, "deadline": deadline, "event": payload})
        except (BrokenPipeError, OSError):
            return self._kill("crashed", "the worker is gone")
        if not self._wait(deadline):
            if (
                worker_memory.memory_mb(self.process.pid or 0) > self.spec.memory_mb
                or self.peak_memory_mb > self.spec.memory_mb
            ):
                return self._kill("out_of_memory", f"the invocation exceeded MemorySize {self.spec.memory_mb} MB")
            return self._kill("timeout", f"the invocation exceeded Timeout {self.spec.timeout} s")
        try:
            reply = json.loads(self.conn.recv())
        except (EOFError, OSError):
            return self._crashed("the worker died")
        duration = (time.time() - started) * 1000
        peak = max(float(reply.get("peakMemoryMb") or 0.0), self.invocation_peak_mb)
        if reply["status"] == "ok":
            return Invocation("ok", result=reply["result"], duration_ms=duration, peak_memory_mb=peak)
        return Invocation("error", error=reply["error"], duration_ms=duration, peak_memory_mb=peak)

    def _crashed(self, message: str) -> Invocation:
        self.process.join(timeout=5)  # exitcode is only known once the process is reaped
        return self._kill("crashed", f"{message} (exit code {self.process.exitcode})")

    def _kill(self, status: str, message: str) -> Invocation:
        self.kill()
        return Invocation(status, error={"errorType": status, "errorMessage": message})

    def kill(self) -> None:
        """End the worker and every process it started, as Lambda ends a whole execution environment.

        Idempotent: when the stack stops while a worker is busy, the invoking thread sees it die and
        ends it too, and a second close of the pipe would fail on a descriptor already reused.
        """
        with self._ending:
            if self._ended:
                return
            self._ended = True
            self._end()

    def _end(self) -> None:
        if self.cpu_limit is not None:
            self.cpu_limit.stop()
        if self.process.is_alive():
            children = worker_memory.descendants(self.process.pid or 0)
            self.process.kill()
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        self.process.join(timeout=5)
        self.conn.close()

    @property
    def alive(self) -> bool:
        return self.ready and self.process.is_alive()


class FunctionRuntime:
    """A pool of warm workers for one function, capped at its concurrency."""

    def __init__(
        self,
        spec: FunctionSpec,
        env: dict[str, str],
        log_dir: Path,
        arn: str,
        concurrency: int,
        nice: int = 0,
        heavy: heavy_group.HeavyGroup | None = None,
        behind: tuple[int, dict[str, str]] | None = None,
        init_seconds: float = INIT_SECONDS,
        spare: bool = False,
    ) -> None:
        """``nice``: the CPU priority every worker runs below the caller's, before an invocation's own.
        ``heavy``: the CPU group of heavy tenants' invocations (:meth:`invoke_acquired`), if there is one.
        ``behind``: ``(levels, changes)``, what changes in the environment of a worker that many levels or more
        below the caller: the scan's second clamd (``docpipe_local.clamav``).
        ``spare``: keep a worker started ahead of the next invocation, up to the concurrency (see
        :meth:`invoke_acquired`)."""
        self.spec, self.env, self.arn = spec, env, arn
        self.spare = spare
        self.behind = behind
        self.init_seconds = init_seconds
        self.concurrency = concurrency
        self.nice = nice
        self.heavy_group = heavy
        self.log_path = log_dir / f"{spec.logical}.log"
        self._slots = FairSemaphore(concurrency)
        self._idle: list[Worker] = []
        self._lock = threading.Lock()
        self._all: set[Worker] = set()
        self.invocations = 0
        self.failures = 0
        self.spawned = 0  # workers started: a restart storm shows here
        # (ok, duration ms) of each invocation since the last :meth:`drain_outcomes`: what Lambda publishes
        # as AWS/Lambda Invocations, Errors and Duration (docpipe_local.function_metrics)
        self._outcomes: list[tuple[bool, float]] = []

    def busy_pids(self) -> list[int]:
        """Process ids of the workers running an invocation now (a test kills one mid-task)."""
        with self._lock:
            return [w.process.pid for w in self._all - set(self._idle) if w.process.pid and w.process.is_alive()]

    def warm(self, nice: int = 0) -> None:
        """Start one worker ahead of the first invocation (a pre-warmed cold start)."""
        with self._lock:
            if not any(w.nice == self._below(nice) and w.group is None for w in self._idle):
                worker = self._spawn(nice, None)
                self._idle.append(worker)

    def _below(self, nice: int) -> int:
        """The levels below the caller's priority of a worker for invocations at ``nice`` (19 at most)."""
        return min(19, self.nice + nice)

    def _group(self, heavy: bool) -> str | None:
        """The ``cgroup.procs`` a worker for these invocations joins: the heavy group's, for a heavy tenant."""
        return self.heavy_group.procs if heavy and self.heavy_group is not None else None

    def _spawn(self, nice: int, group: str | None) -> Worker:
        below = self._below(nice)
        env = {**self.env, **self.behind[1]} if self.behind and below >= self.behind[0] else self.env
        worker = Worker(self.spec, env, self.log_path, self.arn, below, group, self.init_seconds)
        self.spawned += 1
        self._all.add(worker)
        return worker

    def acquire(self, timeout: float | None = None) -> bool:
        return self._slots.acquire(timeout)

    def release(self) -> None:
        self._slots.release()

    def invoke_acquired(self, event: dict[str, Any], nice: int = 0, heavy: bool = False) -> Invocation:
        """Invoke in a slot the caller holds (see :meth:`acquire`), in a worker of that CPU priority and,
        for a heavy tenant's invocation (``heavy``), in the heavy tenants' CPU group where there is one.

        ``nice`` stands in for what a laptop cannot give: Lambda runs every invocation on its own
        compute, so a low lane's OCR never slows a high lane's photo; on two shared cores the local
        stack runs lower lanes' workers at a lower CPU priority (a higher nice value) instead. Idle
        workers of other priorities stay warm until the pool would grow past twice the concurrency (a
        lane's invocations change priority as their tenants turn heavy and light, and a retired worker's
        replacement would be a cold start); then the oldest idle one is retired.

        With ``spare``, taking the last idle worker of its kind starts the next, up to the concurrency: on a
        laptop busy with one tenant's burst, the HTTP API's cold starts took 5-10 s (a second on AWS), and
        the workers kept for users with nothing running (``docpipe_local.user_share``) were first started
        by a quiet user's request in the middle of that burst.
        """
        retired, group = None, self._group(heavy)
        with self._lock:
            mine = [w for w in self._idle if w.nice == self._below(nice) and w.group == group]
            worker = mine[-1] if mine else None
            if worker is not None:
                self._idle.remove(worker)
            else:
                if self._idle and len(self._all) >= 2 * self.concurrency:
                    retired = self._idle.pop(0)
                    self._all.discard(retired)
                worker = self._spawn(nice, group)
            if self.spare and len(mine) <= 1 and len(self._all) < self.concurrency:
                self._idle.append(self._spawn(nice, group))  # its import runs in its own process meanwhile
        if retired is not None:
            retired.kill()
        invocation = worker.invoke(event)
        with self._lock:
            self.invocations += 1
            if not invocation.ok:
                self.failures += 1
            self._outcomes.append((invocation.ok, invocation.duration_ms))
            if worker.alive:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
        return invocation

    def drain_outcomes(self) -> list[tuple[bool, float]]:
        """The invocations' ``(ok, duration_ms)`` since the last call, and forget them."""
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def invoke(self, event: dict[str, Any], nice: int = 0) -> Invocation:
        """Invoke when a slot is free (first come, first served), at CPU priority ``nice``."""
        self._slots.acquire()
        try:
            return self.invoke_acquired(event, nice)
        finally:
            self.release()

    def stop(self) -> None:
        with self._lock:
            workers, self._idle = list(self._all), []
            self._all.clear()
        for worker in workers:
            worker.kill()

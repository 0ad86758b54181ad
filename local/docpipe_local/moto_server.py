"""moto's server in a child process of its own, patched as docpipe needs (:mod:`docpipe_local.emulator`),
and the credentials every AWS call of the local stack and of its functions is signed with.

moto's own server (werkzeug's development server) answers every request with ``Connection: close``:
each AWS call of every function and poller opened a TCP connection, and the emulator started a thread
for it. :func:`serve` serves the same application with waitress, which keeps connections alive and
answers from a pool of threads, so an SDK's connection pool is used as on AWS. Its pool is sized for
the stack's long polls (every SQS poller holds a thread for up to ``WaitTimeSeconds``), and its limits
are S3's rather than a web site's: a single PUT of up to 5 GiB, and connections for every warm worker.

The server can run at a higher CPU priority than the stack (``ahead``): it stands for AWS's services,
which have capacity of their own, and every function's call waits on it. At the same priority, a
busy tenant's low-priority workers fill its queue of requests and every other function's call waits
behind them (see :mod:`docpipe_local.stack`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from docpipe_local import request_priority
from docpipe_local.long_lived import freeze_survivors

THREADS = 128  # answers at once: every poller's long poll holds one
CONNECTIONS = 4096  # kept-alive connections: each warm worker's SDK keeps a few
MAX_BODY = 5 * 1024**3  # S3's limit for a single PUT
IDLE_SECONDS = 300  # a kept-alive connection unused this long is closed
# How long a thread of the server may hold the interpreter while another waits for it (Python's default
# is 5 ms): see serve.
SWITCH_INTERVAL = 0.001

# What every AWS call of the stack and of its functions is signed with: LocalStack validates S3 signatures
# of an access key it does not know against the secret `test` (moto validates none).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_SESSION_TOKEN": "test"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """moto's server in a child process, so the emulator has its own core and dies with a kill."""

    def __init__(
        self,
        log_path: Path,
        ahead: int = 0,
        slots: int = request_priority.SLOTS,
        switch_interval: float = SWITCH_INTERVAL,
        lowest: int = request_priority.LOWEST,
    ) -> None:
        """``ahead``: how many levels of CPU priority (nice) the server runs above its parent, when the
        process may raise its priority (root, or ``CAP_SYS_NICE``); else at the parent's (see :attr:`ahead`).
        ``slots``, ``switch_interval`` and ``lowest``: as :func:`serve` takes them."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("ab")
        env = {**os.environ, **CREDENTIALS}
        # moto's app served with keep-alive and no log line per request (serve): under load werkzeug's
        # server and its logging cost a share of the CPU that is every AWS call's latency.
        # DynamoDB's writes made atomic under moto's threads, SQS's deletes kept from losing a message
        # sent meanwhile, S3's response overrides of a presigned GET honoured, its requests counted by
        # service and operation, four of its costs that grow with a busy stack cut, and its stream
        # iterators expired (docpipe_local.emulator); DynamoDB's requests answered without moto's Flask
        # application, its update and condition expressions parsed once, SQS's passes over a queue's
        # messages cut and the names it works out on every request remembered (docpipe_local.emulator_costs). The priority is set first, so that every thread of
        # the server has it (on Linux a thread's nice is its own, inherited at its start).
        command = (
            "import sys; "
            "from docpipe_local.moto_server import raise_priority; raise_priority(int(sys.argv[2])); "
            "from docpipe_local import emulator; "
            "emulator.serialize_dynamodb_writes(); emulator.serialize_sqs_deletes(); emulator.honour_s3_response_overrides(); "
            "from docpipe_local import emulator_costs; "
            "emulator_costs.answer_dynamodb_directly(); emulator_costs.cut_moto_s_costs(); "
            "emulator.count_requests(); "
            "emulator.speed_up_moto(); emulator.expire_stream_iterators(); "
            "from docpipe_local.moto_server import serve; "
            "serve('127.0.0.1', int(sys.argv[1]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))"
        )
        arguments = [str(self.port), str(max(0, ahead)), str(slots), str(switch_interval), str(lowest)]
        self.process = subprocess.Popen(
            [sys.executable, "-c", command, *arguments],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def ahead(self) -> int:
        """How many levels of CPU priority the server runs above this process (0: none, or it has ended)."""
        try:
            return max(0, os.getpriority(os.PRIO_PROCESS, 0) - os.getpriority(os.PRIO_PROCESS, self.process.pid))
        except OSError:
            return 0

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto's server exited with code {self.process.returncode}; see its log")
            try:
                requests.get(f"{self.url}/moto-api/data.json", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"moto's server did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def raise_priority(levels: int) -> None:
    """Run this process ``levels`` of CPU priority (nice) higher, if it may (root, or ``CAP_SYS_NICE``);
    else leave it as it is."""
    if levels > 0:
        with contextlib.suppress(OSError):
            os.nice(-levels)


def serve(
    host: str,
    port: int,
    slots: int = request_priority.SLOTS,
    switch_interval: float = SWITCH_INTERVAL,
    lowest: int = request_priority.LOWEST,
) -> None:
    """Serve moto's application, as ``moto.server.main`` builds it, with waitress (HTTP keep-alive).

    ``slots`` workers' requests are answered at once, in the order of their CPU priority
    (:class:`~docpipe_local.request_priority.PriorityGate`). ``switch_interval`` is how long a thread
    may keep the interpreter while another waits for it. At Python's default of 5 ms, every hand-over
    of moto's lock between the thread answering a busy tenant's request and the one that reads the
    next request off the sockets or answers a quiet tenant's cost up to 5 ms, several times a request:
    a quiet worker's update-and-read waited p95 150-200 ms behind a busy tenant's queries, and in most
    rounds 45-80 ms at 1 ms with one slot (``bench/emulator_priority.py``). ``lowest``: how many levels
    behind the stack a far-behind worker's answer runs at most (:class:`~docpipe_local.request_priority.Yielding`).
    """
    import logging

    import waitress
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    os.environ.setdefault("MOTO_PORT", str(port))  # as moto's main sets it: some answers name the server
    dispatcher = DomainDispatcherApplication(create_backend_app)
    dispatcher.debug = True  # type: ignore[attr-defined]

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        # moto reads an S3 key from the raw request path, which werkzeug's server passes as RAW_URI and
        # waitress as REQUEST_URI: without it, a key's percent-escapes would be decoded twice ("q%2541" as "qA").
        if "RAW_URI" not in environ and "REQUEST_URI" in environ:
            environ["RAW_URI"] = environ["REQUEST_URI"]
        return dispatcher(environ, start_response)

    sys.setswitchinterval(switch_interval)
    freeze_survivors()
    # the workers' requests in the order of their CPU priority; a heavy tenant's answered at its own where
    # this process runs ahead of the stack (it may then raise a thread's priority back) and a thread's
    # priority is its own (Linux: elsewhere, PRIO_PROCESS with a thread's id names a process)
    own, stack = os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, os.getppid())
    yielding = request_priority.Yielding(own, stack, lowest=lowest) if own < stack and sys.platform == "linux" else None
    gate = request_priority.PriorityGate(slots, yielding=yielding)

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" under a burst
    waitress.serve(
        request_priority.gated(app, gate),
        host=host,
        port=port,
        threads=THREADS,
        connection_limit=CONNECTIONS,
        channel_timeout=IDLE_SECONDS,
        max_request_body_size=MAX_BODY,
        ident=None,
        asyncore_use_poll=True,
    )

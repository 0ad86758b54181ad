"""The worker runtime with real processes: results, errors, timeouts, crashes, memory, init errors, fairness."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from docpipe_local.runtime import FairSemaphore, FunctionRuntime
from docpipe_local.template import FunctionSpec

HANDLERS = """
import os, time
GREETING = os.environ.get("GREETING", "")

def echo(event, context):
    return {"greeting": GREETING, "event": event, "remaining": context.get_remaining_time_in_millis() > 0}

def boom(event, context):
    raise ValueError("bad record")

def slow(event, context):
    time.sleep(event.get("sleep", 10))
    return "late"

def crash(event, context):
    os._exit(3)

def hog(event, context):
    blocks = [bytearray(16 * 1024 * 1024) for _ in range(40)]
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])
    time.sleep(5)
    return len(blocks)
"""


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code")
    (root / "fakefn").mkdir()
    (root / "fakefn" / "__init__.py").write_text("")
    (root / "fakefn" / "handler.py").write_text(HANDLERS)
    (root / "broken.py").write_text("import no_such_module_here\n")
    return root


def runtime(
    code: Path, handler: str, tmp_path: Path, timeout: int = 2, memory_mb: int = 128, concurrency: int = 1
) -> FunctionRuntime:
    spec = FunctionSpec(
        logical="Fake",
        name="fake",
        handler=handler,
        code_uri=code,
        layers=[],
        env_template={},
        timeout=timeout,
        memory_mb=memory_mb,
        reserved_concurrency=None,
        sqs_sources=[],
        http_routes=[],
    )
    return FunctionRuntime(
        spec, {"GREETING": "hi"}, tmp_path, "arn:aws:lambda:us-east-1:123456789012:function:fake", concurrency
    )


def test_a_result_and_the_template_environment_reach_the_caller(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.echo", tmp_path)
    try:
        invocation = fn.invoke({"n": 1})
    finally:
        fn.stop()
    assert (invocation.status, invocation.result) == ("ok", {"greeting": "hi", "event": {"n": 1}, "remaining": True})


def test_an_exception_is_an_error_and_the_worker_serves_again(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.boom", tmp_path)
    try:
        first, second = fn.invoke({}), fn.invoke({})
    finally:
        fn.stop()
    assert (first.status, first.error["errorType"], first.error["errorMessage"]) == (
        "error",
        "ValueError",
        "bad record",
    )
    assert second.status == "error" and fn.invocations == 2


def test_an_invocation_past_its_timeout_is_killed_and_the_next_one_runs(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.slow", tmp_path, timeout=2)
    try:
        started = time.monotonic()
        late = fn.invoke({"sleep": 30})
        elapsed = time.monotonic() - started
        quick = fn.invoke({"sleep": 0})
    finally:
        fn.stop()
    assert late.status == "timeout" and elapsed < 5
    assert (quick.status, quick.result) == ("ok", "late")


def test_a_crash_costs_one_invocation(code, tmp_path) -> None:
    crashing, echo = runtime(code, "fakefn.handler.crash", tmp_path), runtime(code, "fakefn.handler.echo", tmp_path)
    try:
        assert crashing.invoke({}).status == "crashed"
        assert crashing.invoke({}).status == "crashed"  # a fresh worker, crashing again: the pool survives
        assert echo.invoke({}).ok
    finally:
        crashing.stop()
        echo.stop()


def test_growing_past_memory_size_is_out_of_memory(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.hog", tmp_path, timeout=10, memory_mb=256)
    try:
        invocation = fn.invoke({})
    finally:
        fn.stop()
    assert invocation.status == "out_of_memory"


def test_an_import_error_fails_the_invocation(code, tmp_path) -> None:
    fn = runtime(code, "broken.handler", tmp_path)
    try:
        invocation = fn.invoke({})
    finally:
        fn.stop()
    assert (invocation.status, invocation.error["errorType"]) == ("error", "ModuleNotFoundError")


def test_concurrency_one_runs_invocations_one_after_the_other(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.slow", tmp_path, timeout=5, concurrency=1)
    fn.invoke({"sleep": 0})  # warm
    spans: list[tuple[float, float]] = []

    def call() -> None:
        started = time.monotonic()
        fn.invoke({"sleep": 0.5})
        spans.append((started, time.monotonic()))

    threads = [threading.Thread(target=call) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        fn.stop()
    ends = sorted(end for _, end in spans)
    assert ends[1] - ends[0] >= 0.45  # the second waited for the first


def test_fair_semaphore_serves_waiters_first_come_first_served() -> None:
    slots = FairSemaphore(1)
    slots.acquire()
    order: list[int] = []

    def wait(n: int) -> None:
        slots.acquire()
        order.append(n)
        slots.release()

    threads = []
    for n in range(4):
        threads.append(threading.Thread(target=wait, args=(n,)))
        threads[-1].start()
        time.sleep(0.05)
    slots.release()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3]

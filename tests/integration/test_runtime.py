"""The worker runtime with real processes: results, errors, timeouts, crashes, memory, init errors, fairness."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from docpipe_local import heavy_group
from docpipe_local.heavy_group import HeavyGroup
from docpipe_local.request_priority import HEADER
from docpipe_local.runtime import FunctionRuntime
from docpipe_local.slots import FairSemaphore
from docpipe_local.template import FunctionSpec
from tests.fixtures.processes import running
from tests.fixtures.recorder import header_recorder

HANDLERS = """
import os, time
GREETING = os.environ.get("GREETING", "")

def echo(event, context):
    return {"greeting": GREETING, "event": event, "remaining": context.get_remaining_time_in_millis() > 0}

def environment(event, context):
    return {name: os.environ.get(name) for name in event["names"]}

def describe(event, context):
    return {
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "aws_request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }

def span(event, context):
    started = time.time()
    time.sleep(event["sleep"])
    return [os.getpid(), started, time.time()]

def pid(event, context):
    # the worker's process id, after failing as the event asks
    if event.get("raise"):
        raise KeyError("missing")
    if event.get("exit"):
        os._exit(1)
    time.sleep(event.get("sleep", 0))
    return os.getpid()

def priority(event, context):
    return os.getpriority(os.PRIO_PROCESS, 0)

def placement(event, context):
    # the worker's process, CPU priority and the groups of /proc/self/cgroup
    with open("/proc/self/cgroup") as groups:
        return [os.getpid(), os.getpriority(os.PRIO_PROCESS, 0), groups.read()]

def aws_call(event, context):
    # one AWS request to the endpoint the event names; what it answers does not matter
    import boto3
    client = boto3.client("sqs", endpoint_url=event["url"], region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    try:
        client.list_queues()
    except Exception:
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)

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

def forkhog(event, context):
    # a process the handler started (as docpipe.sandbox forks a PDF reader) grows while the handler waits
    child = os.fork()
    if child == 0:
        with open(event["pid_file"], "w") as out:
            out.write(str(os.getpid()))
        blocks = [bytearray(16 * 1024 * 1024) for _ in range(25)]
        for block in blocks:
            block[::4096] = b"x" * len(block[::4096])
        time.sleep(30)
        os._exit(0)
    os.waitpid(child, 0)
    return "done"
"""


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code")
    (root / "fakefn").mkdir()
    (root / "fakefn" / "__init__.py").write_text("")
    (root / "fakefn" / "handler.py").write_text(HANDLERS)
    (root / "broken.py").write_text("import no_such_module_here\n")
    (root / "slowinit.py").write_text("import time\ntime.sleep(30)\ndef handler(event, context):\n    return 1\n")
    (root / "slowimport.py").write_text(
        "import os, time\ntime.sleep(2)\ndef handler(event, context):\n    time.sleep(0.2)\n    return os.getpid()\n"
    )
    (root / "slowishinit.py").write_text(
        "import time\ntime.sleep(1.5)\ndef handler(event, context):\n    time.sleep(0.6)\n    return 1\n"
    )
    (root / "fatinit.py").write_text(
        "BLOB = bytearray(400 * 1024 * 1024)\n"
        "BLOB[::4096] = b'x' * len(BLOB[::4096])\n"
        "def handler(event, context):\n    return 1\n"
    )
    return root


def runtime(
    code: Path,
    handler: str,
    tmp_path: Path,
    timeout: int = 2,
    memory_mb: int = 128,
    concurrency: int = 1,
    nice: int = 0,
    heavy: HeavyGroup | None = None,
    behind: tuple[int, dict[str, str]] | None = None,
    init_seconds: float = 10.0,
    spare: bool = False,
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
        spec,
        {"GREETING": "hi"},
        tmp_path,
        "arn:aws:lambda:us-east-1:123456789012:function:fake",
        concurrency,
        nice,
        heavy,
        behind,
        init_seconds,
        spare,
    )


def test_a_result_and_the_template_environment_reach_the_caller(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.echo", tmp_path)
    try:
        invocation = fn.invoke({"n": 1})
    finally:
        fn.stop()
    assert (invocation.status, invocation.result) == ("ok", {"greeting": "hi", "event": {"n": 1}, "remaining": True})
    assert invocation.error is None and invocation.duration_ms > 0


def test_the_handler_sees_only_the_functions_environment(code, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ONLY_IN_THE_CALLER", "leak")  # not part of the function's environment
    fn = runtime(code, "fakefn.handler.environment", tmp_path)
    try:
        invocation = fn.invoke({"names": ["GREETING", "ONLY_IN_THE_CALLER", "AWS_ACCESS_KEY_ID", "PATH"]})
    finally:
        fn.stop()
    seen = invocation.result
    assert (seen["GREETING"], seen["ONLY_IN_THE_CALLER"], seen["AWS_ACCESS_KEY_ID"]) == ("hi", None, None)
    assert seen["PATH"]  # kept so a handler can run tools


def test_the_context_describes_the_function_and_its_deadline(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.describe", tmp_path, timeout=2, memory_mb=192)
    try:
        first, second = fn.invoke({}).result, fn.invoke({}).result
    finally:
        fn.stop()
    assert (first["function_name"], first["memory_limit_in_mb"], first["invoked_function_arn"]) == (
        "fake",
        192,
        "arn:aws:lambda:us-east-1:123456789012:function:fake",
    )
    assert 0 < first["remaining_ms"] <= 2000
    assert first["aws_request_id"] != second["aws_request_id"]


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


def test_the_worker_that_raised_serves_the_next_invocation(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.pid", tmp_path)
    try:
        before, failed, after = fn.invoke({}), fn.invoke({"raise": True}), fn.invoke({})
    finally:
        fn.stop()
    assert (failed.status, failed.error["errorType"], failed.error["errorMessage"]) == (
        "error",
        "KeyError",
        "'missing'",
    )
    assert before.ok and after.ok and before.result == after.result  # the same warm process
    assert (fn.invocations, fn.failures) == (3, 1)


def test_an_invocation_past_its_timeout_is_killed_and_the_next_one_runs(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.slow", tmp_path, timeout=2)
    try:
        started = time.monotonic()
        late = fn.invoke({"sleep": 30})
        elapsed = time.monotonic() - started
        quick = fn.invoke({"sleep": 0})
    finally:
        fn.stop()
    assert late.status == "timeout" and 2 <= elapsed < 4
    assert (quick.status, quick.result) == ("ok", "late")


def test_the_invocation_after_a_timeout_runs_in_a_new_worker(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.pid", tmp_path, timeout=1)
    try:
        before, late, after = fn.invoke({}), fn.invoke({"sleep": 30}), fn.invoke({})
    finally:
        fn.stop()
    assert late.status == "timeout"
    assert before.ok and after.ok and before.result != after.result


def test_a_crash_costs_one_invocation(code, tmp_path) -> None:
    crashing, echo = runtime(code, "fakefn.handler.crash", tmp_path), runtime(code, "fakefn.handler.echo", tmp_path)
    try:
        assert crashing.invoke({}).status == "crashed"
        assert crashing.invoke({}).status == "crashed"  # a fresh worker, crashing again: the pool survives
        assert echo.invoke({}).ok
    finally:
        crashing.stop()
        echo.stop()


def test_the_invocation_after_a_crash_runs_in_a_new_worker(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.pid", tmp_path)
    try:
        before, crashed, after = fn.invoke({}), fn.invoke({"exit": True}), fn.invoke({})
    finally:
        fn.stop()
    assert (crashed.status, crashed.error["errorType"]) == ("crashed", "crashed")
    assert before.ok and after.ok and before.result != after.result


def test_stopping_while_an_invocation_runs_ends_it_as_crashed_and_stops_cleanly(code, tmp_path) -> None:
    # the stack's stop and the invoking thread both end the busy worker: the second must not fail
    for _ in range(5):  # the two ends race; a few rounds make an unlucky order likely
        fn = runtime(code, "fakefn.handler.slow", tmp_path, timeout=30)
        fn.invoke({"sleep": 0})  # warm
        outcome: list = []
        invoking = threading.Thread(target=lambda fn=fn, outcome=outcome: outcome.append(fn.invoke({"sleep": 30})))
        invoking.start()
        time.sleep(0.3)
        fn.stop()
        invoking.join(timeout=10)
        assert not invoking.is_alive()
        assert [o.status for o in outcome] == ["crashed"]


def test_growing_past_memory_size_is_out_of_memory(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.hog", tmp_path, timeout=10, memory_mb=256)
    try:
        invocation = fn.invoke({})
    finally:
        fn.stop()
    assert invocation.status == "out_of_memory"
    assert "256" in invocation.error["errorMessage"]


def test_a_child_process_growing_past_memory_size_is_out_of_memory_and_ends_with_the_worker(code, tmp_path) -> None:
    pid_file = tmp_path / "child.pid"
    fn = runtime(code, "fakefn.handler.forkhog", tmp_path, timeout=20, memory_mb=256)
    try:
        started = time.monotonic()
        invocation = fn.invoke({"pid_file": str(pid_file)})
    finally:
        fn.stop()

    # Lambda counts the whole environment's memory: the child's 400 MB are the invocation's
    assert invocation.status == "out_of_memory"
    assert time.monotonic() - started < 15  # not left to run into the timeout
    # and the child does not outlive its worker
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child)


def test_the_same_work_fits_in_a_larger_memory_size(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.pid", tmp_path, memory_mb=128)
    try:
        assert fn.invoke({}).ok  # a bare worker stays well under 128 MB
    finally:
        fn.stop()


def test_growing_past_memory_size_while_importing_is_out_of_memory(code, tmp_path) -> None:
    fn = runtime(code, "fatinit.handler", tmp_path, timeout=5, memory_mb=128)
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
    assert "no_such_module_here" in invocation.error["errorMessage"]


def test_an_import_error_is_reported_again_on_the_next_invocation(code, tmp_path) -> None:
    fn = runtime(code, "broken.handler", tmp_path)
    try:
        first, second = fn.invoke({}), fn.invoke({})
    finally:
        fn.stop()
    assert [first.status, second.status] == ["error", "error"]
    assert first.error == second.error


def test_a_missing_handler_function_is_an_error(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.nowhere", tmp_path)
    try:
        invocation = fn.invoke({})
    finally:
        fn.stop()
    assert (invocation.status, invocation.error["errorType"]) == ("error", "AttributeError")


def test_an_import_that_outlives_the_init_phase_and_the_timeout_is_a_timeout(code, tmp_path) -> None:
    fn = runtime(code, "slowinit.handler", tmp_path, timeout=1, init_seconds=1)
    try:
        started = time.monotonic()
        invocation = fn.invoke({})
        elapsed = time.monotonic() - started
    finally:
        fn.stop()
    assert invocation.status == "timeout" and 2 <= elapsed < 4
    assert "init phase" in invocation.error["errorMessage"]


def test_a_cold_start_within_the_init_phase_leaves_the_invocation_its_whole_timeout(code, tmp_path) -> None:
    # given a handler whose import takes 1.5 s and whose call 0.6 s, with a timeout of 1 s (as Lambda's Init
    # phase, the cold start has time of its own)
    fn = runtime(code, "slowishinit.handler", tmp_path, timeout=1, init_seconds=3)
    try:
        first, second = fn.invoke({}), fn.invoke({})
    finally:
        fn.stop()
    # then both invocations end ok: the timeout counted from the end of the import
    assert (first.status, first.result, second.status) == ("ok", 1, "ok")


def _two_at_once(fn: FunctionRuntime) -> list:
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(fn.invoke({}))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_with_a_spare_the_next_request_finds_a_worker_already_imported(code, tmp_path) -> None:
    # given a pool of three that keeps a spare, whose handler takes 2 s to import
    fn = runtime(code, "slowimport.handler", tmp_path, timeout=5, concurrency=3, spare=True)
    try:
        fn.warm()
        first = fn.invoke({})  # takes the pre-warmed worker, and starts a spare
        time.sleep(2.5)  # the spare imports meanwhile, in its own process
        results = _two_at_once(fn)
        workers = len(fn._all)
    finally:
        fn.stop()
    # then two requests at once each ran in a worker already imported: no 2 s cold start in either
    assert first.ok and all(r.ok for r in results)
    assert len({r.result for r in results}) == 2
    assert max(r.duration_ms for r in results) < 1500
    # and the spares stop at the concurrency
    assert workers == 3


def test_without_a_spare_a_second_request_at_once_is_a_cold_start(code, tmp_path) -> None:
    fn = runtime(code, "slowimport.handler", tmp_path, timeout=5, concurrency=3)
    try:
        fn.warm()
        fn.invoke({})
        time.sleep(2.5)
        results = _two_at_once(fn)
    finally:
        fn.stop()
    assert all(r.ok for r in results) and max(r.duration_ms for r in results) >= 2000


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


def test_concurrency_two_runs_invocations_side_by_side_in_two_workers(code, tmp_path) -> None:
    fn = runtime(code, "fakefn.handler.span", tmp_path, timeout=5, concurrency=2)
    spans: list[list[float]] = []

    def call() -> None:
        spans.append(fn.invoke({"sleep": 0.5}).result)

    threads = [threading.Thread(target=call) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        fn.stop()
    (pid_a, start_a, end_a), (pid_b, start_b, end_b) = spans
    assert pid_a != pid_b
    assert max(start_a, start_b) < min(end_a, end_b)  # the handlers ran at the same time


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


def test_a_release_hands_the_slot_to_a_waiter_before_the_releaser_can_take_it_back() -> None:
    slots = FairSemaphore(1)
    slots.acquire()
    served = threading.Event()

    def waiter() -> None:
        slots.acquire()
        served.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)  # the waiter is queued
    slots.release()
    barged = slots.acquire(timeout=0)
    thread.join(timeout=2)
    assert not barged and served.is_set()


def test_a_waiter_that_times_out_leaves_the_queue_and_the_slot_free() -> None:
    slots = FairSemaphore(1)
    slots.acquire()
    started = time.monotonic()
    assert slots.acquire(timeout=0.1) is False
    assert time.monotonic() - started >= 0.09
    slots.release()
    assert slots.acquire(timeout=0) is True  # the slot went back to the pool, not to the departed waiter


def test_fair_semaphore_counts_its_slots() -> None:
    slots = FairSemaphore(2)
    assert [slots.acquire(timeout=0) for _ in range(3)] == [True, True, False]


def test_workers_run_the_pools_priority_below_the_caller_plus_each_invocations_own(code, tmp_path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    fn = runtime(code, "fakefn.handler.priority", tmp_path, concurrency=2, nice=5)
    try:
        seen = [fn.invoke({}, nice).result for nice in (0, 3, 0, 18)]
    finally:
        fn.stop()
    assert seen == [min(19, own + 5), min(19, own + 8), min(19, own + 5), 19]


def test_workers_far_behind_the_caller_run_with_the_behind_environment(code, tmp_path) -> None:
    # given a pool whose workers 15 levels or more below the caller get another GREETING (the stack's
    # second clamd, for the scan)
    far = (15, {"GREETING": "far"})
    fn = runtime(code, "fakefn.handler.environment", tmp_path, concurrency=2, nice=2, behind=far)
    try:
        seen = [fn.invoke({"names": ["GREETING"]}, nice).result["GREETING"] for nice in (0, 12, 13, 0)]
    finally:
        fn.stop()
    # then only the invocation 2 + 13 levels below ran with it, and the one after it did not
    assert seen == ["hi", "hi", "far", "hi"]


def test_a_workers_aws_requests_carry_its_cpu_priority_for_the_emulator(code, tmp_path) -> None:
    # given an endpoint that records the priority header of what reaches it
    with header_recorder(HEADER) as (url, seen):
        fn = runtime(code, "fakefn.handler.aws_call", tmp_path, nice=4)
        try:
            nice = fn.invoke({"url": url}, 2).result
        finally:
            fn.stop()
    # then the worker (4 + 2 levels below the caller) said so with its request
    assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 6)
    assert seen and set(seen) == {str(nice)}


def test_a_heavy_tenants_invocation_runs_in_the_heavy_group_and_others_beside_it_do_not(code, tmp_path) -> None:
    group = heavy_group.create()
    if group is None:
        pytest.skip("this process may not make a CPU cgroup (root on Linux with the cpu controller)")
    fn = runtime(code, "fakefn.handler.placement", tmp_path, concurrency=2, heavy=group)
    try:
        # given invocations at one CPU priority, a heavy tenant's and a quiet one's, in turns
        seen = [fn.invoke_acquired({}, 10, heavy).result for heavy in (True, False, True, False)]
        members = set(group.pids())
    finally:
        fn.stop()
        group.close()
    (heavy_pid, heavy_nice, heavy_groups), (quiet_pid, quiet_nice, quiet_groups) = seen[0], seen[1]
    # then the heavy one ran in a worker of the group, the quiet one in another worker outside it,
    # both at the invocation's priority, and each kind went on in its own worker
    assert heavy_pid in members and quiet_pid not in members
    assert group.folder.name in heavy_groups and group.folder.name not in quiet_groups
    assert heavy_nice == quiet_nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    assert [s[0] for s in seen] == [heavy_pid, quiet_pid, heavy_pid, quiet_pid]
    # and the group is gone once closed
    assert not group.folder.exists()

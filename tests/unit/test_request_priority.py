"""The emulator's priority gate: workers' AWS requests served in the order of their CPU priority, a worse
priority handicapped but never starved, untagged requests never held (docpipe_local.request_priority)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable

import boto3
import pytest
from botocore.endpoint import Endpoint

from docpipe_local.request_priority import HEADER, PriorityGate, Yielding, gated, tag_requests
from tests.fixtures.recorder import header_recorder


class RecordedYielding(Yielding):
    """The emulator at nice -20 ahead of a stack at 0; records each thread priority it would set."""

    def __init__(self) -> None:
        super().__init__(emulator=-20, stack=0)
        self.sets: list[tuple[int, int | None]] = []

    def set(self, thread: int, nice: int | None) -> None:
        self.sets.append((thread, nice))


def _queue_behind(
    gate: PriorityGate, nices: list[int], served: list[int], pause: float = 0.02
) -> list[threading.Thread]:
    """One thread per nice, queued in that order while the gate is full; each records its nice when served."""

    def take(nice: int) -> None:
        gate.acquire(nice)
        served.append(nice)
        gate.release()

    threads = []
    for nice in nices:
        thread = threading.Thread(target=take, args=(nice,))
        thread.start()
        threads.append(thread)
        while gate.waiting < len(threads):  # queued in this order
            time.sleep(0.001)
        time.sleep(pause)
    return threads


def test_a_better_priority_goes_before_a_worse_one_that_came_first_and_each_is_served_once() -> None:
    # given a full gate, and a backlog at nice 10 queued before one request at nice 0
    gate = PriorityGate(slots=1, seconds_per_level=0.05)
    gate.acquire(0)
    served: list[int] = []
    threads = _queue_behind(gate, [10] * 20 + [0], served, pause=0.001)
    # when the slot frees
    gate.release()
    for thread in threads:
        thread.join(timeout=5)
    # then the nice-0 request goes first, and every request once
    assert served[0] == 0
    assert sorted(served) == [0] + [10] * 20


def test_a_worse_priority_that_has_waited_its_handicap_goes_first() -> None:
    # given a nice-10 request that has waited longer than 10 levels are worth (10 x 0.01 s)
    yielding = RecordedYielding()
    gate = PriorityGate(slots=1, seconds_per_level=0.01, yielding=yielding)
    gate.acquire(0)
    served: list[int] = []
    threads = _queue_behind(gate, [10], served, pause=0.2)
    threads += _queue_behind(gate, [0], served)
    gate.release()
    for thread in threads:
        thread.join(timeout=5)
    # then it is not starved by a younger request at a better priority, and is answered at the emulator's
    # priority, not its own: a better request waits for the slot
    assert served == [10, 0]
    assert yielding.sets == []


def test_equal_priorities_are_served_in_arrival_order() -> None:
    gate = PriorityGate(slots=1)
    gate.acquire(5)
    served: list[int] = []
    threads = _queue_behind(gate, [5, 5, 5], served)
    order = [t.ident for t in threads]
    done: list[int | None] = []
    gate.release()
    for thread in threads:
        thread.join(timeout=5)
        done.append(thread.ident)
    assert served == [5, 5, 5] and done == order


def test_slots_requests_run_at_once_and_the_next_waits() -> None:
    gate = PriorityGate(slots=2)
    gate.acquire(0)
    gate.acquire(0)
    third = threading.Thread(target=gate.acquire, args=(0,))
    third.start()
    third.join(timeout=0.2)
    assert third.is_alive() and gate.waiting == 1
    gate.release()
    third.join(timeout=5)
    assert not third.is_alive() and gate.waiting == 0


def _holding(gate: PriorityGate, nice: int, go: threading.Event, held: list[int]) -> threading.Thread:
    """A thread that takes the gate at ``nice``, records its native id, and lets go once ``go`` is set."""

    def hold() -> None:
        gate.acquire(nice)
        held.append(threading.get_native_id())
        go.wait(5)
        gate.release()

    thread = threading.Thread(target=hold)
    thread.start()
    while not held:
        time.sleep(0.001)
    return thread


def test_a_far_behind_workers_request_is_answered_at_its_priority_and_a_nearer_one_at_the_emulators() -> None:
    yielding = RecordedYielding()
    gate = PriorityGate(slots=1, yielding=yielding)
    for nice, lowered in ((10, [10]), (15, [15]), (19, [19]), (5, []), (0, []), (9, [])):
        go, held = threading.Event(), []
        thread = _holding(gate, nice, go, held)
        # while it holds the slot, its thread runs at the worker's priority if 10 or more levels behind
        assert [n for t, n in yielding.sets if t == held[0]] == lowered
        go.set()
        thread.join(timeout=5)
        # and it is back at the emulator's once it lets go
        assert [n for t, n in yielding.sets if t == held[0]] == lowered + ([None] if lowered else [])
        yielding.sets.clear()


def test_how_far_behind_an_answer_runs_is_the_servers_setting() -> None:
    # given a worker 19 levels behind a stack at 0, and one at 12
    for lowest, levels in ((19, [19, 12]), (10, [10, 10]), (0, [0, 0])):
        yielding = Yielding(emulator=-20, stack=0, lowest=lowest)
        # its answers run at the worker's own priority, but never further behind the stack than ``lowest``
        assert [yielding.level(19), yielding.level(12)] == levels
        # and a worker less than BEHIND levels behind is answered at the emulator's
        assert yielding.level(9) is None


def test_a_lowered_answer_is_raised_as_soon_as_a_better_request_waits_for_its_slot() -> None:
    # given a heavy tenant's request (nice 10) holding the only slot, answered at nice 10
    yielding = RecordedYielding()
    gate = PriorityGate(slots=1, yielding=yielding)
    go, held = threading.Event(), []
    heavy = _holding(gate, 10, go, held)
    assert yielding.sets == [(held[0], 10)]
    # when a request at nice 10 waits, nothing changes; when one at nice 0 waits, the holder is raised
    served: list[int] = []
    waiters = _queue_behind(gate, [10], served, pause=0)
    assert yielding.sets == [(held[0], 10)]
    waiters += _queue_behind(gate, [0], served, pause=0)
    while gate.waiting < 2:  # queued (and the holder raised, under the same lock)
        time.sleep(0.001)
    assert yielding.sets == [(held[0], 10), (held[0], None)]
    go.set()
    for thread in [heavy, *waiters]:
        thread.join(timeout=5)
    # then the nice-0 request went first; the nice-10 one, with nobody waiting by then, ran at its own priority
    assert served == [0, 10]
    assert [n for _, n in yielding.sets[2:]] == [10, None]


@pytest.mark.skipif(
    sys.platform != "linux", reason="a thread's own priority is Linux's (the emulator yields only there)"
)
def test_a_threads_priority_is_its_own() -> None:
    # given a thread of this process lowered 3 levels below it
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    yielding, seen, go = Yielding(emulator=mine, stack=mine), [], threading.Event()

    def lowered() -> None:
        yielding.set(threading.get_native_id(), min(19, mine + 3))
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        yielding.set(threading.get_native_id(), None)  # back, where this process may raise it (root)
        go.wait(5)

    thread = threading.Thread(target=lowered)
    thread.start()
    while not seen:
        time.sleep(0.001)
    # then that thread ran lower, and this one did not move
    assert seen == [min(19, mine + 3)]
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine
    go.set()
    thread.join(timeout=5)


def _app(seen: list[str | None]) -> Callable:
    def app(environ, start_response):
        seen.append(environ.get("HTTP_X_DOCPIPE_NICE"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def test_untagged_requests_pass_a_full_gate_and_tagged_ones_wait_for_it() -> None:
    gate = PriorityGate(slots=1)
    seen: list[str | None] = []
    app = gated(_app(seen), gate)
    gate.acquire(0)  # every slot held
    assert list(app({}, lambda *a: None)) == [b"ok"]  # the stack's own request is not held
    tagged = threading.Thread(target=lambda: list(app({"HTTP_X_DOCPIPE_NICE": "7"}, lambda *a: None)))
    tagged.start()
    tagged.join(timeout=0.2)
    assert tagged.is_alive() and seen == [None]
    gate.release()
    tagged.join(timeout=5)
    assert seen == [None, "7"] and gate.waiting == 0


def test_a_tag_that_is_not_a_number_counts_as_nice_0() -> None:
    gate = PriorityGate(slots=1)
    seen: list[str | None] = []
    app = gated(_app(seen), gate)
    assert list(app({"HTTP_X_DOCPIPE_NICE": "soon"}, lambda *a: None)) == [b"ok"]
    assert seen == ["soon"] and gate.waiting == 0


def test_a_tagged_process_sends_its_threads_cpu_priority_with_every_aws_request(monkeypatch) -> None:
    # given an HTTP server that records the header, and botocore tagged in this process (undone after)
    monkeypatch.setattr(Endpoint, "_send", Endpoint._send)
    tag_requests()
    once = Endpoint._send
    tag_requests()  # idempotent: not a wrapper around a wrapper
    assert Endpoint._send is once
    with header_recorder(HEADER) as (url, seen):
        sqs = boto3.client(
            "sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        mine = os.getpriority(os.PRIO_PROCESS, 0)

        def lower() -> None:  # a thread's nice is its own on Linux: the tag is the calling thread's
            os.setpriority(os.PRIO_PROCESS, 0, min(19, mine + 3))
            with contextlib.suppress(Exception):  # the answer's shape is not what this test is about
                sqs.list_queues()

        with contextlib.suppress(Exception):
            sqs.list_queues()
        thread = threading.Thread(target=lower)
        thread.start()
        thread.join(timeout=10)
    assert seen == [str(mine), str(min(19, mine + 3))]

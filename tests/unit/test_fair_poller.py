"""The local stack's pollers deliver a queue's messages as an SQS fair queue does: a quiet tenant's
message before a noisy tenant's backlog, each tenant in order, every message once, and failures back
after the queue's visibility timeout with one receive more. Against moto's server over HTTP."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from docpipe_local import fairness
from docpipe_local.fairness import FairDispatcher, TenantUsage, is_noisy
from docpipe_local.pollers import SqsPoller
from docpipe_local.queue_metrics import QueueAgePublisher, QueueAges
from docpipe_local.runtime import Invocation
from docpipe_local.settler import Settler
from docpipe_local.slots import FairSemaphore
from docpipe_local.stack import CREDENTIALS, MotoServer
from docpipe_local.template import SqsSource


@pytest.fixture(scope="module")
def sqs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "emulator.log")
    try:
        server.wait_ready()
        yield boto3.client(
            "sqs",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def short_receives(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dispatcher's long poll bounds how long its stop takes: 1 s instead of 5 keeps the tests short."""
    monkeypatch.setattr(fairness, "RECEIVE_WAIT_SECONDS", 1)


def new_queue(sqs: Any, visibility: int = 30) -> str:
    return sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": str(visibility)})[
        "QueueUrl"
    ]


def send(sqs: Any, url: str, bodies: list[dict[str, Any]], group: str | None = None) -> None:
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(n), "MessageBody": json.dumps(b)} for n, b in enumerate(bodies[i : i + 10])]
        if group is not None:
            entries = [{**e, "MessageGroupId": group} for e in entries]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def depth(sqs: Any, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


def wait_until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        time.sleep(0.02)


@dataclass
class Delivery:
    body: dict[str, Any]
    receive_count: int
    at: float
    nice: int = 0
    running: int = 1  # invocations running at its start, its own among them
    heavy: bool = False  # run as a heavy tenant's (in the heavy CPU group, where the stack has one)


@dataclass
class FakeSpec:
    logical: str = "FakeFunction"


class FakeRuntime:
    """What a poller uses of a FunctionRuntime: slots, and an invocation that waits for ``gate``, records
    what it was given, sleeps as a handler would, and succeeds unless ``fails`` says the delivery fails."""

    def __init__(
        self,
        concurrency: int,
        seconds: float = 0.005,
        fails: Callable[[Delivery], bool] | None = None,
        tenant_seconds: dict[str, float] | None = None,
    ):
        """``tenant_seconds``: how long a batch of a tenant's (its body's "tenant") runs, if not ``seconds``."""
        self.spec = FakeSpec()
        self.seconds = seconds
        self.tenant_seconds = tenant_seconds or {}
        self.running = 0
        self.most_running = 0
        self.fails = fails or (lambda delivery: False)
        self.deliveries: list[Delivery] = []
        self.gate = threading.Event()
        self.gate.set()
        self._slots = FairSemaphore(concurrency)
        self._lock = threading.Lock()

    def acquire(self, timeout: float | None = None) -> bool:
        return self._slots.acquire(timeout)

    def release(self) -> None:
        self._slots.release()

    def invoke_acquired(self, event: dict[str, Any], nice: int = 0, heavy: bool = False) -> Invocation:
        self.gate.wait()
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            batch = [
                Delivery(
                    json.loads(r["body"]),
                    int(r["attributes"]["ApproximateReceiveCount"]),
                    time.monotonic(),
                    nice,
                    self.running,
                    heavy,
                )
                for r in event["Records"]
            ]
            self.deliveries += batch
        time.sleep(max(self.tenant_seconds.get(d.body.get("tenant"), self.seconds) for d in batch))
        with self._lock:
            self.running -= 1
        if any(self.fails(d) for d in batch):
            return Invocation("error", error={"errorMessage": "failed on purpose"})
        return Invocation("ok", result=None)

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.body for d in self.deliveries]


@contextmanager
def pollers(
    sqs: Any, url: str, runtime: FakeRuntime, count: int, batch_size: int, heavy_nice: int = 0, quiet_seat: bool = False
) -> Iterator[FairDispatcher]:
    """``count`` pollers of a fair queue, and its quiet seats as the stack adds them if ``quiet_seat``."""
    stop = threading.Event()
    dispatcher = FairDispatcher(sqs, url, stop)
    dispatcher.start()
    source = SqsSource("Work", "WorkQueue", batch_size, count, report_failures=False)
    threads = [
        SqsPoller(
            runtime,
            sqs,
            source,
            url,
            "arn:aws:sqs:us-east-1:123456789012:q",
            "us-east-1",
            stop,
            i,
            dispatcher=dispatcher,
            heavy_nice=heavy_nice,
            quiet_seat=i >= count,
        )
        for i in range(count + fairness.QUIET_SEATS * quiet_seat)
    ]
    for thread in threads:
        thread.start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        for thread in [*threads, dispatcher]:
            thread.join(timeout=10)


def test_a_quiet_tenants_message_is_delivered_before_a_noisy_tenants_backlog(sqs) -> None:
    # given: tenant "noisy" has 200 messages queued, all received by the dispatcher, and it is being served
    url = new_queue(sqs)
    send(sqs, url, [{"tenant": "noisy", "n": n} for n in range(200)], group="noisy")
    runtime = FakeRuntime(concurrency=4)
    runtime.gate.clear()
    with pollers(sqs, url, runtime, count=4, batch_size=1):
        wait_until(lambda: depth(sqs, url) == (0, 200), timeout=15)
        runtime.gate.set()
        wait_until(lambda: len(runtime.deliveries) >= 20, timeout=10)

        # when: tenant "quiet" sends one message
        before = len(runtime.deliveries)
        send(sqs, url, [{"tenant": "quiet", "n": 0}], group="quiet")
        # a hang guard: 8 s here idle, and past 20 s once in a whole `make test`
        wait_until(lambda: len(runtime.deliveries) == 201 and depth(sqs, url) == (0, 0), timeout=60)

    # then: it is among the first few deliveries after it was sent, and every message ran once
    bodies = runtime.bodies()
    quiet = bodies.index({"tenant": "quiet", "n": 0})
    # first in, first out would deliver it after the 180 or so noisy messages still queued; 4 workers keep
    # delivering the noisy tenant's until the dispatcher has received it (9 seen once, on a loaded machine)
    assert quiet - before <= 20, f"the quiet message was delivery {quiet}, {quiet - before} after it was sent"
    assert before < 200 - 20  # the noisy backlog was far from done
    assert Counter(json.dumps(b, sort_keys=True) for b in bodies).most_common(1)[0][1] == 1
    assert len(bodies) == 201
    assert depth(sqs, url) == (0, 0)


def burst_held(sqs, concurrency: int) -> tuple[str, FakeRuntime]:
    """A new queue holding tenant "burst"'s 100 messages, and a runtime that holds every invocation
    until its gate is set."""
    url = new_queue(sqs)
    send(sqs, url, [{"tenant": "burst", "n": n} for n in range(100)], group="burst")
    runtime = FakeRuntime(concurrency=concurrency, seconds=0.01)
    runtime.gate.clear()
    return url, runtime


def test_a_heavy_tenants_invocations_yield_the_cpu_and_a_light_tenants_do_not(sqs) -> None:
    # given: tenant "burst" has 100 messages queued and tenant "steady" sends one now and then
    url, runtime = burst_held(sqs, concurrency=2)
    send(sqs, url, [{"tenant": "steady", "n": 0}], group="steady")
    with pollers(sqs, url, runtime, count=2, batch_size=1, heavy_nice=10):
        wait_until(lambda: depth(sqs, url) == (0, 101), timeout=15)
        runtime.gate.set()
        for n in range(1, 3):
            wait_until(lambda done=20 * n: len(runtime.deliveries) >= done, timeout=10)
            send(sqs, url, [{"tenant": "steady", "n": n}], group="steady")
        wait_until(lambda: len(runtime.deliveries) == 103 and depth(sqs, url) == (0, 0), timeout=20)

    # then: once the burst had most of the processing time it ran at the lower priority, to the end;
    # steady never did
    nices = {(d.body["tenant"], d.body["n"]): d.nice for d in runtime.deliveries}
    assert [nices["steady", n] for n in range(3)] == [0, 0, 0]
    assert all(nices["burst", n] == 10 for n in range(10, 100))
    assert len(nices) == 103
    # and exactly those invocations were a heavy tenant's, for the runtime's heavy CPU group
    assert all(d.heavy == (d.nice == 10) for d in runtime.deliveries)


def test_a_tenant_a_few_messages_behind_a_burst_keeps_its_lanes_priority(sqs) -> None:
    # given: tenant "burst" has 100 messages queued and tenant "steady" fell 6 behind
    url, runtime = burst_held(sqs, concurrency=1)
    send(sqs, url, [{"tenant": "steady", "n": n} for n in range(6)], group="steady")
    with pollers(sqs, url, runtime, count=1, batch_size=1, heavy_nice=10):
        wait_until(lambda: depth(sqs, url) == (0, 106), timeout=15)
        runtime.gate.set()
        wait_until(lambda: len(runtime.deliveries) == 106 and depth(sqs, url) == (0, 0), timeout=20)

    # then: steady's six ran among the first ten (quiet), at the lane's priority: a small share of the time
    nices = {(d.body["tenant"], d.body["n"]): d.nice for d in runtime.deliveries}
    assert [nices["steady", n] for n in range(6)] == [0] * 6
    assert [d.body["tenant"] for d in runtime.deliveries[:10]].count("steady") == 6
    # and the burst yields once its share of the time is past 1.5 equal shares (by its 10th message idle; on a
    # loaded machine steady's invocations take longer, and the burst's share passes it a few messages later),
    # and from then on every one of its messages does
    burst = [nices["burst", n] for n in range(100)]
    heavy_from = burst.index(10)
    assert heavy_from <= 30 and burst[heavy_from:] == [10] * (100 - heavy_from), burst


def test_a_tenant_alone_never_yields_and_its_lane_runs_at_its_concurrency(sqs) -> None:
    url, runtime = burst_held(sqs, concurrency=2)
    with pollers(sqs, url, runtime, count=2, batch_size=1, heavy_nice=10, quiet_seat=True):
        wait_until(lambda: depth(sqs, url) == (0, 100), timeout=15)
        runtime.gate.set()
        wait_until(lambda: len(runtime.deliveries) == 100 and depth(sqs, url) == (0, 0), timeout=30)

    assert [d.nice for d in runtime.deliveries] == [0] * 100
    assert runtime.most_running == 2  # the quiet seat stays empty: nobody runs at the lower priority


def test_while_a_heavy_tenants_invocation_holds_the_lane_a_quiet_tenant_runs_in_the_quiet_seat(sqs) -> None:
    # given: a lane of one slot; tenant "burst" has 30 messages of 1 s each, and turns heavy once it has
    # most of the processing time beside tenant "steady"'s first message (0.3 s)
    url = new_queue(sqs)
    send(sqs, url, [{"tenant": "steady", "n": 0}], group="steady")
    send(sqs, url, [{"tenant": "burst", "n": n} for n in range(30)], group="burst")
    runtime = FakeRuntime(concurrency=1, seconds=0.01, tenant_seconds={"burst": 1.0, "steady": 0.3})
    with pollers(sqs, url, runtime, count=1, batch_size=1, heavy_nice=10, quiet_seat=True):
        wait_until(lambda: any(d.nice == 10 for d in runtime.deliveries), timeout=15)

        # when: steady sends two messages while the burst's heavy invocation holds the lane's only slot
        send(sqs, url, [{"tenant": "steady", "n": n} for n in (1, 2)], group="steady")
        wait_until(lambda: len([b for b in runtime.bodies() if b["tenant"] == "steady"]) == 3, timeout=10)
        ran = len(runtime.deliveries)

    # then: they ran beside it, at the lane's priority (a slot of the lane would have waited out the 1 s)
    steady = [d for d in runtime.deliveries if d.body["tenant"] == "steady"]
    assert [(d.body["n"], d.nice) for d in steady] == [(0, 0), (1, 0), (2, 0)]
    assert [d.running for d in steady[1:]] == [2, 2]
    # and the burst never took the seat: one of its invocations at a time, every message once; and steady's
    # second message waited for the seat, not beside its first
    burst = [d for d in runtime.deliveries[:ran] if d.body["tenant"] == "burst"]
    assert all(d.running == 1 for d in burst if d.at < steady[1].at)
    assert runtime.most_running == 2
    assert len({d.body["n"] for d in burst}) == len(burst)


@pytest.mark.parametrize(
    ("seconds", "heavy"),
    [
        ({"a": 5.0}, set()),  # alone: nobody to yield to
        ({"a": 5.0, "b": 5.0}, set()),
        ({"a": 8.0, "b": 2.0}, {"a"}),  # over 1.5 x an equal share (75 % of two)
        ({"a": 7.0, "b": 3.0}, set()),
        ({"a": 6.0, "b": 2.0, "c": 2.0}, {"a"}),  # over 50 % of three
        ({"a": 4.0, "b": 3.0, "c": 3.0}, set()),
    ],
)
def test_a_tenant_is_heavy_with_over_one_and_a_half_equal_shares_of_the_stacks_processing_time(seconds, heavy) -> None:
    shared = fairness.SharedUsage()
    for group, spent in seconds.items():
        shared.add(group, spent / 2, now=100.0)
        shared.add(group, spent / 2, now=101.0)

    assert {group for group in seconds if shared.heavy({group}, now=102.0)} == heavy
    assert not shared.heavy({""}, now=102.0)  # no group: S3 notifications
    assert not shared.heavy(set(seconds), now=101.0 + fairness.WINDOW_SECONDS + 1)  # all forgotten


def test_who_was_heavy_when_is_recorded_at_each_change(monkeypatch) -> None:
    # given a clock, and a stack where "burst" takes most of the processing time, then no longer
    clock = [1000.0]
    monkeypatch.setattr(fairness.time, "time", lambda: clock[0])
    shared = fairness.SharedUsage()
    shared.add("burst", 9.0, now=100.0)
    shared.add("steady", 1.0, now=100.0)
    # when heaviness is asked now, again 10 s later, and after the window has forgotten "burst"'s time
    shared.heavy({"burst"}, now=101.0)
    clock[0] = 1010.0
    shared.heavy({"steady"}, now=102.0)
    clock[0] = 1070.0
    shared.add("steady", 1.0, now=100.0 + fairness.WINDOW_SECONDS + 5)
    shared.heavy({"burst"}, now=100.0 + fairness.WINDOW_SECONDS + 6)
    # then only the changes are recorded, and each tenant's heavy time within a window is summed from them
    assert shared.turns == [(1000.0, frozenset({"burst"})), (1070.0, frozenset())]
    assert shared.heavy_seconds(990.0, 1100.0) == {"burst": 70.0}
    assert shared.heavy_seconds(1060.0, 1100.0) == {"burst": 10.0}
    assert shared.heavy_seconds(1080.0, 1100.0) == {}


def test_the_stack_shares_one_account_of_processing_time_among_its_queues(sqs) -> None:
    # given: two queues' dispatchers of one stack; tenant "burst" ran long in the first, "steady" briefly in the second
    shared, stop = fairness.SharedUsage(), threading.Event()
    first, second = (FairDispatcher(sqs, new_queue(sqs), stop, shared=shared) for _ in range(2))
    first.done([{"Attributes": {"MessageGroupId": "burst"}}], seconds=9.0)
    second.done([{"Attributes": {"MessageGroupId": "steady"}}], seconds=1.0)

    # then: in the second queue, "burst" is heavy though it never ran there
    assert second.heavy([{"Attributes": {"MessageGroupId": "burst"}}])
    assert not second.heavy([{"Attributes": {"MessageGroupId": "steady"}}])


def test_one_tenants_messages_are_delivered_in_the_order_sent(sqs) -> None:
    url = new_queue(sqs)
    for n in range(30):
        send(sqs, url, [{"tenant": "a", "n": n}], group="a")
        send(sqs, url, [{"tenant": "b", "n": n}], group="b")
    send(sqs, url, [{"tenant": "c", "n": n} for n in range(60)], group="c")
    runtime = FakeRuntime(concurrency=1, seconds=0.002)

    with pollers(sqs, url, runtime, count=1, batch_size=4):
        wait_until(lambda: len(runtime.deliveries) == 120 and depth(sqs, url) == (0, 0), timeout=15)

    bodies = runtime.bodies()
    for tenant, sent in (("a", 30), ("b", 30), ("c", 60)):
        assert [b["n"] for b in bodies if b["tenant"] == tenant] == list(range(sent))


def test_messages_without_a_group_are_one_tenant_delivered_in_order(sqs) -> None:
    url = new_queue(sqs)
    send(sqs, url, [{"n": n} for n in range(25)])
    runtime = FakeRuntime(concurrency=1, seconds=0.002)

    with pollers(sqs, url, runtime, count=1, batch_size=3):
        wait_until(lambda: len(runtime.deliveries) == 25 and depth(sqs, url) == (0, 0), timeout=10)

    assert [b["n"] for b in runtime.bodies()] == list(range(25))


def test_a_failed_message_comes_back_after_the_visibility_timeout_received_once_more(sqs) -> None:
    # given: a queue with a 2 s visibility timeout and a handler that fails a message the first time
    url = new_queue(sqs, visibility=2)
    runtime = FakeRuntime(concurrency=2, fails=lambda d: d.body["kind"] == "bad" and d.receive_count == 1)
    send(sqs, url, [{"kind": "bad"}, {"kind": "ok"}], group="t")

    # when
    with pollers(sqs, url, runtime, count=2, batch_size=1):
        wait_until(lambda: len(runtime.deliveries) == 3 and depth(sqs, url) == (0, 0), timeout=10)

    # then: two deliveries of the failed message, 2 s apart, counted 1 and 2 by SQS
    bad = [d for d in runtime.deliveries if d.body["kind"] == "bad"]
    ok = [d for d in runtime.deliveries if d.body["kind"] == "ok"]
    assert [d.receive_count for d in bad] == [1, 2]
    assert 2 <= bad[1].at - bad[0].at < 4
    assert [d.receive_count for d in ok] == [1]


class SlowDeletes:
    """An SQS client whose deletes take ``seconds`` more, recording when each ended."""

    def __init__(self, sqs: Any, seconds: float) -> None:
        self.sqs, self.seconds = sqs, seconds
        self.deleted_at: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)

    def delete_message_batch(self, **kwargs: Any) -> Any:
        time.sleep(self.seconds)
        answer = self.sqs.delete_message_batch(**kwargs)
        self.deleted_at.append(time.monotonic())
        return answer


def test_a_poller_runs_its_next_message_while_the_last_ones_delete_is_sent(sqs) -> None:
    # given: three messages, one poller, and deletes that take half a second each
    url = new_queue(sqs)
    send(sqs, url, [{"n": n} for n in range(3)], group="t")
    slow = SlowDeletes(sqs, 0.5)
    runtime = FakeRuntime(concurrency=1, seconds=0.01)

    # when
    with pollers(slow, url, runtime, count=1, batch_size=1):
        wait_until(lambda: len(runtime.deliveries) == 3 and depth(sqs, url) == (0, 0), timeout=15)

    # then: the second and third ran before the first's delete was done (Lambda's pollers do not hold the
    # function's concurrency while they call SQS), and every message ran once and was deleted
    assert runtime.deliveries[2].at < slow.deleted_at[0]
    assert [d.body["n"] for d in runtime.deliveries] == [0, 1, 2]
    assert [d.receive_count for d in runtime.deliveries] == [1, 1, 1]


class Recording:
    """An SQS client that records each batch call the settler makes: (what, how many)."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self.calls: list[tuple[str, int]] = []

    def change_message_visibility_batch(self, **kwargs: Any) -> Any:
        self.calls.append(("hide", len(kwargs["Entries"])))
        return self.sqs.change_message_visibility_batch(**kwargs)

    def delete_message_batch(self, **kwargs: Any) -> Any:
        self.calls.append(("delete", len(kwargs["Entries"])))
        return self.sqs.delete_message_batch(**kwargs)


def test_the_settler_sends_hides_first_ten_at_a_time_and_no_hide_of_a_message_being_deleted(sqs) -> None:
    # given 25 messages received with a short visibility, all to be hidden for a minute, five of them
    # deleted as well, handed to a settler before it starts
    url = new_queue(sqs)
    send(sqs, url, [{"n": n} for n in range(25)])
    received: list[dict[str, Any]] = []
    while len(received) < 25:
        received += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=3)["Messages"]
    receipts = [m["ReceiptHandle"] for m in received]
    recording = Recording(sqs)
    settler = Settler(recording, url)
    settler.hide(receipts, 60)
    settler.delete(receipts[:5])

    # when it runs
    settler.start()
    assert settler.flush(timeout=10)
    settler.stop()

    # then two calls hid the twenty kept, then one deleted the five; the twenty stay hidden past the 3 s
    assert recording.calls == [("hide", 10), ("hide", 10), ("delete", 5)]
    time.sleep(3.5)
    assert depth(sqs, url) == (0, 20)


def test_a_message_buffered_past_its_hold_is_still_received_once(sqs, monkeypatch) -> None:
    monkeypatch.setattr(fairness, "HOLD_SECONDS", 3)  # extended with less than 1.5 s left, polls of 1 s
    url = new_queue(sqs)
    send(sqs, url, [{"n": n} for n in range(5)], group="t")
    runtime = FakeRuntime(concurrency=1)

    with pollers(sqs, url, runtime, count=0, batch_size=1) as dispatcher:
        wait_until(lambda: dispatcher.buffered == 5, timeout=5)
        time.sleep(3.5)  # past the hold: the dispatcher extended it, else SQS delivered them again
        assert depth(sqs, url) == (0, 5)
        taken = dispatcher.take(10, wait=1)
        dispatcher.done(taken, 0.01)

    assert [int(m["Attributes"]["ApproximateReceiveCount"]) for m in taken] == [1] * 5
    assert [json.loads(m["Body"])["n"] for m in taken] == list(range(5))


def test_stopping_makes_buffered_messages_visible_again(sqs) -> None:
    url = new_queue(sqs)
    send(sqs, url, [{"n": n} for n in range(5)])

    with pollers(sqs, url, FakeRuntime(concurrency=1), count=0, batch_size=1) as dispatcher:
        wait_until(lambda: dispatcher.buffered == 5, timeout=5)
        assert depth(sqs, url) == (0, 5)  # locally, buffered messages show as in flight

    assert depth(sqs, url) == (5, 0)


def test_a_buffered_message_counts_towards_the_oldest_message_age(sqs) -> None:
    url = new_queue(sqs)
    ages = QueueAges()
    dispatcher = FairDispatcher(sqs, url, threading.Event(), ages)
    send(sqs, url, [{"n": 0}])
    dispatcher.start()
    try:
        wait_until(lambda: dispatcher.buffered == 1, timeout=5)
        publisher = QueueAgePublisher(sqs, None, {"q": url}, ages, threading.Event())
        assert publisher.age_of(url, waiting=0, now=time.time() + 30) >= 30  # SQS counts it in flight
    finally:
        dispatcher.stop()
        dispatcher.join(timeout=10)


@pytest.mark.parametrize(
    ("in_flight", "total", "noisy"),
    [(30, 100, True), (29, 29, False), (30, 300, False), (31, 300, True), (200, 200, True)],
)
def test_a_tenant_is_noisy_with_at_least_30_and_over_a_tenth_of_the_messages_in_flight(in_flight, total, noisy):
    assert is_noisy(in_flight, total, 0.0, 0.0) is noisy


@pytest.mark.parametrize(("seconds", "noisy"), [(7.0, True), (6.0, False), (0.5, False), (60.0, True)])
def test_a_tenant_is_noisy_with_over_a_tenth_of_recent_processing_time(seconds, noisy):
    assert is_noisy(1, 10, seconds, 60.0) is noisy


def test_processing_time_counts_for_its_window_only() -> None:
    usage = TenantUsage(window=60)
    usage.started("noisy", 9)
    usage.finished("noisy", 9, 54.0, now=100.0)
    usage.started("quiet")
    usage.finished("quiet", 1, 6.0, now=130.0)

    assert usage.noisy("noisy", now=140.0) and not usage.noisy("quiet", now=140.0)
    assert usage.recent("noisy", now=161.0) == 0.0  # forgotten after 60 s
    assert usage.noisy("quiet", now=161.0)  # now all of the recent time


def test_quiet_tenants_rank_first_then_noisy_ones_by_fewest_in_flight() -> None:
    usage = TenantUsage()
    usage.started("a", 40)
    usage.started("b", 35)
    usage.started("c", 2)
    usage.finished("c", 1, 0.1, now=10.0)
    usage.started("d")

    ranks = usage.ranks(["a", "b", "c", "d"], now=10.0)
    assert sorted(ranks, key=ranks.__getitem__) == ["d", "c", "b", "a"]

"""SQS fair-queue delivery for the local stack: quiet tenants' messages first.

On AWS, a standard queue whose messages carry ``MessageGroupId`` is a fair queue: a tenant (message
group) is a *noisy neighbour* when it holds more than 10 % of the queue's in-flight messages and at
least 30 of them, or more than 10 % of the consumers' recent processing time; while one is, SQS
delivers the other (quiet) tenants' messages first. Nothing is dropped or throttled: a noisy
tenant's messages are delivered whenever no quiet tenant's message waits. moto delivers first in,
first out, so one :class:`FairDispatcher` per queue stands between SQS and the queue's pollers.

Its receiver thread long-polls the queue into a local buffer, one first-in-first-out line per
message group, up to :data:`BUFFER_LIMIT` messages. A poller that holds a function slot takes up to
its batch size (:meth:`FairDispatcher.take`), one message at a time, each from the tenant ranked
first by this approximation of what AWS documents (it publishes the thresholds, not the order):

1. quiet tenants before noisy ones;
2. among noisy tenants, the one with the fewest messages in flight (as AWS documents);
3. then the one with the least processing time in the last :data:`WINDOW_SECONDS` seconds;
4. then the one whose next message was sent first (``SentTimestamp``, then the order received).

A tenant is classified afresh at every choice, from its messages in flight now (handed to a poller
and not yet settled) and the invocation durations of the window; AWS keeps a noisy tenant noisy
until its backlog is drained or it has sent nothing for five minutes, which is not emulated. Only
received messages can be preferred: behind a backlog larger than the buffer, a quiet tenant's
message waits its turn in SQS's first-in-first-out order (and moto's receives slow down as its
queue grows). Within one tenant, messages are delivered in the order SQS delivered them to the
buffer. Messages without a ``MessageGroupId`` (S3 notifications)
all belong to one tenant, the empty group, and so keep plain SQS order; AWS counts each of them as
a tenant of its own.

Lambda's semantics are kept. The buffer receives a message once, with a visibility timeout of
:data:`HOLD_SECONDS` that it extends while the message waits, so the message is never received
twice before a poller runs it (a second receive would count towards ``maxReceiveCount``). When a
poller takes a message, its visibility is set to the queue's own ``VisibilityTimeout``, so an
invocation that fails, times out or crashes sees it come back after that, with an
``ApproximateReceiveCount`` one higher, as on Lambda. That change, and the delete of a message whose
invocation succeeded (:meth:`FairDispatcher.settle`), are sent by the queue's
:class:`~docpipe_local.settler.Settler`, off the pollers' path, as Lambda's pollers do not hold a
function's concurrency while they call SQS. On stop, buffered messages are made visible
again. One local-only difference: messages in the buffer are still waiting, but the emulator counts
them in flight (``ApproximateNumberOfMessagesNotVisible``) rather than waiting
(``ApproximateNumberOfMessages``). The oldest-message-age metric counts them as waiting
(:meth:`docpipe_local.queue_metrics.QueueAges.hold`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from docpipe_local.queue_metrics import QueueAges
from docpipe_local.settler import Settler

log = logging.getLogger("docpipe.local")

NOISY_SHARE = 0.10  # of the queue's in-flight messages, or of its recent processing time
NOISY_MIN_IN_FLIGHT = 30
WINDOW_SECONDS = 60.0  # how far back processing time counts
BUFFER_LIMIT = 2000  # messages buffered per queue
# A buffered message's visibility, extended when less than half of it is left: the receiver checks
# between long polls, so half of it must be well over one long poll.
HOLD_SECONDS = 60
RECEIVE_WAIT_SECONDS = 5  # the receiver's long poll; it bounds how late a stop sees a receive return
# A tenant with more than this many times an equal share of the stack's recent processing time (every fair
# queue's invocations of the last WINDOW_SECONDS, among the tenants that had any) is heavy: its invocations
# yield the laptop's CPU to other tenants' (see :meth:`SharedUsage.heavy`).
HEAVY_SHARE = 1.5
QUIET_SEAT_RECHECK_SECONDS = 0.25  # how often a waiting quiet seat looks again at who is heavy
QUIET_SEATS = 1  # a lane's quiet seats (FairDispatcher.heavy_started); two made the burst fall behind (README)


def is_noisy(in_flight: int, total_in_flight: int, recent_seconds: float, total_recent_seconds: float) -> bool:
    """AWS's rule: a tenant is noisy by its share of the messages in flight or of recent processing time."""
    busy = in_flight >= NOISY_MIN_IN_FLIGHT and in_flight > NOISY_SHARE * total_in_flight
    slow = total_recent_seconds > 0 and recent_seconds > NOISY_SHARE * total_recent_seconds
    return busy or slow


class TenantUsage:
    """Per tenant: messages in flight, and invocation seconds of the last ``window`` seconds."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self.in_flight: Counter[str] = Counter()
        self._times: dict[str, deque[tuple[float, float]]] = {}  # (finished at, seconds)
        self._recent: dict[str, float] = {}

    def started(self, group: str, count: int = 1) -> None:
        self.in_flight[group] += count

    def finished(self, group: str, count: int, seconds: float, now: float) -> None:
        """``count`` messages of ``group`` left flight after ``seconds`` of processing (0: not run)."""
        self.in_flight[group] -= count
        if self.in_flight[group] <= 0:
            del self.in_flight[group]
        self.spent(group, seconds, now)

    def spent(self, group: str, seconds: float, now: float) -> None:
        """``group``'s invocations took ``seconds`` of processing, ending ``now`` (0: nothing counted)."""
        if seconds > 0:
            self._times.setdefault(group, deque()).append((now, seconds))
            self._recent[group] = self._recent.get(group, 0.0) + seconds

    def recent_all(self, now: float) -> dict[str, float]:
        """Each tenant's processing seconds in the window (the tenants with any)."""
        self._forget(now)
        return dict(self._recent)

    def recent(self, group: str, now: float) -> float:
        self._forget(now)
        return self._recent.get(group, 0.0)

    def noisy(self, group: str, now: float) -> bool:
        return self.ranks([group], now)[group][0]

    def ranks(self, groups: list[str], now: float) -> dict[str, tuple[bool, int, float]]:
        """Per group, a key that sorts first the tenant to serve first (see the module's docstring), before
        the age of its next message: noisy or not, then messages in flight if noisy, then recent seconds."""
        self._forget(now)
        total_in_flight, total_recent = sum(self.in_flight.values()), sum(self._recent.values())
        ranks = {}
        for group in groups:
            in_flight, recent = self.in_flight[group], self._recent.get(group, 0.0)
            noisy = is_noisy(in_flight, total_in_flight, recent, total_recent)
            ranks[group] = (noisy, in_flight if noisy else 0, recent)
        return ranks

    def _forget(self, now: float) -> None:
        for group in list(self._times):
            times = self._times[group]
            while times and times[0][0] <= now - self.window:
                self._recent[group] -= times.popleft()[1]
            if not times:
                del self._times[group], self._recent[group]


class SharedUsage:
    """Each tenant's processing time over every fair queue of a stack (thread-safe): who is heavy."""

    def __init__(self, window: float = WINDOW_SECONDS, share: float = HEAVY_SHARE) -> None:
        self.share = share
        self._usage = TenantUsage(window)
        self._lock = threading.Lock()
        # (time.time(), the heavy tenants from then on), at each change seen: who yielded when (a bench's record)
        self.turns: list[tuple[float, frozenset[str]]] = []

    def add(self, group: str, seconds: float, now: float) -> None:
        if group:
            with self._lock:
                self._usage.spent(group, seconds, now)

    def heavy(self, groups: set[str], now: float) -> bool:
        """Whether every one of ``groups`` had more than :data:`HEAVY_SHARE` times an equal share of the
        recent processing time, among at least two tenants that had any.

        A share of processing time, not a backlog: a tenant's backlog in one queue grows as soon as its
        invocations slow down, so yielding by backlog made whichever tenant fell behind first slower
        still. In 500-upload tenants runs, with A's uploads held to a file a second by its quota, B's and
        C's photos (a second each) fell behind A's in the high scan lane, ran at the lower priority from
        then on and never caught up (B 127 photos deep, A 16). A burst of heavy files is a large share of
        the processing time whatever its queues hold, and a tenant that yields does not gain share by
        yielding: a steady tenant beside it never reaches the share."""
        return bool(groups) and self.heavy_ones(groups, now) == groups

    def heavy_ones(self, groups: set[str], now: float) -> set[str]:
        """Those of ``groups`` that are heavy (see :meth:`heavy`), from one reading of the window. The
        empty group (S3 notifications) never is."""
        with self._lock:
            recent = self._usage.recent_all(now)
            least = self.share * sum(recent.values()) / len(recent) if len(recent) >= 2 else math.inf
            heavy = frozenset(group for group, seconds in recent.items() if group and seconds > least)
            if heavy != (self.turns[-1][1] if self.turns else frozenset()):
                self.turns.append((time.time(), heavy))
        return set(heavy & groups)

    def heavy_seconds(self, start: float, end: float) -> dict[str, float]:
        """How long each tenant was heavy between two times (``time.time()``), by :attr:`turns`."""
        with self._lock:
            turns = list(self.turns)
        seconds: dict[str, float] = {}
        for (since, heavy), (until, _) in zip(turns, [*turns[1:], (end, frozenset())], strict=True):
            overlap = min(until, end) - max(since, start)
            for group in heavy if overlap > 0 else ():
                seconds[group] = seconds.get(group, 0.0) + overlap
        return seconds


@dataclass
class _Held:
    message: dict[str, Any]
    group: str
    sent: float  # SentTimestamp, in seconds
    seq: int  # order received from SQS
    held_until: float  # monotonic time its visibility ends

    @property
    def id(self) -> str:
        return str(self.message["MessageId"])


def group_of(message: dict[str, Any]) -> str:
    """The message's tenant: its ``MessageGroupId``, or the empty group without one."""
    return str(message.get("Attributes", {}).get("MessageGroupId", ""))


class FairDispatcher(threading.Thread):
    """One queue's buffer, shared by its pollers: :meth:`take` messages fairly, then :meth:`done`."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        stop: threading.Event,
        ages: QueueAges | None = None,
        buffer_limit: int = BUFFER_LIMIT,
        shared: SharedUsage | None = None,
    ) -> None:
        """``shared``: the processing time of every fair queue of the stack (a queue's own without it)."""
        super().__init__(name=f"fair-{queue_url.rsplit('/', 1)[-1]}", daemon=True)
        self.sqs, self.queue_url, self.stop_event, self.ages = sqs, queue_url, stop, ages
        self.buffer_limit = buffer_limit
        self.shared = shared if shared is not None else SharedUsage()
        self.visibility_timeout = 30  # the queue's own, read when started
        self.usage = TenantUsage()
        self._cond = threading.Condition()
        self._groups: dict[str, deque[_Held]] = {}
        self._by_id: dict[str, _Held] = {}
        self._extending: set[str] = set()  # ids whose visibility the receiver is extending now
        self._seq = 0
        self._heavy_running = 0  # heavy tenants' invocations of this queue running now (heavy_started)
        self._quiet_running = 0  # invocations in its quiet seats now
        self.settler = Settler(sqs, queue_url, ages)  # taken messages' visibility, then deletes, off the pollers

    def start(self) -> None:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"])
        self.visibility_timeout = int(attributes["Attributes"]["VisibilityTimeout"])
        if self.ages is not None:
            self.ages.hold(self.queue_url, self.oldest_sent)
        self.settler.start()
        super().start()

    @property
    def buffered(self) -> int:
        return len(self._by_id)

    def oldest_sent(self) -> float | None:
        """The ``SentTimestamp`` (s) of the oldest buffered message: it is still waiting."""
        with self._cond:
            return min((h.sent for h in self._by_id.values()), default=None)

    # ------------------------------------------------------------------ pollers
    def take(self, limit: int, wait: float, quiet_seat: bool = False) -> list[dict[str, Any]]:
        """Up to ``limit`` messages, fairly chosen, visible again after the queue's visibility timeout
        unless deleted; waits up to ``wait`` seconds for the first. Report them with :meth:`done`.

        ``quiet_seat``: for a quiet seat of the lane (:meth:`heavy_started`), only messages of tenants
        that are not heavy, and only while fewer invocations run in the quiet seats than heavy tenants'
        invocations of this queue; pass ``quiet_seat`` to :meth:`done` too."""
        deadline = time.monotonic() + wait
        with self._cond:
            while not (groups := self._takeable(quiet_seat)):
                remaining = deadline - time.monotonic()
                if self.stop_event.is_set() or remaining <= 0:
                    return []
                # who is heavy changes with time, not only with the buffer: a quiet seat looks again
                self._cond.wait(min(remaining, QUIET_SEAT_RECHECK_SECONDS) if quiet_seat else remaining)
            now = time.monotonic()
            taken = [self._pop(group) for group in self._choose(limit, now, groups)]
            self._quiet_running += quiet_seat
            self._cond.notify_all()  # room for the receiver
            while self._extending.intersection(h.id for h in taken):
                self._cond.wait()  # so that its extension cannot land after the visibility set below
        self.settler.hide([h.message["ReceiptHandle"] for h in taken], self.visibility_timeout)
        return [h.message for h in taken]

    def _takeable(self, quiet_seat: bool) -> set[str]:
        """The groups a taker may take from now (the caller holds the lock)."""
        if not quiet_seat:
            return set(self._groups)
        if self._quiet_running >= self._heavy_running:
            return set()
        groups = set(self._groups)
        return groups - self.shared.heavy_ones(groups, time.monotonic())

    def heavy_started(self) -> None:
        """A poller invokes a batch of heavy tenants (:meth:`heavy`) at the lower CPU priority.

        On AWS a heavy tenant's invocation holds its slot of the lane for as long as it runs on compute
        of its own. The local stack runs it at a lower CPU priority, so that it yields the laptop's cores
        to other tenants' work, and there it holds its slot two to five times longer: a quiet tenant's
        photo, delivered first by the fair queue, then waited for a slot behind invocations that AWS
        would have ended (B's presets waited p95 2.6 s in the tenants bench). So a heavy tenant's running
        invocation of a queue lends the lane a seat, for tenants that are not heavy only, up to
        :data:`QUIET_SEATS` (the stack's quiet-seat pollers: :class:`~docpipe_local.pollers.SqsPoller`'s
        ``quiet_seat``). One: with two a lane, the quiet tenants' work at the higher priority held the
        heavy tenant's back until its backlog ran away (its small files 4.6 times their time alone), and
        a larger backlog makes every request cost more. Without a heavy tenant nothing runs at the lower
        priority, and a lane's concurrency is its ``MaximumConcurrency``, as on AWS."""
        with self._cond:
            self._heavy_running += 1
            self._cond.notify_all()

    def heavy_ended(self) -> None:
        with self._cond:
            self._heavy_running -= 1
            self._cond.notify_all()

    def settle(self, messages: list[dict[str, Any]]) -> None:
        """Delete ``messages`` (their invocation succeeded), off the caller's path (:class:`Settler`)."""
        self.settler.delete([m["ReceiptHandle"] for m in messages])

    def heavy(self, messages: list[dict[str, Any]]) -> bool:
        """Whether every tenant of ``messages`` (taken together) is heavy (:meth:`SharedUsage.heavy`).
        Messages without a group (S3 notifications) never are.

        On AWS every invocation has compute of its own, so a tenant's burst takes nothing from another
        tenant's next photo once the fair queue has delivered it. On a laptop's two cores the invocations
        share the CPU; the local stack runs a heavy tenant's invocations at a lower CPU priority (see
        :data:`docpipe_local.stack.HEAVY_NICE`), which approximates that separation. It changes nothing
        about the order of delivery, which stays AWS's.
        """
        return self.shared.heavy({group_of(m) for m in messages}, time.monotonic())

    def done(self, messages: list[dict[str, Any]], seconds: float, quiet_seat: bool = False) -> None:
        """``messages`` taken together (by a quiet seat, if ``quiet_seat``) are settled (deleted or left to
        come back) after ``seconds`` of invocation."""
        now = time.monotonic()
        counts = Counter(group_of(m) for m in messages)
        with self._cond:
            if quiet_seat:
                self._quiet_running -= 1
                self._cond.notify_all()
            for group, count in counts.items():
                self.usage.finished(group, count, seconds * count / len(messages), now)
        for group, count in counts.items():
            self.shared.add(group, seconds * count / len(messages), now)

    def _choose(self, limit: int, now: float, groups: set[str]) -> list[str]:
        """The groups (of ``groups``) to take from, one a message, each choice counting the messages chosen
        before it."""
        chosen = []
        heads = {group: 0 for group in self._groups if group in groups}
        for _ in range(limit):
            waiting = [group for group, taken in heads.items() if taken < len(self._groups[group])]
            if not waiting:
                break
            ranks = self.usage.ranks(waiting, now)
            nexts = {group: self._groups[group][heads[group]] for group in waiting}
            group = min(waiting, key=lambda g: (*ranks[g], nexts[g].sent, nexts[g].seq))
            heads[group] += 1
            self.usage.started(group)
            chosen.append(group)
        return chosen

    def _pop(self, group: str) -> _Held:
        line = self._groups[group]
        held = line.popleft()
        if not line:
            del self._groups[group]
        del self._by_id[held.id]
        return held

    # ------------------------------------------------------------------ receiver
    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._extend_due()
                with self._cond:
                    room = self.buffer_limit - len(self._by_id)
                    if room <= 0:
                        self._cond.wait(1)
                        continue
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(room, 10),
                    WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                    VisibilityTimeout=HOLD_SECONDS,
                    AttributeNames=["All"],
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                self._buffer(messages)
            except (BotoCoreError, ClientError) as exc:
                if not self.stop_event.is_set():
                    log.warning("receiving from %s failed: %s", self.queue_url, exc)
                    self.stop_event.wait(1)
            except Exception:  # the receiver must outlive any one bad answer
                log.exception("receiving from %s failed unexpectedly", self.queue_url)
                self.stop_event.wait(1)

    def _buffer(self, messages: list[dict[str, Any]]) -> None:
        """Keep received messages, or, once stopping, make them visible again (:meth:`stop` has emptied the buffer)."""
        if not messages:
            return
        held_until = time.monotonic() + HOLD_SECONDS
        late: list[dict[str, Any]] = []
        with self._cond:
            if self.stop_event.is_set():
                late, messages = messages, []
            for message in messages:
                known = self._by_id.get(message["MessageId"])
                if known is not None:  # its hold ran out and SQS delivered it again: keep one, with the new receipt
                    known.message, known.held_until = message, held_until
                    continue
                self._seq += 1
                sent = int(message.get("Attributes", {}).get("SentTimestamp", 0)) / 1000
                held = _Held(message, group_of(message), sent, self._seq, held_until)
                self._groups.setdefault(held.group, deque()).append(held)
                self._by_id[held.id] = held
            self._cond.notify_all()
        if late:
            self._release([m["ReceiptHandle"] for m in late])
        if messages and self.ages is not None:
            self.ages.received(self.queue_url, messages)

    def _extend_due(self) -> None:
        """Extend the visibility of buffered messages with less than half of their hold left."""
        now = time.monotonic()
        with self._cond:
            due = [h for h in self._by_id.values() if h.held_until - now < HOLD_SECONDS / 2]
            self._extending = {h.id for h in due}
        try:
            for i in range(0, len(due), 10):
                chunk = due[i : i + 10]
                answer = self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": h.message["ReceiptHandle"], "VisibilityTimeout": HOLD_SECONDS}
                        for n, h in enumerate(chunk)
                    ],
                )
                failed = {int(f["Id"]) for f in answer.get("Failed", [])}
                with self._cond:
                    for n, held in enumerate(chunk):
                        if n not in failed:
                            held.held_until = now + HOLD_SECONDS
                        elif self._by_id.get(held.id) is held:  # gone from SQS: nothing to deliver
                            log.warning("dropping %s from the buffer: %s", held.id, answer["Failed"])
                            self._remove(held)
        finally:
            with self._cond:
                self._extending = set()
                self._cond.notify_all()

    def _remove(self, held: _Held) -> None:
        line = self._groups[held.group]
        line.remove(held)
        if not line:
            del self._groups[held.group]
        del self._by_id[held.id]

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Wake the pollers, send what the settler holds, and make buffered messages visible again (errors
        ignored: the emulator may be gone)."""
        self.stop_event.set()
        if self.settler.is_alive():
            self.settler.stop()
        with self._cond:
            self._cond.wait_for(lambda: not self._extending, timeout=5)  # else it could hide them again
            handles = [h.message["ReceiptHandle"] for h in self._by_id.values()]
            self._groups.clear()
            self._by_id.clear()
            self._cond.notify_all()
        self._release(handles)

    def _release(self, handles: list[str]) -> None:
        try:
            for i in range(0, len(handles), 10):
                self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                        for n, handle in enumerate(handles[i : i + 10])
                    ],
                )
        except (BotoCoreError, ClientError) as exc:
            log.debug("releasing buffered messages of %s failed: %s", self.queue_url, exc)

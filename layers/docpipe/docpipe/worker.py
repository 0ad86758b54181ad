"""What every task worker does around its work, the same in each function: one run per ``(hash, task)``,
cancelled work skipped, retries backed off, kills counted, the final attempt's failure shown on the job,
and metrics.

A task message on a lane is either the task's *opening* message (``{"hash": …}``: run the task) or
a follow-up of a task already running (a page range of a large PDF, a chunk of scanned pages). For an
opening message the worker

1. skips the work when the task is ``cancelled`` (every job that waited on it was cancelled);
2. claims the task with a conditional write (:meth:`FilesRepository.claim_task`): a duplicated message
   finds it claimed and is tried again later, so the same bytes are rendered or read once and a job
   makes each transition once; a redelivery of the message whose run was killed takes it over;
3. gives the claim back when the run raises, so the retry can take it, and ends it when the run
   leaves the task ``running`` for other messages to finish.

**Kills.** A run that ends gives its claim back or finishes the task, so a claim still held when the
task is claimed again belongs to a run that was killed: out of memory, past its time limit, or crashed.
The claim that takes it over counts the kill on the file record (``{task}Kills``). The second kill of
a task on the same bytes is the bytes' doing, not the platform's: the task is ``failed`` with
:func:`docpipe.jobs.killed_error` (``image.too_many_pixels`` for an image's presets or OCR,
``archive.unsafe`` for a document), its jobs settled, and its message deleted rather than run a third
time into the dead-letter queue. The job reads ``failed`` as soon as the second killed run's time limit
has passed (:func:`docpipe.jobs.task_state`); the worker records it when the message comes back.

Out of memory and a timeout are not told apart. On Lambda the runtime reports the first
(``Runtime.OutOfMemory``, "signal: killed") and the second ("Task timed out") in the function's logs,
never to the next invocation, which sees only the claim left behind; the redelivery comes a
visibility timeout later either way. Both mean the bytes need more than the function has, and give the
same code. Follow-up messages claim nothing, so their kills are not counted: a page range or a chunk of
scanned pages is read in forked processes with a memory share and a deadline (:mod:`docpipe.sandbox`).

For every message: a retryable failure is retried with backoff (the message's visibility is set to
5 s, 20 s, 80 s by receive count, rather than waiting out the queue's full visibility timeout), and a
failure on the final receive (the lane's ``maxReceiveCount``) marks the task ``failed`` with its code
before the message goes to the dead-letter queue, so the job says so. A final attempt that is killed
(timeout, out of memory, a crash) cannot say anything: it leaves ``{task}FinalAttemptEnds`` behind,
and once that time has passed the job reads as failed (:func:`docpipe.jobs.task_state`): with the
kill's code when an earlier run was killed too, else with ``task.dead_lettered``. Its message reaches
the dead-letter queue later, when that receive's visibility timeout ends.

Metrics (EMF, dimension ``service``): ``QueueWait`` and ``TaskDuration`` (ms), one of
``TaskSucceeded``, ``TaskFailed``, ``TaskRetried``, ``TaskSkipped`` per message, and ``TaskKilled``
when a claim finds the last run of its task killed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from docpipe import aws
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.sqs import tenant_scope
from docpipe.config import Settings
from docpipe.errors import DocpipeError, TaskBusy
from docpipe.jobs import KILLS_TO_FAIL, SCAN, killed_error
from docpipe.observability import MetricUnit, logger, metrics
from docpipe.scanning import is_clean
from docpipe.settlement import settle_jobs

MAX_RECEIVES = 3  # every lane's RedrivePolicy maxReceiveCount (template.yaml; a template test holds them equal)
BACKOFF_BASE_SECONDS = 5
BACKOFF_FACTOR = 4
BACKOFF_CAP_SECONDS = 900
FINISHED = ("done", "failed", "ocr")

# The file record as the running task's worker last wrote it (its claim, or its final attempt's mark), by hash.
_written: ContextVar[tuple[str, dict[str, Any]] | None] = ContextVar("written", default=None)


def claimed_record(digest: str) -> dict[str, Any] | None:
    """The file record of ``digest`` as the running task's worker just wrote it (the claim answers the whole
    record), else ``None``: a task's run starts from it instead of reading the record again."""
    written = _written.get()
    return dict(written[1]) if written is not None and written[0] == digest else None


def backoff_seconds(receive_count: int, jitter: float = 0.2, rand: Callable[[], float] = random.random) -> int:
    """How long a failed message stays invisible before its next receive: 5 s, 20 s, 80 s, … (±20 %)."""
    base = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * BACKOFF_FACTOR ** max(0, receive_count - 1))
    return max(1, round(base * (1 + jitter * (2 * rand() - 1))))


def hand_back(sqs: Any, record: Any, seconds: int = 0) -> None:
    """Make a received message visible again in ``seconds`` (an invocation that will not get to it)."""
    sqs.change_message_visibility(
        QueueUrl=queue_url(record.event_source_arn or "", sqs.meta.endpoint_url),
        ReceiptHandle=record.receipt_handle,
        VisibilityTimeout=seconds,
    )


def queue_url(event_source_arn: str, endpoint: str) -> str:
    """The URL of the queue an SQS record came from (``arn:aws:sqs:region:account:name``)."""
    *_, account, name = event_source_arn.split(":")
    return f"{endpoint.rstrip('/')}/{account}/{name}"


def task_message(record: Any) -> dict[str, Any] | None:
    """The body of a task message, or ``None`` (logged) for JSON that is not one: it is dropped."""
    message = record.json_body
    if not isinstance(message, dict) or not isinstance(message.get("hash"), str):
        logger.error("not a task message; dropped", extra={"body": record.body[:200]})
        return None
    return message


@dataclass(frozen=True)
class Message:
    """One task message as the worker sees it."""

    digest: str
    task: str  # the file task whose state this message advances (``extract`` for its OCR chunks)
    opening: bool  # runs the task (subject to cancel and claim) rather than continuing it
    message_id: str
    receive_count: int
    sent_at_ms: int | None
    receipt_handle: str
    source_arn: str

    @classmethod
    def of(cls, record: Any, digest: str, task: str, opening: bool) -> Message:
        attributes = record.raw_event.get("attributes") or {}
        sent = attributes.get("SentTimestamp")
        return cls(
            digest=digest,
            task=task,
            opening=opening,
            message_id=record.message_id,
            receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
            sent_at_ms=int(sent) if sent else None,
            receipt_handle=record.receipt_handle,
            source_arn=record.event_source_arn or "",
        )

    @property
    def final(self) -> bool:
        return self.receive_count >= MAX_RECEIVES


class TaskRunner:
    def __init__(
        self,
        settings: Settings,
        files: FilesRepository,
        jobs: JobsRepository,
        sqs: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.files, self.jobs, self._sqs, self.clock = settings, files, jobs, sqs, clock

    @classmethod
    def for_settings(cls, settings: Settings) -> TaskRunner:
        return cls(settings, FilesRepository(settings.files_table), JobsRepository.for_settings(settings))

    def handle(
        self, record: Any, context: Any, message: dict[str, Any], task: str, opening: bool, run: Callable[[], str]
    ) -> str:
        """A handler's record: run ``message``'s work for ``task`` within the invocation's time limit."""
        deadline = time.time() + context.get_remaining_time_in_millis() / 1000
        group = (record.raw_event.get("attributes") or {}).get("MessageGroupId")
        with tenant_scope(group):  # what this task queues belongs to the same tenant
            state = self.process(Message.of(record, message["hash"], task, opening), run, deadline)
        logger.info("task ended", extra={"state": state, "lane": message.get("lane")})
        return state

    @property
    def sqs(self) -> Any:
        return self._sqs or aws.client("sqs")

    def process(self, message: Message, run: Callable[[], str], deadline: float) -> str:
        """Run one message's work (``run`` returns the task's state afterwards) and account for it."""
        logger.append_keys(hash=message.digest, task=message.task, receive_count=message.receive_count)
        if message.sent_at_ms:
            wait_ms = max(0.0, self.clock() * 1000 - message.sent_at_ms)
            metrics.add_metric(name="QueueWait", unit=MetricUnit.Milliseconds, value=wait_ms)
        written: dict[str, Any] | None = None
        if message.opening:
            refusal, written = self._claim(message, deadline)
            if refusal is not None:
                return refusal
        if message.final:
            written = self.files.update(message.digest, {f"{message.task}FinalAttemptEnds": int(deadline) + 1})
        started = time.perf_counter()
        scope = _written.set((message.digest, written) if written is not None else None)
        try:
            state = run()
        except Exception as exc:
            self._failed(message, exc)
            raise
        finally:
            _written.reset(scope)
            metrics.add_metric(
                name="TaskDuration", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
            )
        if message.final:
            self.files.update(message.digest, {f"{message.task}FinalAttemptEnds": None})
        if message.opening and state == "running":  # the task goes on in other messages (page ranges)
            self.files.end_run(message.digest, message.task, message.message_id)
        metrics.add_metric(name="TaskFailed" if state == "failed" else "TaskSucceeded", unit=MetricUnit.Count, value=1)
        return state

    def _claim(self, message: Message, deadline: float) -> tuple[str | None, dict[str, Any] | None]:
        """Claim an opening message's task: the outcome to report instead of running (``None`` to run), and
        the file record the claim answered (or read, when it runs unclaimed: a redelivery of finished work)."""
        file = self.files.get(message.digest) or {}
        state = file.get(f"{message.task}State")
        if state == "cancelled":
            metrics.add_metric(name="TaskSkipped", unit=MetricUnit.Count, value=1)
            logger.info("task skipped: every job waiting on it was cancelled")
            return "skipped", None
        if state in FINISHED or file.get("status") != "stored":
            # the run settles the jobs of finished work (a redelivery), or drops a stray message
            return None, file or None
        if message.task != SCAN and not is_clean(file):  # nothing is made before a clean scan
            if state == "queued":  # the scan queues it again once the bytes are clean
                self.files.update(message.digest, {f"{message.task}State": None})
            metrics.add_metric(name="TaskSkipped", unit=MetricUnit.Count, value=1)
            logger.warning("task message dropped: its bytes have no clean scan verdict")
            return "unscanned", None
        now = int(self.clock())
        claimed = self.files.claim_task(message.digest, message.task, message.message_id, int(deadline) + 1, now)
        if claimed is not None:
            return self._after_kills(message, claimed, int(file.get(f"{message.task}Kills") or 0)), claimed
        current = (self.files.get(message.digest) or {}).get(f"{message.task}State")
        if current == "cancelled":
            metrics.add_metric(name="TaskSkipped", unit=MetricUnit.Count, value=1)
            return "skipped", None
        if current in FINISHED:
            return None, None
        if message.final:  # the holder is alive and owns its own message: this duplicate can go
            logger.warning("duplicate task message dropped: another invocation holds the task")
            metrics.add_metric(name="TaskSkipped", unit=MetricUnit.Count, value=1)
            return "duplicate", None
        exc = TaskBusy()
        self._failed(message, exc)
        raise exc

    def _after_kills(self, message: Message, claimed: dict[str, Any], before: int) -> str | None:
        """A claim taken: ``None`` to run, or ``"failed"`` when this claim counted the task's second kill."""
        kills = int(claimed.get(f"{message.task}Kills") or 0)
        if kills > before:
            metrics.add_metric(name="TaskKilled", unit=MetricUnit.Count, value=1)
            logger.warning(
                "the last run of this task was killed (out of memory, timeout or crash)", extra={"kills": kills}
            )
        if kills < KILLS_TO_FAIL:
            return None
        error = killed_error(message.task)
        logger.error(
            "task failed: killed twice on the same bytes; its message is deleted",
            extra={"code": error["code"], "kills": kills},
        )
        self.files.update(
            message.digest,
            {
                f"{message.task}State": "failed",
                f"{message.task}Error": error,
                f"{message.task}Holder": None,
                f"{message.task}LeaseUntil": None,
                f"{message.task}FinalAttemptEnds": None,
                # the claim counted an attempt, but this message does not run the task
                f"{message.task}Attempts": max(0, int(claimed.get(f"{message.task}Attempts") or 0) - 1),
            },
        )
        settle_jobs(self.jobs, self.files, message.digest, int(self.clock()) + self.settings.job_ttl_days * 86400)
        metrics.add_metric(name="TaskFailed", unit=MetricUnit.Count, value=1)
        return "failed"

    def _failed(self, message: Message, exc: Exception) -> None:
        """A run raised: a retryable fault or a bug (permanent refusals are recorded by the services)."""
        if message.opening and not isinstance(exc, TaskBusy):
            self.files.release_task(message.digest, message.task, message.message_id)
        if message.final:
            error = (
                exc.to_dict() if isinstance(exc, DocpipeError) else {"code": "internal", "message": "Internal error."}
            )
            logger.error(
                "task failed on its final attempt; its message goes to the dead-letter queue",
                extra={"code": error["code"], "error_message": error["message"]},
            )
            self.files.update(
                message.digest,
                {
                    f"{message.task}State": "failed",
                    f"{message.task}Error": error,
                    f"{message.task}FinalAttemptEnds": None,
                },
            )
            settle_jobs(self.jobs, self.files, message.digest, int(self.clock()) + self.settings.job_ttl_days * 86400)
            metrics.add_metric(name="TaskFailed", unit=MetricUnit.Count, value=1)
            return
        metrics.add_metric(name="TaskRetried", unit=MetricUnit.Count, value=1)
        delay = backoff_seconds(message.receive_count)
        try:
            self.sqs.change_message_visibility(
                QueueUrl=queue_url(message.source_arn, self.sqs.meta.endpoint_url),
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=delay,
            )
        except Exception:  # without backoff the message still comes back after the queue's timeout
            logger.warning("could not set the retry backoff", exc_info=True)
        else:
            logger.info("task will be retried", extra={"retry_in_seconds": delay, "error_type": type(exc).__name__})

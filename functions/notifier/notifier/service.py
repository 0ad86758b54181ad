"""Push each changed job to its owner's connections, and only theirs.

A stream record names a job (JobsTable) or some bytes (FilesTable: every open job of them shows its
tasks' states, progress and variants). Each job's view is built by :class:`docpipe.job_views.JobViews`,
the code ``GET /jobs/{id}`` answers with, and posted to every connection its owner has open; a
connection that answers ``GoneException`` is forgotten. A job that leaves its lane's queue moves its
owner's later queued jobs up, so those are pushed too (at most ``OpenJobsPerUser`` of them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from docpipe import push
from docpipe.adapters.dynamo import JobsRepository
from docpipe.adapters.push import ConnectionsRepository, PushChannel
from docpipe.job_views import JobViews
from docpipe.observability import MetricUnit, logger, metrics

# Jobs whose owner a container remembers between invocations (a job's owner never changes): most records of
# some bytes then cost no read of their jobs. About 100 bytes each.
OWNERS_KEPT = 20_000


class Notifier:
    def __init__(
        self,
        views: JobViews,
        jobs_repo: JobsRepository,
        connections: ConnectionsRepository,
        channel: PushChannel,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.views, self.jobs_repo, self.connections, self.channel = views, jobs_repo, connections, channel
        self.clock = clock
        self._batch: _Batch | None = None
        self._owners: dict[str, str] = {}  # job id: owner, kept across batches (OWNERS_KEPT, oldest out first)

    def begin(self, records: Iterable[dict[str, Any]] = ()) -> None:
        """A new batch of ``records`` (an invocation): what :meth:`handle` remembers between records is read afresh.

        Of several records of one job (or of some bytes) in the batch, only the last is pushed: its view is
        the job's latest, which is what a client shows, and under load a batch holds many changes of each
        job. If the job left its lane's queue at any of them, its owner's later jobs are pushed once, with it.

        Within a batch, each owner's connections are read once, and so are the open jobs of some bytes and
        each job's owner: a batch holds many records of the same bytes and owners, and most owners have no
        page open, so their records then cost nothing. A connection opened during the batch gets its frames
        from the next one (a client reads its open jobs itself when it connects); a job opened during the
        batch is pushed by its own record. A job's owner is remembered for later batches too: it never changes."""
        self._batch = self._new_batch()
        for record in records:
            sequence = _sequence(record)
            if sequence is None:
                continue
            change = self._batch.changes[sequence] = push.change_of(record)  # parsed once: handle() reuses it
            if change is not None:
                self._batch.last[_subject(change)] = sequence
                if change.left_queue:
                    self._batch.left_queue.add(_subject(change))

    def _new_batch(self) -> _Batch:
        if len(self._owners) > OWNERS_KEPT:
            for job_id in list(self._owners)[: len(self._owners) - OWNERS_KEPT // 2]:
                del self._owners[job_id]
        return _Batch(_Targets(self.connections, int(self.clock())), self._owners)

    def handle(self, record: dict[str, Any]) -> int:
        """Push what one stream record changed; returns how many frames were delivered.

        An owner's connections are read before any job's view is built: most changes belong to owners with
        no page open, and those cost one query (none if the batch has read them, see :meth:`begin`)."""
        batch = self._batch or self._new_batch()  # without begin(): nothing shared between records
        sequence = _sequence(record)
        change = batch.changes[sequence] if sequence in batch.changes else push.change_of(record)
        if change is None:
            return 0
        subject = _subject(change)
        if batch.last.get(subject, sequence) != sequence:
            return 0  # a later record of the batch pushes the same job (or bytes) as they are now
        targets = batch.targets
        if change.job_id is not None:
            job = change.job or self.jobs_repo.get(change.job_id)
            if job is None:
                return 0
            batch.owners[str(job["jobId"])] = str(job["owner"])
            if not targets.of(str(job["owner"])):
                return 0
            sent = self.send(job, change.changed_at_ms, targets)
            if change.left_queue or subject in batch.left_queue:
                sent += self._moved_up(job, change.changed_at_ms, targets)
            return sent
        digest = str(change.digest)
        if digest not in batch.open_jobs:
            batch.open_jobs[digest] = self.jobs_repo.open_ids_for_hash(digest)
        sent = 0
        for job_id in batch.open_jobs[digest]:
            owner = batch.owners.get(job_id)
            if owner is not None and not targets.of(owner):
                continue
            job = self.jobs_repo.get(job_id)
            if job is not None:
                batch.owners[job_id] = str(job["owner"])
                sent += self.send(job, change.changed_at_ms, targets)
        return sent

    def send(self, job: dict[str, Any], changed_at_ms: int, targets: _Targets) -> int:
        """Post the job's view to each of its owner's open connections; prune the ones that are gone."""
        owner = str(job["owner"])
        connection_ids = targets.of(owner)
        if not connection_ids:
            return 0
        frame = push.job_frame(self.views.view(job), int(self.clock() * 1000), changed_at_ms)
        delivered = 0
        for connection_id in list(connection_ids):
            if self.channel.post(connection_id, frame):
                delivered += 1
            else:
                self.connections.drop(owner, connection_id)
                connection_ids.remove(connection_id)
                metrics.add_metric(name="PushConnectionsPruned", unit=MetricUnit.Count, value=1)
        if delivered:
            metrics.add_metric(name="PushFramesSent", unit=MetricUnit.Count, value=delivered)
        logger.debug("job pushed", extra={"job_id": job["jobId"], "connections": delivered})
        return delivered

    def _moved_up(self, job: dict[str, Any], changed_at_ms: int, targets: _Targets) -> int:
        """The owner's jobs still queued in the lane ``job`` left: each is one place nearer its start."""
        sent = 0
        for other in self.jobs_repo.open_for_owner(str(job["owner"])):
            if (
                other.get("state") == "queued"
                and other.get("lane") == job.get("lane")
                and other["jobId"] != job["jobId"]
            ):
                full = self.jobs_repo.get(str(other["jobId"]))
                if full is not None:
                    sent += self.send(full, changed_at_ms, targets)
        return sent


class _Targets:
    """Each owner's open connections, read once for the records being handled (pruned as posts find them gone)."""

    def __init__(self, connections: ConnectionsRepository, now: int) -> None:
        self.connections, self.now = connections, now
        self._by_owner: dict[str, list[str]] = {}

    def of(self, owner: str) -> list[str]:
        if owner not in self._by_owner:
            self._by_owner[owner] = self.connections.for_owner(owner, self.now)
        return self._by_owner[owner]


class _Batch:
    """What the records of one batch share (see :meth:`Notifier.begin`); ``owners`` outlives it."""

    def __init__(self, targets: _Targets, owners: dict[str, str]) -> None:
        self.targets = targets
        self.open_jobs: dict[str, list[str]] = {}  # digest: its open jobs' ids
        self.owners = owners  # job id: owner
        self.changes: dict[str, push.Change | None] = {}  # sequence number: what its record changed
        self.last: dict[str, str] = {}  # subject (a job or some bytes): the sequence number of its last record
        self.left_queue: set[str] = set()  # subjects of jobs that left their lane's queue at some record


def _subject(change: push.Change) -> str:
    return f"job:{change.job_id}" if change.job_id is not None else f"hash:{change.digest}"


def _sequence(record: dict[str, Any]) -> str | None:
    return (record.get("dynamodb") or {}).get("SequenceNumber")

"""Push each changed job to its owner's connections, and only theirs.

A stream record names a job (JobsTable) or some bytes (FilesTable: every open job of them shows its
tasks' states, progress and variants). Each job's view is built by :class:`docpipe.job_views.JobViews`,
the code ``GET /jobs/{id}`` answers with, and posted to every connection its owner has open; a
connection that answers ``GoneException`` is forgotten. A job that leaves its lane's queue moves its
owner's later queued jobs up, so the next :data:`MOVED_UP_PUSHED` of them are pushed too, once a batch
for each owner and lane however many of the owner's jobs left it, from one read of the owner's open jobs
and a batch read of the ones pushed: a user with a backlog (a page open on hundreds of queued jobs)
costs a batch a few reads, not a read of every queued job, and of all the open ones, for each job that
starts. The files of a batch's jobs are read together too, when the first view needs one.
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

# A job leaving its lane's queue pushes this many of its owner's next queued jobs in the lane: the places a page
# shows first, and the ones that change what a user waits for. A job further back is pushed once it is among
# them (every start moves it nearer); a page's listing shows it meanwhile. Pushing every queued job of a user
# with a backlog cost a batch a frame per queued job, each time one of them started.
MOVED_UP_PUSHED = 10
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
                if change.job and change.job.get("hash") and change.job.get("plan"):
                    self._batch.hashes[str(change.job["hash"])] = str(change.job["owner"])
                if change.left_queue:
                    self._batch.left_queue.add(_subject(change))

    def _new_batch(self) -> _Batch:
        if len(self._owners) > OWNERS_KEPT:
            for job_id in list(self._owners)[: len(self._owners) - OWNERS_KEPT // 2]:
                del self._owners[job_id]
        return _Batch(_Targets(self.connections, int(self.clock())), self._owners, self.jobs_repo, self.views)

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
            sent = self.send(job, change.changed_at_ms, targets, batch)
            moved = (str(job["owner"]), str(job.get("lane")))
            if (change.left_queue or subject in batch.left_queue) and moved not in batch.moved_up:
                batch.moved_up.add(moved)  # one push of the lane's queued jobs for the batch
                sent += self._moved_up(job, change.changed_at_ms, targets, batch)
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
                sent += self.send(job, change.changed_at_ms, targets, batch)
        return sent

    def send(self, job: dict[str, Any], changed_at_ms: int, targets: _Targets, batch: _Batch | None = None) -> int:
        """Post the job's view to each of its owner's open connections; prune the ones that are gone. A
        queued job's place comes from its owner's open jobs as ``batch`` has read them (once a batch)."""
        owner = str(job["owner"])
        if not targets.of(owner):
            return 0
        open_jobs = batch.open_of(owner) if batch is not None and job.get("state") == "queued" else None
        files = batch.files() if batch is not None else None
        return self.post(owner, self.views.view(job, open_jobs, files), changed_at_ms, targets)

    def post(self, owner: str, view: dict[str, Any], changed_at_ms: int, targets: _Targets) -> int:
        """Post ``owner``'s job's view to each of their open connections; prune the ones that are gone."""
        connection_ids = targets.of(owner)
        if not connection_ids:
            return 0
        frame = push.job_frame(view, int(self.clock() * 1000), changed_at_ms)
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
        logger.debug("job pushed", extra={"job_id": view["jobId"], "connections": delivered})
        return delivered

    def _moved_up(self, job: dict[str, Any], changed_at_ms: int, targets: _Targets, batch: _Batch) -> int:
        """The owner's next :data:`MOVED_UP_PUSHED` jobs still queued in the lane ``job`` left: each is one
        place nearer its start. Read in one batch (the jobs, then their files), placed from the owner's open
        jobs as ``batch`` has them."""
        owner = str(job["owner"])
        open_jobs = batch.open_of(owner)
        queued = [
            other
            for other in open_jobs
            if other.get("state") == "queued"
            and other.get("lane") == job.get("lane")
            and other["jobId"] != job["jobId"]
        ]
        queued.sort(key=lambda other: str(other.get("createdAt", "")))  # the lane's order
        ids = [str(other["jobId"]) for other in queued[:MOVED_UP_PUSHED]]
        if not ids:
            return 0
        read = self.jobs_repo.get_many(ids)
        views = self.views.views([read[job_id] for job_id in ids if job_id in read])
        places = self.views.positions(owner, views, open_jobs)
        sent = 0
        for view in views:
            if place := places.get(view["jobId"]):
                view["queue"] = place
            sent += self.post(owner, view, changed_at_ms, targets)
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

    def __init__(self, targets: _Targets, owners: dict[str, str], jobs_repo: JobsRepository, views: JobViews) -> None:
        self.targets, self.jobs_repo, self.views = targets, jobs_repo, views
        self.open_jobs: dict[str, list[str]] = {}  # digest: its open jobs' ids
        self.owners = owners  # job id: owner
        self.changes: dict[str, push.Change | None] = {}  # sequence number: what its record changed
        self.last: dict[str, str] = {}  # subject (a job or some bytes): the sequence number of its last record
        self.left_queue: set[str] = set()  # subjects of jobs that left their lane's queue at some record
        self.moved_up: set[tuple[str, str]] = set()  # (owner, lane) whose queued jobs this batch pushed
        self._open: dict[str, list[dict[str, Any]]] = {}  # owner: their open jobs, read once
        self.hashes: dict[str, str] = {}  # the bytes of the batch's jobs: their owner
        self._files: dict[str, dict[str, Any]] | None = None

    def files(self) -> dict[str, dict[str, Any]]:
        """The file records of the batch's jobs whose owners have a page open, read together (one
        ``BatchGetItem`` a hundred) the first time a view needs one: not one read a job."""
        if self._files is None:
            self._files = self.views.files_repo.get_many(
                digest for digest, owner in self.hashes.items() if self.targets.of(owner)
            )
        return self._files

    def open_of(self, owner: str) -> list[dict[str, Any]]:
        """The owner's open jobs (:meth:`JobsRepository.open_for_owner`), read once for the batch."""
        if owner not in self._open:
            self._open[owner] = self.jobs_repo.open_for_owner(owner)
        return self._open[owner]


def _subject(change: push.Change) -> str:
    return f"job:{change.job_id}" if change.job_id is not None else f"hash:{change.digest}"


def _sequence(record: dict[str, Any]) -> str | None:
    return (record.get("dynamodb") or {}).get("SequenceNumber")

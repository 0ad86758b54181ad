"""FilesTable: one item per content hash: storing, task states and artifacts, references."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from docpipe.adapters.dynamo.table import _dump, _fault, _is_condition_failure, _load, _Table
from docpipe.errors import Transient


class FilesRepository(_Table):
    """FilesTable: pk ``hash``. ``status`` is ``storing`` (claimed by one writer, with a lease), ``stored``,
    or ``deleting`` (its last reference went; a purge is removing the bytes, with a lease).

    ``refs`` counts the jobs that reference the bytes: every ingested job adds one while the file is
    ``stored`` (the same update checks it), every purged job takes one, and only the purge that takes
    the count to 0 may move the file to ``deleting``. A new upload of the same bytes that finds the file
    ``deleting`` waits for the item to go (or its lease to pass) and stores the bytes again, so a job
    never points at bytes being deleted. Files stored before references were counted (no
    ``refsCounted``) are never deleted by a purge.
    """

    def get(self, digest: str) -> dict[str, Any] | None:
        return self._get({"hash": digest})

    def get_many(self, digests: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The records of several hashes by hash, read as :meth:`get` reads one (strongly consistent), in
        ``BatchGetItem`` calls of at most :data:`BATCH_GET_KEYS` keys; a hash with no record is absent.

        Keys DynamoDB leaves unprocessed (throttling, the 16 MB response limit) are asked for again,
        after a short backoff, up to :data:`BATCH_GET_ROUNDS` rounds; any still left then is a
        :class:`Transient` fault rather than a record silently missing.
        """
        return self._get_many("hash", list(digests), "file records")

    def claim(self, item: dict[str, Any]) -> bool:
        """Become the one writer that stores these bytes. ``False`` when another writer got there first."""
        return self._put_new({**item, "refs": 0, "refsCounted": True}, "hash")

    def claim_else_current(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """:meth:`claim`, without a read first: ``None`` when this writer claimed the bytes, else their record
        as it is (``{}`` when it went meanwhile). Most uploads are of bytes not stored yet: one write."""
        return self._put_new_else_current({**item, "refs": 0, "refsCounted": True}, "hash")

    def put_once(self, item: dict[str, Any]) -> bool:
        """Put an item that is not a file record (an infected verdict, :func:`docpipe.scanning.infected_key`)
        unless one is there; ``False`` when it was."""
        return self._put_new(item, "hash")

    def take_over(self, digest: str, status: str, expired_lease: int, item: dict[str, Any]) -> bool:
        """Replace a file whose writer or deleter let its lease run out (it crashed) with a new claim."""
        try:
            self.client.put_item(
                TableName=self.name,
                Item=_dump({**item, "hash": digest, "refs": 0, "refsCounted": True}),
                ConditionExpression="#status = :status AND leaseUntil = :lease",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": {"S": status}, ":lease": {"N": str(expired_lease)}},
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise _fault(exc, "put_item") from exc
        return True

    def mark_stored(
        self, digest: str, fields: dict[str, Any], waiting: Iterable[str] = (), queued: Iterable[str] = ()
    ) -> dict[str, Any]:
        """The writer's copy is done: the file is ``stored``, referenced by the writer's job; the record
        afterwards. In the same update, the writer's job waits on the tasks ``waiting`` (their counts, as
        :meth:`add_waiters`), and the tasks ``queued`` are marked ``queued`` as :meth:`request_task` marks
        them for the caller to send: the writer claimed the record new, so no task has a state yet."""
        waiting = list(dict.fromkeys(waiting))
        names = {"#r": "refs", **{f"#w{i}": f"{task}Waiters" for i, task in enumerate(waiting)}}
        item = self._update(
            {"hash": digest},
            {**fields, **{f"{task}State": "queued" for task in queued}, "status": "stored", "leaseUntil": None},
            values={":one": 1},
            extra_names=names,
            add=", ".join(f"{name} :one" for name in names),
        )
        return item or {}

    def add_ref(self, digest: str) -> bool:
        """One more job references the stored bytes; ``False`` when they are not ``stored`` (being deleted)."""
        return (
            self._update(
                {"hash": digest},
                {},
                "#status = :stored",
                {":stored": "stored", ":one": 1},
                {"#status": "status", "#r": "refs"},
                add="#r :one",
            )
            is not None
        )

    def drop_ref(self, digest: str) -> int | None:
        """One job fewer references the bytes; the count left, or ``None`` when the file is not recorded."""
        item = self._update(
            {"hash": digest}, {}, "attribute_exists(#k)", {":less": -1}, {"#k": "hash", "#r": "refs"}, add="#r :less"
        )
        return None if item is None else int(item.get("refs", 0))

    def begin_delete(self, digest: str, lease_until: int) -> bool:
        """Take a stored file nobody references to ``deleting``; ``False`` when a reference came back first."""
        return (
            self._update(
                {"hash": digest},
                {"status": "deleting", "leaseUntil": lease_until},
                "#status = :stored AND #r <= :zero AND refsCounted = :yes",
                {":stored": "stored", ":zero": 0, ":yes": True},
                {"#status": "status", "#r": "refs"},
            )
            is not None
        )

    def finish_delete(self, digest: str, lease_until: int) -> bool:
        """Remove the record of deleted bytes (only the deleter that still holds its lease)."""
        try:
            self.client.delete_item(
                TableName=self.name,
                Key=_dump({"hash": digest}),
                ConditionExpression="#status = :deleting AND leaseUntil = :lease",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":deleting": {"S": "deleting"}, ":lease": {"N": str(lease_until)}},
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise _fault(exc, "delete_item") from exc
        return True

    def request_task(self, digest: str, task: str) -> str | None:
        """Mark a task ``queued`` unless it has a state already (``cancelled`` counts as none). Returns
        ``None`` when this call queued it (the caller sends the message), else the state it has: the
        same bytes are processed once."""
        queued, current = self._update_else_current(
            {"hash": digest},
            {f"{task}State": "queued"},
            "attribute_exists(#k) AND (attribute_not_exists(#s) OR #s = :cancelled)",
            {":cancelled": "cancelled"},
            {"#k": "hash", "#s": f"{task}State"},
        )
        if queued is not None:
            return None
        return str(current.get(f"{task}State", "queued"))

    def update(self, digest: str, fields: dict[str, Any]) -> dict[str, Any]:
        item = self._update({"hash": digest}, fields, "attribute_exists(#k)", None, {"#k": "hash"})
        if item is None:
            raise Transient(f"file {digest} is not recorded")
        return item

    def add_member(self, digest: str, attribute: str, member: str) -> set[str]:
        """Add ``member`` to a string set atomically; the set afterwards (a redelivered member counts once)."""
        try:
            r = self.client.update_item(
                TableName=self.name,
                Key=_dump({"hash": digest}),
                UpdateExpression="ADD #a :m",
                ConditionExpression="attribute_exists(#k)",
                ExpressionAttributeNames={"#a": attribute, "#k": "hash"},
                ExpressionAttributeValues={":m": {"SS": [member]}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                raise Transient(f"file {digest} is not recorded") from exc
            raise _fault(exc, "update_item") from exc
        return set(_load(r["Attributes"]).get(attribute) or set())

    def remove_member(self, digest: str, attribute: str, member: str) -> None:
        """Take ``member`` out of a string set (an emptied set disappears, as DynamoDB does)."""
        try:
            self.client.update_item(
                TableName=self.name,
                Key=_dump({"hash": digest}),
                UpdateExpression="DELETE #a :m",
                ConditionExpression="attribute_exists(#k)",
                ExpressionAttributeNames={"#a": attribute, "#k": "hash"},
                ExpressionAttributeValues={":m": {"SS": [member]}},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise _fault(exc, "update_item") from exc

    def claim_task(self, digest: str, task: str, holder: str, lease_until: int, now: int) -> dict[str, Any] | None:
        """Become the one invocation running ``task`` for these bytes; the file record afterwards, or
        ``None`` when the task is not waiting to run (done, failed, cancelled, handed on) or another
        invocation holds it.

        A task that is ``queued`` (or has no state) is taken; a ``running`` one only by the same message
        redelivered (``holder`` is the SQS message id: its last run was killed) or once its holder's
        lease, the end of that invocation's time limit, has passed. Each claim counts an attempt, and
        taking a ``running`` task over counts a kill (``{task}Kills``): a run that ends, however it
        ends, gives its claim back or finishes the task, so one whose claim is still there was killed
        (out of memory, past its time limit, or crashed).
        """
        fields = {f"{task}State": "running", f"{task}Holder": holder, f"{task}LeaseUntil": lease_until}
        claimed = self._update(
            {"hash": digest},
            fields,
            "attribute_exists(#k) AND (attribute_not_exists(#s) OR #s = :queued)",
            {":queued": "queued", ":one": 1},
            {"#k": "hash", "#s": f"{task}State", "#n": f"{task}Attempts"},
            add="#n :one",
        )
        if claimed is not None:
            return claimed
        return self._update(
            {"hash": digest},
            fields,
            "#s = :running AND (#h = :holder OR #l < :now)",
            {":running": "running", ":holder": holder, ":now": now, ":one": 1},
            {
                "#s": f"{task}State",
                "#h": f"{task}Holder",
                "#l": f"{task}LeaseUntil",
                "#n": f"{task}Attempts",
                "#x": f"{task}Kills",
            },
            add="#n :one, #x :one",
        )

    def end_run(self, digest: str, task: str, holder: str) -> None:
        """Give up the claim of a run that ended with the task still ``running`` (its work goes on in
        other messages, the page ranges of a large PDF): no later claim then reads it as killed."""
        self._update(
            {"hash": digest},
            {f"{task}Holder": None, f"{task}LeaseUntil": None},
            "#s = :running AND #h = :holder",
            {":running": "running", ":holder": holder},
            {"#s": f"{task}State", "#h": f"{task}Holder"},
        )

    def release_task(self, digest: str, task: str, holder: str) -> None:
        """Give a claimed task back (its run raised and the message will be retried)."""
        self._update(
            {"hash": digest},
            {f"{task}State": "queued", f"{task}Holder": None, f"{task}LeaseUntil": None},
            "#s = :running AND #h = :holder",
            {":running": "running", ":holder": holder},
            {"#s": f"{task}State", "#h": f"{task}Holder"},
        )

    def add_waiter(self, digest: str, task: str) -> int:
        """One more open job waits on ``task`` of these bytes; the count afterwards.

        A counter, not a set of job ids, so the item does not grow with the number of jobs of the same
        bytes open at once. A redelivered message may count a job twice; the count then only keeps a
        queued task from being cancelled (the work runs), never cancels work a job needs.
        """
        return int(self.add_waiters(digest, [task]).get(f"{task}Waiters", 0))

    def add_waiters(self, digest: str, tasks: Iterable[str]) -> dict[str, Any]:
        """:meth:`add_waiter` for each of ``tasks`` in one update; the record afterwards (``Transient`` when
        there is none)."""
        tasks = list(dict.fromkeys(tasks))
        if not tasks:
            return self.get(digest) or {}
        names = {f"#w{i}": f"{task}Waiters" for i, task in enumerate(tasks)}
        item = self._update(
            {"hash": digest},
            {},
            "attribute_exists(#k)",
            {":one": 1},
            {"#k": "hash", **names},
            add=", ".join(f"{name} :one" for name in names),
        )
        if item is None:
            raise Transient(f"file {digest} is not recorded")
        return item

    def drop_waiter(self, digest: str, task: str) -> None:
        """One open job fewer waits on ``task`` (its job was cancelled)."""
        self._update(
            {"hash": digest},
            {},
            "attribute_exists(#k) AND #w > :zero",
            {":less": -1, ":zero": 0},
            {"#k": "hash", "#w": f"{task}Waiters"},
            add="#w :less",
        )

    def cancel_task(self, digest: str, task: str) -> bool:
        """Mark a queued task ``cancelled`` when no job waits on it any more; workers then skip it.

        A record written before waiters were counted keeps its ``{task}Waiting`` set of job ids: while
        it has one, the task is never cancelled."""
        return (
            self._update(
                {"hash": digest},
                {f"{task}State": "cancelled"},
                "#s = :queued AND (attribute_not_exists(#w) OR #w <= :zero) AND attribute_not_exists(#old)",
                {":queued": "queued", ":zero": 0},
                {"#s": f"{task}State", "#w": f"{task}Waiters", "#old": f"{task}Waiting"},
            )
            is not None
        )

    def requeue_task(self, digest: str, task: str, seen: str | None, forget: tuple[str, ...] = ()) -> bool:
        """Put a task that ended badly (failed, cancelled, or dead-lettered while ``running``) back to
        ``queued``, if its state is still ``seen``; clears its error, its kills and the bookkeeping in ``forget``."""
        fields: dict[str, Any] = {
            f"{task}State": "queued",
            f"{task}Error": None,
            f"{task}Holder": None,
            f"{task}LeaseUntil": None,
            f"{task}FinalAttemptEnds": None,
            f"{task}Kills": None,
            **dict.fromkeys(forget),
        }
        if seen is None:
            return (
                self._update(
                    {"hash": digest},
                    fields,
                    "attribute_exists(#k) AND attribute_not_exists(#s)",
                    None,
                    {"#k": "hash", "#s": f"{task}State"},
                )
                is not None
            )
        return self._update({"hash": digest}, fields, "#s = :seen", {":seen": seen}, {"#s": f"{task}State"}) is not None

    def request_regeneration(self, digest: str, task: str, now: int, every_seconds: int) -> bool:
        """Record a regeneration request unless one was made in the last ``every_seconds``. True when recorded."""
        return (
            self._update(
                {"hash": digest},
                {f"{task}RequestedAt": now},
                "attribute_not_exists(#r) OR #r < :since",
                {":since": now - every_seconds},
                {"#r": f"{task}RequestedAt"},
            )
            is not None
        )

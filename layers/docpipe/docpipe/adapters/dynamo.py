"""DynamoDB: the jobs and files tables. Racing writes are settled by condition expressions."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from docpipe import aws
from docpipe.errors import BadRequest, DocpipeError, Transient
from docpipe.observability import logger

_ser = TypeSerializer()
_de = TypeDeserializer()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [_plain(v) for v in value]
    return value


def _dump(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def _load(item: dict[str, Any]) -> dict[str, Any]:
    return _plain({k: _de.deserialize(v) for k, v in item.items()})


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _fault(exc: ClientError, what: str) -> Transient:
    return Transient(f"DynamoDB failed on {what}: {exc.response.get('Error', {}).get('Code', exc)}")


class _Table:
    def __init__(self, name: str, client: Any | None = None) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("dynamodb")

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            r = self.client.get_item(TableName=self.name, Key=_dump(key), ConsistentRead=True)
        except ClientError as exc:
            raise _fault(exc, "get_item") from exc
        return _load(r["Item"]) if "Item" in r else None

    def _put_new(self, item: dict[str, Any], key_attr: str) -> bool:
        try:
            self.client.put_item(
                TableName=self.name,
                Item=_dump(item),
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": key_attr},
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise _fault(exc, "put_item") from exc
        return True

    def _update(
        self,
        key: dict[str, Any],
        fields: dict[str, Any],
        condition: str | None = None,
        values: dict[str, Any] | None = None,
        extra_names: dict[str, str] | None = None,
        *,
        set_also: str = "",
        add: str = "",
    ) -> dict[str, Any] | None:
        """Set ``fields`` (``None`` removes) if ``condition`` holds; the new item, or ``None`` when it did not.

        ``set_also`` is one more ``SET`` clause and ``add`` an ``ADD`` clause, with their names and
        values passed in ``extra_names`` and ``values``.
        """
        names: dict[str, str] = dict(extra_names or {})
        vals: dict[str, Any] = {}
        sets: list[str] = []
        removes: list[str] = []
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            else:
                vals[f":f{i}"] = _ser.serialize(value)
                sets.append(f"#f{i} = :f{i}")
        for name, value in (values or {}).items():
            vals[name] = _ser.serialize(value)
        if set_also:
            sets.append(set_also)
        expression = " ".join(
            part
            for part in (
                f"SET {', '.join(sets)}" if sets else "",
                f"REMOVE {', '.join(removes)}" if removes else "",
                f"ADD {add}" if add else "",
            )
            if part
        )
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": _dump(key),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ReturnValues": "ALL_NEW",
        }
        if vals:
            kwargs["ExpressionAttributeValues"] = vals
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            r = self.client.update_item(**kwargs)
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise _fault(exc, "update_item") from exc
        return _load(r["Attributes"])

    def ping(self) -> None:
        try:
            self.client.describe_table(TableName=self.name)
        except ClientError as exc:
            raise _fault(exc, "describe_table") from exc


_TERMINAL = ("ready", "failed", "cancelled")


class JobsRepository(_Table):
    """JobsTable: pk ``jobId``; GSI ``byOwner`` (owner, createdAt); sparse GSIs ``byOwnerHash`` (ownerHash),
    ``byHash`` (hash) and ``byUploadDeadline`` (awaiting, uploadDeadline: jobs still waiting for their upload).

    Given ``usage``, a job that ends (moves from an open state to ``ready``, ``failed`` or ``cancelled``)
    leaves its owner's count of open jobs here, whichever path ended it, so the count cannot drift
    from the transitions themselves.
    """

    def __init__(self, name: str, client: Any | None = None, usage: Any | None = None) -> None:
        super().__init__(name, client)
        self.usage = usage

    @classmethod
    def for_settings(cls, settings: Any) -> JobsRepository:
        from docpipe.adapters.usage import UsageRepository

        return cls(settings.jobs_table, usage=UsageRepository(settings.usage_table) if settings.usage_table else None)

    def create(self, job: dict[str, Any]) -> None:
        if not self._put_new(_with_history(job), "jobId"):
            raise Transient("job id collision; try again")

    def create_if_absent(self, job: dict[str, Any]) -> bool:
        return self._put_new(_with_history(job), "jobId")

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self._get({"jobId": job_id})

    def transition(self, job_id: str, from_states: tuple[str, ...], fields: dict[str, Any]) -> dict[str, Any] | None:
        """Move a job out of one of ``from_states``, setting ``fields``; ``None`` if it was not in one of them.

        This is what makes a redelivered or duplicated event produce one transition, not two. A change
        of state is appended to the job's ``history`` (state and time): one entry per transition. A job
        already in the new state is not moved (two settlers racing to the same state move it once).
        """
        values: dict[str, Any] = {f":s{i}": state for i, state in enumerate(from_states)}
        condition = f"attribute_exists(jobId) AND #state IN ({', '.join(values)})"
        names = {"#state": "state"}
        set_also = ""
        if "state" in fields and str(fields["state"]) != "uploading":
            fields = {**fields, "awaiting": None, "uploadDeadline": None}  # out of the sweeper's index
        if "state" in fields:
            condition += " AND #state <> :new"
            names["#hist"] = "history"
            values[":new"] = str(fields["state"])
            values[":entry"] = [{"state": str(fields["state"]), "at": fields.get("updatedAt") or _now_iso()}]
            values[":none"] = []
            set_also = "#hist = list_append(if_not_exists(#hist, :none), :entry)"
        moved = self._update({"jobId": job_id}, fields, condition, values, names, set_also=set_also)
        ended = str(fields.get("state")) in _TERMINAL and not any(str(s) in _TERMINAL for s in from_states)
        if moved is not None and ended and self.usage is not None:
            try:
                self.usage.add(moved["owner"], "open", -1)
            except DocpipeError:  # the job has ended either way; a missed release only holds a place too long
                logger.warning("could not release an open job's place", extra={"job_id": job_id}, exc_info=True)
        return moved

    def extend_upload_deadline(self, job_id: str, until: int) -> None:
        """A job whose object has arrived but not been ingested yet waits longer before the sweeper ends it."""
        self._update(
            {"jobId": job_id},
            {"uploadDeadline": until},
            "#state = :uploading",
            {":uploading": "uploading"},
            {"#state": "state"},
        )

    def count_retry(self, job_id: str, limit: int, amount: int = 1) -> bool:
        """Count a retry of the job against ``limit`` (0: unlimited); False when the job has used them all.
        ``amount=-1`` gives one back (a retry that did not happen after all)."""
        condition = "attribute_exists(jobId)"
        values: dict[str, Any] = {":n": amount}
        if limit and amount > 0:
            condition += " AND (attribute_not_exists(#r) OR #r < :limit)"
            values[":limit"] = limit
        return self._update({"jobId": job_id}, {}, condition, values, {"#r": "retries"}, add="#r :n") is not None

    def delete(self, job_id: str) -> dict[str, Any] | None:
        """Remove a job for good; the job as it was, or ``None`` when it was gone already (one purge wins)."""
        try:
            r = self.client.delete_item(
                TableName=self.name,
                Key=_dump({"jobId": job_id}),
                ConditionExpression="attribute_exists(jobId)",
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise _fault(exc, "delete_item") from exc
        return _load(r["Attributes"])

    def past_upload_deadline(self, now: int, limit: int = 100) -> list[str]:
        """Ids of jobs still waiting for their upload whose deadline has passed (oldest first)."""
        try:
            r = self.client.query(
                TableName=self.name,
                IndexName="byUploadDeadline",
                KeyConditionExpression="#a = :a AND #d < :now",
                ExpressionAttributeNames={"#a": "awaiting", "#d": "uploadDeadline"},
                ExpressionAttributeValues={":a": {"S": "upload"}, ":now": {"N": str(now)}},
                Limit=limit,
            )
        except ClientError as exc:
            raise _fault(exc, "query") from exc
        return [item["jobId"]["S"] for item in r.get("Items", [])]

    def list_for_owner(self, owner: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": "byOwner",
            "KeyConditionExpression": "#o = :o",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":o": {"S": owner}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            start = _decode_cursor(cursor)
            if start.get("owner", {}).get("S") != owner:
                raise BadRequest("The cursor does not belong to this listing.")
            kwargs["ExclusiveStartKey"] = start
        try:
            r = self.client.query(**kwargs)
        except ClientError as exc:
            raise _fault(exc, "query") from exc
        last = r.get("LastEvaluatedKey")
        return [_load(i) for i in r.get("Items", [])], _encode_cursor(last) if last else None

    def ids_for_hash(self, digest: str) -> list[str]:
        """Every job (of every owner) whose upload had these bytes: the jobs a task's outcome settles."""
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": "byHash",
            "KeyConditionExpression": "#h = :h",
            "ExpressionAttributeNames": {"#h": "hash"},
            "ExpressionAttributeValues": {":h": {"S": digest}},
        }
        while True:
            try:
                r = self.client.query(**kwargs)
            except ClientError as exc:
                raise _fault(exc, "query") from exc
            ids += [item["jobId"]["S"] for item in r.get("Items", [])]
            if "LastEvaluatedKey" not in r:
                return ids
            kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]

    def for_owner_and_hash(self, owner: str, digest: str) -> list[dict[str, Any]]:
        try:
            r = self.client.query(
                TableName=self.name,
                IndexName="byOwnerHash",
                KeyConditionExpression="ownerHash = :k",
                ExpressionAttributeValues={":k": {"S": owner_hash(owner, digest)}},
            )
        except ClientError as exc:
            raise _fault(exc, "query") from exc
        return sorted((_load(i) for i in r.get("Items", [])), key=lambda j: j["createdAt"], reverse=True)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _with_history(job: dict[str, Any]) -> dict[str, Any]:
    if "history" in job or "state" not in job:
        return job
    return {**job, "history": [{"state": str(job["state"]), "at": job.get("createdAt") or _now_iso()}]}


def owner_hash(owner: str, digest: str) -> str:
    return f"{owner}#{digest}"


def _encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise BadRequest("The cursor is not valid.") from exc
    if not isinstance(value, dict):
        raise BadRequest("The cursor is not valid.")
    return value


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

    def claim(self, item: dict[str, Any]) -> bool:
        """Become the one writer that stores these bytes. ``False`` when another writer got there first."""
        return self._put_new({**item, "refs": 0, "refsCounted": True}, "hash")

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

    def mark_stored(self, digest: str, fields: dict[str, Any]) -> None:
        """The writer's copy is done: the file is ``stored``, referenced by the writer's job."""
        self._update(
            {"hash": digest},
            {**fields, "status": "stored", "leaseUntil": None},
            values={":one": 1},
            extra_names={"#r": "refs"},
            add="#r :one",
        )

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
        queued = self._update(
            {"hash": digest},
            {f"{task}State": "queued"},
            "attribute_exists(#k) AND (attribute_not_exists(#s) OR #s = :cancelled)",
            {":cancelled": "cancelled"},
            {"#k": "hash", "#s": f"{task}State"},
        )
        if queued is not None:
            return None
        current = self.get(digest) or {}
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
        lease, the end of that invocation's time limit, has passed. Each claim counts an attempt.
        """
        return self._update(
            {"hash": digest},
            {f"{task}State": "running", f"{task}Holder": holder, f"{task}LeaseUntil": lease_until},
            "attribute_exists(#k) AND (attribute_not_exists(#s) OR #s = :queued"
            " OR (#s = :running AND (#h = :holder OR #l < :now)))",
            {":queued": "queued", ":running": "running", ":holder": holder, ":now": now, ":one": 1},
            {
                "#k": "hash",
                "#s": f"{task}State",
                "#h": f"{task}Holder",
                "#l": f"{task}LeaseUntil",
                "#n": f"{task}Attempts",
            },
            add="#n :one",
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

    def cancel_task(self, digest: str, task: str) -> bool:
        """Mark a queued task ``cancelled`` when no job waits on it any more; workers then skip it."""
        return (
            self._update(
                {"hash": digest},
                {f"{task}State": "cancelled"},
                "#s = :queued AND attribute_not_exists(#w)",
                {":queued": "queued"},
                {"#s": f"{task}State", "#w": f"{task}Waiting"},
            )
            is not None
        )

    def requeue_task(self, digest: str, task: str, seen: str | None, forget: tuple[str, ...] = ()) -> bool:
        """Put a task that ended badly (failed, cancelled, or dead-lettered while ``running``) back to
        ``queued``, if its state is still ``seen``; clears its error and the bookkeeping in ``forget``."""
        fields: dict[str, Any] = {
            f"{task}State": "queued",
            f"{task}Error": None,
            f"{task}Holder": None,
            f"{task}LeaseUntil": None,
            f"{task}FinalAttemptEnds": None,
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

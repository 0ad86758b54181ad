"""JobsTable: one item per upload; its transitions are conditional writes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from docpipe import bounded_json
from docpipe.adapters.dynamo.table import _dump, _fault, _is_condition_failure, _load, _Table
from docpipe.errors import BadRequest, DocpipeError, Transient
from docpipe.jobs import TERMINAL
from docpipe.observability import logger

if TYPE_CHECKING:
    from docpipe.adapters.usage import UsageRepository
    from docpipe.config import Settings


class JobsRepository(_Table):
    """JobsTable: pk ``jobId``; GSI ``byOwner`` (owner, createdAt); sparse GSIs ``byOwnerHash`` (ownerHash),
    ``byOpenHash`` (openHash: the jobs of one content that have not ended), ``byUploadDeadline`` (awaiting, uploadDeadline: jobs still waiting for their upload)
    and ``byOwnerOpen`` (openOwner, createdAt: one owner's jobs that have not ended).

    Given ``usage``, a job that ends (moves from an open state to ``ready``, ``failed`` or ``cancelled``)
    leaves its owner's count of open jobs here, whichever path ended it, so the count cannot drift
    from the transitions themselves.
    """

    def __init__(self, name: str, client: Any | None = None, usage: UsageRepository | None = None) -> None:
        super().__init__(name, client)
        self.usage = usage

    @classmethod
    def for_settings(cls, settings: Settings) -> JobsRepository:
        from docpipe.adapters.usage import UsageRepository  # it builds on this package: imported when used

        return cls(settings.jobs_table, usage=UsageRepository(settings.usage_table) if settings.usage_table else None)

    def create(self, job: dict[str, Any]) -> None:
        if not self._put_new(_with_history(job), "jobId"):
            raise Transient("job id collision; try again")

    def create_if_absent(self, job: dict[str, Any]) -> bool:
        return self._put_new(_with_history(job), "jobId")

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self._get({"jobId": job_id})

    def get_many(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Jobs by id, read as :meth:`get` reads one (strongly consistent), in ``BatchGetItem`` calls of at
        most 100 keys (a settle of a popular file's open jobs: a call per hundred, not one per job); keys
        DynamoDB leaves unprocessed are asked for again, then a :class:`Transient` fault. A job that is
        not there is absent."""
        return self._get_many("jobId", job_ids, "jobs")

    def transition(
        self, job_id: str, from_states: tuple[str, ...], fields: dict[str, Any], via: list[str] | tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """Move a job out of one of ``from_states``, setting ``fields``; ``None`` if it was not in one of them.

        This is what makes a redelivered or duplicated event produce one transition, not two. A change
        of state is appended to the job's ``history`` (state and time): one entry per transition, after
        an entry for each state in ``via`` that the job passed without stopping (see
        :func:`docpipe.jobs.history_steps`). A job already in the new state is not moved (two settlers
        racing to the same state move it once). A job that ends leaves the sparse ``byOwnerOpen`` and
        ``byOpenHash`` indexes.
        """
        values: dict[str, Any] = {f":s{i}": state for i, state in enumerate(from_states)}
        condition = f"attribute_exists(jobId) AND #state IN ({', '.join(values)})"
        names = {"#state": "state"}
        set_also = ""
        if "state" in fields and str(fields["state"]) != "uploading":
            fields = {**fields, "awaiting": None, "uploadDeadline": None}  # out of the sweeper's index
        if "state" in fields and str(fields["state"]) in TERMINAL:
            fields = {**fields, "openOwner": None, "openHash": None}
        if "state" in fields and "updatedAt" not in fields:  # byState sorts a state's jobs by it
            fields = {**fields, "updatedAt": _now_iso()}
        if "state" in fields:
            condition += " AND #state <> :new"
            names["#hist"] = "history"
            values[":new"] = str(fields["state"])
            at = fields.get("updatedAt") or _now_iso()
            values[":entry"] = [{"state": str(state), "at": at} for state in (*via, fields["state"])]
            values[":none"] = []
            set_also = "#hist = list_append(if_not_exists(#hist, :none), :entry)"
        moved = self._update({"jobId": job_id}, fields, condition, values, names, set_also=set_also)
        ended = str(fields.get("state")) in TERMINAL and not any(str(s) in TERMINAL for s in from_states)
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

    def record_parts(
        self, job_id: str, fields: dict[str, Any], parts: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """While a job is ``uploading``: set ``fields``, and show a multipart upload's ``parts`` (done,
        total, bytes) on its history's first entry, the ``uploading`` one; ``None`` once it has moved on."""
        values: dict[str, Any] = {":uploading": "uploading"}
        names = {"#state": "state"}
        if parts is not None:
            values[":parts"], names["#hist"] = parts, "history"
        return self._update(
            {"jobId": job_id},
            fields,
            "#state = :uploading",
            values,
            names,
            set_also="#hist[0].parts = :parts" if parts is not None else "",
        )

    def mark_completing(self, job_id: str, fingerprint: str, parts: dict[str, Any], at: str) -> dict[str, Any] | None:
        """An ``uploading`` job whose parts CompleteFunction will join: its ``step`` is ``completing`` (with the
        fingerprint of the checked parts) and its history gains a ``completing`` entry with the ``parts``
        (done, total, bytes); ``None`` when it was
        marked already or has moved on (one request queues one completion)."""
        return self._update(
            {"jobId": job_id},
            {"step": "completing", "completeFingerprint": fingerprint, "parts": parts, "updatedAt": at},
            "#state = :uploading AND attribute_not_exists(#step)",
            {":uploading": "uploading", ":entry": [{"state": "completing", "at": at, "parts": parts}], ":none": []},
            {"#state": "state", "#step": "step", "#hist": "history"},
            set_also="#hist = list_append(if_not_exists(#hist, :none), :entry)",
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
            kwargs["ExclusiveStartKey"] = _decode_cursor(cursor, owner)
        try:
            r = self.client.query(**kwargs)
        except ClientError as exc:
            if cursor and exc.response.get("Error", {}).get("Code") == "ValidationException":
                raise BadRequest("The cursor is not valid.") from exc  # the client's value, not our fault
            raise _fault(exc, "query") from exc
        last = r.get("LastEvaluatedKey")
        return [_load(i) for i in r.get("Items", [])], _encode_cursor(last) if last else None

    def list_by_state(
        self, query: StateQuery, limit: int, cursor: str | None = None, budget: int = 1000
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Jobs of every owner that ``query`` selects, from the ``byState`` index (state, updatedAt): one
        state after another, each newest first (or oldest first).

        At most ``limit`` jobs a call, reading at most ``budget`` index items: with selective filters a
        page may be short, even empty, while the cursor says more may follow; a caller follows the
        cursor until it is ``None``. One job more than ``limit`` is read, so that a page that ends the
        listing has no cursor. The cursor is opaque and belongs to ``query``: one of another listing is
        a :class:`BadRequest`.
        """
        states = query.states
        index, start = query.decode(cursor) if cursor else (0, None)
        names, values, key, filters = query.expression()
        items: list[dict[str, Any]] = []
        evaluated = 0
        while index < len(states) and len(items) <= limit and evaluated < budget:
            wanted = limit + 1 - len(items)
            kwargs: dict[str, Any] = {
                "TableName": self.name,
                "IndexName": "byState",
                "KeyConditionExpression": key,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {**values, ":s": {"S": states[index]}},
                "ScanIndexForward": query.oldest_first,
                # a filter drops items after they are read: read more than are wanted, within the budget
                "Limit": min(budget - evaluated, max(wanted, 100) if filters else wanted),
            }
            if filters:
                kwargs["FilterExpression"] = filters
            if start:
                kwargs["ExclusiveStartKey"] = start
            try:
                r = self.client.query(**kwargs)
            except ClientError as exc:
                raise _fault(exc, "query") from exc
            evaluated += int(r.get("ScannedCount", 0))
            page = r.get("Items", [])
            taken = page[:wanted]
            items += [_load(item) for item in taken]
            if len(taken) < len(page):  # the page had more than were wanted: go on after the last one taken
                start = {k: taken[-1][k] for k in _STATE_INDEX_KEYS}
            elif "LastEvaluatedKey" in r:
                start = r["LastEvaluatedKey"]
            else:
                index, start = index + 1, None
        if len(items) > limit:
            return items[:limit], query.cursor_after(items[limit - 1])
        return items, query.encode(states[index], start) if index < len(states) else None

    def open_for_owner(self, owner: str) -> list[dict[str, Any]]:
        """The owner's jobs that have not ended (``jobId``, ``lane``, ``state``, ``createdAt``), oldest first.
        Bounded by ``OpenJobsPerUser``: the index holds a job only while it is open."""
        return [_load(item) for item in self._query_all("byOwnerOpen", "openOwner", owner)]

    def open_ids_for_hash(self, digest: str) -> list[str]:
        """The jobs (of every owner) of these bytes that have not ended: the jobs a task's outcome settles.

        Read from the sparse ``byOpenHash`` index, which holds a job only while it is open (ingest sets
        ``openHash`` on a job it leaves open, a retry sets it again, and every move to an end removes
        it), so a settle costs O(open jobs of the hash), never O(every upload of it in the jobs' TTL).
        """
        return [item["jobId"]["S"] for item in self._query_all("byOpenHash", "openHash", digest)]

    def _query_all(self, index: str, attribute: str, value: str) -> list[dict[str, Any]]:
        """Every item of ``index`` whose key ``attribute`` is ``value``, page after page (raw items)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": index,
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": attribute},
            "ExpressionAttributeValues": {":k": {"S": value}},
        }
        while True:
            try:
                r = self.client.query(**kwargs)
            except ClientError as exc:
                raise _fault(exc, "query") from exc
            items += r.get("Items", [])
            if "LastEvaluatedKey" not in r:
                return items
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
    if job.get("hash") and "openHash" not in job and str(job.get("state")) in _OPEN_STATES:
        job = {**job, "openHash": job["hash"]}  # an open job of stored bytes is in byOpenHash
    if "history" in job or "state" not in job:
        return job
    return {**job, "history": [{"state": str(job["state"]), "at": job.get("createdAt") or _now_iso()}]}


_OPEN_STATES = frozenset({"scanning", "queued", "processing"})


def owner_hash(owner: str, digest: str) -> str:
    return f"{owner}#{digest}"


def _encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


# A cursor is the ``LastEvaluatedKey`` of a ``byOwner`` query: the table's key and the index's, as strings.
_CURSOR_KEYS = frozenset({"jobId", "owner", "createdAt"})
# A job id (a UUID) and a creation time (ISO 8601) are short printable ASCII: nothing longer reaches DynamoDB.
_CURSOR_VALUE = re.compile(r"[!-~]{1,128}")


def _decode_cursor(cursor: str, owner: str) -> dict[str, Any]:
    """The start key of a cursor that has exactly the shape :func:`_encode_cursor` gives one from this
    listing (``jobId``, ``owner`` and ``createdAt``, each ``{"S": string}``, nothing else), for
    ``owner``'s own index; anything else is a :class:`BadRequest`, before DynamoDB sees it."""
    invalid = BadRequest("The cursor is not valid.")
    try:
        value = bounded_json.loads(base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True).decode())
    except (ValueError, BadRequest):  # not ASCII, not base64, not UTF-8, not bounded JSON
        raise invalid from None
    if not isinstance(value, dict) or set(value) != _CURSOR_KEYS:
        raise invalid
    strings = {}
    for name, attribute in value.items():
        if not isinstance(attribute, dict) or list(attribute) != ["S"] or not isinstance(attribute["S"], str):
            raise invalid
        strings[name] = attribute["S"]
    if strings["owner"] != owner:
        raise BadRequest("The cursor does not belong to this listing.")
    if not _CURSOR_VALUE.fullmatch(strings["jobId"]) or not _CURSOR_VALUE.fullmatch(strings["createdAt"]):
        raise invalid
    return {name: {"S": string} for name, string in strings.items()}


# A ``byState`` position: the table's key and the index's. A cursor carries one (or none: the state's start).
_STATE_INDEX_KEYS = ("jobId", "state", "updatedAt")


@dataclass(frozen=True)
class StateQuery:
    """What a ``byState`` listing selects: jobs in ``states`` (listed in that order) whose ``updatedAt`` is
    within ``since``..``until`` (inclusive; ISO 8601 as the jobs store it), and, as filters, of one
    ``owner``, with one error ``code``, and only those whose bytes were stored (``stored_only``: a job
    refused at ingest has nothing to retry)."""

    states: tuple[str, ...]
    since: str | None = None
    until: str | None = None
    owner: str | None = None
    code: str | None = None
    stored_only: bool = False
    oldest_first: bool = False

    def expression(self) -> tuple[dict[str, str], dict[str, Any], str, str]:
        """Names, values (without the state's), the key condition and the filter (empty for none)."""
        names = {"#s": "state"}  # DynamoDB refuses a name or value the expressions do not use
        values: dict[str, Any] = {k: {"S": v} for k, v in ((":since", self.since), (":until", self.until)) if v}
        if values:
            names["#u"] = "updatedAt"
        key = "#s = :s"
        if self.since and self.until:
            key += " AND #u BETWEEN :since AND :until"
        elif self.since:
            key += " AND #u >= :since"
        elif self.until:
            key += " AND #u <= :until"
        filters = []
        if self.owner is not None:
            names["#o"], values[":o"] = "owner", {"S": self.owner}
            filters.append("#o = :o")
        if self.code is not None:
            names["#e"], names["#c"], values[":c"] = "error", "code", {"S": self.code}
            filters.append("#e.#c = :c")
        if self.stored_only:
            names["#h"] = "hash"
            filters.append("attribute_exists(#h)")
        return names, values, key, " AND ".join(filters)

    def scope(self) -> str:
        """A short digest of the query: its cursors are refused by a listing of another."""
        return hashlib.sha256(json.dumps(dataclasses.astuple(self)).encode()).hexdigest()[:16]

    def encode(self, state: str, start: dict[str, Any] | None) -> str:
        value = {"f": self.scope(), "s": state, "k": start}
        return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()

    def cursor_after(self, job: dict[str, Any]) -> str:
        """A cursor that goes on after ``job``, as this query listed it: its place in the index, whether or
        not it is still there (a job retried or purged meanwhile has left it)."""
        return self.encode(str(job["state"]), {k: {"S": str(job[k])} for k in _STATE_INDEX_KEYS})

    def decode(self, cursor: str) -> tuple[int, dict[str, Any] | None]:
        """Where the listing goes on: the index of its state in ``states`` and the start key, from a cursor
        of exactly the shape :meth:`encode` gives, made for this query; anything else is a
        :class:`BadRequest` before DynamoDB sees it."""
        invalid = BadRequest("The cursor is not valid.")
        try:
            value = bounded_json.loads(base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True).decode())
        except (ValueError, BadRequest):
            raise invalid from None
        if not isinstance(value, dict) or set(value) != {"f", "s", "k"}:
            raise invalid
        if value["f"] != self.scope():
            raise BadRequest("The cursor does not belong to this listing.")
        if value["s"] not in self.states:
            raise invalid
        index, start = self.states.index(value["s"]), value["k"]
        if start is None:
            return index, None
        if not isinstance(start, dict) or set(start) != set(_STATE_INDEX_KEYS):
            raise invalid
        for attribute in start.values():
            if not isinstance(attribute, dict) or list(attribute) != ["S"] or not isinstance(attribute["S"], str):
                raise invalid
            if not _CURSOR_VALUE.fullmatch(attribute["S"]):
                raise invalid
        if start["state"]["S"] != value["s"]:
            raise invalid
        return index, {k: {"S": start[k]["S"]} for k in _STATE_INDEX_KEYS}

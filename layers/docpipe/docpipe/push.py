"""The push protocol and what a DynamoDB stream record means for it. Pure: records and views in, changes
and frames out.

Server → client text frames::

    {"type": "job", "job": <GET /jobs/{id}'s JSON>, "sentAt": <epoch ms>, "changedAt": <epoch ms>}
    {"type": "pong"}                                  # the answer to {"action": "ping"}

``changedAt`` is when the write happened (the job's ``updatedAt``, else the stream record's
``ApproximateCreationDateTime``), ``sentAt`` when the notifier made the frame, just after reading its view. A
client re-reads ``GET /jobs/{id}`` for each job it follows after every (re)connect, and polls while the socket
is closed. Frames of one job can arrive out of the order their views were read in (a job's record and its
bytes' are pushed by invocations of their own): a client keeps what it has when a frame has an earlier
``updatedAt``, or the same one and less progress (the CLI's :class:`docpipe_local.live.JobFeed`, the page).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from docpipe.adapters.dynamo.table import _plain

PING = "ping"
PONG = json.dumps({"type": "pong"})
_de = TypeDeserializer()


@dataclass(frozen=True)
class Change:
    """What one stream record changed: a job (``job_id``, with the record's new image when it has one) or
    the shared record of some bytes (``digest``: every open job of them shows its tasks)."""

    changed_at_ms: int
    job_id: str | None = None
    digest: str | None = None
    job: dict[str, Any] | None = None
    left_queue: bool = False  # the job was queued and is not any more: its owner's later jobs moved up


def image(record: dict[str, Any], which: str) -> dict[str, Any] | None:
    raw = (record.get("dynamodb") or {}).get(which)
    return _plain({k: _de.deserialize(v) for k, v in raw.items()}) if raw else None


def epoch_ms(iso: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _approximate_ms(value: Any) -> int:
    """A stream record's ``ApproximateCreationDateTime`` (epoch seconds in Lambda's event) in epoch ms."""
    try:
        return int(float(value) * 1000)
    except (TypeError, ValueError):
        return epoch_ms(value) or 0


# What of a file's record a job's view shows (:func:`docpipe.jobs.public_view`): each task's state, error,
# attempts and outputs, what ends a killed run, and the scan's flags.
_SHOWN_SUFFIXES = ("State", "Error", "Attempts", "Artifacts", "Kills", "LeaseUntil", "FinalAttemptEnds")
_SHOWN = frozenset({"scanFlags"})


def shown(key: str) -> bool:
    """Whether a file record's attribute ``key`` shows in the views of the jobs of those bytes."""
    return key in _SHOWN or key.endswith(_SHOWN_SUFFIXES)


def shows_a_change(record: dict[str, Any]) -> bool:
    """Whether a FilesTable stream record changed something a job's view shows. Most writes to the record
    of some bytes do not (a waiting job counted, the bytes claimed, stored or referenced, a task's message
    taken by a worker that holds it): those push nothing. A record without both images (a stream that
    carries only keys) may have changed anything."""
    new, old = image(record, "NewImage"), image(record, "OldImage")
    if new is None or (old is None and record.get("eventName") != "INSERT"):
        return True
    old = old or {}
    return any(shown(key) and new.get(key) != old.get(key) for key in new.keys() | old.keys())


def change_of(record: dict[str, Any]) -> Change | None:
    """The change a JobsTable or FilesTable stream record carries; None for a removal (a purged or expired
    job has nothing left to show), a change to some bytes' record that no job's view shows
    (:func:`shows_a_change`), or a record of neither table."""
    if record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    body = record.get("dynamodb") or {}
    keys = body.get("Keys") or {}
    changed_at = _approximate_ms(body.get("ApproximateCreationDateTime"))
    if "jobId" in keys:
        new, old = image(record, "NewImage"), image(record, "OldImage")
        if new and new.get("updatedAt"):
            changed_at = epoch_ms(new["updatedAt"]) or changed_at
        left = bool(old and old.get("state") == "queued" and (new or {}).get("state") != "queued")
        return Change(changed_at, job_id=str(keys["jobId"]["S"]), job=new, left_queue=left)
    if "hash" in keys:
        return Change(changed_at, digest=str(keys["hash"]["S"])) if shows_a_change(record) else None
    return None


def job_frame(view: dict[str, Any], sent_at_ms: int, changed_at_ms: int) -> str:
    return json.dumps({"type": "job", "job": view, "sentAt": sent_at_ms, "changedAt": changed_at_ms})


def is_ping(body: str | None) -> bool:
    """Whether a client's frame is ``{"action": "ping"}``."""
    try:
        message = json.loads(body or "")
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("action") == PING

"""The operators' routes, ``/admin/...``: every user's queues and jobs, and the actions that mend them.

Each route answers 401 ``auth.required`` without a user and 403 ``auth.forbidden`` to anyone who is not
an operator (the JWT claim ``AdminGroupClaim`` lists ``AdminGroup``; see :func:`api.context.is_admin`).
A request's fields are checked strictly: an unknown field or query parameter, a value of the wrong type
or out of range is a 400 ``request.invalid``. The event handler checks a request against its schema
before the route runs, so a malformed request is a 400 for anyone, operator or not (the schemas are
public in the OpenAPI document); a well-formed one is refused by role first.

The actions are bounded per call, by a count and by the function's own time limit (they stop with
:data:`RESERVE_MS` to spare), and each reports how many jobs or messages it touched and whether more
remain; an operator calls again (with ``cursor`` where one is given) until nothing does.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

from api.context import (
    adapters,
    all_queues,
    app,
    json_response,
    queue_readers,
    require_admin,
    settings,
    ttl_at,
    usage,
    views,
)
from docpipe import control, quotas
from docpipe.adapters.dynamo import StateQuery
from docpipe.adapters.sqs import DeadLetters, TaskQueues
from docpipe.config import LANES
from docpipe.errors import BadRequest, Conflict, NotFound, QuotaExceeded
from docpipe.jobs import TERMINAL, JobState
from docpipe.observability import MetricUnit, logger, metrics

router = APIGatewayHttpRouter()

STATES = tuple(str(state) for state in JobState)  # the order an unfiltered listing goes through them
ENDED = tuple(str(state) for state in JobState if state in TERMINAL)
# A job's error code as the error table spells them (``image.too_many_pixels``), and a user id as
# ``current_user`` accepts one, printable and short enough for a query.
_CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_LISTING_PARAMETERS = frozenset({"state", "code", "owner", "since", "until", "limit", "cursor"})
# What an action leaves of the function's time for its answer; below it, it stops and says more remain.
RESERVE_MS = 2500
NO_STORE = {"Cache-Control": "no-store"}


def _deadline() -> float:
    """The :func:`time.monotonic` value by which an action stops: the invocation's time less :data:`RESERVE_MS`."""
    remaining = app.lambda_context.get_remaining_time_in_millis()
    return time.monotonic() + max(0, remaining - RESERVE_MS) / 1000


def _instant(name: str, raw: str | None) -> str | None:
    """An ISO 8601 time (a date is its midnight; no offset is UTC) as the jobs store theirs."""
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} is not an ISO 8601 time (2026-01-31T12:00:00Z).") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _code(raw: str) -> str:
    if not _CODE.match(raw):
        raise BadRequest("code is an error code such as image.too_many_pixels.")
    return raw


@router.get("/admin/queues")
def admin_queues() -> Response[str]:
    """Every queue's depth, in-flight and delayed counts, its DLQ's depth and its oldest message's age:
    what ``GET /queues`` gives an operator."""
    require_admin()
    return json_response(200, {"scope": "all", "queues": all_queues()}, NO_STORE)


@router.get("/admin/jobs")
def admin_jobs(
    state: Annotated[str | None, Query(max_length=16)] = None,
    code: Annotated[str | None, Query(max_length=64)] = None,
    owner: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response[str]:
    """Jobs of every user, from the ``byState`` index: one state, or every state one after another
    (uploading, queued, processing, ready, failed, cancelled), each most recently changed first. ``code``
    keeps the jobs failed with that error (``state`` is then ``failed`` unless given), ``owner`` one user's,
    ``since``/``until`` those last changed in that time (inclusive). A page may be short while
    ``nextCursor`` says more may follow (filters are applied to what is read, at most 1,000 index items a
    call); a cursor belongs to its filters."""
    require_admin()
    unknown = set(app.current_event.query_string_parameters or {}) - _LISTING_PARAMETERS
    if unknown:
        raise BadRequest(f"Unknown query parameters: {', '.join(sorted(unknown))}.")
    if state is not None and state not in STATES:
        raise BadRequest(f"state is one of {', '.join(STATES)}.")
    if owner is not None and (not owner.isprintable() or "/" in owner):
        raise BadRequest("owner is a user id.")
    first, last = _instant("since", since), _instant("until", until)
    if first and last and first > last:
        raise BadRequest("since is after until.")
    states = (state,) if state else ("failed",) if code else STATES
    query = StateQuery(states, since=first, until=last, owner=owner, code=_code(code) if code else None)
    items, next_cursor = adapters()[1].list_by_state(query, limit, cursor)
    shown = [
        {**view, "owner": job["owner"], "retries": int(job.get("retries") or 0)}
        for job, view in zip(items, views(items), strict=True)
    ]
    return json_response(200, {"jobs": shown, "nextCursor": next_cursor}, NO_STORE)


class AdminRetry(BaseModel):
    """One job by id, or the failed jobs with one error code (at most ``limit`` a call)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    jobId: str | None = Field(default=None, max_length=64, description="A failed or cancelled job of any user.")
    code: str | None = Field(default=None, max_length=64, description="Retry the failed jobs with this error code.")
    limit: int = Field(default=25, ge=1, le=100, description="With code: the most jobs this call touches.")
    cursor: str | None = Field(default=None, max_length=2048, description="With code: where the last call stopped.")


@router.post("/admin/jobs/retry")
def admin_retry(request: AdminRetry) -> Response[str]:
    """Retry one failed or cancelled job (``jobId``), or the failed jobs with an error ``code``, newest first,
    at most ``limit`` a call. An operator's retry is neither held to nor counted against the owner's
    ``RetriesPerJob``; the owner's ``OpenJobsPerUser`` still holds (a job past it is skipped,
    ``quota.exceeded``). Jobs refused at ingest (nothing stored) are not candidates of a ``code``. 200:
    ``retried``, ``skipped``, each job's outcome, and ``nextCursor`` while more candidates may remain."""
    require_admin()
    if (request.jobId is None) == (request.code is None):
        raise BadRequest("Give either jobId or code.")
    if request.jobId is not None:
        if request.cursor is not None or "limit" in request.model_fields_set:
            raise BadRequest("limit and cursor go with code, not with jobId.")
        job = adapters()[1].get(request.jobId) if _JOB_ID.match(request.jobId) else None
        if job is None:
            raise NotFound("No such job.", code="job.not_found")
        outcomes = [_retry(job, {})]
        next_cursor = None
    else:
        query = StateQuery(("failed",), code=_code(request.code or ""), stored_only=True)
        outcomes, next_cursor = _retry_many(query, request.limit, request.cursor)
    retried = sum(1 for outcome in outcomes if outcome["result"] == "retried")
    metrics.add_metric(name="AdminJobsRetried", unit=MetricUnit.Count, value=retried)
    logger.info("operator retry", extra={"retried": retried, "skipped": len(outcomes) - retried, "code": request.code})
    body = {"retried": retried, "skipped": len(outcomes) - retried, "jobs": outcomes, "nextCursor": next_cursor}
    return json_response(200, body, NO_STORE)


def _retry_many(query: StateQuery, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    items, next_cursor = adapters()[1].list_by_state(query, limit, cursor)
    deadline = _deadline()
    limits: dict[str, dict[str, int]] = {}
    outcomes: list[dict[str, Any]] = []
    for i, job in enumerate(items):
        if time.monotonic() > deadline:  # out of time: the next call goes on from the last job touched
            next_cursor = query.cursor_after(items[i - 1]) if i else cursor or query.encode(query.states[0], None)
            break
        outcomes.append(_retry(job, limits))
    return outcomes, next_cursor


def _retry(job: dict[str, Any], limits: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Retry one job as an operator; its outcome. ``limits``: the owners' limits read so far."""
    _, jobs_repo, files_repo = adapters()
    owner = str(job["owner"])
    if owner not in limits:
        limits[owner] = quotas.limits_for(usage(), owner, settings.limits)
    outcome: dict[str, Any] = {"jobId": job["jobId"], "owner": owner}
    try:
        _, queued = control.retry(
            job, jobs_repo, files_repo, TaskQueues(settings.task_queues), ttl_at(), limits[owner], by_operator=True
        )
    except (Conflict, QuotaExceeded) as error:
        return {**outcome, "result": "skipped", **error.to_dict()}
    return {**outcome, "result": "retried", "requeued": queued}


class Redrive(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    queue: str = Field(
        max_length=32, description="The queue whose DLQ to redrive: <concern>-<lane>, e.g. presets-high."
    )


# How many messages one call copies where SQS's own move task is not available.
REDRIVE_LIMIT = 500


@router.post("/admin/dlq/redrive")
def admin_redrive(request: Redrive) -> Response[str]:
    """Move a dead-letter queue's messages back to the queue they came from: with SQS's
    ``StartMessageMoveTask`` where the endpoint has it (asynchronous: ``messages`` is how many it has to
    move, ``approximate``), else by copying (``messages`` moved, up to 500 a call, ``more`` when some are
    left). A message moved back is handled as it would have been: a task that has ended since (done, or
    failed) only settles its jobs; ``POST /admin/jobs/retry`` runs failed jobs' tasks again."""
    require_admin()
    queues = {f"ingest-{lane}": url for lane, url in settings.ingest_queues.items()}
    queues |= {f"{task}-{lane}": urls[lane] for task, urls in settings.task_queues.items() for lane in LANES}
    source = queues.get(request.queue)
    if source is None:
        raise BadRequest(f"queue is one of {', '.join(sorted(queues))}.")
    dlq = queue_readers()[0].dead_letter_of(source)
    if dlq is None:
        raise NotFound(f"The queue {request.queue} has no dead-letter queue.", code="queue.not_found")
    moved = DeadLetters().redrive(dlq, source, REDRIVE_LIMIT, _deadline())
    metrics.add_metric(name="DeadLettersRedriven", unit=MetricUnit.Count, value=moved.messages)
    logger.info(
        "dead letters redriven", extra={"queue": request.queue, "method": moved.method, "messages": moved.messages}
    )
    body: dict[str, Any] = {
        "queue": request.queue,
        "deadLetterQueue": dlq.rsplit("/", 1)[1],
        "method": moved.method,
        "messages": moved.messages,
        "approximate": moved.approximate,
        "more": moved.more,
    }
    if moved.method == "move-task":
        body |= {"taskHandle": moved.task_handle, "alreadyRunning": moved.running}
    return json_response(200, body, NO_STORE)


class Clean(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    olderThanDays: int = Field(ge=1, le=3650, description="Purge ended jobs last changed more than this many days ago.")
    limit: int = Field(default=100, ge=1, le=500, description="The most jobs this call purges.")


@router.post("/admin/clean")
def admin_clean(request: Clean) -> Response[str]:
    """Purge ended jobs (ready, failed, cancelled) that ended more than ``olderThanDays`` days ago, oldest
    first, at most ``limit`` a call, as ``DELETE /jobs/{id}?purge=true`` does: their bytes, presets and
    text go with the last job that references them. 200: ``purged``, ``filesDeleted`` (the stored
    contents that went with them), and ``more`` while older ended jobs may remain."""
    require_admin()
    before = (datetime.now(UTC) - timedelta(days=request.olderThanDays)).isoformat(timespec="milliseconds")
    query = StateQuery(ENDED, until=before.replace("+00:00", "Z"), oldest_first=True)
    store, jobs_repo, files_repo = adapters()
    items, cursor = jobs_repo.list_by_state(query, request.limit)
    deadline, purged, deleted, stopped = _deadline(), 0, 0, False
    for job in items:
        if time.monotonic() > deadline:
            stopped = True
            break
        try:
            deleted += control.purge(job, jobs_repo, files_repo, store, settings.store_bucket, ttl_at())
        except NotFound:
            continue  # purged meanwhile by its owner or another call
        purged += 1
    metrics.add_metric(name="AdminJobsPurged", unit=MetricUnit.Count, value=purged)
    logger.info(
        "operator clean", extra={"purged": purged, "files_deleted": deleted, "older_than_days": request.olderThanDays}
    )
    body = {"purged": purged, "filesDeleted": deleted, "more": stopped or cursor is not None, "before": query.until}
    return json_response(200, body, NO_STORE)

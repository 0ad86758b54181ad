"""ApiFunction: API Gateway HTTP API (v2) events through the Powertools event handler.

Identity is the ``sub`` claim the JWT authorizer put in the request context (locally, the dev
gateway's token map does the same); a header the client sets is never trusted. A user sees only
their own jobs and files: another user's job or file answers 404, exactly like one that does not
exist, so ids and dedupe reveal nothing. The operators' ``/admin/...`` routes are in :mod:`api.admin`;
what the route modules share (settings, adapters, identity and role) in :mod:`api.context`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

import docpipe
from api import admin, admin_metrics, client_config, companion, multipart, requests
from api.context import (
    adapters,
    all_queues,
    app,
    current_user,
    is_admin,
    job_views,
    queue_positions,
    queue_readers,
    settings,
    usage,
    views,
)
from api.context import json_response as _json
from api.context import ttl_at as _ttl_at
from api.uploads import UploadRequest, prepare
from docpipe import control, quotas
from docpipe.adapters.sqs import TaskQueues
from docpipe.config import LANES
from docpipe.errors import BadRequest, DocpipeError, FileTooLarge, NotFound, http_status
from docpipe.jobs import public_hash, public_view
from docpipe.observability import MetricUnit, logger, metrics, tracer
from docpipe.scanning import is_clean
from docpipe.storage import original_key

__all__ = ["adapters", "app", "is_admin", "lambda_handler", "queue_readers", "settings", "usage"]
app.include_router(admin.router)
app.include_router(admin_metrics.router)
app.include_router(multipart.router)  # POST /uploads/multipart and /uploads/{jobId}/...: big files in parts
app.include_router(companion.router)  # /s3/...: Uppy's Companion S3 routes over the same implementation
app.include_router(client_config.router)  # GET /config: where to connect for live updates

# The preset names, as the presets stage defines them (the API package does not import the renderer).
PRESET_NAMES = frozenset({"ai-chat", "ai-vision", "thumbnail", "preview"})
_HASH = re.compile(r"^[0-9a-f]{64}$")
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _own_job(job_id: str, owner: str) -> dict[str, Any]:
    job = adapters()[1].get(job_id) if _JOB_ID.match(job_id) else None
    if job is None or job["owner"] != owner:
        raise NotFound("No such job.", code="job.not_found")
    return job


@dataclass(frozen=True)
class OwnFile:
    """What one user may see of some bytes: the shared record of the work done on them, and the user's
    own jobs with those bytes (newest first), which alone decide the facts, the name and the variants."""

    record: dict[str, Any]
    jobs: list[dict[str, Any]]

    @property
    def job(self) -> dict[str, Any]:
        return self.jobs[0]

    @property
    def tasks(self) -> set[str]:
        """Every task the user's own jobs of these bytes asked for: another user's OCR is not theirs."""
        return {task for job in self.jobs for task in job.get("plan") or []}

    def facts(self) -> dict[str, Any]:
        return {
            "hash": public_hash(self.job),
            **{k: self.job[k] for k in ("size", "contentType", "type", "width", "height") if k in self.job},
        }

    def text_task(self) -> str | None:
        """The task that makes this file's text for this user: ``extract`` for documents, ``ocr`` for an
        image one of the user's own uploads asked to be OCR'd."""
        return next((task for task in ("extract", "ocr") if task in self.tasks), None)


def _own_file(digest: str, owner: str) -> OwnFile:
    """The caller's view of some bytes, or 404 when the caller has no job with them."""
    _, jobs_repo, files_repo = adapters()
    owned = [j for j in jobs_repo.for_owner_and_hash(owner, digest) if j.get("hash")] if _HASH.match(digest) else []
    record = files_repo.get(owned[0]["hash"]) if owned else None
    if record is None or record.get("status") != "stored" or not is_clean(record):  # nothing served unscanned
        raise NotFound("No such file.", code="file.not_found")
    return OwnFile(record, owned)


@app.post("/uploads")
def create_upload(request: UploadRequest) -> Response[str]:
    owner = current_user()
    if settings.max_upload_bytes >= request.size > multipart.SINGLE_POST_MAX_BYTES:
        raise FileTooLarge(
            f"The file is {request.size} bytes; one presigned POST takes at most {multipart.SINGLE_POST_MAX_BYTES}: "
            "upload it in parts (POST /uploads/multipart)."
        )
    prepared = prepare(
        request, owner, settings.max_upload_bytes, settings.upload_url_ttl_seconds, settings.upload_grace_seconds
    )
    lane = quotas.admit(usage(), owner, request.size, str(prepared.job["lane"]), settings.limits)
    if lane != prepared.job["lane"]:
        prepared = prepared.on_lane(lane)
        metrics.add_metric(name="UploadsMovedOffHighLane", unit=MetricUnit.Count, value=1)
    store, jobs_repo, _ = adapters()
    try:
        jobs_repo.create(prepared.job)
    except DocpipeError:
        usage().add(owner, quotas.OPEN, -1)
        quotas.release_upload(usage(), owner, request.size)
        raise
    post = store.presign_post(
        settings.uploads_bucket,
        prepared.key,
        prepared.content_type,
        min(request.size, settings.max_upload_bytes),
        settings.upload_url_ttl_seconds,
    )
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.upload_url_ttl_seconds)
    metrics.add_metric(name="UploadsRequested", unit=MetricUnit.Count, value=1)
    logger.info("upload requested", extra={"job_id": prepared.job["jobId"], "lane": prepared.job["lane"]})
    return _json(
        201,
        {
            "jobId": prepared.job["jobId"],
            "lane": prepared.job["lane"],
            "upload": {"url": post["url"], "fields": post["fields"]},
            "expiresAt": expires_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        },
        headers={"Location": f"/jobs/{prepared.job['jobId']}"},
    )


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response[str]:
    """The job: state, progress, plan, each task's state, attempts and results, facts, error, history; and,
    while it is queued, its place in its lane (``queue``, approximate: see :mod:`api.positions`)."""
    return _json(200, job_views().view(_own_job(job_id, current_user())))


@app.delete("/jobs/<job_id>")
def cancel_job(job_id: str, purge: Annotated[bool, Query()] = False) -> Response[str]:
    """Cancel a job that has not ended: 200 with the job, 409 ``job.finished`` when it has.

    ``?purge=true`` removes the job for good, whatever its state (an open one is cancelled first):
    200 ``{jobId, purged: true}``, and the job answers 404 from then on. The stored bytes, presets and
    text go with the last job that references them.
    """
    job = _own_job(job_id, current_user())
    store, jobs_repo, files_repo = adapters()
    if purge:
        control.purge(job, jobs_repo, files_repo, store, settings.store_bucket, _ttl_at())
        return _json(200, {"jobId": job_id, "purged": True})
    cancelled = control.cancel(job, jobs_repo, files_repo, _ttl_at())
    if job["state"] == "uploading":  # a multipart upload's parts go with its job
        multipart.drop_parts(job)
    return _json(200, public_view(cancelled))


@app.get("/usage")
def get_usage() -> Response[str]:
    """The caller's limits: each one's value (``null``: unlimited), what is used of it, and when it resets."""
    owner = current_user()
    return _json(200, {"limits": quotas.report(usage(), owner, settings.limits)}, {"Cache-Control": "no-store"})


@app.post("/jobs/<job_id>/retry")
def retry_job(job_id: str) -> Response[str]:
    """Run a failed or cancelled job's unfinished tasks again: 202 with the job and the tasks queued."""
    job = _own_job(job_id, current_user())
    _, jobs_repo, files_repo = adapters()
    limits = quotas.limits_for(usage(), job["owner"], settings.limits)
    retried, queued = control.retry(job, jobs_repo, files_repo, TaskQueues(settings.task_queues), _ttl_at(), limits)
    file = files_repo.get(retried["hash"]) if retried.get("hash") else None
    return _json(202, {**public_view(retried, file), "requeued": queued})


@app.get("/queues")
def queues() -> Response[str]:
    """Operators: each queue's depth, in-flight and delayed counts, its DLQ's depth and the age of its
    oldest message. Everyone else: only their own open jobs per lane (how many are uploading, queued or
    processing); other users' traffic, even its volume, is not theirs to see."""
    owner = current_user()
    if not is_admin():
        return _json(200, {"scope": "own", "lanes": _own_lanes(owner)}, {"Cache-Control": "no-store"})
    return _json(200, {"scope": "all", "queues": all_queues()}, {"Cache-Control": "no-store"})


def _own_lanes(owner: str) -> list[dict[str, Any]]:
    counts = {lane: dict.fromkeys(("uploading", "scanning", "queued", "processing"), 0) for lane in LANES}
    for job in adapters()[1].open_for_owner(owner):
        lane = counts.get(str(job.get("lane")))
        if lane is not None and job.get("state") in lane:
            lane[job["state"]] += 1
    return [{"lane": lane, "open": sum(c.values()), **c} for lane, c in counts.items()]


@app.get("/jobs")
def list_jobs(
    limit: Annotated[int, Query(ge=1, le=100)] = 25, cursor: Annotated[str | None, Query(max_length=2048)] = None
) -> Response[str]:
    """The caller's jobs, newest first: each as ``GET /jobs/{id}`` shows it, its tasks' states and, while
    it is queued, its place in its lane."""
    owner = current_user()
    items, next_cursor = adapters()[1].list_for_owner(owner, limit, cursor)
    shown = views(items)
    places = queue_positions(owner, shown)
    for view in shown:
        if view["jobId"] in places:
            view["queue"] = places[view["jobId"]]
    return _json(200, {"jobs": shown, "nextCursor": next_cursor})


@app.get("/files/<digest>")
def get_file(digest: str) -> Response[str]:
    """The caller's facts about these bytes and the variants their own jobs asked for."""
    own = _own_file(digest, current_user())
    variants = ["original"]
    if "presets" in own.tasks:
        variants += list(own.record.get("presetsArtifacts") or {})
    if own.text_task():
        variants.append("text")
    return _json(200, {**own.facts(), "variants": variants})


@app.get("/files/<digest>/<variant>")
def get_variant(digest: str, variant: str) -> Response[str]:
    own = _own_file(digest, current_user())
    record, job, task = own.record, own.job, own.text_task()
    store = adapters()[0]
    if variant == "original":  # served under the caller's own name and type, as an attachment
        key, content_type, filename = original_key(record["hash"]), job.get("contentType"), job["name"]
    elif variant == "text" and task:
        artifact = (record.get(f"{task}Artifacts") or {}).get("text")
        if artifact is None:
            return _pending_text(record, task)
        key, content_type, filename = artifact["key"], artifact["contentType"], None
    elif variant in PRESET_NAMES and "presets" in own.tasks:
        artifact = (record.get("presetsArtifacts") or {}).get(variant)
        if artifact is None or not store.exists(settings.store_bucket, artifact["key"]):
            return _regenerate(record, variant)
        key, content_type, filename = artifact["key"], artifact["contentType"], None
    else:
        raise NotFound(f"No variant named {variant!r}.", code="variant.not_found")
    url = store.presign_get(
        settings.store_bucket, key, settings.download_url_ttl_seconds, filename=filename, content_type=content_type
    )
    if _wants_json():  # a page cannot read a cross-origin redirect's target; it asks for the URL instead
        return _json(200, {"url": url, "expiresIn": settings.download_url_ttl_seconds}, {"Cache-Control": "no-store"})
    return Response(status_code=302, headers={"Location": url, "Cache-Control": "no-store"}, body="")


def _wants_json() -> bool:
    accept = str(app.current_event.headers.get("accept") or "")
    return "application/json" in accept and "*/*" not in accept


def _pending_text(record: dict[str, Any], task: str) -> Response[str]:
    if record.get(f"{task}State") == "failed":
        error = record.get(f"{task}Error") or {}
        return _json(
            422,
            {"code": error.get("code", "variant.failed"), "message": error.get("message", "No text could be made.")},
        )
    return _json(
        202,
        {
            "code": "variant.pending",
            "message": "The text is being extracted; try again shortly.",
            "retryAfter": RETRY_AFTER_SECONDS,
        },
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


REGENERATE_EVERY_SECONDS = 30
RETRY_AFTER_SECONDS = 2


def _regenerate(record: dict[str, Any], variant: str) -> Response[str]:
    """A preset that expired (7-day lifecycle) or was never made: queue it on the high lane, answer 202.

    The request is recorded in FilesTable so that a burst of clients asking for the same preset
    queues it once per :data:`REGENERATE_EVERY_SECONDS`; a task still running is not queued again.
    """
    digest = record["hash"]
    running = record.get("presetsState") in ("queued", "running")
    if record.get("presetsState") == "failed":
        error = record.get("presetsError") or {}
        return _json(
            422,
            {
                "code": error.get("code", "variant.failed"),
                "message": error.get("message", "This preset could not be made."),
            },
        )
    if not running and adapters()[2].request_regeneration(
        digest, "presets", int(time.time()), REGENERATE_EVERY_SECONDS
    ):
        TaskQueues(settings.task_queues).send(
            "presets", "high", {"hash": digest, "presets": [variant]}, tenant=current_user()
        )
        metrics.add_metric(name="PresetsRegenerated", unit=MetricUnit.Count, value=1)
    return _json(
        202,
        {
            "code": "variant.pending",
            "message": f"The {variant} preset is being made; try again shortly.",
            "retryAfter": RETRY_AFTER_SECONDS,
        },
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


@app.get("/health")
def health() -> Response[str]:
    store, jobs_repo, files_repo = adapters()
    checks = {
        "jobsTable": jobs_repo.ping,
        "filesTable": files_repo.ping,
        "uploadsBucket": lambda: store.ping(settings.uploads_bucket),
        "storeBucket": lambda: store.ping(settings.store_bucket),
    }
    dependencies = {}
    for name, check in checks.items():
        try:
            check()
            dependencies[name] = "ok"
        except DocpipeError:
            dependencies[name] = "unreachable"
    ok = all(v == "ok" for v in dependencies.values())
    uploads = {  # what a client needs to choose between one POST and parts
        "maxUploadBytes": settings.max_upload_bytes,
        "maxPostBytes": min(multipart.SINGLE_POST_MAX_BYTES, settings.max_upload_bytes),
        "multipartThresholdBytes": settings.multipart_threshold_bytes,
    }
    body = {"ok": ok, "version": docpipe.__version__, "dependencies": dependencies, "uploads": uploads}
    return _json(200 if ok else 503, body)


@app.exception_handler(DocpipeError)
def docpipe_error(error: DocpipeError) -> Response[str]:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    body = {**error.to_dict(), **({"retryAfter": error.retry_after} if error.retry_after else {})}
    return _json(http_status(error), body, headers)


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response[str]:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in error.errors()
    )
    return docpipe_error(BadRequest(f"The request is not valid: {problems}"))


@app.not_found
def route_not_found(_: Exception) -> Response[str]:
    return _json(404, {"code": "route.not_found", "message": "No such route."})


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response[str]:
    logger.exception("unhandled error")
    return _json(500, {"code": "internal", "message": "Internal error."})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    try:
        event = requests.checked(event)  # a body the event handler could choke on is refused here, on every route
    except DocpipeError as error:
        logger.info("request refused", extra={"code": error.code})
        return requests.with_security_headers(requests.proxy_result(docpipe_error(error)))
    return requests.with_security_headers(app.resolve(event, context))

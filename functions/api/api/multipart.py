"""Multipart uploads: big files (up to ``MaxUploadBytes``, 5 GiB) sent in parts straight to S3, resumable.

One implementation behind two sets of routes: docpipe's own (here, keyed by job id) and the S3 routes of
Uppy's Companion (:mod:`api.companion`, keyed by upload id and key). Either way:

- **create**: a job on the low lane (a multipart upload is large) and an S3 multipart upload on the
  job's own key ``uploads/low/{owner}/{jobId}/{name}``. It is admitted like ``POST /uploads``: the
  declared size counts against ``UploadBytesPerDay`` and ``StoredBytesPerUser``; an upload that
  declares none (Companion's routes send no size) reserves ``MaxUploadBytes`` until it completes.
- **sign**: a presigned ``UploadPart`` URL per part number, valid :data:`PART_URL_SECONDS`, bound to the
  upload id and part number (both in the signed query). docpipe's routes decide the part size
  (at least :data:`MIN_PART_BYTES`, at most :data:`MAX_PARTS` parts) and sign each part's
  ``Content-Length``, and its ``x-amz-checksum-sha256`` when the client sends one: S3 then refuses a
  part of another length or other bytes.
- **list**: the parts S3 holds, to resume after a reload or a dropped connection.
- **complete**: the parts are read back from S3 (never taken from the client), and their total must
  not pass the declared size: more bytes end the job ``failed`` with ``file.too_large`` and the parts
  are dropped (ingest checks the object's size again). Small uploads are joined inside the request; a
  large one is handed to ``CompleteFunction`` and the job's ``step`` is ``completing`` until it is
  (:mod:`docpipe.completion`).
- **abort**: the upload's parts are dropped and the job is ``cancelled``.

The job's ``parts`` (``done``, ``total``, ``bytes``) show the upload's progress, and its history's
``uploading`` entry carries them too: they are read from S3 whenever the client lists or signs parts
(at most every :data:`PROGRESS_EVERY_SECONDS`) and at completion.
"""

from __future__ import annotations

import functools
import math
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

from api.context import adapters, current_user, json_response, settings, ttl_at, usage
from api.uploads import PreparedUpload, UploadRequest, prepare
from docpipe import control, jobs, quotas
from docpipe.adapters.multipart import CompletionQueue, MultipartUploads, Part
from docpipe.completion import COMPLETING, MIN_PART_BYTES, S3_MIN_PART_BYTES, Completion
from docpipe.errors import BadRequest, Conflict, DocpipeError, NotFound
from docpipe.jobs import JobState
from docpipe.observability import MetricUnit, logger, metrics

router = APIGatewayHttpRouter()

MIB = 1024 * 1024
# One presigned POST takes up to this (Uppy's default sends larger files in parts); larger files go in parts.
SINGLE_POST_MAX_BYTES = 100 * MIB
__all__ = ["MIN_PART_BYTES", "S3_MIN_PART_BYTES"]  # docpipe.completion's, named here as before
MAX_PARTS = 10_000  # S3's limit
PART_URL_SECONDS = 900
SIGN_BATCH = 100  # part URLs per request
PROGRESS_EVERY_SECONDS = 5
# The bucket's lifecycle rule aborts a multipart upload a day after it started; the job waits as long
# (plus the grace period), and then the sweeper ends it as ``upload.expired``.
MULTIPART_LIFETIME_SECONDS = 86_400
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SHA256_B64 = re.compile(r"^[A-Za-z0-9+/]{43}=$")


@functools.cache
def uploads() -> MultipartUploads:
    return MultipartUploads()


def part_size_for(size: int, requested: int | None = None) -> int:
    """The part size of a ``size``-byte upload: ``requested`` if it is allowed, else the smallest
    whole number of MiB of at least :data:`MIN_PART_BYTES` that needs no more than :data:`MAX_PARTS`."""
    smallest = max(MIN_PART_BYTES, math.ceil(size / MAX_PARTS / MIB) * MIB)
    if requested is None:
        return smallest
    if requested < MIN_PART_BYTES or math.ceil(size / requested) > MAX_PARTS or requested > 5 * 1024 * MIB:
        raise BadRequest(
            f"partSize must be at least {MIN_PART_BYTES} bytes, at most 5 GiB, and cut the file in at most "
            f"{MAX_PARTS} parts (at least {smallest} bytes for {size} bytes).",
            code="upload.part_size",
        )
    return requested


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- the shared implementation
def start(request: UploadRequest, owner: str, *, part_size: int | None, sha256: bool, sized: bool) -> dict[str, Any]:
    """Admit an upload, create its job and its S3 multipart upload; the job. ``sized``: the request's
    size is the file's (docpipe's routes), not a reservation of ``MaxUploadBytes`` (Companion's)."""
    prepared = prepare(request, owner, settings.max_upload_bytes, settings.upload_url_ttl_seconds)
    if prepared.job["lane"] != "low":
        prepared = prepared.on_lane("low")
    size = request.size
    chosen = part_size_for(size, part_size) if sized else None
    admitted_at = time.time()
    quotas.admit(usage(), owner, size, "low", settings.limits, admitted_at)
    try:
        upload_id = uploads().create(settings.uploads_bucket, prepared.key, prepared.content_type, sha256=sha256)
    except DocpipeError:
        release_admission(owner, size)
        raise
    job = _multipart_job(prepared, upload_id, chosen, size if sized else None, sha256, admitted_at)
    try:
        adapters()[1].create(job)
    except DocpipeError:
        uploads().abort(settings.uploads_bucket, prepared.key, upload_id)
        release_admission(owner, size)
        raise
    metrics.add_metric(name="MultipartUploadsStarted", unit=MetricUnit.Count, value=1)
    logger.info("multipart upload started", extra={"job_id": job["jobId"], "parts": job.get("partCount")})
    return job


def release_admission(owner: str, size: int) -> None:
    usage().add(owner, quotas.OPEN, -1)
    quotas.release_upload(usage(), owner, size)


def _multipart_job(
    prepared: PreparedUpload,
    upload_id: str,
    part_size: int | None,
    size: int | None,
    sha256: bool,
    admitted_at: float,
) -> dict[str, Any]:
    deadline = int(admitted_at) + MULTIPART_LIFETIME_SECONDS + settings.upload_grace_seconds
    count = math.ceil(size / part_size) if size and part_size else None
    return {
        **prepared.job,
        "uploadId": upload_id,
        "partSize": part_size,
        "partCount": count,
        "checksum": "sha256" if sha256 else None,
        "sizeDeclared": size is not None,
        "admittedAt": int(admitted_at),
        "parts": {"done": 0, "total": count, "bytes": 0},
        "uploadDeadline": deadline,
        "expiresAt": deadline + jobs.UNCLAIMED_JOB_SECONDS,
    }


def open_upload(job: dict[str, Any], completing: bool = False) -> dict[str, Any]:
    """The job, which must be a multipart upload still ``uploading`` (and, unless ``completing`` is
    allowed, whose parts are not being joined already)."""
    if not job.get("uploadId"):
        raise NotFound("This job is not a multipart upload.", code="upload.not_found")
    if job["state"] != JobState.UPLOADING:
        raise Conflict(f"The upload is over: the job is {job['state']}.", code="upload.finished")
    if job.get("step") == COMPLETING and not completing:
        raise Conflict("The upload's parts are being joined: it takes no more parts.", code="upload.completing")
    return job


def _part_length(job: dict[str, Any], number: int) -> int | None:
    """The exact length of part ``number`` when docpipe chose the part size, else ``None``."""
    count, part_size = job.get("partCount"), job.get("partSize")
    if not count or not part_size:
        if not 1 <= number <= MAX_PARTS:
            raise BadRequest(f"Part numbers go from 1 to {MAX_PARTS}.", code="upload.part_number")
        return None
    if not 1 <= number <= int(count):
        raise BadRequest(f"This upload has parts 1 to {count}.", code="upload.part_number")
    if number < int(count):
        return int(part_size)
    return int(job["declaredSize"]) - int(part_size) * (int(count) - 1)


def sign(job: dict[str, Any], wanted: list[tuple[int, str | None]]) -> list[dict[str, Any]]:
    """A presigned URL (and the headers to send with it) for each ``(number, sha256)``."""
    open_upload(job)
    if len(wanted) > SIGN_BATCH:
        raise BadRequest(f"At most {SIGN_BATCH} parts per request.")
    signed = []
    for number, digest in wanted:
        length = _part_length(job, number)
        if job.get("checksum") == "sha256" and digest is None:
            raise BadRequest("This upload was created with checksum sha256: every part needs its sha256.")
        if digest is not None and (job.get("checksum") != "sha256" or not _SHA256_B64.match(digest)):
            raise BadRequest(
                "A part's sha256 is 44 characters of base64, on an upload created with checksum sha256.",
                code="upload.checksum",
            )
        url = uploads().presign_part(
            settings.uploads_bucket,
            job["uploadKey"],
            job["uploadId"],
            number,
            PART_URL_SECONDS,
            size=length,
            sha256=digest,
        )
        headers = {"x-amz-checksum-sha256": digest} if digest else {}
        signed.append({"number": number, "url": url, "headers": headers, **({"size": length} if length else {})})
    _maybe_record(job)
    return signed


def list_parts(job: dict[str, Any]) -> list[Part]:
    open_upload(job, completing=True)
    parts = uploads().list_parts(settings.uploads_bucket, job["uploadKey"], job["uploadId"])
    if job.get("step") != COMPLETING:
        _record(job, parts)
    return parts


def _maybe_record(job: dict[str, Any]) -> None:
    if time.time() - float(job.get("partsAt") or 0) >= PROGRESS_EVERY_SECONDS:
        _record(job, uploads().list_parts(settings.uploads_bucket, job["uploadKey"], job["uploadId"]))


def _record(job: dict[str, Any], parts: list[Part], total: int | None = None) -> None:
    shown = {"done": len(parts), "total": total or job.get("partCount"), "bytes": sum(p.size for p in parts)}
    adapters()[1].record_parts(job["jobId"], {"parts": shown, "partsAt": int(time.time())}, shown)


def completion() -> Completion:
    queue = CompletionQueue(settings.complete_queue) if settings.complete_queue else None
    return Completion(settings, uploads(), adapters()[1], usage(), queue)


def complete(job: dict[str, Any], claimed: list[tuple[int, str]] | None) -> tuple[dict[str, Any], bool]:
    """Join the parts S3 holds into the object (``claimed``: the client's list, checked against S3's), inline
    when they are small, else by ``CompleteFunction`` (:mod:`docpipe.completion`); the job afterwards, and
    whether the completion was queued (the job's ``step`` is then ``completing``). More bytes than declared
    fail the job with ``file.too_large``. A completion asked again while queued answers the same."""
    if job.get("step") == COMPLETING and job["state"] == JobState.UPLOADING:
        return job, True
    open_upload(job)
    return completion().request(job, claimed)


def abort(job: dict[str, Any]) -> dict[str, Any]:
    """Cancel the job and drop the parts; the job afterwards (409 ``job.finished`` once it has ended)."""
    open_upload(job, completing=True)
    _, jobs_repo, files_repo = adapters()
    cancelled = control.cancel(job, jobs_repo, files_repo, ttl_at())
    drop_parts(job)
    return cancelled


def drop_parts(job: dict[str, Any]) -> None:
    """Abort a cancelled job's multipart upload, if it has one (``DELETE /jobs/{id}`` as well)."""
    if job.get("uploadId"):
        uploads().abort(settings.uploads_bucket, job["uploadKey"], job["uploadId"])


# ---------------------------------------------------------------- docpipe's own routes
class MultipartRequest(UploadRequest):
    partSize: int | None = Field(
        default=None, description="Bytes per part (at least 8 MiB, at most 10,000 parts); the server picks one."
    )
    checksum: Literal["sha256"] | None = Field(
        default=None, description="sha256: every part is signed with its SHA-256, which S3 checks."
    )


class PartToSign(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    number: int = Field(ge=1, le=MAX_PARTS)
    sha256: str | None = Field(default=None, max_length=44, description="The part's SHA-256, base64.")


class SignRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    parts: Annotated[list[PartToSign], Field(min_length=1, max_length=SIGN_BATCH)]


class PartDone(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    number: int = Field(ge=1, le=MAX_PARTS)
    etag: str = Field(min_length=1, max_length=128)


class CompleteRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    parts: Annotated[list[PartDone], Field(max_length=MAX_PARTS)] | None = None


def own_job(job_id: str, owner: str) -> dict[str, Any]:
    job = adapters()[1].get(job_id) if _JOB_ID.match(job_id) else None
    if job is None or job["owner"] != owner:
        raise NotFound("No such job.", code="job.not_found")
    return job


def describe(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "jobId": job["jobId"],
        "lane": job["lane"],
        "uploadId": job["uploadId"],
        "partSize": job.get("partSize"),
        "partCount": job.get("partCount"),
        "checksum": job.get("checksum"),
        "partUrlSeconds": PART_URL_SECONDS,
        "expiresAt": _iso(float(job["admittedAt"]) + MULTIPART_LIFETIME_SECONDS),
    }


@router.post("/uploads/multipart")
def create_multipart(request: MultipartRequest) -> Response[str]:
    """Start a multipart upload: 201 with the job, its upload id, part size and count."""
    owner = current_user()
    base = UploadRequest(**request.model_dump(exclude={"partSize", "checksum"}))
    job = start(base, owner, part_size=request.partSize, sha256=request.checksum == "sha256", sized=True)
    return json_response(201, describe(job), headers={"Location": f"/jobs/{job['jobId']}"})


@router.post("/uploads/<job_id>/parts")
def sign_parts(job_id: str, request: SignRequest) -> Response[str]:
    """Presigned URLs for the parts asked for (up to 100 per call)."""
    job = own_job(job_id, current_user())
    signed = sign(job, [(p.number, p.sha256) for p in request.parts])
    body = {"parts": signed, "expiresAt": _iso(time.time() + PART_URL_SECONDS)}
    return json_response(200, body, {"Cache-Control": "no-store"})


@router.get("/uploads/<job_id>/parts")
def get_parts(job_id: str) -> Response[str]:
    """The parts S3 holds: number, size and ETag of each, to resume from."""
    job = own_job(job_id, current_user())
    parts = list_parts(job)
    body = {
        **describe(job),
        "parts": [{"number": p.number, "size": p.size, "etag": p.etag} for p in parts],
    }
    return json_response(200, body, {"Cache-Control": "no-store"})


@router.post("/uploads/<job_id>/complete")
def complete_upload(job_id: str, request: CompleteRequest) -> Response[str]:
    """Join the parts: 202 with the job, which ingest then takes on; its ``step`` is ``completing`` while
    CompleteFunction joins a large upload's parts (413 ``file.too_large`` when the parts hold more than
    declared; the job has then failed)."""
    job = own_job(job_id, current_user())
    claimed = [(p.number, p.etag) for p in request.parts] if request.parts is not None else None
    done, _ = complete(job, claimed)
    return json_response(202, jobs.public_view(done))


@router.delete("/uploads/<job_id>")
def abort_upload(job_id: str) -> Response[str]:
    """Abort the upload: its parts are dropped and the job is cancelled."""
    job = own_job(job_id, current_user())
    return json_response(200, jobs.public_view(abort(job)))

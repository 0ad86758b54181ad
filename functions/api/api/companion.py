"""The S3 routes of Uppy's Companion server, so that ``@uppy/aws-s3`` works against docpipe unchanged.

Matched against ``@uppy/aws-s3`` 4.3.2 (bundled by ``uppy`` 4.18.3), whose Companion mode (``endpoint``
and ``headers`` options) calls, through ``@uppy/companion-client``'s ``RequestClient``:

=====================================================  ==========================================
``GET /s3/params?filename=&type=&metadata[k]=``        ``{method: "POST", url, fields, headers}``
``POST /s3/multipart`` ``{filename, type, metadata}``  ``{key, uploadId}``
``GET /s3/multipart/{uploadId}?key=``                  ``[{PartNumber, Size, ETag}]``
``GET /s3/multipart/{uploadId}/batch?key=&partNumbers=1,2``  ``{presignedUrls: {"1": url}, headers}``
``GET /s3/multipart/{uploadId}/{partNumber}?key=``     ``{url, expires}``
``POST /s3/multipart/{uploadId}/complete?key=``        ``{location}`` (body ``{parts: [{PartNumber, ETag}]}``);
                                                       200, or 202 while CompleteFunction joins large parts
``DELETE /s3/multipart/{uploadId}?key=``               ``{}``
=====================================================  ==========================================

Uppy's default sends files over 100 MiB in parts and smaller ones through ``/s3/params`` (one presigned
POST, at most :data:`api.multipart.SINGLE_POST_MAX_BYTES`). Neither request carries the file's size, so an upload
started here reserves the most it may hold against the caller's quotas (``MaxUploadBytes`` for
parts) until it completes. The ``key`` a client sends is never trusted: it must be the key docpipe
issued to one of the caller's own jobs, with that upload id; anything else is 404, as if it did not
exist. Uppy picks its own part size (5 MiB and up), so these routes accept S3's minimum part size.
Uppy 5 and later dropped the ``headers`` option of Companion mode: they cannot send a token.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

from api import multipart
from api.context import adapters, app, current_user, json_response, settings, usage
from api.uploads import UploadRequest, prepare
from docpipe import quotas
from docpipe.errors import BadRequest, DocpipeError, NotFound
from docpipe.observability import MetricUnit, metrics
from docpipe.storage import parse_upload_key

router = APIGatewayHttpRouter()
NO_STORE = {"Cache-Control": "no-store"}
Key = Annotated[str, Query(min_length=1, max_length=1100)]


def _request(filename: str | None, content_type: str | None, size: int) -> UploadRequest:
    if not filename:
        raise BadRequest("filename is required.")
    return UploadRequest(name=filename, size=size, contentType=content_type or None)


def _job(upload_id: str, key: str) -> dict[str, Any]:
    """The caller's job that was issued ``key`` and ``upload_id``; 404 for anything else."""
    parsed, owner = parse_upload_key(key), current_user()
    job = adapters()[1].get(parsed.job_id) if parsed and parsed.owner == owner else None
    if job is None or job["owner"] != owner or job.get("uploadKey") != key or job.get("uploadId") != upload_id:
        raise NotFound("No such upload.", code="upload.not_found")
    return job


@router.get("/s3/params")
def params(
    filename: Annotated[str | None, Query(max_length=1024)] = None,
    type: Annotated[str | None, Query(max_length=255)] = None,
) -> Response[str]:
    """One presigned POST for a file Uppy does not send in parts."""
    owner = current_user()
    size = min(multipart.SINGLE_POST_MAX_BYTES, settings.max_upload_bytes)
    prepared = prepare(
        _request(filename, type, size), owner, settings.max_upload_bytes, settings.upload_url_ttl_seconds
    )
    lane = quotas.admit(usage(), owner, size, str(prepared.job["lane"]), settings.limits)
    if lane != prepared.job["lane"]:
        prepared = prepared.on_lane(lane)
    try:
        adapters()[1].create(prepared.job)
    except DocpipeError:
        multipart.release_admission(owner, size)
        raise
    post = adapters()[0].presign_post(
        settings.uploads_bucket, prepared.key, prepared.content_type, size, settings.upload_url_ttl_seconds
    )
    metrics.add_metric(name="UploadsRequested", unit=MetricUnit.Count, value=1)
    expires = datetime.now(UTC) + timedelta(seconds=settings.upload_url_ttl_seconds)
    body = {
        "method": "POST",
        "url": post["url"],
        "fields": post["fields"],
        "headers": {},
        "expires": settings.upload_url_ttl_seconds,
        "jobId": prepared.job["jobId"],
        "expiresAt": expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    return json_response(200, body, NO_STORE)


class CreateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    filename: str = Field(min_length=1, max_length=1024)
    type: str | None = Field(default=None, max_length=255)
    metadata: dict[str, Any] | None = None


@router.post("/s3/multipart")
def create(request: CreateRequest) -> Response[str]:
    owner = current_user()
    upload = _request(request.filename, request.type, settings.max_upload_bytes)
    job = multipart.start(upload, owner, part_size=None, sha256=False, sized=False)
    return json_response(200, {"key": job["uploadKey"], "uploadId": job["uploadId"], "jobId": job["jobId"]}, NO_STORE)


@router.get("/s3/multipart/<upload_id>/batch")
def sign_batch(upload_id: str, key: Key, partNumbers: Annotated[str, Query(max_length=700)]) -> Response[str]:
    job = _job(upload_id, key)
    try:
        numbers = [int(n) for n in partNumbers.split(",") if n.strip()]
    except ValueError:
        raise BadRequest("partNumbers is a comma-separated list of part numbers.") from None
    signed = multipart.sign(job, [(n, None) for n in numbers])
    return json_response(200, {"presignedUrls": {str(s["number"]): s["url"] for s in signed}, "headers": {}}, NO_STORE)


@router.get("/s3/multipart/<upload_id>")
def list_parts(upload_id: str, key: Key) -> Response[str]:
    job = _job(upload_id, key)
    return json_response(200, [p.view() for p in multipart.list_parts(job)], NO_STORE)


@router.get("/s3/multipart/<upload_id>/<part_number>")
def sign_part(upload_id: str, part_number: str, key: Key) -> Response[str]:
    job = _job(upload_id, key)
    if not part_number.isdigit():
        raise BadRequest("The part number is a whole number from 1 to 10000.")
    signed = multipart.sign(job, [(int(part_number), None)])[0]
    return json_response(200, {"url": signed["url"], "expires": multipart.PART_URL_SECONDS}, NO_STORE)


class CompanionPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    PartNumber: int = Field(ge=1, le=multipart.MAX_PARTS)
    ETag: str = Field(min_length=1, max_length=128)


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    parts: Annotated[list[CompanionPart], Field(min_length=1, max_length=multipart.MAX_PARTS)]


@router.post("/s3/multipart/<upload_id>/complete")
def complete(upload_id: str, key: Key, request: CompleteRequest) -> Response[str]:
    job = _job(upload_id, key)
    done, queued = multipart.complete(job, [(p.PartNumber, p.ETag) for p in request.parts])
    # Where the bytes are is not the caller's business (they are ingested, then deleted): the job is.
    location = f"{_api_base()}/jobs/{done['jobId']}"
    body = {"location": location, "key": key, "jobId": done["jobId"]}
    # A large upload's parts are joined by CompleteFunction: 202, as any 2xx is success to Uppy's client
    # (@uppy/companion-client reads the JSON of every ``ok`` response; @uppy/aws-s3 takes ``location`` from it).
    return json_response(202 if queued else 200, {**body, "step": "completing"} if queued else body, NO_STORE)


@router.delete("/s3/multipart/<upload_id>")
def abort(upload_id: str, key: Key) -> Response[str]:
    multipart.abort(_job(upload_id, key))
    return json_response(200, {}, NO_STORE)


def _api_base() -> str:
    headers = app.current_event.headers
    host = headers.get("host") or ""
    proto = headers.get("x-forwarded-proto") or ("http" if host.startswith(("127.0.0.1", "localhost")) else "https")
    return f"{proto}://{host}" if host else ""

"""Pure validation of an upload request: what the job will be and what the presigned POST allows."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from docpipe import jobs
from docpipe.errors import BadRequest, FileEmpty, FileTooLarge, UnsupportedType
from docpipe.filetypes import ACCEPTED_MIMES, BY_EXTENSION, GENERIC_MIMES, extension
from docpipe.lanes import lane_for
from docpipe.storage import display_name, upload_key


class UploadRequest(BaseModel):
    """Strict: JSON types as they are, never coerced (``true`` is not a size, ``1`` is not ``ocr``,
    ``"5"`` is not a number)."""

    model_config = ConfigDict(strict=True)

    name: str = Field(min_length=1, max_length=1024, description="The file's name as the user knows it.")
    size: int = Field(ge=0, description="The file's size in bytes; the upload may not exceed it.")
    contentType: str | None = Field(default=None, max_length=255, description="The client's idea of the type.")
    priority: Literal["high", "normal", "low"] | None = Field(
        default=None, description="A lane to ask for; the size decides when the request cannot be honoured."
    )
    ocr: bool = Field(
        default=False, description="OCR an image too (a photo or scan of a document); documents need not ask."
    )
    purpose: Literal["photo", "document"] | None = Field(
        default=None, description="What the upload is; an image uploaded as a document is OCR'd as if ocr were true."
    )


@dataclass(frozen=True)
class PreparedUpload:
    job: dict[str, object]
    key: str
    content_type: str

    def on_lane(self, lane: str) -> PreparedUpload:
        """The same upload on another lane (admission moved it): its key names the lane."""
        key = upload_key(lane, str(self.job["owner"]), str(self.job["jobId"]), str(self.job["name"]))
        return replace(self, job={**self.job, "lane": lane, "uploadKey": key}, key=key)


def prepare(
    request: UploadRequest, owner: str, max_bytes: int, url_ttl_seconds: int, grace_seconds: int = 900
) -> PreparedUpload:
    """Check a request and describe its job; raises 400/413/415-class errors. The client's type is a hint only."""
    name = display_name(request.name)
    if not name:
        raise BadRequest("The name is empty once path separators and invisible characters are removed.")
    if request.size == 0:
        raise FileEmpty("The file is empty; there is nothing to process.")
    if request.size > max_bytes:
        raise FileTooLarge(f"The file is {request.size} bytes; the limit is {max_bytes} bytes.")
    ext = extension(name)
    named = BY_EXTENSION.get(ext)
    if ext and named is None:
        raise UnsupportedType(f"Files ending in {ext} are not accepted.")
    declared = (request.contentType or "").split(";")[0].strip().lower()
    if declared not in GENERIC_MIMES and declared not in ACCEPTED_MIMES:
        raise UnsupportedType(f"Files of type {declared} are not accepted.")
    content_type = named.mime if named else declared if declared not in GENERIC_MIMES else "application/octet-stream"
    job_id = jobs.new_job_id()
    lane = lane_for(request.size, request.priority)
    key = upload_key(lane, owner, job_id, name)
    now = jobs.now_iso()
    job: dict[str, object] = {
        "jobId": job_id,
        "owner": owner,
        "name": name,
        "uploadKey": key,
        "declaredSize": request.size,
        "declaredType": declared or None,
        "priority": request.priority,
        "ocr": request.ocr or request.purpose == "document",
        "lane": lane,
        "state": jobs.JobState.UPLOADING.value,
        "createdAt": now,
        "updatedAt": now,
        # In the sweeper's index until the job leaves ``uploading``: past the deadline it is ended.
        "awaiting": "upload",
        "openOwner": owner,  # in byOwnerOpen until it ends (GET /queues counts the owner's open jobs per lane)
        "uploadDeadline": jobs.expires_in(url_ttl_seconds + grace_seconds),
        "expiresAt": jobs.expires_in(url_ttl_seconds + jobs.UNCLAIMED_JOB_SECONDS),
    }
    return PreparedUpload(job=job, key=key, content_type=content_type)

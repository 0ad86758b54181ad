"""S3 multipart uploads: create one on a key, presign its parts, list, complete and abort it.

Every presigned ``UploadPart`` URL carries its upload id and part number in the signed query, so it
uploads that one part of that one upload and nothing else; given a size, it signs ``Content-Length``
too (S3 refuses a part of another length), and given a SHA-256, it signs ``x-amz-checksum-sha256``
(S3 refuses a part whose bytes do not match it). :class:`CompletionQueue` hands a large upload's
completion to ``CompleteFunction`` (:mod:`docpipe.completion`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from docpipe import aws
from docpipe.adapters.sqs import message_group
from docpipe.errors import BadRequest, DocpipeError, NotFound, Transient

_GONE = {"NoSuchUpload", "404", "NotFound"}
_BAD_PARTS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidRequest", "BadDigest", "MalformedXML"}
LIST_PAGE = 1000  # ListParts' largest page


class UploadNotFound(NotFound):
    code = "upload.not_found"
    message = "No such multipart upload: it was completed, aborted or expired."


class PartsInvalid(BadRequest):
    code = "upload.parts_invalid"
    message = "The parts do not make a valid upload."


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str
    sha256: str | None = None

    def view(self) -> dict[str, Any]:
        """The part as Uppy's Companion lists it (S3's own spelling)."""
        return {"PartNumber": self.number, "Size": self.size, "ETag": self.etag}


def _translate(exc: ClientError, what: str) -> DocpipeError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in _GONE:
        return UploadNotFound()
    if code in _BAD_PARTS:
        return PartsInvalid(f"S3 refused the parts of {what}: {code}.")
    return Transient(f"S3 failed on {what}: {code or exc}")


class MultipartUploads:
    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("s3")

    def create(self, bucket: str, key: str, content_type: str, *, sha256: bool = False) -> str:
        """A new multipart upload on ``key``; its upload id. ``sha256``: every part must carry its SHA-256."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "ContentType": content_type}
        if sha256:
            kwargs["ChecksumAlgorithm"] = "SHA256"
        try:
            return str(self.client.create_multipart_upload(**kwargs)["UploadId"])
        except ClientError as exc:
            raise _translate(exc, key) from exc

    def presign_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        expires_in: int,
        *,
        size: int | None = None,
        sha256: str | None = None,
    ) -> str:
        """A PUT URL for part ``number`` of ``upload_id`` for ``expires_in`` seconds."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": number}
        if size is not None:
            params["ContentLength"] = size
        if sha256 is not None:
            params["ChecksumSHA256"] = sha256
        return str(self.client.generate_presigned_url("upload_part", Params=params, ExpiresIn=expires_in))

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[Part]:
        """Every part S3 holds for the upload, by number (at most 10,000: ten pages)."""
        parts: list[Part] = []
        marker = 0
        try:
            while True:
                page = self.client.list_parts(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker, MaxParts=LIST_PAGE
                )
                parts += [
                    Part(int(p["PartNumber"]), int(p["Size"]), str(p["ETag"]), p.get("ChecksumSHA256"))
                    for p in page.get("Parts", [])
                ]
                if not page.get("IsTruncated") or not page.get("Parts"):
                    break
                marker = int(page.get("NextPartNumberMarker") or parts[-1].number)
        except ClientError as exc:
            raise _translate(exc, key) from exc
        return sorted(parts, key=lambda p: p.number)

    def complete(self, bucket: str, key: str, upload_id: str, parts: list[Part]) -> str:
        """Join ``parts`` into the object; its ETag. Parts that carry a SHA-256 are completed with it."""
        listed = []
        for part in parts:
            entry: dict[str, Any] = {"PartNumber": part.number, "ETag": part.etag}
            if part.sha256:
                entry["ChecksumSHA256"] = part.sha256
            listed.append(entry)
        try:
            r = self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
            )
        except ClientError as exc:
            raise _translate(exc, key) from exc
        return str(r.get("ETag", ""))

    def abort(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort the upload and drop its parts; False when it was gone already."""
        try:
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            error = _translate(exc, key)
            if isinstance(error, UploadNotFound):
                return False
            raise error from exc
        return True

    def exists(self, bucket: str, key: str) -> bool:
        """Whether the object ``key`` exists (HeadObject): an upload completed already."""
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _GONE | {"NoSuchKey"}:
                return False
            raise Transient(f"S3 failed on HeadObject of {key}") from exc
        return True


class CompletionQueue:
    """``CompleteQueue``: the completions of large multipart uploads, one ``{jobId}`` message each."""

    def __init__(self, url: str, client: Any | None = None) -> None:
        self.url, self._client = url, client

    @property
    def client(self) -> Any:
        return self._client or aws.client("sqs")

    def send(self, message: dict[str, Any], tenant: str) -> None:
        try:
            self.client.send_message(
                QueueUrl=self.url, MessageBody=json.dumps(message), MessageGroupId=message_group(tenant)
            )
        except ClientError as exc:
            raise Transient(f"could not queue the completion: {exc}") from exc

"""S3: streaming reads, ranged reads, pinned copies and presigned URLs."""

from __future__ import annotations

import io
import queue
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from docpipe import aws
from docpipe.errors import DocpipeError, NotFound, Transient
from docpipe.storage import content_disposition

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_CHANGED = {"412", "PreconditionFailed"}


class ObjectNotFound(NotFound):
    code = "object.not_found"
    message = "The object does not exist."


class ObjectChanged(Transient):
    code = "object.changed"
    message = "The object changed while it was being read."


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    content_type: str


def _translate(exc: ClientError, what: str) -> DocpipeError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in _MISSING:
        return ObjectNotFound(f"{what} does not exist.")
    if code in _CHANGED:
        return ObjectChanged(f"{what} changed while it was being read.")
    return Transient(f"S3 failed on {what}: {code or exc}")


class ObjectStore:
    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("s3")

    def head(self, bucket: str, key: str) -> ObjectInfo:
        try:
            r = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise _translate(exc, key) from exc
        return ObjectInfo(size=r["ContentLength"], etag=r["ETag"], content_type=r.get("ContentType", ""))

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.head(bucket, key)
        except ObjectNotFound:
            return False
        return True

    def iter_chunks(self, bucket: str, key: str, etag: str, chunk_bytes: int, depth: int = 3) -> Iterator[memoryview]:
        """The object's bytes, pinned to ``etag``, in chunks of up to ``chunk_bytes``.

        A reader thread receives the next chunks into ``depth`` reused buffers while the caller
        works on the current one, so network and hashing overlap and memory stays at
        ``depth × chunk_bytes`` whatever the object's size. Each chunk is a view into a reused
        buffer: it is valid until the next one is asked for.
        """
        try:
            body = self.client.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"]
        except ClientError as exc:
            raise _translate(exc, key) from exc
        pipeline = _ChunkPipeline(body, chunk_bytes, depth)
        try:
            yield from pipeline
        finally:
            pipeline.close()

    def open_range(self, bucket: str, key: str, info: ObjectInfo) -> io.BufferedReader:
        """A seekable file over one version of the object that fetches only the ranges read from it."""
        return io.BufferedReader(RangeReader(self, bucket, key, info), buffer_size=RangeReader.BLOCK)

    def read_range(self, bucket: str, key: str, etag: str, start: int, end: int) -> bytes:
        try:
            r = self.client.get_object(Bucket=bucket, Key=key, IfMatch=etag, Range=f"bytes={start}-{end}")
            return bytes(r["Body"].read())
        except ClientError as exc:
            raise _translate(exc, key) from exc

    def copy_pinned(self, bucket: str, key: str, etag: str, dest_bucket: str, dest_key: str) -> None:
        """Server-side copy of exactly the bytes with ``etag``; no byte passes through this process.

        ``CopySourceIfMatch`` pins the source on AWS; the ETag of the copy is checked as well (for a source
        uploaded in one piece), since emulators do not all honour the condition. A source overwritten since
        it was hashed raises :class:`ObjectChanged` and leaves no copy behind.
        """
        try:
            r = self.client.copy_object(
                Bucket=dest_bucket,
                Key=dest_key,
                CopySource={"Bucket": bucket, "Key": key},
                CopySourceIfMatch=etag,
                MetadataDirective="COPY",
            )
        except ClientError as exc:
            raise _translate(exc, key) from exc
        # A multipart upload's ETag (``"<md5 of the parts' md5s>-<parts>"``) is not its copy's: S3 copies it
        # in one piece, with a plain MD5. Only ``CopySourceIfMatch`` pins such a source.
        if r["CopyObjectResult"]["ETag"] != etag and "-" not in etag:
            self.delete(dest_bucket, dest_key)
            raise ObjectChanged(f"{key} changed while it was being stored.")

    def put(self, bucket: str, key: str, data: bytes, content_type: str, cache_control: str) -> None:
        try:
            self.client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type, CacheControl=cache_control
            )
        except ClientError as exc:
            raise _translate(exc, key) from exc

    def download(self, bucket: str, key: str, spool_bytes: int = 8 * 1024 * 1024) -> IO[bytes]:
        """The object in a temporary file (in memory up to ``spool_bytes``), rewound."""
        spool = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115 - returned open, closed by the caller
        try:
            self.client.download_fileobj(bucket, key, spool)
        except ClientError as exc:
            spool.close()
            raise _translate(exc, key) from exc
        spool.seek(0)
        return spool

    def delete(self, bucket: str, key: str) -> None:
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise _translate(exc, key) from exc

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; how many there were."""
        deleted = 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
        except ClientError as exc:
            raise _translate(exc, prefix) from exc
        return deleted

    def presign_post(self, bucket: str, key: str, content_type: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        """A form upload bound to one key, one content type and at most ``max_bytes``."""
        return dict(
            self.client.generate_presigned_post(
                Bucket=bucket,
                Key=key,
                Fields={"Content-Type": content_type},
                Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
                ExpiresIn=expires_in,
            )
        )

    def presign_get(
        self, bucket: str, key: str, expires_in: int, *, filename: str | None = None, content_type: str | None = None
    ) -> str:
        """A GET of one object for ``expires_in`` seconds; given a ``filename`` (any raw name), a download.

        A presigned GET cannot make S3 send arbitrary response headers: it overrides only
        ``Content-Type``, ``Content-Disposition``, ``Cache-Control``, ``Content-Language``,
        ``Content-Encoding`` and ``Expires``, so ``X-Content-Type-Options: nosniff`` or a
        ``Content-Security-Policy`` cannot ride on it. What the signed URL carries instead:

        - ``filename`` (every original is given one): ``Content-Disposition: attachment`` built per
          RFC 6266 by :func:`docpipe.storage.content_disposition`, so a browser saves the bytes and never
          renders them in our origin or the bucket's, whatever they are (HTML, SVG, a script);
        - ``content_type``: the exact type we detected from the bytes, not one the uploader declared;
        - ``Cache-Control: private, max-age=<expires_in>``: no shared cache keeps a user's file, and no
          browser keeps it past the link's own life.

        Presets and text (no ``filename``) are served inline with the headers they were stored with
        (presets: ``public, max-age=31536000, immutable``): they are images and JSON that we made, named
        by the content's key, never by anything a user chose.
        """
        params: dict[str, str] = {"Bucket": bucket, "Key": key}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
            params["ResponseCacheControl"] = f"private, max-age={expires_in}"
        if content_type:
            params["ResponseContentType"] = content_type
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))

    def ping(self, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            raise _translate(exc, bucket) from exc


class _ChunkPipeline:
    """Double-buffered reads of a response body: a thread fills free buffers, the consumer drains full ones."""

    _DONE = object()

    def __init__(self, body: Any, chunk_bytes: int, depth: int) -> None:
        self._body = body
        # Read straight from http.client into our buffers (one copy, no allocation per chunk);
        # fall back to the body's own read() for streams without readinto.
        raw = getattr(getattr(body, "_raw_stream", None), "_fp", None)
        self._readinto = getattr(raw, "readinto", None)
        self._chunk = chunk_bytes
        self._free: queue.Queue[bytearray | None] = queue.Queue()
        self._full: queue.Queue[Any] = queue.Queue()
        for _ in range(max(2, depth)):
            self._free.put(bytearray(chunk_bytes))
        self._thread = threading.Thread(target=self._read, name="s3-chunks", daemon=True)
        self._thread.start()

    def _fill(self, buffer: bytearray) -> int:
        view = memoryview(buffer)
        filled = 0
        while filled < len(buffer):
            if self._readinto is not None:
                n = self._readinto(view[filled:])
            else:
                data = self._body.read(len(buffer) - filled)
                n = len(data)
                view[filled : filled + n] = data
            if not n:
                break
            filled += n
        return filled

    def _read(self) -> None:
        try:
            while (buffer := self._free.get()) is not None:
                filled = self._fill(buffer)
                if filled:
                    self._full.put((buffer, filled))
                if filled < len(buffer):
                    break
            self._full.put(self._DONE)
        except (BotoCoreError, OSError, ValueError) as exc:
            self._full.put(Transient(f"reading the object was interrupted: {exc}"))

    def __iter__(self) -> Iterator[memoryview]:
        previous: bytearray | None = None
        while True:
            item = self._full.get()
            if previous is not None:
                self._free.put(previous)
            if item is self._DONE:
                return
            if isinstance(item, Exception):
                raise item
            previous, filled = item
            yield memoryview(previous)[:filled]

    def close(self) -> None:
        self._free.put(None)  # stops the reader at its next buffer
        self._body.close()
        self._thread.join(timeout=5)


class RangeReader(io.RawIOBase):
    """A seekable, read-only file over one S3 object version, fetched in blocks by ranged GETs.

    Lets Pillow read an image header or ``zipfile`` read a central directory without downloading
    the whole object.
    """

    BLOCK = 64 * 1024

    def __init__(self, store: ObjectStore, bucket: str, key: str, info: ObjectInfo, max_blocks: int = 16) -> None:
        self._store, self._bucket, self._key, self._info = store, bucket, key, info
        self._pos = 0
        self._blocks: dict[int, bytes] = {}
        self._max_blocks = max_blocks
        self.fetched_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._info.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _block(self, index: int) -> bytes:
        if index not in self._blocks:
            if len(self._blocks) >= self._max_blocks:
                self._blocks.pop(next(iter(self._blocks)))
            start = index * self.BLOCK
            end = min(start + self.BLOCK, self._info.size) - 1
            data = self._store.read_range(self._bucket, self._key, self._info.etag, start, end)
            self.fetched_bytes += len(data)
            self._blocks[index] = data
        return self._blocks[index]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._info.size - self._pos)
        done = 0
        while done < wanted:
            index, offset = divmod(self._pos, self.BLOCK)
            block = self._block(index)[offset:]
            n = min(len(block), wanted - done)
            if n <= 0:
                break
            view[done : done + n] = block[:n]
            done += n
            self._pos += n
        return done

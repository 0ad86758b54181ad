"""Where things live in the buckets, and how user-given names become safe keys."""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from docpipe.lanes import LANES

UPLOAD_PREFIX = "uploads/"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_NAME_CHARS = 200


def display_name(name: str) -> str:
    """The name as shown back to its owner: only its last path component, no control characters, bounded."""
    base = re.split(r"[\\/]", name)[-1]
    base = _CONTROL.sub("", unicodedata.normalize("NFC", base)).strip()
    return base[:MAX_NAME_CHARS]


def safe_name(name: str) -> str:
    """An S3-key-safe version of a name: ASCII letters, digits, ``._-``; never empty, never a dot-name."""
    shown = display_name(name)
    stem, dot, ext = shown.rpartition(".")
    if not dot or not stem.strip("._ "):
        stem, ext = shown, ""

    def ascii_only(text: str) -> str:
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()

    stem = _UNSAFE.sub("_", ascii_only(stem)).strip("._") or "file"
    ext = _UNSAFE.sub("", ascii_only(ext))[:10]
    return f"{stem[: MAX_NAME_CHARS - len(ext) - 1]}.{ext}" if ext else stem[:MAX_NAME_CHARS]


class UploadKey(NamedTuple):
    lane: str
    owner: str
    job_id: str


def upload_key(lane: str, owner: str, job_id: str, name: str) -> str:
    """``uploads/{lane}/{owner}/{jobId}/{safe-name}``: the lane first, so that S3 notification prefix
    filters send each lane's uploads to its own ingest queue."""
    return f"{UPLOAD_PREFIX}{lane}/{owner}/{job_id}/{safe_name(name)}"


def upload_prefix(lane: str) -> str:
    return f"{UPLOAD_PREFIX}{lane}/"


def parse_upload_key(key: str) -> UploadKey | None:
    """The lane, owner and job id of a raw upload key, else ``None``.

    ``key`` is the object's real key: an S3 event's URL-encoded key is decoded once, by whoever reads
    the event, never here again (a user id with ``+`` or ``%`` would change on a second decode).
    Keys of the first layout (``uploads/{owner}/{jobId}/{name}``, without a lane) are not upload keys
    any more: no notification filter sends them to ingest, and they are left to the lifecycle rule.
    """
    parts = key.split("/")
    if len(parts) != 5 or parts[0] + "/" != UPLOAD_PREFIX or parts[1] not in LANES or not all(parts[2:]):
        return None
    return UploadKey(parts[1], parts[2], parts[3])


def stored_prefixes(digest: str) -> tuple[str, ...]:
    """Every key prefix under which the store bucket keeps something made from these bytes: the original,
    the presets, and the text (``text/{hash}.json`` and the pieces under ``text/{hash}/``)."""
    return (f"files/{digest}/", f"derived/{digest}/", f"text/{digest}")


def original_key(digest: str) -> str:
    return f"files/{digest}/original"


def derived_key(digest: str, preset: str, ext: str) -> str:
    return f"derived/{digest}/{preset}.{ext}"


def text_key(digest: str) -> str:
    return f"text/{digest}.json"

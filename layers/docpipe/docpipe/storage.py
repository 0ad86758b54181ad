"""Where things live in the buckets, and how user-given names become safe keys."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_plus

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


def upload_key(owner: str, job_id: str, name: str) -> str:
    return f"{UPLOAD_PREFIX}{owner}/{job_id}/{safe_name(name)}"


def parse_upload_key(key: str) -> tuple[str, str] | None:
    """``(owner, job_id)`` from a raw upload key (URL-decoded first, as S3 events encode keys), else ``None``."""
    parts = unquote_plus(key).split("/")
    if len(parts) != 4 or parts[0] + "/" != UPLOAD_PREFIX or not all(parts[1:]):
        return None
    return parts[1], parts[2]


def original_key(digest: str) -> str:
    return f"files/{digest}/original"


def derived_key(digest: str, preset: str, ext: str) -> str:
    return f"derived/{digest}/{preset}.{ext}"


def text_key(digest: str) -> str:
    return f"text/{digest}.json"

"""Where things live in the buckets, and how user-given names become safe keys."""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from typing import NamedTuple
from urllib.parse import quote

from docpipe.lanes import LANES

UPLOAD_PREFIX = "uploads/"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_CHARS = 200
# Characters a name never keeps: controls (Cc), format characters (Cf: the bidi overrides and isolates
# such as U+202E that make "gpj.exe" read "exe.jpg", zero-width spaces and joiners, the BOM),
# surrogates (Cs: no UTF-8 for them) and the line and paragraph separators (Zl, Zp).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def display_name(name: str) -> str:
    """The name as shown back to its owner and given to a download: only its last path component,
    without the characters of :data:`_INVISIBLE_CATEGORIES`, in NFC, at most :data:`MAX_NAME_CHARS`.

    A longer name loses the end of its stem, never its extension, so that what the name says the file
    is (and what :func:`docpipe.filetypes.extension` reads from it) is the same before and after:
    ``"a" * 300 + ".exe"`` stays a ``.exe``. An extension too long to keep whole is no type we know.
    """
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(c for c in base if unicodedata.category(c) not in _INVISIBLE_CATEGORIES)
    base = unicodedata.normalize("NFC", base).strip()
    if len(base) <= MAX_NAME_CHARS:
        return base
    stem, ext = posixpath.splitext(base)
    if len(ext) >= MAX_NAME_CHARS:
        return base[:MAX_NAME_CHARS]
    return stem[: MAX_NAME_CHARS - len(ext)] + ext


def content_disposition(name: str) -> str:
    """``Content-Disposition: attachment`` for a download named ``name`` (any raw name), per RFC 6266:
    an ASCII ``filename`` for old clients and the exact name as ``filename*`` (RFC 8187, UTF-8).

    The name is :func:`display_name` first. In the ASCII fallback, accents are dropped (``é`` → ``e``)
    and every other non-ASCII character, quote, slash, backslash and ``%`` (which some clients decode)
    becomes ``_``; ``filename*`` percent-encodes everything but letters, digits and ``-._~``. Either way
    nothing in the header is the client's syntax: no quote ends the value, no ``;`` starts a parameter.
    """
    shown = display_name(name) or "download"
    fallback = "".join(
        c if " " <= c <= "~" and c not in '"\\/%' else "_"
        for c in unicodedata.normalize("NFKD", shown)
        if not unicodedata.combining(c)
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(shown, safe='')}"


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


def content_key(sha256: str, owner: str, scope: str = "global", reading: str | None = None) -> str:
    """The key work and stored bytes are shared under (``DedupeScope``): the SHA-256 itself when every
    upload of the same bytes shares them (``global``), or a digest of the owner and the SHA-256 when only
    one owner's uploads do (``owner``): then another user's upload is never faster for it, and nothing
    of one user's files is reused for another. Both are 64 hex digits, so every key and record keyed by
    a hash works the same.

    ``reading`` is how the bytes are read when that depends on the upload, not only on the bytes: a text
    file's type comes from its name (the same bytes are CSV as ``data.csv`` and plain text as
    ``notes.txt``), and its text is extracted accordingly. Uploads that read the same bytes differently
    share nothing, so no one's text is shaped by another user's name for the file (``None``, the bytes'
    own reading, keeps the bare key)."""
    key = sha256 if scope == "global" else hashlib.sha256(f"{owner}\0{sha256}".encode()).hexdigest()
    return key if reading is None else hashlib.sha256(f"{reading}\0{key}".encode()).hexdigest()

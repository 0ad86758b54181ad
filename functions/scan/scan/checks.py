"""Checks made at scan time besides the malware signatures, on the bytes alone (no AWS, no events):

- Office files carrying VBA macros (a ``vbaProject.bin`` part): refused as ``file.macro`` unless the
  stack allows them (``AllowMacros``);
- PDFs with JavaScript (``/JavaScript``, ``/JS``) or launch actions (``/Launch``): flagged in the job's
  facts, refused as ``pdf.active_content`` only when ``RefusePdfActiveContent`` says so.

The PDF check reads the file's bytes as written and its Flate streams, inflated (object streams hide
dictionaries from a plain byte search); names written with ``#xx`` escapes are decoded first.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from typing import IO

MACRO_PART = re.compile(r"(^|/)vbaProject\.bin$", re.IGNORECASE)
OFFICE_TYPES = frozenset({"docx", "xlsx", "pptx"})
_NAME = re.compile(rb"/(?:[A-Za-z]|#[0-9A-Fa-f]{2})+")
_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_FLATE = re.compile(rb"stream\r?\n(.*?)endstream", re.DOTALL)
ACTIVE_NAMES = {b"/JavaScript": "pdf.javascript", b"/JS": "pdf.javascript", b"/Launch": "pdf.launch"}
MAX_INFLATED_BYTES = 64 * 1024 * 1024  # the PDF's streams are inflated up to this much, all told


def macro_parts(file: IO[bytes]) -> list[str]:
    """The VBA project parts of an OOXML file (``word/vbaProject.bin``, ``xl/…``), from its directory only."""
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            return sorted(name for name in archive.namelist() if MACRO_PART.search(name))
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
        return []  # ingest read its directory already; a file that cannot be read here has no parts to show
    finally:
        file.seek(0)


def _names(data: bytes) -> set[str]:
    found = set()
    for match in _NAME.finditer(data):
        name = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), match.group(0))
        if name in ACTIVE_NAMES:
            found.add(ACTIVE_NAMES[name])
    return found


def pdf_active_content(file: IO[bytes]) -> list[str]:
    """``pdf.javascript`` and/or ``pdf.launch`` when the PDF has them, else nothing."""
    file.seek(0)
    data = file.read()
    file.seek(0)
    flags = _names(data)
    budget = MAX_INFLATED_BYTES
    for match in _FLATE.finditer(data):
        if budget <= 0:
            break
        inflater = zlib.decompressobj()
        try:
            inflated = inflater.decompress(match.group(1), budget)
        except zlib.error:
            continue
        budget -= len(inflated)
        flags |= _names(inflated)
    return sorted(flags)

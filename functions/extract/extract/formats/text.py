"""Plain text, Markdown, CSV and JSON.

**Encodings**: a BOM decides; then strict UTF-8 (unless the bytes hold NULs, the mark of UTF-16
without a BOM); then charset-normalizer. On short Western text charset-normalizer ranks many
single-byte code pages equal (``café crème`` comes back as cp1006 or cp1250); among its equally good
answers cp1252, the most common legacy encoding, wins. Last resort: cp1252, then Latin-1, which
decodes anything. Plain text and Markdown keep their trailing spaces (a Markdown line break); only
newlines are normalised. CSV rows are lines of tab-separated cells.

JSON nesting is measured on the text (brackets outside strings) after ``json.loads`` has proved it
valid, which is faster than walking the parsed value; nesting deep enough to exhaust the parser's
recursion is reported the same way. Parsed JSON takes up to 20 times its size in memory
(``[{},{},…]``: 3 bytes of text, a 64-byte dict), so JSON of more than :data:`MAX_JSON_VALUES`
values (counted by their commas and brackets) is not parsed: its text is stored as it came.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

from charset_normalizer import from_bytes

from docpipe.errors import FileCorrupt
from extract.formats.common import Budget, Source, as_bytes, failures_as_corrupt, make_page, tabular_chunks
from extract.model import Extraction, Page

MAX_JSON_DEPTH = 200
MAX_JSON_VALUES = 2_000_000  # about 60 bytes each once parsed: 3 bytes of "{}," become a 64-byte dict

_SNIFF_CHARS = 32 * 1024
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_JSON_VALUE_MARKS = (",", "[", "{")  # at least one per value after the first (inside strings too: an overestimate)
_WESTERN = "cp1252"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode_text(data: bytes) -> tuple[str, str]:
    """The text and the name of its encoding: BOM, strict UTF-8, charset-normalizer, cp1252, Latin-1."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding.removesuffix("-sig"), errors="replace"), encoding
    if b"\x00" not in data:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    guessed = _guess_encoding(data)
    if guessed is not None:
        return guessed
    try:
        return data.decode(_WESTERN), _WESTERN
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _guess_encoding(data: bytes) -> tuple[str, str] | None:
    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    tied = [m for m in matches if m.chaos <= best.chaos and m.coherence >= best.coherence]
    if any(_WESTERN in match.could_be_from_charset for match in tied):
        try:
            return data.decode(_WESTERN), _WESTERN
        except UnicodeDecodeError:
            pass
    return str(best), codecs.lookup(best.encoding).name


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_reader(kind: str) -> Callable[[Source, Budget], Extraction]:
    def read(source: Source, budget: Budget) -> Extraction:
        text, encoding = decode_text(as_bytes(source))
        page = Page(number=1, text=budget.take(_newlines(text)))
        return Extraction(kind=kind, pages=[page], encoding=encoding)

    return read


def extract_csv(source: Source, budget: Budget) -> Extraction:
    text, encoding = decode_text(as_bytes(source))
    delimiter = _delimiter(text)
    # A quoted field may be as long as the file (Python's csv module stops at 128 KB by default); the
    # file's size is bounded before it is read. The limit is the process's: it only ever grows.
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    with failures_as_corrupt("CSV file"):
        rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        chunks = tabular_chunks(rows, "\t", budget)
    page = make_page(1, chunks, budget, tabular=True)
    return Extraction(kind="csv", pages=[page], metadata={"delimiter": delimiter}, encoding=encoding)


def _delimiter(text: str) -> str:
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def extract_json(source: Source, budget: Budget) -> Extraction:
    text, encoding = decode_text(as_bytes(source))
    if sum(text.count(mark) for mark in _JSON_VALUE_MARKS) > MAX_JSON_VALUES:
        page = Page(number=1, text=budget.take(_newlines(text)))  # stored as it came, not parsed
        return Extraction(kind="json", pages=[page], encoding=encoding)
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise FileCorrupt(f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.") from exc
    except ValueError as exc:
        raise FileCorrupt(f"The JSON is not valid ({exc}).") from exc
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise FileCorrupt(f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.")
    pretty = budget.take(_pretty_json(value, budget.left))
    return Extraction(kind="json", pages=[Page(number=1, text=pretty)], encoding=encoding)


def _json_depth(text: str) -> int:
    """How deep arrays and objects nest in valid JSON: its brackets counted outside strings.

    Without its escapes valid JSON alternates outside and inside of strings at every quote.
    """
    outside = "".join(text.replace("\\\\", "").replace('\\"', "").split('"')[::2])
    brackets = _NOT_BRACKET.sub("", outside)
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _pretty_json(value: Any, limit: int) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)``, produced only as far as ``limit`` needs."""
    parts, size = [], 0
    for part in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(value):
        parts.append(part)
        size += len(part)
        if size > limit:
            break
    return "".join(parts)

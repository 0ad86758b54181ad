"""What the readers of every format share: the character budget, chunks of a page, tidying, sources."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, TypeAlias

from docpipe.errors import DocpipeError, FileCorrupt
from extract.model import Page

Source: TypeAlias = bytes | IO[bytes]

MAX_ROWS = 100_000
MAX_COLUMNS = 2_000

_LINE_BREAKS = str.maketrans({"\r": "\n", "\v": "\n"})
_CELL_BREAKS = re.compile(r"[\t\r\n\v]+")


class Budget:
    """The characters still allowed in the stored text, and whether any text was cut."""

    def __init__(self, max_chars: int) -> None:
        self.left = max_chars
        self.cut = False

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def take(self, text: str) -> str:
        if len(text) > self.left:
            text, self.cut = text[: self.left], True
        self.left -= len(text)
        return text


@dataclass
class Chunk:
    """A block of a page's text (a paragraph, a shape, a table row) and, for a table row, its cells."""

    text: str
    row: list[str] | None = None


def make_page(
    number: int, chunks: list[Chunk], budget: Budget, *, label: str | None = None, tabular: bool = False
) -> Page:
    text = budget.take("\n".join(chunk.text for chunk in chunks))
    rows: list[list[str]] = []
    end = -1
    for chunk in chunks:
        end += len(chunk.text) + 1
        if end > len(text):
            break
        if chunk.row is not None:
            rows.append(chunk.row)
    has_rows = tabular or any(chunk.row is not None for chunk in chunks)
    return Page(number=number, text=text, label=label, rows=rows if has_rows else None)


def pages_within(budget: Budget, items: Iterable[Any], build: Callable[[int, Any], Page]) -> list[Page]:
    pages = []
    for number, item in enumerate(items, start=1):
        if budget.spent:
            budget.cut = True
            break
        pages.append(build(number, item))
    return pages


def row_line(cells: list[str], separator: str) -> str:
    return separator.join(_CELL_BREAKS.sub(" ", cell) for cell in cells)


def tabular_chunks(rows: Iterable[list[str]], separator: str, budget: Budget) -> list[Chunk]:
    """Rows as lines, reading no more than :data:`MAX_ROWS` rows or what the budget can hold.

    Empty rows count only once a row with a value follows them: trailing empty rows (a sheet
    formatted to its last row, blank lines at the end of a CSV) are dropped, and neither fill the
    limits nor make the text ``truncated``.
    """
    chunks: list[Chunk] = []
    empty: list[list[str]] = []  # empty rows not yet followed by a row with a value
    size = 0
    for row in rows:
        if not any(row):
            if len(chunks) + len(empty) <= MAX_ROWS:  # past the limit they only tell that rows were cut
                empty.append(row)
            continue
        for kept in (*empty, row):
            if len(chunks) == MAX_ROWS or size > budget.left:
                budget.cut = True
                return chunks
            line = row_line(kept, separator)
            chunks.append(Chunk(line, kept))
            size += len(line) + 1
        empty.clear()
    return chunks


def tidy(text: str) -> str:
    """Newlines (and PowerPoint's ``\\v`` line breaks) as ``\\n``, no trailing spaces, no blank lines at either end."""
    lines = text.replace("\x00", "").replace("\r\n", "\n").translate(_LINE_BREAKS).split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def squeeze(chunks: Iterable[Chunk]) -> list[Chunk]:
    """Runs of empty paragraphs become one blank line; none at either end."""
    out: list[Chunk] = []
    for chunk in chunks:
        if chunk.text or chunk.row is not None or (out and out[-1].text):
            out.append(chunk)
    while out and not out[-1].text and out[-1].row is None:
        out.pop()
    return out


def as_stream(source: Source) -> IO[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)
    source.seek(0)
    return source


def as_bytes(source: Source) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    source.seek(0)
    return source.read()


@contextmanager
def failures_as_corrupt(what: str) -> Iterator[None]:
    try:
        yield
    except (DocpipeError, MemoryError):
        raise
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise FileCorrupt(f"The {what} is corrupt or truncated ({reason[:200]}).") from exc


def named(title: str | None, author: str | None) -> dict[str, Any]:
    pairs = (("title", title), ("author", author))
    return {key: value.strip() for key, value in pairs if isinstance(value, str) and value.strip()}

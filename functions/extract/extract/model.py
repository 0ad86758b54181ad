"""What an extraction produces: the ``text/{hash}.json`` document, page by page.

A *page* is a PDF page, a DOCX document body (one page: Word files have no fixed pages), a sheet of
a workbook, a slide of a presentation, or the whole of a text file. Pages a text layer could not
give (scans) say ``method: "ocr"`` once OCR has filled them; until then ``needs_ocr`` is true. A scan
under a short text layer keeps that text: OCR adds to it (``text-layer+ocr``), replaces it only
with a reading that holds all its words (``ocr``), or is dropped when it read less
(``text-layer``): see :func:`docpipe.text_results.with_ocr`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT_VERSION = 1


@dataclass
class Page:
    number: int  # 1-based
    text: str
    method: str = "text-layer"  # text-layer | ocr | text-layer+ocr | none (| failed, for pages no reader could read)
    label: str | None = None  # sheet or slide title, when the format has one
    rows: list[list[str]] | None = None  # tables kept as rows (CSV, sheets)
    needs_ocr: bool = False
    confidence: float | None = None  # OCR mean word confidence, 0-100

    @property
    def chars(self) -> int:
        return len(self.text)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["chars"] = self.chars
        return {k: v for k, v in out.items() if v is not None and v is not False}


@dataclass
class Extraction:
    kind: str  # pdf | docx | xlsx | pptx | text | markdown | csv | json | image
    pages: list[Page] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # title, author, pages (count), …
    encoding: str | None = None  # text files: the detected encoding
    truncated: bool = False  # the stored text was cut at the size cap

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.pages if p.text)

    @property
    def chars(self) -> int:
        return sum(p.chars for p in self.pages)

    def pages_needing_ocr(self) -> list[int]:
        return [p.number for p in self.pages if p.needs_ocr]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "metadata": self.metadata,
            "encoding": self.encoding,
            "truncated": self.truncated,
            "chars": self.chars,
            "pages": [p.to_dict() for p in self.pages],
        }

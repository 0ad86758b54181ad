"""The fuzz suite's seed corpus: one or more small good files of every type docpipe accepts.

The seeds are committed under ``tests/fixtures/fuzz/seeds/`` (a few KB each) so that a mutation named by
its run seed and index is the same bytes on every machine and after any library upgrade: Office files
carry the time they were written, and encoders change. ``python -m tests.fuzz.seeds`` writes them again
from the project's fixture builders; doing so changes what every (seed, index) pair replays, which is
why every crash found is kept as a file of its own (``tests/fixtures/fuzz/crashes/``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

from tests.fixtures.documents import pdf, pdf_from_objects
from tests.fixtures.files import docx_bytes, image_bytes
from tests.fixtures.poison import bigtiff
from tests.fixtures.real_world import filled_form

FOLDER = Path(__file__).resolve().parents[1] / "fixtures" / "fuzz" / "seeds"


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _picture(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    return Image.open(io.BytesIO(image_bytes("PNG", size, seed=seed))).convert(mode)


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to show
    return _encode(_picture((64, 40), seed=2), "JPEG", quality=80, progressive=True, exif=exif.tobytes())


def _transparent_png() -> bytes:
    image = Image.new("RGBA", (48, 36), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((6, 6, 42, 30), fill=(200, 40, 90, 180))
    return _encode(image, "PNG")


def _palette_png() -> bytes:
    image = _picture((48, 36), seed=4).quantize(16)
    return _encode(image, "PNG", transparency=0)


def _gray16_png() -> bytes:
    gradient = Image.linear_gradient("L").resize((40, 30)).point(lambda v: v * 16, "I")
    return _encode(gradient.convert("I;16"), "PNG")


def _frames(count: int, size: tuple[int, int]) -> list[Image.Image]:
    frames = []
    for i in range(count):
        frame = Image.new("RGBA", size, (20 * i, 90, 200 - 30 * i, 255))
        ImageDraw.Draw(frame).rectangle((i * 4, i * 3, i * 4 + 10, i * 3 + 8), fill=(250, 250, 0, 255))
        frames.append(frame)
    return frames


def _animated(fmt: str) -> bytes:
    frames = _frames(3, (32, 24))
    if fmt == "GIF":
        frames = [f.convert("P", palette=Image.Palette.ADAPTIVE, colors=8) for f in frames]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=80, loop=0, disposal=2)


def _fax() -> bytes:
    pages = [Image.new("1", (96, 64), 1) for _ in range(2)]
    for i, page in enumerate(pages):
        ImageDraw.Draw(page).text((8, 8 + 20 * i), f"page {i + 1}", fill=0)
    return _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:], compression="group4")


def _heic() -> bytes:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    return _encode(_picture((64, 48), seed=6), "HEIF", quality=50)


def _scanned_pdf() -> bytes:
    """One 3 x 2 inch page that is only a grayscale JPEG (a scan without a text layer): OCR renders it."""
    scan = Image.new("L", (150, 100), 255)
    ImageDraw.Draw(scan).text((10, 40), "Scanned 42", fill=0)
    jpeg = _encode(scan, "JPEG", quality=60)
    image = (
        b"<< /Type /XObject /Subtype /Image /Width 150 /Height 100 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n" % len(jpeg) + jpeg + b"\nendstream"
    )
    content = b"q 216 0 0 144 0 0 cm /Im1 Do Q"
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 216 144] /Contents 4 0 R "
            b"/Resources << /XObject << /Im1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
            image,
        ]
    )


def _xlsx() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["city", "population", "note"])
    sheet.append(["Lisbon", 545923, "coastal"])
    sheet.append(["Porto", 231800, None])
    workbook.create_sheet("Other").append(["x", 1.5])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _pptx() -> bytes:
    import pptx

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Quarterly"
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def _table_pptx() -> bytes:
    """A slide with a table (a merged cell), a group of two text boxes, and speaker notes."""
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    table = slide.shapes.add_table(2, 3, Inches(1), Inches(1), Inches(6), Inches(1)).table
    for r in range(2):
        for c in range(3):
            table.cell(r, c).text = f"r{r}c{c}"
    table.cell(0, 0).merge(table.cell(0, 1))
    group = slide.shapes.add_group_shape()
    for i in range(2):
        group.shapes.add_textbox(Inches(1 + 2 * i), Inches(3), Inches(2), Inches(1)).text_frame.text = f"box {i}"
    slide.notes_slide.notes_text_frame.text = "Speaker notes"
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def _table_docx() -> bytes:
    """A Word document written by hand: a paragraph, a table and a content control."""
    import zipfile

    from tests.fixtures.files import _CONTENT_TYPES, _RELS

    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
        "<w:p><w:r><w:t>Before the table</w:t></w:r></w:p>"
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>a1</w:t></w:r></w:p></w:tc>"
        '<w:tc><w:tcPr><w:gridSpan w:val="2"/></w:tcPr><w:p><w:r><w:t>b1</w:t></w:r></w:p></w:tc></w:tr>'
        "<w:tr><w:tc><w:p><w:r><w:t>a2</w:t></w:r></w:p></w:tc><w:tc><w:p/></w:tc><w:tc><w:p/></w:tc></w:tr></w:tbl>"
        "<w:sdt><w:sdtContent><w:p><w:r><w:t>In a control</w:t></w:r></w:p></w:sdtContent></w:sdt>"
        "</w:body></w:document>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        archive.writestr("word/document.xml", body)
    return out.getvalue()


def _csv() -> bytes:
    rows = io.StringIO()
    csv.writer(rows).writerows([["city", "population", "note"], ["Lisbon", 545923, "a, b"], ["Porto", 231800, ""]])
    return rows.getvalue().encode()


BUILDERS: dict[str, Callable[[], bytes]] = {
    "photo.jpg": lambda: image_bytes("JPEG", (64, 48), seed=1),
    "rotated.jpg": _exif_rotated_jpeg,
    "cmyk.jpg": lambda: _encode(_picture((32, 24), "CMYK", seed=3), "JPEG", quality=80),
    "diagram.png": lambda: image_bytes("PNG", (64, 48), seed=5),
    "alpha.png": _transparent_png,
    "palette.png": _palette_png,
    "gray16.png": _gray16_png,
    "still.gif": lambda: image_bytes("GIF", (48, 36), seed=7),
    "anim.gif": lambda: _animated("GIF"),
    "photo.webp": lambda: image_bytes("WEBP", (64, 48), seed=8),
    "lossless.webp": lambda: _encode(_picture((40, 30), "RGBA", seed=9), "WEBP", lossless=True),
    "anim.webp": lambda: _animated("WEBP"),
    "scan.tif": lambda: _encode(_picture((48, 36), seed=10), "TIFF", compression="tiff_adobe_deflate"),
    "fax.tif": _fax,
    "big.tif": lambda: bigtiff(_picture((24, 16), seed=11)),
    "photo.bmp": lambda: image_bytes("BMP", (32, 24), seed=12),
    "palette.bmp": lambda: _encode(_picture((32, 24), seed=13).quantize(16), "BMP"),
    "photo.heic": _heic,
    "report.pdf": lambda: pdf([["Invoice 2041 for a document pipeline."], ["Page two, thirty days."]], title="Report"),
    "scan.pdf": _scanned_pdf,
    "form.pdf": filled_form,
    "letter.docx": lambda: docx_bytes("Dear reader, a short letter."),
    "table.docx": _table_docx,
    "sheet.xlsx": _xlsx,
    "deck.pptx": _pptx,
    "table.pptx": _table_pptx,
    "notes.txt": lambda: "Grüße, notes.\r\nSecond line\tand a tab.\n".encode(),
    "legacy.txt": lambda: "café crème, number 416\n".encode("cp1252"),
    "wide.txt": lambda: "UTF-16 text, two lines\nsecond\n".encode("utf-16"),
    "readme.md": lambda: b"# Title\n\nSome *markdown*.  \nA hard break.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
    "cities.csv": _csv,
    "settings.json": lambda: json.dumps({"service": "docpipe", "n": [1, 2.5, None, {"deep": [True]}]}).encode(),
}


def load() -> dict[str, bytes]:
    """The committed seeds by file name (the name is what ingest checks the bytes against)."""
    return {path.name: path.read_bytes() for path in sorted(FOLDER.iterdir()) if path.is_file()}


def write() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        (FOLDER / name).write_bytes(build())


if __name__ == "__main__":
    write()

"""Render pages of a PDF to Pillow images (pypdfium2), for OCR.

Pages are 1-based. Each page is rendered at ``dpi`` unless the bitmap would exceed :data:`MAX_PIXELS`;
then at the highest resolution that fits (a poster-sized page stays within memory), down to
:data:`MIN_DPI`: a page too large to render even at that resolution within the budget (more than about
88 x 88 inches) raises ``page.too_large``, since text rendered coarser is not worth reading. The image's
``info["dpi"]`` carries the resolution actually used. Pages and the document are closed as soon as they
are done with. A PDF that cannot be opened or a page that cannot be rendered raises ``file.corrupt``
(``pdf.encrypted`` for a password-protected PDF).

The images a page holds are not counted against any pixel limit: PDFium decodes JPEG images a few rows
at a time, at the scale it draws them (a 35000 x 35000 scan renders in about a second in 130 MB), and
skips an image too large for it to hold at all. What a page does cost to render is not in its dictionary
(a 1.5 MB soft mask decodes to 1.6 GB, a deflated image whole; PDFium's public API does not tell either),
so each page is rendered in a forked process with a memory share and :data:`RENDER_SECONDS`
(:mod:`docpipe.sandbox`): a page that outgrows either raises ``archive.unsafe`` and this process, with
its OCR engine, survives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from docpipe import sandbox
from docpipe.errors import FileCorrupt, PageTooLarge, PdfEncrypted

MAX_PIXELS = 40_000_000  # a letter page at 300 dpi is 8.4 MP; A0 at 300 dpi would be 140 MP (A0 renders at 160 dpi)
MIN_DPI = 72  # below this a page is refused (page.too_large): 10 pt text would be under 10 px high
MAX_IMAGE_PIXELS = 100_000_000  # the ingest limit on an uploaded image's pixels (ocr.pages applies it to images)
RENDER_SECONDS = 30.0  # one page (a letter page renders at 300 dpi in well under a second)


def page_scale(width: float, height: float, dpi: float, max_pixels: int = MAX_PIXELS) -> float:
    """The render scale (pixels per PDF point) for ``dpi``, reduced so the page fits in ``max_pixels``."""
    scale = dpi / 72
    area = width * height
    if area * scale * scale > max_pixels:
        scale = math.sqrt(max_pixels / area)
        # PDFium rounds each side up: shave the scale until the bitmap really fits.
        while scale > 0 and math.ceil(width * scale) * math.ceil(height * scale) > max_pixels:
            scale *= 0.9995
    return scale


def _open(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise PdfEncrypted() from exc
        raise FileCorrupt(f"The PDF cannot be opened: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise FileCorrupt(f"The PDF cannot be opened: {exc}") from exc


def render_pdf_pages(
    data: bytes,
    pages: list[int],
    dpi: int = 300,
    grayscale: bool = True,
    max_pixels: int = MAX_PIXELS,
    seconds: float = RENDER_SECONDS,
    min_dpi: float = MIN_DPI,
) -> Iterator[tuple[int, Image.Image]]:
    """Yield ``(number, image)`` for each requested 1-based page, in the order given.

    Images are ``L`` when ``grayscale`` (else ``RGB``), at ``dpi`` or the highest resolution within
    ``max_pixels``. A page number outside the document raises ``file.corrupt``, as does a page PDFium
    fails to load or render; a page that fits ``max_pixels`` only below ``min_dpi`` raises
    ``page.too_large``; a page that needs more than its memory share or ``seconds`` raises
    ``archive.unsafe``.
    """
    for number in pages:
        args = (data, number, dpi, grayscale, max_pixels, min_dpi)
        deadline = time.monotonic() + seconds
        (image,) = sandbox.run(_render_page, [args], deadline, what=f"Rendering page {number} of the PDF")
        yield number, image


def _render_page(data: bytes, number: int, dpi: int, grayscale: bool, max_pixels: int, min_dpi: float) -> Image.Image:
    """One page, in a process of its own (see :func:`render_pdf_pages`)."""
    pdf = _open(data)
    try:
        count = len(pdf)
        if not 1 <= number <= count:
            raise FileCorrupt(f"Page {number} is not in the PDF (it has {count} pages).")
        return _render(pdf, number, dpi, grayscale, max_pixels, min_dpi)
    finally:
        pdf.close()


def _render(
    pdf: pdfium.PdfDocument, number: int, dpi: int, grayscale: bool, max_pixels: int, min_dpi: float
) -> Image.Image:
    try:
        page = pdf[number - 1]
    except pdfium.PdfiumError as exc:
        raise FileCorrupt(f"Page {number} of the PDF cannot be loaded: {exc}") from exc
    try:
        width, height = page.get_size()
        if not (width > 0 and height > 0 and math.isfinite(width * height)):
            raise FileCorrupt(f"Page {number} of the PDF has no area ({width} x {height} points).")
        scale = page_scale(width, height, dpi, max_pixels)
        if scale * 72 < min_dpi:
            raise PageTooLarge(
                f"Page {number} of the PDF is {width / 72:.0f} x {height / 72:.0f} inches: within the "
                f"{max_pixels / 1e6:g} MP a rendered page may have, it would be {scale * 72:.0f} dpi, "
                f"below the {min_dpi:g} dpi OCR needs."
            )
        bitmap = page.render(scale=scale, grayscale=grayscale, rev_byteorder=not grayscale)
        try:
            image = bitmap.to_pil()
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if grayscale else "RGB")
        finally:
            bitmap.close()
    except (pdfium.PdfiumError, ValueError, OSError) as exc:
        raise FileCorrupt(f"Page {number} of the PDF cannot be rendered: {exc}") from exc
    finally:
        page.close()
    effective = round(scale * 72)
    image.info["dpi"] = (effective, effective)
    return image

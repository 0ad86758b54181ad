"""Render pages of a PDF to Pillow images (pypdfium2), for OCR.

Pages are 1-based. Each page is rendered at ``dpi`` unless that would exceed :data:`MAX_PIXELS`, in
which case the scale is reduced so the bitmap fits (a poster-sized page stays within memory); the
image's ``info["dpi"]`` carries the resolution actually used. Pages and the document are closed as
soon as they are done with. A PDF that cannot be opened or a page that cannot be rendered raises
``file.corrupt`` (``pdf.encrypted`` for a password-protected PDF); a page holding an image of more
than :data:`MAX_IMAGE_PIXELS` raises ``image.too_many_pixels`` before PDFium decodes it.

Each page is rendered in a forked process with a memory share and :data:`RENDER_SECONDS`
(:mod:`docpipe.sandbox`): what a page costs to render is not in its dictionary (a 1.5 MB soft mask
decodes to 1.6 GB; PDFium's public API does not tell a soft mask's size), so a page that outgrows
either raises ``archive.unsafe`` and this process, with its OCR engine, survives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from docpipe import sandbox
from docpipe.errors import FileCorrupt, ImageTooManyPixels, PdfEncrypted

MAX_PIXELS = 40_000_000  # a letter page at 300 dpi is 8.4 MP; A0 at 300 dpi would be 140 MP
# PDFium decodes a page's images whole to render it, whatever the page size: an image of more pixels
# than an uploaded image may have (the ingest limit) is refused before the page is rendered.
MAX_IMAGE_PIXELS = 100_000_000
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
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    seconds: float = RENDER_SECONDS,
) -> Iterator[tuple[int, Image.Image]]:
    """Yield ``(number, image)`` for each requested 1-based page, in the order given.

    Images are ``L`` when ``grayscale`` (else ``RGB``). A page number outside the document raises
    ``file.corrupt``, as does a page PDFium fails to load or render; a page holding an image of more
    than ``max_image_pixels`` raises ``image.too_many_pixels`` before it is rendered; a page that needs
    more than its memory share or ``seconds`` raises ``archive.unsafe``.
    """
    for number in pages:
        args = (data, number, dpi, grayscale, max_pixels, max_image_pixels)
        deadline = time.monotonic() + seconds
        (image,) = sandbox.run(_render_page, [args], deadline, what=f"Rendering page {number} of the PDF")
        yield number, image


def _render_page(
    data: bytes, number: int, dpi: int, grayscale: bool, max_pixels: int, max_image_pixels: int
) -> Image.Image:
    """One page, in a process of its own (see :func:`render_pdf_pages`)."""
    pdf = _open(data)
    try:
        count = len(pdf)
        if not 1 <= number <= count:
            raise FileCorrupt(f"Page {number} is not in the PDF (it has {count} pages).")
        return _render(pdf, number, dpi, grayscale, max_pixels, max_image_pixels)
    finally:
        pdf.close()


def _check_images(page: pdfium.PdfPage, number: int, max_image_pixels: int) -> None:
    """Refuse a page with an image (in forms too) of more pixels than allowed; its size is read from its
    dictionary, without decoding it."""
    for image in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
        try:
            width, height = image.get_px_size()
        except pdfium.PdfiumError:
            continue  # an image PDFium cannot size it will not decode either
        if width * height > max_image_pixels:
            raise ImageTooManyPixels(
                f"Page {number} of the PDF holds an image of {width} x {height} pixels; "
                f"the limit is {max_image_pixels} pixels."
            )


def _render(
    pdf: pdfium.PdfDocument, number: int, dpi: int, grayscale: bool, max_pixels: int, max_image_pixels: int
) -> Image.Image:
    try:
        page = pdf[number - 1]
    except pdfium.PdfiumError as exc:
        raise FileCorrupt(f"Page {number} of the PDF cannot be loaded: {exc}") from exc
    try:
        width, height = page.get_size()
        if not (width > 0 and height > 0 and math.isfinite(width * height)):
            raise FileCorrupt(f"Page {number} of the PDF has no area ({width} x {height} points).")
        _check_images(page, number, max_image_pixels)
        scale = page_scale(width, height, dpi, max_pixels)
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

"""The pages of an uploaded image, read for OCR: opened within the pixel budget, one page at a time.

A multi-page TIFF (a fax, a scan of several sheets) is a document of as many pages as it has
directories; any other image is one page (an animation's or a burst's later frames are not pages).
Each page is sought and checked against the pixel budget before it is decoded
(:mod:`docpipe.images`), then turned upright (EXIF; Pillow has already turned a TIFF page), flattened
on white, made grayscale and at most :data:`MAX_SIDE` px on the long side.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image, ImageOps

from docpipe import images
from docpipe.errors import DocpipeError, FileCorrupt, ImageTooManyPixels
from ocr.render import MAX_IMAGE_PIXELS  # the ingest limit, for images too

try:  # HEIC/HEIF photos, as the presets function reads them; without the plugin they fail as corrupt.
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover
    pass

MAX_SIDE = 4000  # images larger than this on their long side are downscaled before OCR


def open_image(data: bytes) -> Image.Image:
    """An image opened lazily on its first frame (:func:`docpipe.images.open_image`): ``file.corrupt`` if it
    is not one of the formats docpipe accepts or cannot be read, or is a JPEG of more scans than
    :data:`~docpipe.filetypes.MAX_JPEG_SCANS` (a CPU bomb); ``image.too_many_pixels`` for a bomb, before
    anything is decoded, with docpipe's limit in its message."""
    return images.open_image(io.BytesIO(data), MAX_IMAGE_PIXELS)


def prepare_image(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """Upright (EXIF), flattened on white, grayscale (``L``; wider grays scaled by their range), at most
    ``max_side`` px on the long side."""
    try:
        if image.format in images.JPEG_FORMATS:
            image.draft("L", (max_side, max_side))  # decode at the smallest DCT scale still >= max_side
        upright = ImageOps.exif_transpose(image)
        if upright.mode in images.WIDE_GRAY_MODES:  # 32-bit or 16-bit gray: by its own range, not clipped
            upright = images.to_8_bit(upright)
        if upright.mode in ("RGBA", "LA", "PA", "P") or "transparency" in upright.info:
            rgba = upright.convert("RGBA")
            upright = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        gray = upright.convert("L")
        if max(gray.size) > max_side:
            gray.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        gray.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooManyPixels(f"The image has too many pixels: {exc}") from exc
    except Exception as exc:  # Pillow's (and pillow-heif's) failures on the bytes; a bug of ours propagates
        if not images.decoder_failed(exc):
            raise
        raise FileCorrupt(f"The image cannot be decoded: {exc}") from exc
    return gray


def load_image(data: bytes, max_side: int = MAX_SIDE) -> Image.Image:
    with open_image(data) as image:
        return prepare_image(image, max_side)


def page_count(data: bytes) -> int:
    """How many pages an image has as a document: every page of a multi-page TIFF (a fax, a scan of
    several sheets), one otherwise (an animation's or a burst's later frames are not pages). Reads the
    TIFF's directories, not its pixels."""
    with open_image(data) as image, images.decoding("The image's pages"):
        return int(getattr(image, "n_frames", 1)) if image.format == "TIFF" else 1


def load_pages(
    data: bytes, pages: list[int], max_side: int = MAX_SIDE
) -> Iterator[tuple[int, Image.Image | DocpipeError]]:
    """Each of the given 1-based pages of an image, prepared for OCR (:func:`prepare_image`), one at a time;
    or, for a page that cannot be read, its error: ``image.too_many_pixels`` when the page is over the
    pixel budget (checked as it is sought, before it is decoded), ``file.corrupt`` when it is broken or
    not in the image. The image itself failing to open raises."""
    with open_image(data) as image:
        for number in pages:
            try:
                if not images.seek(image, number - 1, MAX_IMAGE_PIXELS):
                    raise FileCorrupt(f"Page {number} is not in the image.")
                page = prepare_image(image, max_side)
            except (FileCorrupt, ImageTooManyPixels) as exc:
                yield number, exc
                continue
            except images.DECODE_ERRORS as exc:  # a page whose directory Pillow cannot read
                yield number, FileCorrupt(f"Page {number} of the image cannot be read: {exc}")
                continue
            yield number, page

"""Opening uploaded images for decoding, the same way in every function that decodes them (presets, OCR).

- Only the formats docpipe accepts are opened (:data:`FORMATS`): bytes that one of Pillow's other
  plugins would read (ICO, PSD, …) are ``file.corrupt``, never decoded by code no upload should reach.
- The pixel budget is checked before anything is decoded, for every frame and page that will be:
  the first as the image is opened, each other one as it is sought (:func:`seek`; a TIFF page, an MPO
  or HEIF image, has a size of its own), and for a GIF before Pillow even opens it: Pillow grows a
  GIF's canvas to a frame's extents, and fills the frame's disposal area, as it seeks to the frame,
  so each frame's canvas is read from the descriptors first (:func:`docpipe.filetypes.gif_canvases`).
  Pillow's own bomb check stays off: ours runs first, with docpipe's limit and its error.
- A JPEG of more scans than :data:`~docpipe.filetypes.MAX_JPEG_SCANS` (a CPU bomb) is ``file.corrupt``.
- Whatever Pillow or pillow-heif raise on damaged bytes is ``file.corrupt`` (:func:`decoder_failed`,
  :func:`decoding`): besides :data:`DECODE_ERRORS`, their plugins fail on a damaged header with
  ``struct.error``, ``IndexError``, ``KeyError`` or ``TypeError`` (a TIFF page without dimensions, a GIF
  cut inside a frame descriptor), and pillow-heif with libheif's ``RuntimeError``.
- Grayscale of more than 8 bits (32-bit integer or float, 16-bit) becomes 8-bit by its own range
  (:func:`to_8_bit`), not by clipping.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from PIL import Image, ImageFile, UnidentifiedImageError

from docpipe.errors import DocpipeError, FileCorrupt, ImageTooManyPixels
from docpipe.filetypes import MAX_JPEG_SCANS, gif_canvases, jpeg_scans

# Pillow's names of the formats docpipe accepts (docpipe.filetypes.TYPES); a JPEG with a multi-picture
# index opens as MPO. HEIF is there when pillow-heif has registered it.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF")
JPEG_FORMATS = frozenset({"JPEG", "MPO"})
WIDE_GRAY_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
# Errors Pillow raises for bytes it cannot read (a truncated file is an OSError).
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
_BAND_PIXELS = 4_000_000  # to_8_bit works in bands of about this many pixels
_DECODERS = ("PIL", "pillow_heif")  # the packages whose failures on an image are the image's


def decoder_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is a decoder's failure on the bytes: one of :data:`DECODE_ERRORS`, or any other
    exception (but a ``MemoryError``) raised inside Pillow or pillow-heif. One raised in docpipe's own
    code is not: it is a bug, and propagates as one."""
    if isinstance(exc, DECODE_ERRORS):
        return True
    if not isinstance(exc, Exception) or isinstance(exc, MemoryError):
        return False
    trace = exc.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    module = trace.tb_frame.f_globals.get("__name__", "") if trace is not None else ""
    return str(module).partition(".")[0] in _DECODERS


@contextmanager
def decoding(what: str = "The image") -> Iterator[None]:
    """Raise a decoder's failure inside the block (:func:`decoder_failed`) as ``file.corrupt``."""
    try:
        yield
    except DocpipeError:
        raise
    except Exception as exc:
        if not decoder_failed(exc):
            raise
        raise FileCorrupt(f"{what} cannot be decoded: {exc}") from exc


def open_image(file: IO[bytes], max_pixels: int, frames: int = 1) -> ImageFile.ImageFile:
    """The image in ``file`` (seekable), opened lazily on its first frame, whose pixels are checked.

    ``frames``: how many frames the caller may seek to (a GIF's are checked before it is opened).
    Raises ``image.too_many_pixels`` when the first frame, or a GIF's canvas at any of those frames,
    has more than ``max_pixels`` pixels; ``file.corrupt`` when Pillow cannot open the bytes as one of
    :data:`FORMATS`, or for a JPEG of too many scans.
    """
    Image.MAX_IMAGE_PIXELS = None  # our checks run first, with our limit and our error
    for number, (width, height) in enumerate(gif_canvases(file, max(1, frames)), 1):
        if width * height > max_pixels:
            raise ImageTooManyPixels(
                f"Frame {number} of the GIF grows its canvas to {width} x {height} pixels; "
                f"the limit is {max_pixels} pixels."
            )
    formats = tuple(f for f in FORMATS if f != "HEIF" or f in Image.OPEN)
    with decoding():
        image = Image.open(file, formats=formats)
    try:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooManyPixels(f"The image is {width} x {height} pixels; the limit is {max_pixels} pixels.")
        if image.format in JPEG_FORMATS and jpeg_scans(file) > MAX_JPEG_SCANS:
            raise FileCorrupt(f"The JPEG has more than {MAX_JPEG_SCANS} scans; it is not decoded.")
    except BaseException:
        image.close()
        raise
    return image


def seek(image: Image.Image, index: int, max_pixels: int) -> bool:
    """Move to frame (page) ``index``, 0-based; False past the last one. Raises ``image.too_many_pixels``
    when that frame has more than ``max_pixels`` pixels: Pillow has read its header, not its pixels;
    ``file.corrupt`` when the frame's header cannot be read."""
    with decoding(f"Frame {index + 1} of the image"):
        try:
            image.seek(index)
        except EOFError:
            return False
    width, height = image.size
    if width * height > max_pixels:
        what = "Page" if image.format == "TIFF" else "Frame"
        raise ImageTooManyPixels(
            f"{what} {index + 1} of the image is {width} x {height} pixels; the limit is {max_pixels} pixels."
        )
    return True


def to_8_bit(image: Image.Image) -> Image.Image:
    """A grayscale image of more than 8 bits (:data:`WIDE_GRAY_MODES`) as ``L``, its darkest pixel black and
    its lightest white. Such images seldom fill their mode's range (a 12-bit sensor in 16 bits, counts or
    depths in 32), so the range is the image's own; a flat image keeps its level (a 16-bit one in
    1/256). Converted in bands, so a large image is not held at 32 bits twice."""
    extrema = image.getextrema()  # one band: (lowest, highest)
    low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
    sixteen = image.mode.startswith("I;16")
    if not high > low:
        level = low / 256 if sixteen else low
        flat = Image.new("L", image.size, int(min(255, max(0, level))))
        flat.info = dict(image.info)
        return flat
    scale = 255 / (high - low)
    offset = -low * scale
    width, height = image.size
    out = Image.new("L", image.size)
    rows = max(1, _BAND_PIXELS // max(1, width))
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(height, top + rows)))
        if band.mode not in ("I", "F"):
            band = band.convert("I")
        out.paste(band.point(lambda v: v * scale + offset).convert("L"), (0, top))
    out.info = dict(image.info)
    return out

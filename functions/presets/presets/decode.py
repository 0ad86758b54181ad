"""Decoding an image once for its presets: at the scale the largest preset needs, into 8-bit sRGB.

An image is opened by :func:`docpipe.images.open_image`: the formats docpipe accepts only, every
frame's pixels checked before it is decoded (a GIF's canvas at each of the first :data:`MAX_FRAMES`
frames before it is even opened). A JPEG is decoded by libjpeg-turbo at the smallest of its DCT scales
(M/8, through simplejpeg; Pillow's ``draft``, 1/2^n only, for CMYK) that still covers the largest
preset; the decoded image is converted to sRGB and 8-bit RGB/RGBA once. An animation's frames are
decoded as RGBA, at most :data:`MAX_FRAMES` of them and at most the pixel budget in all.
"""

from __future__ import annotations

import io
from typing import IO, Any

from PIL import Image, ImageCms, ImageFile, ImageOps

from docpipe import images
from presets.encode import TRANSPOSE

try:  # HEIC/HEIF (iPhone photos); the function's requirements install it.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF = True
except ImportError:  # pragma: no cover - without the plugin HEIC fails as corrupt
    HEIF = False

try:  # libjpeg-turbo's scaled decoding (every M/8 DCT scale); the function's requirements install it.
    import simplejpeg
except ImportError:  # pragma: no cover - without it Pillow decodes JPEGs (its draft scales only by 1/2^n)
    simplejpeg = None

MAX_FRAMES = 50
_SRGB = ImageCms.createProfile("sRGB")


def open_image(file: IO[bytes], max_pixels: int) -> ImageFile.ImageFile:
    """The image, opened on its first frame, within the pixel budget (:func:`docpipe.images.open_image`)."""
    return images.open_image(file, max_pixels, frames=MAX_FRAMES)


def orientation_of(image: Image.Image) -> int:
    """The image's EXIF orientation (1 to 8; 1 when it has none or an unknown one)."""
    value = image.getexif().get(ImageOps.ExifTags.Base.Orientation, 1)
    return value if value in TRANSPOSE else 1


def decode_jpeg(image: Image.Image, need: tuple[int, int]) -> Image.Image | None:
    """A YCbCr, RGB or grayscale JPEG decoded by libjpeg-turbo at the smallest of its DCT scales (M/8,
    M = 1..8) that covers ``need``, straight into the pixel memory of the returned image. None for Pillow
    to decode: other JPEGs (CMYK, YCCK), no simplejpeg, or a JPEG libjpeg-turbo warns about (simplejpeg
    stops at warnings such as extraneous bytes before a marker, which Pillow decodes through; Pillow
    still refuses a truncated file)."""
    file = getattr(image, "fp", None)  # the open JPEG file (Pillow's ImageFile)
    if simplejpeg is None or file is None or image.mode not in ("RGB", "L"):
        return None
    file.seek(0)
    data = file.getbuffer() if isinstance(file, io.BytesIO) else file.read()
    try:
        pixels = simplejpeg.decode_jpeg(
            data, "RGBX" if image.mode == "RGB" else "GRAY", min_width=need[0], min_height=need[1]
        )
    except ValueError:
        return None
    finally:
        if isinstance(data, memoryview):
            data.release()
    height, width = pixels.shape[:2]
    decoded = _over(pixels, image.mode, (width, height))
    decoded.info = dict(image.info)
    return decoded


def _over(pixels: Any, mode: str, size: tuple[int, int]) -> Image.Image:
    """A Pillow image of ``mode`` (RGB or L) whose pixel memory is ``pixels`` (libjpeg-turbo's RGBX or
    gray rows), not a copy. Pillow keeps an RGB pixel in 4 bytes, the 4th unused, so RGBX rows are an RGB
    image's memory; ``Image.frombuffer`` maps a buffer only as the modes it lists (RGBX, not RGB), so the
    buffer is mapped here as RGB the way it maps those, and copied only if that way is gone."""
    try:
        image = Image.new(mode, (0, 0))._new(Image.core.map_buffer(pixels, size, "raw", 0, (mode, 0, 1)))
    except (AttributeError, TypeError, ValueError):  # pragma: no cover - a Pillow without map_buffer
        raw = "RGBX" if mode == "RGB" else mode
        return Image.frombuffer(raw, size, pixels, "raw", raw, 0, 1).convert(mode)
    image.readonly = 1  # as frombuffer's: an in-place change copies first
    return image


def normalize(image: Image.Image) -> Image.Image:
    """Decode once into an 8-bit sRGB image, RGB or RGBA when the input has transparency (not yet oriented)."""
    image.load()  # decode here, once, before threads share the image
    icc = image.info.get("icc_profile")
    oriented = image
    if oriented.mode in images.WIDE_GRAY_MODES:  # 32-bit integer or float, 16-bit: scaled by their own range
        oriented = images.to_8_bit(oriented)
    has_alpha = oriented.mode in ("RGBA", "LA", "PA") or (oriented.mode == "P" and "transparency" in oriented.info)
    if oriented.mode == "CMYK" and not icc:
        oriented = oriented.convert("RGB")
    target = "RGBA" if has_alpha else "RGB"
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            working = oriented if oriented.mode in ("RGB", "RGBA", "CMYK", "L") else oriented.convert(target)
            converted = ImageCms.profileToProfile(
                working, source, _SRGB, outputMode=target if working.mode != "CMYK" else "RGB"
            )
            if converted is not None:
                oriented = converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: keep the pixels as they are
    return oriented if oriented.mode == target else oriented.convert(target)


def animation_frames(image: Image.Image, max_pixels: int) -> tuple[list[Image.Image], list[int]]:
    """An animation's frames as RGBA, with their durations: at most :data:`MAX_FRAMES`, and at most
    ``max_pixels`` decoded pixels in all. Each frame's size is checked as it is sought, before it is
    decoded (:func:`docpipe.images.seek`), and the animation ends before a frame that would pass the
    budget: nothing is converted before it is counted."""
    frames: list[Image.Image] = []
    durations: list[int] = []
    budget = max_pixels
    for index in range(MAX_FRAMES):
        if not images.seek(image, index, max_pixels):
            break
        pixels = image.size[0] * image.size[1]
        if pixels > budget:
            break
        budget -= pixels
        frames.append(image.convert("RGBA"))
        durations.append(int(image.info.get("duration", 100)) or 100)
    return frames, durations

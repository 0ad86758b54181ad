"""Encoding the presets: the preset and result types, the sizes outputs take, and still JPEG/WebP encodes.

An output never upscales, keeps the aspect ratio, is bounded in both dimensions, carries no
EXIF/GPS/XMP metadata, and keeps alpha only where the format can (WebP); JPEG outputs come from the
image flattened on white. Resizes run in the image's stored orientation; each output is turned upright
(EXIF orientation) as it is encoded.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from PIL import Image

ALPHA_FORMATS = frozenset({"WEBP"})


@dataclass(frozen=True)
class Preset:
    name: str
    max_width: int
    max_height: int
    format: str  # JPEG | WEBP
    quality: int
    animated: bool  # keeps an animated input's animation (as WebP)


_EXT = {"JPEG": "jpg", "WEBP": "webp"}
_MIME = {"JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class Rendered:
    preset: str
    data: bytes
    width: int
    height: int
    format: str
    animated: bool = False

    @property
    def ext(self) -> str:
        return _EXT[self.format]

    @property
    def content_type(self) -> str:
        return _MIME[self.format]


def fit(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size within the bounds with the same aspect ratio; never larger than the input."""
    scale = min(1.0, max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def finisher(preset: Preset, orientation: int) -> Callable[[Image.Image], Rendered]:
    def finish(image: Image.Image) -> Rendered:
        if orientation != 1:
            image = image.transpose(TRANSPOSE[orientation])
        return encode_still(image, preset)

    return finish


def flatten(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image.convert("RGB") if image.mode != "RGB" else image
    white = Image.new("RGB", image.size, (255, 255, 255))
    white.paste(image, mask=image.getchannel("A"))
    return white


def encode_still(image: Image.Image, preset: Preset) -> Rendered:
    if preset.format == "JPEG":
        # Pillow holds the GIL while it JPEG-encodes into a BytesIO but not while it writes to a file
        # descriptor; an in-memory file lets the other thread keep resizing meanwhile.
        with memory_file() as out:
            flatten(image).save(out, "JPEG", quality=preset.quality, optimize=False, progressive=False)
            out.seek(0)
            data = out.read()
    else:
        buffer = io.BytesIO()
        image.save(buffer, "WEBP", quality=preset.quality, method=4)
        data = buffer.getvalue()
    return Rendered(preset.name, data, image.size[0], image.size[1], preset.format)


def memory_file() -> IO[bytes]:
    if hasattr(os, "memfd_create"):  # Linux, as on Lambda
        return open(os.memfd_create("preset"), "w+b")
    return io.BytesIO()  # pragma: no cover


def describe(rendered: Rendered) -> dict[str, Any]:
    return {
        "width": rendered.width,
        "height": rendered.height,
        "format": rendered.format.lower(),
        "size": len(rendered.data),
    }

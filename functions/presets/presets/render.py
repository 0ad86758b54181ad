"""Render image presets: pure, bytes (or a file) in, encoded images and facts out.

One decode per image. A JPEG is decoded at the smallest DCT scale (``draft``) that still covers the
largest preset; the decoded image is oriented (EXIF), converted to sRGB and 8-bit RGB/RGBA once, and
each preset is then resized from the smallest already-made image that is at least
:data:`DERIVE_FACTOR` times its size (so a thumbnail comes from the preview, never from a blurred
neighbour), with LANCZOS and ``reducing_gap``. Outputs never upscale, keep the aspect ratio, are
bounded in both dimensions, carry no EXIF/GPS/XMP metadata, and keep alpha only where the format
can (WebP); JPEG outputs are flattened on white. Animated GIF/WebP inputs give an animated WebP
thumbnail and preview (at most :data:`MAX_FRAMES` frames); the AI presets take the first frame.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from PIL import Image, ImageCms, ImageOps, ImageSequence, UnidentifiedImageError

from docpipe.errors import FileCorrupt, ImageTooManyPixels

try:  # HEIC/HEIF (iPhone photos); the function's requirements install it.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF = True
except ImportError:  # pragma: no cover - without the plugin HEIC fails as corrupt
    HEIF = False

DEFAULT_MAX_PIXELS = 100_000_000
MAX_FRAMES = 50
DERIVE_FACTOR = 2.0  # derive a preset from a made one only when it is at least this much larger
THREADS = min(2, os.cpu_count() or 1)  # presets rendered side by side
_SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class Preset:
    name: str
    max_width: int
    max_height: int
    format: str  # JPEG | WEBP
    quality: int
    animated: bool  # keeps an animated input's animation (as WebP)


# The presets, in one table: adding a preset is one entry. Every preset bounds both dimensions, so a
# 100 x 20000 strip still gets a bounded preview.
PRESETS: tuple[Preset, ...] = (
    Preset("ai-vision", 2048, 4096, "JPEG", 90, animated=False),
    Preset("ai-chat", 1920, 3840, "JPEG", 85, animated=False),
    Preset("preview", 800, 1600, "JPEG", 85, animated=True),
    Preset("thumbnail", 200, 200, "WEBP", 80, animated=True),
)
BY_NAME = {p.name: p for p in PRESETS}
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


def render(
    source: bytes | IO[bytes], presets: tuple[Preset, ...] = PRESETS, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[Rendered]:
    """Every preset of an image, largest first. Raises ``image.too_many_pixels`` before decoding a bomb, ``file.corrupt`` for broken images."""
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    Image.MAX_IMAGE_PIXELS = None  # our own check below runs first, with our limit and our error
    try:
        with Image.open(file) as image:
            width, height = image.size
            frames = getattr(image, "n_frames", 1)
            if width * height > max_pixels:
                raise ImageTooManyPixels(f"The image is {width} x {height} pixels; the limit is {max_pixels} pixels.")
            animated = frames > 1 and image.format in ("GIF", "WEBP")
            results = _render_still(image, [p for p in presets if not (animated and p.animated)])
            if animated:
                results += _render_animated(image, [p for p in presets if p.animated], max_pixels)
    except (ImageTooManyPixels, FileCorrupt):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise FileCorrupt(f"The image cannot be decoded: {exc}") from exc
    order = {p.name: i for i, p in enumerate(presets)}
    return sorted(results, key=lambda r: order[r.preset])


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    orientation = image.getexif().get(ImageOps.ExifTags.Base.Orientation, 1)
    w, h = image.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _render_still(image: Image.Image, presets: list[Preset]) -> list[Rendered]:
    if not presets:
        return []
    image.seek(0)
    if image.format == "JPEG":
        # Decode at the smallest DCT scale (1/2, 1/4, 1/8) that still covers the largest preset.
        ow, oh = _oriented_size(image)
        need = max(fit(ow, oh, p.max_width, p.max_height) for p in presets)
        # draft() works in stored (unrotated) coordinates.
        need_stored = need if (ow, oh) == image.size else (need[1], need[0])
        scale = min(image.size[0] / need_stored[0], image.size[1] / need_stored[1])
        if scale >= 2:
            image.draft(image.mode if image.mode in ("RGB", "L", "CMYK") else None, (need_stored[0], need_stored[1]))
    base = _normalize(image)
    # Largest first; each preset resizes from the smallest earlier (larger) one that is at least
    # DERIVE_FACTOR times its size, else from the decoded image. Pillow releases the GIL while it
    # resizes and encodes, so independent presets run side by side; a preset only ever waits on one
    # submitted before it, so the pool cannot deadlock.
    ordered = sorted(presets, key=lambda p: p.max_width * p.max_height, reverse=True)
    sizes = {p.name: fit(*base.size, p.max_width, p.max_height) for p in ordered}
    futures: dict[str, Future[tuple[Image.Image, Rendered]]] = {}

    def make(preset: Preset, source: Future[tuple[Image.Image, Rendered]] | None) -> tuple[Image.Image, Rendered]:
        origin = source.result()[0] if source is not None else base
        size = sizes[preset.name]
        resized = origin if origin.size == size else origin.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return resized, _encode_still(resized, preset)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for preset in ordered:
            w, h = sizes[preset.name]
            source = next(
                (
                    futures[q.name]
                    for q in reversed(ordered[: ordered.index(preset)])
                    if sizes[q.name][0] >= w * DERIVE_FACTOR and sizes[q.name][1] >= h * DERIVE_FACTOR
                ),
                None,
            )
            futures[preset.name] = pool.submit(make, preset, source)
        return [futures[p.name].result()[1] for p in ordered]


def _normalize(image: Image.Image) -> Image.Image:
    """Decode once into an upright 8-bit sRGB image: RGB, or RGBA when the input has transparency."""
    icc = image.info.get("icc_profile")
    oriented = ImageOps.exif_transpose(image) or image
    if oriented.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        oriented = oriented.point(lambda v: v / 256).convert("L") if oriented.mode != "I" else oriented.convert("L")
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


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image.convert("RGB") if image.mode != "RGB" else image
    white = Image.new("RGB", image.size, (255, 255, 255))
    white.paste(image, mask=image.getchannel("A"))
    return white


def _encode_still(image: Image.Image, preset: Preset) -> Rendered:
    out = io.BytesIO()
    if preset.format == "JPEG":
        _flatten(image).save(out, "JPEG", quality=preset.quality, optimize=False, progressive=False)
    else:
        image.save(out, "WEBP", quality=preset.quality, method=4)
    return Rendered(preset.name, out.getvalue(), image.size[0], image.size[1], preset.format)


def _render_animated(image: Image.Image, presets: list[Preset], max_pixels: int) -> list[Rendered]:
    """Animated WebP versions of the animated presets, from at most MAX_FRAMES frames."""
    frames: list[Image.Image] = []
    durations: list[int] = []
    budget = max_pixels
    for frame in ImageSequence.Iterator(image):
        if len(frames) >= MAX_FRAMES or budget <= 0:
            break
        budget -= frame.size[0] * frame.size[1]
        frames.append(frame.convert("RGBA"))
        durations.append(int(frame.info.get("duration", 100)) or 100)
    results = []
    for preset in presets:
        size = fit(*frames[0].size, preset.max_width, preset.max_height)
        scaled = [f if f.size == size else f.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0) for f in frames]
        out = io.BytesIO()
        scaled[0].save(
            out,
            "WEBP",
            save_all=True,
            append_images=scaled[1:],
            duration=durations,
            loop=image.info.get("loop", 0),
            quality=preset.quality,
            method=4,
        )
        results.append(Rendered(preset.name, out.getvalue(), size[0], size[1], "WEBP", animated=True))
    return results


def describe(rendered: Rendered) -> dict[str, Any]:
    return {
        "width": rendered.width,
        "height": rendered.height,
        "format": rendered.format.lower(),
        "size": len(rendered.data),
    }

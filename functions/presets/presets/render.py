"""Render image presets: pure, bytes (or a file) in, encoded images and facts out.

One decode per image (:mod:`presets.decode`): a JPEG at the smallest DCT scale that still covers the
largest preset, converted to 8-bit sRGB once. The presets are then made largest first, each resized from
the decoded image or from an image made for a larger preset when that is 2x to 4x its size, as steps
on two threads (:mod:`presets.schedule`), and encoded (:mod:`presets.encode`): never upscaled, the
aspect ratio kept, bounded in both dimensions, no metadata, alpha only where the format keeps it.
Animated GIF/WebP inputs give an animated WebP thumbnail and preview (:mod:`presets.animate`, at most
:data:`MAX_FRAMES` frames, on a canvas of at most :data:`MAX_ANIMATION_PIXELS`); the AI presets take the
first frame. Quality is checked in the tests against a full-resolution LANCZOS resize (PSNR).
"""

from __future__ import annotations

import io
from typing import IO

from PIL import Image

from docpipe import images
from docpipe.errors import FileCorrupt, ImageTooManyPixels
from presets import animate, decode, schedule
from presets.decode import MAX_FRAMES
from presets.encode import Preset, Rendered, describe, fit

__all__ = ["BY_NAME", "DEFAULT_MAX_PIXELS", "MAX_FRAMES", "PRESETS", "Preset", "Rendered", "describe", "fit", "render"]

DEFAULT_MAX_PIXELS = 100_000_000
# An animation's frames are decoded as RGBA and held together, beside the decoder's own canvases (two, for
# a WebP) and Pillow's frame: several times a still's memory per pixel. An animation whose canvas is larger
# gets still presets from its first frame, as the AI presets do (a 614-byte WebP whose canvas said
# 32 x 2778257 took 2.7 GB animated, over PresetsFunction's 2048 MB, and 1.4 GB as a still).
MAX_ANIMATION_PIXELS = 25_000_000

# The presets, in one table: adding a preset is one entry. Every preset bounds both dimensions, so a
# 100 x 20000 strip still gets a bounded preview.
PRESETS: tuple[Preset, ...] = (
    Preset("ai-vision", 2048, 4096, "JPEG", 90, animated=False),
    Preset("ai-chat", 1920, 3840, "JPEG", 85, animated=False),
    Preset("preview", 800, 1600, "JPEG", 85, animated=True),
    Preset("thumbnail", 200, 200, "WEBP", 80, animated=True),
)
BY_NAME = {p.name: p for p in PRESETS}


def render(
    source: bytes | IO[bytes], presets: tuple[Preset, ...] = PRESETS, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[Rendered]:
    """Every preset of an image, largest first. Raises ``image.too_many_pixels`` before decoding a frame of
    more than ``max_pixels`` pixels (the first frame, a later frame of an animation, a GIF frame that
    grows the canvas), ``file.corrupt`` for broken images, images of formats docpipe does not accept,
    and JPEGs of more scans than :data:`~docpipe.filetypes.MAX_JPEG_SCANS` (a CPU bomb)."""
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with decode.open_image(file, max_pixels) as image:
            frames = getattr(image, "n_frames", 1)
            animated = (
                frames > 1 and image.format in ("GIF", "WEBP") and image.size[0] * image.size[1] <= MAX_ANIMATION_PIXELS
            )
            stills = [p for p in presets if not (animated and p.animated)]
            if not animated:
                plans = still_plans(image, stills)
            else:  # the AI presets take the first frame; each animation is encoded by one step
                decoded, durations = decode.animation_frames(image, max_pixels)
                loop = int(image.info.get("loop", 0))
                plans = still_plans(decoded[0], stills)
                cuts = animate.cuts(decoded)  # the same frames for every animated preset, in either plan
                for steps, finishes in plans:
                    for preset in presets:
                        if preset.animated:
                            steps += animate.animation_steps(decoded, durations, loop, preset, cuts)
                            finishes.append(steps[-1])
            steps, finishes = min(plans, key=lambda plan: schedule.makespan(plan[0]))
            schedule.run_steps(steps)
            results = [f.result for f in finishes]
    except (ImageTooManyPixels, FileCorrupt):
        raise
    except Exception as exc:  # Pillow's (and pillow-heif's) failures on the bytes; a bug of ours propagates
        if not images.decoder_failed(exc):
            raise
        raise FileCorrupt(f"The image cannot be decoded: {exc}") from exc
    order = {p.name: i for i, p in enumerate(presets)}
    return sorted(results, key=lambda r: order[r.preset])


def still_plans(image: Image.Image, presets: list[Preset]) -> list[schedule.Plan]:
    """Plans for an image's still presets: one decode (here), then every preset resized from the smallest
    image made for a larger preset that is 2x to 4x its size, else from the decoded image
    (:data:`~presets.schedule.DERIVE_BAND`), and encoded. Two plans, for the caller to pick by
    :func:`~presets.schedule.makespan`: large resizes split in stripes (both threads on one resize, then a
    join) or each resize on one thread (two big resizes side by side need no join).

    Resizes run in the image's stored orientation; each output is turned upright (EXIF) as it is encoded,
    so rotating never sits between two resizes. The orientation is applied once: Pillow turns a TIFF
    upright itself as it decodes it (and drops its Orientation tag), so an image other than a JPEG is
    decoded first and the orientation still to apply is read from the decoded image; a JPEG's is read
    before (its decode scale depends on the output sizes), and Pillow leaves JPEGs as stored.
    """
    if not presets:
        return [([], [])]
    image.seek(0)
    if image.format not in images.JPEG_FORMATS:
        image.load()
    orientation = decode.orientation_of(image)
    swap = orientation in (5, 6, 7, 8)
    stored_w, stored_h = image.size
    upright = (stored_h, stored_w) if swap else (stored_w, stored_h)
    # Output sizes, in stored coordinates (width and height exchanged for a quarter turn).
    sizes = {}
    for p in presets:
        w, h = fit(*upright, p.max_width, p.max_height)
        sizes[p.name] = (h, w) if swap else (w, h)
    scaled = None
    if image.format in images.JPEG_FORMATS:
        need = max(sizes.values(), key=lambda s: s[0] * s[1])
        scaled = decode.decode_jpeg(image, need)
        # Otherwise Pillow decodes, at the smallest of its DCT scales (1/2, 1/4, 1/8) that covers the largest preset.
        if scaled is None and min(stored_w / need[0], stored_h / need[1]) >= 2:
            image.draft(image.mode if image.mode in ("RGB", "L", "CMYK") else None, need)
    decoded = decode.normalize(scaled or image)
    return [schedule.plan(decoded, presets, sizes, orientation, striped) for striped in (True, False)]

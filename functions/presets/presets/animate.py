"""Animated presets: an animation's frames encoded as an animated WebP, in runs side by side, then joined.

libwebp encodes an animation frame after frame on one thread; the frames are cut in runs at the frames
that change most of the picture, each run is encoded as an animation of its own on a thread, and the
runs are joined by their RIFF chunks.
"""

from __future__ import annotations

import io
import itertools

from PIL import Image, ImageChops

from presets import schedule
from presets.encode import Preset, Rendered, fit
from presets.schedule import NS_PER_PIXEL, Step, resize, resize_cost


def animation_steps(
    frames: list[Image.Image], durations: list[int], loop: int, preset: Preset, cuts: list[int]
) -> list[Step]:
    """One animated preset as steps. libwebp encodes an animation frame after frame on one thread, so the
    frames are cut in :data:`~presets.schedule.THREADS` runs at ``cuts``, the frames that change most of the picture
    (:func:`cuts`), each run is encoded as an animation of its own, side by side, and a last step joins them
    (:func:`join_animations`); with no such frame, or too few frames, one step encodes the whole."""
    size = fit(*frames[0].size, preset.max_width, preset.max_height)
    per_frame = size[0] * size[1] * NS_PER_PIXEL["WEBP"] / 1e6 + resize_cost(frames[0].size, size)
    edges = [0, *cuts, len(frames)]
    parts = [
        Step(lambda a=a, b=b: encode_animated(frames[a:b], durations[a:b], loop, preset), (b - a) * per_frame)
        for a, b in itertools.pairwise(edges)
    ]
    if len(parts) == 1:
        return parts

    def join(*encoded: Rendered) -> Rendered:
        data = join_animations([r.data for r in encoded])
        if data is None:  # a run's first frame does not cover the picture: encode the whole, once
            return encode_animated(frames, durations, loop, preset)
        return Rendered(preset.name, data, size[0], size[1], "WEBP", animated=True)

    return [*parts, Step(join, 0.1, tuple(parts))]


# A run of an animation starts at a frame that changes at least this share of the picture from the one
# before: libwebp would encode most of such a frame anyway, so starting over there (a key frame) costs
# little. Measured on animations that change a small moving part of the picture, cutting elsewhere adds
# up to a key frame's bytes per cut.
CUT_MIN_CHANGE = 0.5


def cuts(frames: list[Image.Image]) -> list[int]:
    """Where to cut an animation into :data:`~presets.schedule.THREADS` runs of at least 2 frames (Pillow
    writes one frame as a still image): at the frame nearest each even share of the frames that changes at least
    :data:`CUT_MIN_CHANGE` of the picture, within half a run of it; none where no frame does."""
    found: list[int] = []
    if len(frames) < 2 * schedule.THREADS:
        return found
    area = frames[0].size[0] * frames[0].size[1]
    for n in range(1, schedule.THREADS):
        ideal = len(frames) * n / schedule.THREADS
        low = (found[-1] if found else 0) + 2
        near = [k for k in range(low, len(frames) - 1) if abs(k - ideal) <= len(frames) / (2 * schedule.THREADS)]
        for k in sorted(near, key=lambda k: abs(k - ideal)):
            box = ImageChops.difference(frames[k], frames[k - 1]).getbbox(alpha_only=False)
            if box and (box[2] - box[0]) * (box[3] - box[1]) >= CUT_MIN_CHANGE * area:
                found.append(k)
                break
    return found


def riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a WebP file (RIFF): (four-character code, payload)."""
    chunks = []
    at = 12
    while at + 8 <= len(data):
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        chunks.append((data[at : at + 4], data[at + 8 : at + 8 + size]))
        at += 8 + size + (size & 1)
    return chunks


def join_animations(parts: list[bytes]) -> bytes | None:
    """Animated WebPs of the same canvas played one after the other, as one animated WebP: the first's
    header chunks (VP8X with the parts' alpha flag, ANIM), then every part's frames (ANMF). A part
    starts on a blank canvas, so its first frame is joined without blending and only when it covers the
    whole canvas (libwebp crops a first frame to its visible pixels); otherwise None."""
    chunks = [riff_chunks(part) for part in parts]
    head = [(code, bytearray(payload)) for code, payload in chunks[0] if code != b"ANMF"]
    vp8x = next((payload for code, payload in head if code == b"VP8X"), None)
    if vp8x is None or any(not any(code == b"VP8X" for code, _ in part) for part in chunks):
        return None  # not animations (Pillow writes one frame as a still image)
    canvas = vp8x[4:10]  # width - 1 and height - 1, 24 bits each
    frames: list[bytearray] = []
    for i, part in enumerate(chunks):
        anmf = [bytearray(payload) for code, payload in part if code == b"ANMF"]
        if not anmf:
            return None
        if i:
            first = anmf[0]
            if first[0:6] != bytes(6) or first[6:12] != canvas:
                return None
            first[15] |= 0b10  # do not blend: the frame replaces the canvas, as it did on a blank one
            vp8x[0] |= next(payload for code, payload in part if code == b"VP8X")[0] & 0x10  # alpha
        frames += anmf
    body = b"".join(
        code + len(payload).to_bytes(4, "little") + payload + b"\0" * (len(payload) & 1)
        for code, payload in [
            *((code, bytes(payload)) for code, payload in head),
            *((b"ANMF", bytes(f)) for f in frames),
        ]
    )
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WEBP" + body


def encode_animated(frames: list[Image.Image], durations: list[int], loop: int, preset: Preset) -> Rendered:
    """An animated WebP of one preset. Key frames only where libwebp needs them (libvips' default too):
    20-25% faster than Pillow's default key-frame search, for the same size within 0.1%."""
    size = fit(*frames[0].size, preset.max_width, preset.max_height)
    scaled = [f if f.size == size else resize(f, size) for f in frames]
    out = io.BytesIO()
    scaled[0].save(
        out,
        "WEBP",
        save_all=True,
        append_images=scaled[1:],
        duration=durations,
        loop=loop,
        quality=preset.quality,
        method=4,
        kmin=2**31 - 2,
        kmax=2**31 - 1,
    )
    return Rendered(preset.name, out.getvalue(), size[0], size[1], "WEBP", animated=True)

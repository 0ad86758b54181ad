"""Scheduling a still image's presets: resizes and encodes as steps on two threads.

Each preset is resized (Lanczos3 on SIMD convolutions; Pillow's BICUBIC where those do not install) from
the decoded image, or from an image made for a larger preset when that is 2x to 4x its size, in the
stored orientation. Resizes and encodes run as steps on two threads, the longest chain of work first; a
large resize is split in stripes when the estimated schedule says that finishes sooner than running the
big resizes side by side.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from PIL import Image

from presets.encode import ALPHA_FORMATS, Preset, finisher, flatten

try:  # SIMD convolution resizes (fast_image_resize); wheels for x86_64 Linux (the function's), macOS, Windows.
    from cykooz_resizer import CropBox, FilterType, ResizeAlg, ResizeOptions, Resizer
except ImportError:  # pragma: no cover - elsewhere (arm64 Linux) Pillow resizes: BICUBIC, 5-6x slower
    Resizer = None

THREADS = min(2, os.cpu_count() or 1)  # resize stripes and encodes run side by side
STRIPE_MIN_PIXELS = 250_000  # smaller outputs resize on one thread
# A preset derives from an image made for a larger one only when that image is 2x to 4x its size.
# Measured against a direct resize from the full image on fine line-and-text patterns: a mild step
# (ai-chat from ai-vision, 1.07x) re-blurs detail near the cut-off (-1.1 dB), and a chain of strong
# steps compounds phase errors (thumbnail from preview, -0.9 dB); inside the band it is within 0.2 dB.
# Outside it the decoded image is the source.
DERIVE_BAND = (2.0, 4.0)
# Resizes run on cykooz.resizer (fast_image_resize: AVX2/SSE4.1 convolutions, the GIL released) with the
# Lanczos3 filter, sharp's default: the same pixels as Pillow's LANCZOS within rounding, for a large
# output 7-8x faster than Pillow's LANCZOS and 5-6x faster than its BICUBIC; a strong reduction (a
# thumbnail of a 12 MP photo) costs about what Pillow's BICUBIC after a box ``reduce()`` costs, and that
# box average first loses up to 1.1 dB on fine detail, so there is none. Measured against a
# full-resolution LANCZOS reference after JPEG/WebP encoding (photo-like and fine line-and-text
# 4000 x 3000 JPEGs, orientations 1 and 6, 2000 x 1500 PNGs), every preset is within -0.4 to +0.3 dB
# of a plain LANCZOS resize; the bicubic filter on the same resizer saves a quarter of the resize time
# but loses up to 0.8 dB. Where the wheel does not install (Linux on arm64) Pillow resizes with
# BICUBIC and ``reducing_gap``: -0.6 to +1.6 dB (the WebP thumbnail with alpha gains), 30-40% cheaper
# than its LANCZOS.
RESAMPLE = Image.Resampling.BICUBIC  # Pillow's
REDUCING_GAP = 3.0  # Pillow only: big reductions reduce() by an integer factor first, leaving >= 3x for the filter
FIR_MODES = frozenset({"RGB", "RGBA", "L"})
# The SIMD resizer's filter weights take about 50 bytes per source pixel of the longer reduced axis, whatever
# the output's size: a 1 x 16,777,246 PNG (16.7 MP, under the pixel limit) took 960 MB and 11 s per resize,
# and two side by side passed PresetsFunction's memory (found by fuzzing). Past this factor on an axis,
# Pillow resizes instead: an integer box ``reduce()`` first (``REDUCING_GAP``), then Lanczos on what is left.
# A photo's presets stay far below it (a 100 MP square's thumbnail: 50x).
EXTREME_REDUCTION = 64


def resize(
    image: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float] | None = None
) -> Image.Image:
    """``image`` (or its ``box``, as Pillow's: left, top, right, bottom) resized to ``size``: by the SIMD
    resizer (Lanczos3) when it is installed and takes the mode, else by Pillow (BICUBIC); an extreme
    reduction (:data:`EXTREME_REDUCTION`) by Pillow's box reduce and Lanczos."""
    left, top, right, bottom = box or (0, 0, *image.size)
    if max((right - left) / size[0], (bottom - top) / size[1]) > EXTREME_REDUCTION:
        return image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    if Resizer is None or image.mode not in FIR_MODES:
        return image.resize(size, RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    options = ResizeOptions(resize_alg=ResizeAlg.convolution(FilterType.lanczos3))
    if box is not None:
        options.crop_box = CropBox(box[0], box[1], box[2] - box[0], box[3] - box[1])
    out = Image.new(image.mode, size)
    Resizer().resize_pil(image, out, options)  # a resizer per call: it keeps buffers between calls
    return out


def derivable(made: tuple[int, int], size: tuple[int, int]) -> bool:
    low, high = DERIVE_BAND
    ratios = (made[0] / size[0], made[1] / size[1])
    return min(ratios) >= low and max(ratios) < high


@dataclass(eq=False)
class Step:
    """One piece of work of an image's presets: a resize (or one stripe of it), or an encode."""

    run: Callable[..., Any]
    cost: float  # estimated CPU time in ms (:func:`resize_cost`, :data:`NS_PER_PIXEL`); only the order matters
    after: tuple[Step, ...] = ()  # steps whose results ``run`` takes, in order
    rank: float = 0.0  # cost of the longest chain from here to the end (list scheduling priority)
    result: Any = None
    done: bool = False


def rank(steps: list[Step]) -> None:
    """Set every step's rank: the cost of the longest chain of work from it to the end."""
    for step in steps:
        step.rank = step.cost
    for step in reversed(steps):  # steps are listed after the steps they need: ranks settle back to front
        for needed in step.after:
            needed.rank = max(needed.rank, needed.cost + step.rank)


def ready(pending: list[Step], done: set[int]) -> list[Step]:
    """The pending steps whose inputs are done (or in ``done``), the one heading the longest chain first."""
    return sorted((s for s in pending if all(n.done or id(n) in done for n in s.after)), key=lambda s: -s.rank)


def run_steps(steps: list[Step]) -> None:
    """Run every step on :data:`THREADS` threads, each once the steps it needs are done; among the ready
    ones the step heading the longest chain of work goes first (list scheduling by critical path).
    Pillow releases the GIL in resize, transpose, convert and file encodes, so the steps run in parallel."""
    rank(steps)
    pending = list(steps)
    running: dict[Future[Any], Step] = {}
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        while pending or running:
            for step in ready(pending, set())[: THREADS - len(running)]:
                pending.remove(step)
                running[pool.submit(step.run, *(n.result for n in step.after))] = step
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                step = running.pop(future)
                step.result, step.done = future.result(), True


def makespan(steps: list[Step]) -> float:
    """The estimated time (ms) :func:`run_steps` takes for the steps: the same schedule, on their costs."""
    rank(steps)
    pending = list(steps)
    done: set[int] = set()
    running: list[tuple[float, Step]] = []  # (finish time, step), in the order they started
    now = 0.0
    while pending or running:
        for step in ready(pending, done)[: THREADS - len(running)]:
            pending.remove(step)
            running.append((now + step.cost, step))
        running.sort(key=lambda r: r[0])  # stable: of two ending together, the first started ends first
        now, step = running.pop(0)
        done.add(id(step))
    return now


# Estimated CPU cost per output pixel (ns), measured on a 2-core x86_64 machine: JPEG and WebP encodes,
# a quarter turn, flattening on white, pasting stripes together.
NS_PER_PIXEL = {"JPEG": 3.5, "WEBP": 120.0, "transpose": 5.0, "flatten": 4.0, "join": 3.0}


def resize_cost(source: tuple[int, int], size: tuple[int, int]) -> float:
    """Estimated ms of a resize. Both passes read about ``taps`` times the reduction factor source pixels
    per output pixel: the horizontal pass for every source row, the vertical one per output pixel.
    Measured on a 2-core x86_64 machine: Lanczos3 (6 taps) on the SIMD resizer about 0.25 ns per read;
    Pillow's BICUBIC (4 taps) 2.6 ns, after its ``reduce()`` (:data:`REDUCING_GAP`, about 1 ns per source
    pixel)."""
    cost, per_read, taps = 0.0, 0.25e-6, 6
    if Resizer is None:
        per_read, taps = 2.6e-6, 4
        if max(source[0] / size[0], source[1] / size[1]) >= 2 * REDUCING_GAP:
            cost += source[0] * source[1] * 1e-6
            factors = (max(1, int(source[0] / size[0] / REDUCING_GAP)), max(1, int(source[1] / size[1] / REDUCING_GAP)))
            source = (source[0] // factors[0], source[1] // factors[1])
    taps_x, taps_y = taps * max(1.0, source[0] / size[0]), taps * max(1.0, source[1] / size[1])
    return cost + per_read * (source[1] * size[0] * taps_x + size[1] * size[0] * taps_y)


def resize_steps(origin: Step, source: tuple[int, int], size: tuple[int, int], striped: bool = True) -> list[Step]:
    """A resize as steps: when ``striped``, a large output in horizontal stripes, one per thread, each
    reading the source rows its kernel needs (Pillow's ``box``), joined by a last step; the result matches
    a single resize up to rounding at the seams."""
    width, height = size
    cost = resize_cost(source, size)
    if not striped or width * height < STRIPE_MIN_PIXELS:
        return [Step(lambda image: resize(image, size), cost, (origin,))]
    scale = source[1] / height
    edges = [round(height * i / THREADS) for i in range(THREADS + 1)]

    def stripe(top: int, bottom: int) -> Callable[[Image.Image], Image.Image]:
        # the last stripe ends at the source's edge, not past it: 3024 / 726 * 726 is 3024.0000000000005,
        # which the resizers refuse (cykooz's RuntimeError, Pillow's ValueError)
        box = (0.0, top * scale, float(source[0]), min(bottom * scale, float(source[1])))
        return lambda image: resize(image, (width, bottom - top), box)

    stripes = [Step(stripe(top, bottom), cost / THREADS, (origin,)) for top, bottom in itertools.pairwise(edges)]

    def join(*parts: Image.Image) -> Image.Image:
        out = Image.new(parts[0].mode, size)
        for top, part in zip(edges[:-1], parts, strict=True):
            out.paste(part, (0, top))
        return out

    return [*stripes, Step(join, width * height * NS_PER_PIXEL["join"] / 1e6, tuple(stripes))]


# A plan: every step of an image's presets, and the steps giving the results.
Plan = tuple[list[Step], list[Step]]


def plan(
    decoded: Image.Image, presets: list[Preset], sizes: dict[str, tuple[int, int]], orientation: int, striped: bool
) -> Plan:
    steps: list[Step] = []
    # Images made so far, largest first, per "keeps alpha": JPEG presets of a transparent image come from
    # it flattened on white (a step of its own), WebP presets from the image itself.
    made: dict[bool, list[tuple[tuple[int, int], Step]]] = {}
    finishes: list[Step] = []
    decoded_step = Step(lambda: decoded, 0.0, result=decoded, done=True)
    for preset in sorted(presets, key=lambda p: sizes[p.name][0] * sizes[p.name][1], reverse=True):
        keep_alpha = decoded.mode == "RGBA" and preset.format in ALPHA_FORMATS
        if keep_alpha not in made:
            base = decoded_step
            if decoded.mode == "RGBA" and not keep_alpha:
                base = Step(flatten, decoded.size[0] * decoded.size[1] * NS_PER_PIXEL["flatten"] / 1e6, (base,))
                steps.append(base)
            made[keep_alpha] = [(decoded.size, base)]
        size = sizes[preset.name]
        chain = made[keep_alpha]
        source, origin = next(((s, m) for s, m in reversed(chain[1:]) if derivable(s, size)), chain[0])
        if source != size:
            steps += resize_steps(origin, source, size, striped)
            origin = steps[-1]
        chain.append((size, origin))
        per_pixel = NS_PER_PIXEL[preset.format] + (NS_PER_PIXEL["transpose"] if orientation != 1 else 0)
        finishes.append(Step(finisher(preset, orientation), size[0] * size[1] * per_pixel / 1e6, (origin,)))
    return steps + finishes, finishes

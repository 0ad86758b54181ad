"""The preset renderer on the kinds of images real files turned out to be: animations whose later frames
outgrow the first, TIFF orientations, BigTIFF, 32-bit grayscale, multi-page TIFFs. Every file is built here."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from docpipe.errors import ImageTooManyPixels
from presets.render import render
from tests.fixtures.poison import gif_growing_canvas

ROOT = Path(__file__).resolve().parents[2]


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def by_name(results) -> dict:
    return {r.preset: r for r in results}


def opened(rendered) -> Image.Image:
    return Image.open(io.BytesIO(rendered.data))


# --- every frame within the pixel budget before it is decoded ----------------------------------------

# In a process of its own, with 3 GB of address space: a renderer that allocated the grown canvas
# would fail here with a MemoryError instead of taking the test machine's memory.
_RENDER_IN_A_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
sys.path[:0] = [sys.argv[1] + "/layers/docpipe", sys.argv[1] + "/functions/presets"]
from presets.render import render
data = sys.stdin.buffer.read()
started = time.perf_counter()
try:
    render(data)
    outcome = "rendered"
except Exception as exc:
    outcome = getattr(exc, "code", type(exc).__name__)
seconds = time.perf_counter() - started
# this process's peak resident memory (VmHWM: ru_maxrss would count the test process it was forked from)
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak_mb": peak_kb / 1024}))
"""


def test_a_gif_whose_later_frame_grows_the_canvas_is_refused_at_once_without_memory() -> None:
    # given a 217-byte GIF whose second frame's extents grow the canvas to 65635 x 65635
    data = gif_growing_canvas()
    assert len(data) < 300

    # when it is rendered in a process of its own
    run = subprocess.run(
        [sys.executable, "-c", _RENDER_IN_A_CHILD, str(ROOT)], input=data, capture_output=True, timeout=120
    )

    # then it is image.too_many_pixels, in well under a second, and no canvas was ever allocated
    assert run.returncode == 0, run.stderr.decode()
    measured = json.loads(run.stdout)
    assert measured["outcome"] == "image.too_many_pixels", measured
    assert measured["seconds"] < 0.5, measured
    assert measured["peak_mb"] < 300, measured  # the interpreter and its imports; the canvas is 4.3 GB


def test_the_refusal_names_the_frame_and_the_canvas_it_would_grow_to() -> None:
    # (a small canvas and budget: were the check missing, this process would allocate 4 MP, not 4.3 GP)
    with pytest.raises(ImageTooManyPixels, match="Frame 2 of the GIF grows its canvas to 2000 x 2000 pixels"):
        render(gif_growing_canvas(side=1_900), max_pixels=1_000_000)


def animation(frames: int, size: tuple[int, int] = (200, 100)) -> bytes:
    images = []
    for i in range(frames):
        frame = Image.new("RGB", size, ((i * 53) % 256, 90, 200))
        ImageDraw.Draw(frame).rectangle((i * 10, 20, i * 10 + 30, 60), fill=(255, 255, 0))
        images.append(frame)
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=60, loop=0)


def test_an_animation_ends_before_the_frame_that_would_pass_the_budget_not_after_it() -> None:
    # given 10 frames of 200 x 100 and a budget of 3.5 frames' pixels
    results = by_name(render(animation(10), max_pixels=70_000))

    # then the animated presets keep the 3 frames that fit: the 4th is not decoded
    assert opened(results["thumbnail"]).n_frames == 3
    assert opened(results["preview"]).n_frames == 3


def test_a_gif_frame_past_the_budget_is_refused_even_when_the_canvas_grows_little_by_little() -> None:
    # given 6 frames, each one 400 px further right and down than the last: the canvas ends at 2100 x 2100
    out = io.BytesIO()
    Image.new("P", (100, 100), 0).save(out, "GIF")
    data = out.getvalue()[:-1]
    for step in range(1, 6):
        data += b"\x21\xf9\x04\x00\x0a\x00\x00\x00" + b"\x2c"
        data += (step * 400).to_bytes(2, "little") * 2 + (100).to_bytes(2, "little") * 2 + b"\x00"
        data += b"\x02\x02\x44\x01\x00"
    data += b"\x3b"

    # then a budget of 4 MP stops it at the frame whose canvas passes it (the 6th: 2100 x 2100)
    with pytest.raises(ImageTooManyPixels, match="Frame 6 of the GIF grows its canvas to 2100 x 2100"):
        render(data, max_pixels=4_000_000)


# --- TIFF orientation, applied once -------------------------------------------------------------------

# What to do to an upright picture to store it with each orientation (the inverse of what a viewer does).
STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiffs_orientation_is_applied_once(orientation: int) -> None:
    # given a 600 x 300 picture, blue with a red top-left quarter as displayed, stored in a TIFF turned
    # the other way and carrying the Orientation tag (274) that turns it back
    upright = Image.new("RGB", (600, 300), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 300, 150))
    turn = STORED_AS[orientation]
    stored = upright if turn is None else upright.transpose(turn)
    data = encode(stored, "TIFF", tiffinfo={274: orientation})

    preview = opened(by_name(render(data))["preview"])

    # then the preview shows it upright: landscape, red at the top left, blue elsewhere
    assert preview.size == (600, 300)
    red, blue = preview.getpixel((20, 20)), preview.getpixel((580, 280))
    assert red[0] > 200 and red[2] < 50, red
    assert blue[2] > 200 and blue[0] < 50, blue
    assert preview.getpixel((580, 20))[2] > 200 and preview.getpixel((20, 280))[2] > 200


# --- BigTIFF ------------------------------------------------------------------------------------------


def test_a_bigtiff_renders_like_a_tiff() -> None:
    from tests.fixtures.poison import bigtiff

    picture = Image.new("RGB", (1200, 900), (0, 0, 255))
    picture.paste((255, 0, 0), (0, 0, 600, 450))

    results = by_name(render(bigtiff(picture)))

    preview = opened(results["preview"])
    assert preview.size == (800, 600)
    assert preview.getpixel((20, 20))[0] > 200 and preview.getpixel((780, 580))[2] > 200


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's, on the cut directory
def test_a_broken_bigtiff_is_corrupt() -> None:
    from docpipe.errors import FileCorrupt
    from tests.fixtures.poison import bigtiff_broken

    with pytest.raises(FileCorrupt):
        render(bigtiff_broken())


# --- grayscale wider than 8 bits ----------------------------------------------------------------------


def bands(mode: str, levels: list[float], size: tuple[int, int] = (400, 500)) -> Image.Image:
    """Horizontal bands, one per level, from the first (top) to the last (bottom), in ``mode``."""
    image = Image.new("F", size)
    rows = size[1] // len(levels)
    for i, level in enumerate(levels):
        image.paste(level, (0, i * rows, size[0], (i + 1) * rows))
    if mode == "F":
        return image
    integers = image.convert("I")
    return integers if mode == "I" else integers.convert(mode)


@pytest.mark.parametrize(
    ("mode", "levels"),
    [
        ("I", [5000 + 1000 * i for i in range(100)]),  # 32-bit integer counts, far above 255
        ("I;16", [40 * i for i in range(100)]),  # 12-bit data in 16 bits: /256 would leave 16 levels
        ("F", [i / 99 for i in range(100)]),  # 32-bit float, 0 to 1
    ],
    ids=["int32", "int16-of-12-bits", "float32"],
)
def test_a_wide_grayscale_gradient_keeps_its_levels(mode: str, levels: list[float]) -> None:
    # given a TIFF of 100 gray levels in a mode wider than 8 bits
    source = bands(mode, levels)
    assert source.mode == mode
    data = encode(source, "TIFF")

    preview = opened(by_name(render(data))["preview"]).convert("L")

    # then the preview keeps them apart, dark at the top to light at the bottom (clipping left 1 or 2)
    seen = [preview.getpixel((200, 5 * i + 2)) for i in range(100)]
    assert len(set(seen)) >= 50, seen
    assert seen[0] < 10 and seen[-1] > 245
    assert all(b >= a - 2 for a, b in itertools.pairwise(seen)), seen


# --- multi-page TIFF ----------------------------------------------------------------------------------


def test_the_presets_of_a_multi_page_tiff_come_from_its_first_page() -> None:
    first = Image.new("RGB", (900, 600), (200, 30, 30))
    later = [Image.new("RGB", (300, 900), (30, 30, 200)), Image.new("RGB", (1000, 1000), (30, 200, 30))]
    data = encode(first, "TIFF", save_all=True, append_images=later)

    results = by_name(render(data))

    preview = opened(results["preview"])
    assert (preview.size, results["preview"].animated) == ((800, 533), False)
    assert preview.getpixel((400, 260))[0] > 180

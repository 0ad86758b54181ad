"""Every crash the fuzz suite found, kept as the file that made it (``tests/fixtures/fuzz/crashes/``) and
replayed: through the whole job as the functions run it, and through the function that crashed.

A new crash is added by copying the mutation the failing run saved into that folder under a name that
says what is wrong with it (keeping its extension: ingest checks the bytes against it), and listing it
in :data:`CRASHES` with the code the job must now end with.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from docpipe import images
from docpipe.errors import FileCorrupt
from docpipe_local.template import Template
from tests.fuzz import pipeline

FOLDER = Path(__file__).resolve().parents[1] / "fixtures" / "fuzz" / "crashes"
pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore::UserWarning")]  # Pillow's, on damaged metadata

LIMITS = pipeline.Limits(memory_mb=dict.fromkeys(pipeline.FUNCTIONS, 4096))

# file -> (the job's outcome now: "ready" or an error code, what it did before the fix)
CRASHES: dict[str, tuple[str, str]] = {
    "tiff-page-without-dimensions.tif": (
        "file.corrupt",
        "TypeError (Missing dimensions) out of Pillow counting the pages: presets and OCR",
    ),
    "tiff-unknown-compression.tif": ("file.corrupt", "KeyError out of Pillow counting the pages: presets and OCR"),
    "tiff-unknown-data-organization.tif": (
        "file.corrupt",
        "SyntaxError out of Pillow counting the pages in OCR's page_count (presets caught it)",
    ),
    "gif-cut-in-a-frame-descriptor.gif": ("file.corrupt", "struct.error out of Pillow counting the frames: presets"),
    "gif-frame-palette-past-the-end.gif": ("file.corrupt", "IndexError out of Pillow counting the frames: presets"),
    "heic-too-wide-for-libheif.heic": (
        "file.corrupt",
        "RuntimeError out of libheif (an ispe of 153876525 x 64) as presets and OCR decode it",
    ),
    "png-broken-pixels.png": (
        "file.corrupt",
        "OSError out of Pillow as Textract's bytes were made: a PNG's EXIF is looked for after its pixels",
    ),
    "gif-first-frame-40480x39076.gif": (
        "image.too_many_pixels",
        "1.6 GB in ingest's image_size, over IngestFunction's 512 MB: Pillow fills a GIF's first frame as it opens it",
    ),
    "webp-animation-canvas-32x2778257.webp": (
        "ready",
        "2.7 GB in presets, over PresetsFunction's 2048 MB: an 89 MP animation's frames held as RGBA beside libwebp's canvases",
    ),
    "png-gray16-1x16777246.png": (
        "ready",
        "2.1 GB in presets, over PresetsFunction's 1769 MB: the SIMD resizer's filter weights for a 16.7 M-pixel axis "
        "(960 MB a resize, whatever the output's size), two resizes side by side",
    ),
    "gif-10272x6144-stripe-past-the-edge.gif": (
        "ready",
        "RuntimeError out of the resizer: presets' last stripe of a striped resize ended past the source's edge",
    ),
    "xlsx-row-4294967295.xlsx": (
        "ready",
        "openpyxl fills every row missing before a row's number: a row numbered 4294967295 hung extract",
    ),
    "docx-zip-version-8.4.docx": (
        "file.corrupt",
        "NotImplementedError out of zipfile as ingest read the directory (found in a mutated deck.pptx: the "
        "central directory's version needed to extract set to 8.4; kept as the same field in the small letter)",
    ),
    "docx-grid-span-2147483648.docx": (
        "ready",
        "python-docx's row.cells repeats a cell per grid column it spans: 2**31 of them, past any time limit",
    ),
}


def _read(name: str) -> bytes:
    return (FOLDER / name).read_bytes()


def test_every_crash_file_is_listed_with_its_outcome() -> None:
    assert sorted(p.name for p in FOLDER.iterdir()) == sorted(CRASHES)


@pytest.mark.parametrize("name", sorted(CRASHES))
def test_a_crash_found_by_fuzzing_now_ends_the_job_with_a_result_or_its_code(name: str, template: Template) -> None:
    wanted, _ = CRASHES[name]

    job = pipeline.process(_read(name), name, LIMITS)

    assert (job.code or job.status) == wanted
    # each stage ends within its function's Timeout (a hang, such as 2**31 cells, does not); the huge
    # animation's presets take about 5 s of PresetsFunction's 60 on an idle machine
    timeouts = {stage: template.function(logical).timeout for stage, logical in pipeline.FUNCTIONS.items()}
    assert {stage: seconds for stage, (seconds, _) in job.stages.items() if seconds >= timeouts[stage]} == {}


IMAGES = [name for name, (code, _) in sorted(CRASHES.items()) if code == "file.corrupt" and not name.endswith(".docx")]


@pytest.mark.parametrize("name", IMAGES)
def test_presets_refuse_a_damaged_image_as_corrupt_whatever_pillow_raises(name: str) -> None:
    from presets.render import render

    with pytest.raises(FileCorrupt):
        render(_read(name))


@pytest.mark.parametrize("name", IMAGES)
def test_ocr_reads_a_damaged_image_or_refuses_it_as_corrupt(name: str) -> None:
    from PIL import Image

    from ocr.pages import load_pages, page_count

    data = _read(name)
    try:
        pages = [page for _, page in load_pages(data, list(range(1, page_count(data) + 1)))]
    except FileCorrupt:
        return
    assert all(isinstance(page, Image.Image | FileCorrupt) for page in pages)


@pytest.mark.parametrize("name", ["tiff-page-without-dimensions.tif", "tiff-unknown-data-organization.tif"])
def test_the_pages_of_a_tiff_whose_directories_cannot_be_read_are_corrupt(name: str) -> None:
    from ocr.pages import page_count

    with pytest.raises(FileCorrupt):
        page_count(_read(name))


def test_textract_bytes_of_a_png_whose_pixels_are_broken_are_corrupt() -> None:
    from ocr.engines import sync_image_bytes

    with pytest.raises(FileCorrupt):
        sync_image_bytes(_read("png-broken-pixels.png"))


def test_an_exception_raised_in_docpipe_code_is_not_taken_for_a_decoder_failure() -> None:
    from PIL import Image

    def ours() -> None:
        raise TypeError("a bug of ours")

    with pytest.raises(TypeError) as bug:
        ours()
    with pytest.raises(OSError) as pillow:
        Image.open(io.BytesIO(b"not an image"))

    assert not images.decoder_failed(bug.value)
    assert images.decoder_failed(pillow.value)
    with pytest.raises(TypeError), images.decoding():
        ours()


def test_ingest_refuses_a_zip_directory_of_a_version_zipfile_has_not_as_corrupt() -> None:
    from ingest import content

    data = _read("docx-zip-version-8.4.docx")

    with pytest.raises(FileCorrupt):
        content.classify(data[:4096], "letter.docx", lambda: io.BytesIO(data))


def test_ingest_reads_the_size_of_a_gif_without_filling_its_first_frame() -> None:
    from docpipe.sandbox import rss_bytes
    from ingest import content

    pipeline.reset_peak_memory()
    before = rss_bytes()
    if not before or pipeline.peak_memory() > before + 16 * 1024 * 1024:
        pytest.skip("this system does not let a process reset its peak of resident memory")

    size = content.image_size(io.BytesIO(_read("gif-first-frame-40480x39076.gif")))

    assert size == (40480, 39076)
    assert pipeline.peak_memory() - before < 64 * 1024 * 1024


def _peak_growth_in_a_child(work: Callable[[], object]) -> tuple[object, int]:
    """``work()`` in a forked process: what it returned (JSON) or raised (its type's name), and how far the
    process's resident memory grew past what it started with, in MB."""
    from docpipe.sandbox import rss_bytes

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, measured by its report
        try:
            pipeline.reset_peak_memory()
            before = rss_bytes()
            try:
                outcome = work()
            except Exception as exc:
                outcome = type(exc).__name__
            os.write(write, json.dumps([outcome, (pipeline.peak_memory() - before) // 2**20]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as report:
        outcome, grown = json.loads(report.read() or '["died", 0]')
    os.waitpid(pid, 0)
    return outcome, grown


def test_a_striped_resize_ends_at_the_sources_edge() -> None:
    from PIL import Image

    from presets.render import render

    # given a valid panorama whose ai-chat preset (1920 x 726) is resized in two stripes, the last of
    # them reading down to 726 * (3024 / 726) = 3024.0000000000005
    out = io.BytesIO()
    Image.new("RGB", (8000, 3024), (10, 200, 30)).save(out, "PNG", compress_level=1)

    results = {r.preset: (r.width, r.height) for r in render(out.getvalue())}

    assert results == {"ai-vision": (2048, 774), "ai-chat": (1920, 726), "preview": (800, 302), "thumbnail": (200, 76)}


def test_a_huge_animation_gets_still_presets_within_the_presets_functions_memory() -> None:
    from presets.render import render

    data = _read("webp-animation-canvas-32x2778257.webp")

    animated, grown = _peak_growth_in_a_child(lambda: {r.preset: r.animated for r in render(data)})

    assert animated == dict.fromkeys(("ai-vision", "ai-chat", "preview", "thumbnail"), False)
    assert grown < 2048 - 256  # the function's memory, less the runtime's own


def test_an_image_one_pixel_wide_and_16_million_tall_gets_its_presets_within_the_functions_memory(
    template: Template,
) -> None:
    from presets.render import render

    data = _read("png-gray16-1x16777246.png")

    sizes, grown = _peak_growth_in_a_child(lambda: {r.preset: [r.width, r.height] for r in render(data)})

    assert sizes == {"ai-vision": [1, 4096], "ai-chat": [1, 3840], "preview": [1, 1600], "thumbnail": [1, 200]}
    assert grown < template.function("PresetsFunction").memory_mb - 256  # the function's memory, less the runtime's


def test_an_animation_is_animated_up_to_its_canvas_limit() -> None:
    from PIL import Image

    from presets.render import MAX_ANIMATION_PIXELS, render

    def animation(width: int, height: int) -> bytes:
        frames = [Image.new("RGB", (width, height), (i * 80, 90, 200)) for i in range(2)]
        out = io.BytesIO()
        frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=80)
        return out.getvalue()

    side = 5000
    small = render(animation(side, MAX_ANIMATION_PIXELS // side), max_pixels=MAX_ANIMATION_PIXELS)
    large = render(animation(side, MAX_ANIMATION_PIXELS // side + 1), max_pixels=MAX_ANIMATION_PIXELS + side)

    assert {r.preset: r.animated for r in small}["thumbnail"] is True
    assert {r.preset: r.animated for r in large}["thumbnail"] is False


def test_a_cell_spanning_two_billion_columns_is_read_once_and_quickly(template: Template) -> None:
    from extract.formats import extract

    started = time.monotonic()
    doc = extract(_read("docx-grid-span-2147483648.docx"), "docx")

    assert time.monotonic() - started < template.function("ExtractFunction").timeout  # it hung (under 2 s idle)
    assert doc.pages[0].rows == [["a1", "b1"], ["a2", "", ""]]


def test_a_sheet_row_numbered_past_excels_last_row_is_left_out_quickly(template: Template) -> None:
    from extract.formats import extract

    started = time.monotonic()
    doc = extract(_read("xlsx-row-4294967295.xlsx"), "xlsx")

    assert time.monotonic() - started < template.function("ExtractFunction").timeout  # it hung (under 5 s idle)
    assert doc.pages[0].rows == [["city", "population", "note"], ["Lisbon", "545923", "coastal"]]


def test_merged_word_table_cells_read_as_python_docx_lays_them_out() -> None:
    import docx

    from extract.formats import extract

    document = docx.Document()
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate(table.rows):
        for c, cell in enumerate(row.cells):
            cell.text = f"r{r}c{c}"
    table.cell(0, 0).merge(table.cell(1, 0))  # down
    table.cell(0, 1).merge(table.cell(0, 2))  # across
    table.cell(2, 1).merge(table.cell(2, 2))
    out = io.BytesIO()
    document.save(out)

    rows = extract(out.getvalue(), "docx").pages[0].rows

    assert rows == [["r0c0\nr1c0", "r0c1\nr0c2"], ["r0c0\nr1c0", "r1c1", "r1c2"], ["r2c0", "r2c1\nr2c2"]]

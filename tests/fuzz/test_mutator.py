"""The fuzz suite's own parts: the seeds are good files, and the mutator is seeded, structural and bounded."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from tests.fuzz import pipeline, seeds
from tests.fuzz.mutate import MAX_SIZE, find_fields, fix_png_crcs, kind_of, mutate, mutate_member, set_field

pytestmark = pytest.mark.fuzz

CORPUS = seeds.load()
LIMITS = pipeline.Limits(memory_mb=dict.fromkeys(pipeline.FUNCTIONS, 4096))


def test_the_seeds_cover_every_accepted_type() -> None:
    from docpipe.filetypes import TYPES

    types = {pipeline.process(data, name, LIMITS).type for name, data in CORPUS.items()}

    assert types == {t.name for t in TYPES}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_seed_is_a_good_file_that_ends_ready(name: str) -> None:
    job = pipeline.process(CORPUS[name], name, LIMITS)

    assert (job.status, job.code) == ("ready", None)
    assert len(CORPUS[name]) <= 40 * 1024  # python-pptx writes no deck under 28 KB


def test_a_mutation_is_the_same_bytes_for_the_same_seed_and_index() -> None:
    first = [mutate(CORPUS, 1234, index) for index in range(200)]
    again = [mutate(CORPUS, 1234, index) for index in reversed(range(200))][::-1]

    assert first == again


def test_mutations_differ_between_indices_and_between_seeds() -> None:
    one = {mutate(CORPUS, 1, index).data for index in range(300)}
    other = {mutate(CORPUS, 2, index).data for index in range(300)}

    assert len(one) > 280
    assert len(one & other) < 30


def test_every_seed_is_mutated_and_nothing_grows_past_the_cap() -> None:
    mutations = [mutate(CORPUS, 99, index) for index in range(2000)]

    assert {m.seed_name for m in mutations} == set(CORPUS)
    assert max(len(m.data) for m in mutations) <= MAX_SIZE
    assert sum(m.data != CORPUS[m.seed_name] for m in mutations) > 1900


@pytest.mark.parametrize(
    ("name", "wanted"),
    [
        ("diagram.png", {"PNG width", "PNG height", "PNG IDAT length"}),
        ("photo.jpg", {"JPEG width", "JPEG height", "JPEG DA length"}),
        ("rotated.jpg", {"EXIF tag 274 value", "EXIF first IFD"}),
        ("anim.gif", {"GIF screen width", "GIF frame width", "GIF sub-block length"}),
        ("anim.webp", {"RIFF size", "WebP canvas width-1", "WebP frame width-1"}),
        ("photo.webp", {"VP8 width", "VP8 height"}),
        ("fax.tif", {"TIFF tag 256 value", "TIFF tag 257 value", "TIFF next IFD"}),
        ("big.tif", {"BigTIFF first IFD", "TIFF tag 273 value"}),
        ("photo.bmp", {"BMP width", "BMP height", "BMP header size", "BMP bits per pixel"}),
        ("photo.heic", {"HEIF ispe word 4", "HEIF ispe word 8", "HEIF iloc size"}),
        ("report.pdf", {"PDF /Count", "PDF /Length", "PDF /MediaBox number", "PDF object number or offset"}),
        ("sheet.xlsx", {"ZIP local compressed size", "ZIP central local header offset", "ZIP end entries"}),
    ],
)
def test_the_structural_fields_of_each_format_are_found(name: str, wanted: set[str]) -> None:
    found = {field.what for field in find_fields(CORPUS[name], kind_of(name))}

    assert wanted <= found


def test_a_field_set_in_a_png_keeps_the_file_readable_once_its_crcs_are_fixed() -> None:
    import random

    rng = random.Random(5)
    data, done = CORPUS["diagram.png"], ""
    while "PNG width" not in done:
        data, done = set_field(rng, CORPUS["diagram.png"], "png", CORPUS)

    image = Image.open(io.BytesIO(fix_png_crcs(data)))

    assert image.size[0] != 64 or "from 64 to 64" in done
    image.verify()  # every chunk's CRC is right


def test_a_part_of_an_office_file_is_mutated_and_the_package_zipped_again() -> None:
    import random

    changed = 0
    for attempt in range(20):
        data, _ = mutate_member(random.Random(attempt), CORPUS["sheet.xlsx"], "zip", CORPUS)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None  # CRCs match: the change reaches the Office library
        changed += data != CORPUS["sheet.xlsx"]

    assert changed >= 18

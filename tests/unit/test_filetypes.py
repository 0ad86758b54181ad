from __future__ import annotations

import codecs

import pytest

from docpipe.errors import TypeMismatch
from docpipe.filetypes import BY_NAME, MAX_JPEG_SCANS, gif_canvases, jpeg_scans, resolve, sniff


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
        (b"GIF89a\x01\x00", "gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "webp"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"II+\x00\x08\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00", "tiff"),  # BigTIFF
        (b"BM" + bytes(12) + b"(\x00\x00\x00" + bytes(30), "bmp"),
        (b"BMW and Audi, a price list\n", "text"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "heic"),
        (b"%PDF-1.7\n", "pdf"),
        (b"plain words, nothing more\n", "text"),
        (codecs.BOM_UTF16_LE + "héllo".encode("utf-16-le"), "text"),
        ("naïve café, Latin-1".encode("latin-1"), "text"),
    ],
)
def test_sniff_recognizes_types_by_their_bytes(head: bytes, expected: str) -> None:
    assert sniff(head).type == BY_NAME[expected]


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"<!DOCTYPE html><html><script>alert(1)</script>", "HTML"),
        (b"MZ\x90\x00\x03", "Windows executable"),
        (b"\x7fELF\x02\x01", "ELF"),
        (b"\x00\x01\x02\x03\x04\x05\x06\x07\x08" * 10, "binary"),
    ],
)
def test_sniff_refuses_what_docpipe_never_accepts(head: bytes, what: str) -> None:
    assert what in (sniff(head).refused or "")


def test_a_big_endian_bigtiff_is_refused_as_a_variant_the_decoder_cannot_read() -> None:
    assert "big-endian BigTIFF" in (sniff(b"MM\x00+\x00\x08\x00\x00" + bytes(8)).refused or "")


def test_a_bmp_magic_before_an_unknown_header_size_is_corrupt_not_unknown() -> None:
    found = sniff(b"BM" + bytes(12) + b"\x10\x00\x00\x00" + bytes(30))

    assert (found.type, found.refused) == (None, None)
    assert "BMP" in (found.corrupt or "")


def test_zip_is_a_container_to_look_into() -> None:
    assert sniff(b"PK\x03\x04\x14\x00").container == "zip"


def test_jpeg_named_pdf_is_a_mismatch() -> None:
    with pytest.raises(TypeMismatch) as info:
        resolve(BY_NAME["jpeg"], "report.pdf")
    assert info.value.code == "file.type_mismatch"


def test_png_named_jpg_takes_its_real_type() -> None:
    assert resolve(BY_NAME["png"], "photo.JPG") == BY_NAME["png"]


def test_text_is_refined_by_its_extension() -> None:
    assert resolve(BY_NAME["text"], "table.csv") == BY_NAME["csv"]
    assert resolve(BY_NAME["text"], "notes.md") == BY_NAME["markdown"]


def test_a_name_without_extension_takes_the_bytes_type() -> None:
    assert resolve(BY_NAME["pdf"], "scan") == BY_NAME["pdf"]


def _jpeg(size: tuple[int, int] = (600, 400), **options: object) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(out, "JPEG", **options)
    return out.getvalue()


def test_jpeg_scans_are_counted_by_walking_the_markers() -> None:
    from tests.fixtures.poison import jpeg_scan_bomb

    assert jpeg_scans(_jpeg(quality=90)) == 1
    assert jpeg_scans(_jpeg(quality=90, progressive=True)) == 10
    assert jpeg_scans(jpeg_scan_bomb(side=64, scans=500)) == MAX_JPEG_SCANS + 1  # counting stops there
    assert jpeg_scans(jpeg_scan_bomb(side=64, scans=500), stop_after=10**6) == 501  # and the DC scan


def test_a_thumbnail_in_exif_or_a_cut_file_does_not_confuse_the_count() -> None:
    import io

    from PIL import Image

    thumbnail = _jpeg((80, 60), quality=70, progressive=True)
    exif = Image.Exif()
    exif[0x010E] = "a description"
    app1 = b"Exif\x00\x00" + exif.tobytes() + thumbnail  # a progressive JPEG inside the APP1 segment
    plain = _jpeg(quality=90)
    with_thumbnail = plain[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + plain[2:]
    file = io.BytesIO(with_thumbnail)
    file.seek(7)

    assert jpeg_scans(file) == 1
    assert file.tell() == 7  # the position is given back
    assert jpeg_scans(plain[: len(plain) // 2]) == 1
    assert jpeg_scans(b"\xff\xd8") == 0


def test_gif_canvases_are_the_canvases_pillow_grows_frame_by_frame() -> None:
    import io
    import struct

    from PIL import Image

    # given a GIF whose frames grow the canvas, with a comment, a local colour table and stray bytes
    out = io.BytesIO()
    Image.new("P", (40, 30), 1).save(out, "GIF")
    data = out.getvalue()[:-1] + b"\x21\xfe\x05hello\x00"  # a comment extension
    for left, top, width, height in [(30, 10, 20, 10), (0, 50, 8, 8), (5, 5, 5, 5)]:
        pixels = Image.new("P", (width, height), 2)
        frame = io.BytesIO()
        pixels.save(frame, "GIF")
        descriptor = b"\x2c" + struct.pack("<HHHH", 0, 0, width, height)
        lzw = frame.getvalue().split(descriptor, 1)[1][1:-1]  # after the flags: code size and sub-blocks
        table = bytes(range(12))  # a local colour table of 4 entries
        data += b"\x00\x00" + b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0x81) + table + lzw
    data += b"\x3b"

    # then the walk finds each frame's canvas as Pillow holds it after seeking there
    canvases = gif_canvases(data, frames=10)
    with Image.open(io.BytesIO(data)) as image:
        sizes = []
        for index in range(image.n_frames):
            image.seek(index)
            sizes.append(image.size)
    assert canvases == sizes == [(40, 30), (50, 30), (50, 58), (50, 58)]
    assert gif_canvases(data, frames=2) == sizes[:2]
    assert gif_canvases(b"\x89PNG\r\n\x1a\n", frames=2) == []

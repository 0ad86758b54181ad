from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import pytest

from docpipe.errors import FileCorrupt, FileEmpty, FileTooLarge, TypeMismatch, UnsupportedType
from ingest import content
from tests.fixtures.files import docx_bytes, image_bytes, pdf_bytes, zip_bytes


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_scan_hashes_a_stream_chunk_by_chunk() -> None:
    data = bytes(range(256)) * 5000
    scanned = content.scan(chunks(data, 4099), max_bytes=len(data))
    assert scanned.sha256 == hashlib.sha256(data).hexdigest()
    assert scanned.size == len(data)
    assert scanned.head == data[:4096]


def test_scan_stops_reading_when_the_head_is_refused() -> None:
    consumed = []

    def stream() -> Iterator[bytes]:
        for i in range(100):
            consumed.append(i)
            yield b"MZ" + bytes(1022) if i == 0 else bytes(1024)

    def refuse(head: bytes) -> None:
        content.classify(head, "tool.exe", io.BytesIO)

    with pytest.raises(UnsupportedType):
        content.scan(stream(), max_bytes=10**9, on_head=refuse)
    assert len(consumed) == 4  # 4 KiB sniffed, 96 chunks never read


def test_scan_refuses_a_stream_longer_than_the_limit() -> None:
    with pytest.raises(FileTooLarge):
        content.scan(chunks(bytes(10_000), 1000), max_bytes=9_999)


def test_scan_refuses_an_empty_stream() -> None:
    with pytest.raises(FileEmpty):
        content.scan(iter(()), max_bytes=10, on_head=lambda head: None)


def test_check_size_refuses_more_than_declared() -> None:
    with pytest.raises(FileTooLarge, match="declared"):
        content.check_size(2000, max_bytes=10_000, declared=1000)


def classify(data: bytes, name: str) -> str:
    return content.classify(data[:4096], name, lambda: io.BytesIO(data)).name


def test_docx_is_told_apart_from_other_zips_by_its_parts() -> None:
    assert classify(docx_bytes(), "letter.docx") == "docx"
    with pytest.raises(UnsupportedType, match="ZIP"):
        classify(zip_bytes(), "letter.docx")


def test_a_truncated_zip_is_corrupt() -> None:
    with pytest.raises(FileCorrupt):
        classify(docx_bytes()[:200], "letter.docx")


def test_real_jpeg_png_pdf_are_recognized() -> None:
    assert classify(image_bytes("JPEG"), "a.jpg") == "jpeg"
    assert classify(image_bytes("PNG"), "a.png") == "png"
    assert classify(pdf_bytes(), "a.pdf") == "pdf"


def test_jpeg_bytes_named_pdf_are_refused() -> None:
    with pytest.raises(TypeMismatch):
        classify(image_bytes("JPEG"), "invoice.pdf")


def test_image_size_reads_only_the_header() -> None:
    assert content.image_size(io.BytesIO(image_bytes("JPEG", (1234, 567)))) == (1234, 567)


def test_image_size_of_garbage_after_a_jpeg_magic_is_corrupt() -> None:
    with pytest.raises(FileCorrupt):
        content.image_size(io.BytesIO(b"\xff\xd8\xff" + bytes(100)))


def test_a_bigtiff_is_a_tiff_and_its_size_is_read() -> None:
    from PIL import Image

    from tests.fixtures.poison import bigtiff

    data = bigtiff(Image.new("RGB", (320, 240), (10, 20, 30)))

    assert classify(data, "scan.tif") == "tiff"
    assert content.image_size(io.BytesIO(data)) == (320, 240)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's, on the cut directory
def test_a_file_whose_magic_names_an_accepted_image_but_cannot_be_read_is_corrupt() -> None:
    from tests.fixtures.poison import bigtiff_broken, bmp_bad_header

    # a BigTIFF cut in its first directory: a TIFF by its magic, whose header then cannot be read
    broken = bigtiff_broken()
    assert classify(broken, "scan.tif") == "tiff"
    with pytest.raises(FileCorrupt):
        content.image_size(io.BytesIO(broken))
    # a BMP whose info header has a size no BMP variant has: corrupt from its first bytes, not an unknown type
    with pytest.raises(FileCorrupt, match="BMP"):
        classify(bmp_bad_header(), "picture.bmp")

"""The file types docpipe accepts, how they are named, and how they are recognized by their bytes.

A type is decided by magic bytes, never by the name or the client's content type. The name then has
to agree with the bytes: an image under another image extension is accepted (renamed photos are
common and harmless), but bytes of one family under a name of another (a JPEG named ``.pdf``, an HTML
page named ``.png``) are refused as ``file.type_mismatch``. Bytes whose magic names a format docpipe
accepts but whose header is not one of its readable variants (a BMP with an unknown header size) are
``file.corrupt``, not an unknown type.
"""

from __future__ import annotations

import codecs
import io
import posixpath
import re
import struct
from dataclasses import dataclass
from typing import IO


@dataclass(frozen=True)
class FileType:
    name: str
    mime: str
    family: str  # image | document | text
    extensions: tuple[str, ...]


TYPES: tuple[FileType, ...] = (
    FileType("jpeg", "image/jpeg", "image", (".jpg", ".jpeg", ".jfif")),
    FileType("png", "image/png", "image", (".png",)),
    FileType("gif", "image/gif", "image", (".gif",)),
    FileType("webp", "image/webp", "image", (".webp",)),
    FileType("tiff", "image/tiff", "image", (".tif", ".tiff")),
    FileType("bmp", "image/bmp", "image", (".bmp",)),
    FileType("heic", "image/heic", "image", (".heic", ".heif")),
    FileType("pdf", "application/pdf", "document", (".pdf",)),
    FileType(
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "document",
        (".docx",),
    ),
    FileType(
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "document",
        (".xlsx",),
    ),
    FileType(
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "document",
        (".pptx",),
    ),
    FileType("text", "text/plain", "text", (".txt", ".text", ".log")),
    FileType("markdown", "text/markdown", "text", (".md", ".markdown")),
    FileType("csv", "text/csv", "text", (".csv",)),
    FileType("json", "application/json", "text", (".json",)),
)

BY_NAME = {t.name: t for t in TYPES}
BY_EXTENSION = {ext: t for t in TYPES for ext in t.extensions}
ACCEPTED_MIMES = {t.mime for t in TYPES} | {"image/jpg", "image/x-ms-bmp", "image/heif", "text/x-markdown"}
# Content types that say nothing about the file; clients send them when they do not know better.
GENERIC_MIMES = {"", "application/octet-stream", "binary/octet-stream"}

# Families we recognize only to refuse them with a precise message.
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xca\xfe\xba\xbe", "a Mach-O or Java class file"),
)
# A BMP's info header is one of these sizes (OS/2 1.x and 2.x, Windows 3 to 5, Adobe's two variants).
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
OOXML_PARTS = {"word/document.xml": "docx", "xl/workbook.xml": "xlsx", "ppt/presentation.xml": "pptx"}

SNIFF_BYTES = 4096


def extension(name: str) -> str:
    return posixpath.splitext(name.lower())[1]


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes say: a concrete type, a container to look into (``zip``), a refusal, or a
    file whose magic names an accepted format that cannot be read (``corrupt``)."""

    type: FileType | None = None
    container: str | None = None
    refused: str | None = None
    corrupt: str | None = None


def sniff(head: bytes) -> Sniffed:
    """Recognize a file by its first bytes (up to :data:`SNIFF_BYTES`)."""
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed(BY_NAME["jpeg"])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed(BY_NAME["png"])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed(BY_NAME["gif"])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed(BY_NAME["webp"])
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00"):  # TIFF, and BigTIFF (64-bit offsets) little-endian
        return Sniffed(BY_NAME["tiff"])
    if head[:4] == b"MM\x00+":
        # Pillow tells BigTIFF from TIFF by the third byte, which is the version's only in little-endian files.
        return Sniffed(refused="a big-endian BigTIFF image (docpipe's decoder reads little-endian BigTIFF only)")
    if head[:2] == b"BM":
        if len(head) >= 26 and struct.unpack_from("<I", head, 14)[0] in _BMP_HEADER_SIZES:
            return Sniffed(BY_NAME["bmp"])
        if _decode_head(head) is None:  # not text that happens to start with "BM"
            return Sniffed(corrupt="a BMP image whose header is not one docpipe can read")
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return Sniffed(BY_NAME["heic"])
    if head.startswith(b"%PDF-"):
        return Sniffed(BY_NAME["pdf"])
    if head.startswith(b"PK\x03\x04"):
        return Sniffed(container="zip")
    for magic, what in _REFUSED_MAGIC:
        if head.startswith(magic):
            return Sniffed(refused=what)
    return _sniff_text(head)


def _sniff_text(head: bytes) -> Sniffed:
    if not head:
        return Sniffed(refused="empty")
    text = _decode_head(head)
    if text is None:
        return Sniffed(refused="binary data of an unknown kind")
    lowered = text.lstrip("\ufeff \t\r\n").lower()
    if lowered.startswith(("<!doctype html", "<html", "<head", "<body", "<script")):
        return Sniffed(refused="an HTML document")
    if lowered.startswith("<svg") or (lowered.startswith("<?xml") and "<svg" in lowered):
        return Sniffed(refused="an SVG image")
    return Sniffed(BY_NAME["text"])


def _decode_head(head: bytes) -> str | None:
    """Decode the head as text, or ``None`` when it is binary. A cut multibyte character at the end is allowed."""
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            return codecs.getincrementaldecoder(encoding)(errors="replace").decode(head[len(bom) :])
    if b"\x00" in head:
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\x1b")
    return None if controls > max(2, len(text) // 100) else text


def resolve(sniffed: FileType, name: str) -> FileType:
    """Reconcile the type found in the bytes with the file's name, or raise :class:`TypeMismatch`.

    Text is refined by the name (``.csv`` text is CSV); an image under another image extension takes
    its real type; a name without a known extension takes the bytes' type.
    """
    from docpipe.errors import TypeMismatch

    named = BY_EXTENSION.get(extension(name))
    if named is None or named == sniffed:
        return sniffed
    if named.family == sniffed.family == "image":
        return sniffed
    if sniffed.family == "text" and named.family == "text":
        return named
    raise TypeMismatch(f"The file is named like {named.name.upper()} but its contents are {sniffed.name.upper()}.")


# A progressive JPEG is decoded in scans, and the decoder walks every block of the image for each one,
# however few bytes the scan holds: 60 bytes of end-of-band runs cost about 13 ms on a 64 MP image, so
# a repeated scan makes minutes of CPU out of a small file. Encoders write 6 to 10 scans (mozjpeg and
# jpegrescan a few more); libjpeg-turbo's own tools refuse files over a scan limit for this reason.
MAX_JPEG_SCANS = 100
# In entropy-coded data 0xFF is followed by a stuffed 0x00 or a restart marker; anything else is a marker.
_JPEG_MARKER = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_READ = (4096, 1024 * 1024)  # first and largest read while looking for the end of a scan's data


def jpeg_scans(source: bytes | IO[bytes], stop_after: int = MAX_JPEG_SCANS + 1) -> int:
    """How many scans (SOS segments) a JPEG holds, found by walking its markers; counting stops at ``stop_after``.

    Reads a seekable file segment by segment (its position is restored), never holding more than one
    read of at most 1 MB. Segments are skipped by their length, so a thumbnail inside EXIF is not
    counted; a file that ends early has the scans seen so far.
    """
    file = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    start = file.tell()
    try:
        file.seek(2)
        scans = 0
        while scans < stop_after:
            head = file.read(2)
            if len(head) < 2:
                break
            if head[0] != 0xFF:  # entropy-coded data after a scan
                file.seek(-2, io.SEEK_CUR)
                if not _to_next_jpeg_marker(file):
                    break
                continue
            marker = head[1]
            if marker == 0xFF:  # a fill byte before the marker
                file.seek(-1, io.SEEK_CUR)
                continue
            if marker in _JPEG_STANDALONE:
                continue
            if marker == 0xD9:  # end of image
                break
            length = file.read(2)
            if len(length) < 2:
                break
            file.seek(int.from_bytes(length, "big") - 2, io.SEEK_CUR)
            scans += marker == 0xDA
        return scans
    finally:
        file.seek(start)


def _to_next_jpeg_marker(file: IO[bytes]) -> bool:
    """Move to the next marker in entropy-coded data; False at the end of the file."""
    size, largest = _JPEG_READ
    while True:
        here = file.tell()
        chunk = file.read(size)
        found = _JPEG_MARKER.search(chunk)
        if found is not None:
            file.seek(here + found.start())
            return True
        if len(chunk) < size:
            return False
        file.seek(here + len(chunk) - 1)  # a 0xFF at the very end is looked at again with its next byte
        size = min(size * 2, largest)


def gif_canvases(source: bytes | IO[bytes], frames: int) -> list[tuple[int, int]]:
    """The canvas Pillow holds at each of a GIF's first ``frames`` frames, read from the descriptors alone.

    Pillow's GIF canvas starts as the logical screen and grows to every frame's extents (left + width,
    top + height) as it seeks to the frame, and it allocates the frame's disposal area there too: both
    happen before any pixel of the frame is decoded, so a few hundred bytes can ask for gigapixels.
    Blocks are walked as Pillow walks them (extensions and image data skipped by their sub-block
    lengths, stray bytes one at a time). A file that ends early, or is not a GIF, has the canvases seen
    so far. Reads a seekable file without holding it; its position is restored.
    """
    file = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    start = file.tell()
    canvases: list[tuple[int, int]] = []
    try:
        file.seek(0)
        screen = file.read(13)
        if len(screen) < 13 or screen[:6] not in (b"GIF87a", b"GIF89a"):
            return canvases
        width, height = struct.unpack_from("<HH", screen, 6)
        if screen[10] & 0x80:  # the global colour table
            file.seek(3 << ((screen[10] & 7) + 1), io.SEEK_CUR)
        while len(canvases) < frames:
            kind = file.read(1)
            if kind in (b"", b";"):  # the end of the file, or the trailer
                break
            if kind == b"!":  # an extension: its label, then sub-blocks
                file.seek(1, io.SEEK_CUR)
                _skip_gif_sub_blocks(file)
            elif kind == b",":  # an image descriptor
                descriptor = file.read(9)
                if len(descriptor) < 9:
                    break
                left, top, frame_width, frame_height = struct.unpack_from("<HHHH", descriptor)
                width, height = max(width, left + frame_width), max(height, top + frame_height)
                canvases.append((width, height))
                if descriptor[8] & 0x80:  # a local colour table
                    file.seek(3 << ((descriptor[8] & 7) + 1), io.SEEK_CUR)
                file.seek(1, io.SEEK_CUR)  # the LZW minimum code size
                _skip_gif_sub_blocks(file)
        return canvases
    finally:
        file.seek(start)


def _skip_gif_sub_blocks(file: IO[bytes]) -> None:
    """Move past a run of GIF sub-blocks (a length byte, then that many bytes) and its empty terminator."""
    while True:
        length = file.read(1)
        if not length or not length[0]:
            return
        file.seek(length[0], io.SEEK_CUR)

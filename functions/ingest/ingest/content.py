"""Pure content checks: streaming SHA-256, size limits, and type detection. No AWS, no events."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from docpipe.errors import FileCorrupt, FileEmpty, FileTooLarge, UnsupportedType
from docpipe.filetypes import BY_NAME, OOXML_PARTS, SNIFF_BYTES, FileType, gif_canvases, resolve, sniff


@dataclass(frozen=True)
class Scanned:
    sha256: str
    size: int
    head: bytes


def check_size(size: int, max_bytes: int, declared: int | None = None, lane_ceiling: int | None = None) -> None:
    if size == 0:
        raise FileEmpty()
    if size > max_bytes:
        raise FileTooLarge(f"The file is {size} bytes; the limit is {max_bytes} bytes.")
    if declared is not None and size > declared:
        raise FileTooLarge(f"The file is {size} bytes, larger than the {declared} bytes declared for it.")
    if lane_ceiling is not None and size > lane_ceiling:
        raise FileTooLarge(f"The file is {size} bytes, more than its lane takes ({lane_ceiling} bytes).")


def scan(
    chunks: Iterable[bytes | memoryview], max_bytes: int, on_head: Callable[[bytes], None] | None = None
) -> Scanned:
    """Hash a stream chunk by chunk, never holding more than one chunk.

    ``on_head`` sees the first :data:`SNIFF_BYTES` as soon as they have arrived, so a file of a
    refused type stops the read early; whatever it raises propagates. Exceeding ``max_bytes`` while
    reading (an object larger than its metadata said) raises :class:`FileTooLarge`.
    """
    digest = hashlib.sha256()
    size = 0
    head = bytearray()
    head_seen = on_head is None
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise FileTooLarge(f"The file is larger than the limit of {max_bytes} bytes.")
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        if not head_seen and len(head) >= SNIFF_BYTES:
            head_seen = True
            on_head(bytes(head))  # type: ignore[misc]
    if not head_seen and on_head is not None:
        on_head(bytes(head))
    if size == 0:
        raise FileEmpty()
    return Scanned(sha256=digest.hexdigest(), size=size, head=bytes(head))


def classify(head: bytes, name: str, open_file: Callable[[], BinaryIO]) -> FileType:
    """The file's type from its bytes, checked against its name.

    ``open_file`` gives a seekable view of the whole file; it is used only for containers (ZIP, to
    tell DOCX/XLSX/PPTX apart by their parts) and reads just the central directory.
    """
    found = sniff(head)
    if found.refused:
        raise UnsupportedType(f"The file is {found.refused}, which docpipe does not accept.")
    if found.corrupt:
        raise FileCorrupt(f"The file is {found.corrupt}.")
    if found.container == "zip":
        detected = _ooxml_type(open_file())
    else:
        assert found.type is not None
        detected = found.type
    return resolve(detected, name)


def _ooxml_type(file: BinaryIO) -> FileType:
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:  # a version zipfile has not
        raise FileCorrupt("The file starts like a ZIP archive but its directory cannot be read.") from exc
    for part, type_name in OOXML_PARTS.items():
        if part in names:
            return BY_NAME[type_name]
    raise UnsupportedType("The file is a ZIP archive, which docpipe does not accept.")


def image_size(file: BinaryIO) -> tuple[int, int]:
    """Width and height from an image's header, without decoding its pixels.

    Pillow is imported here, not at module load: most uploads are not images. Ingest only reads
    headers, so Pillow's bomb guard must not stop it from reporting dimensions; the presets stage
    refuses oversized images before it decodes them. A GIF's size is read from its descriptors without
    Pillow: Pillow fills its first frame's disposal area as it opens it (a 351-byte GIF whose first frame
    is 40480 x 39076 took 1.6 GB, over IngestFunction's memory).
    """
    from PIL import Image, UnidentifiedImageError

    canvases = gif_canvases(file, 1)  # Pillow's size of a GIF at its first frame; none for other images
    if canvases:
        return canvases[0]
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(file) as image:
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FileCorrupt("The image header cannot be read.") from exc

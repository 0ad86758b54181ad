"""What each processing task takes, checked on the file record before a byte of the original is read.

Uploads go up to ``MaxUploadBytes`` (5 GiB, in parts), far more than a preset, extraction or OCR worker
can hold: each downloads the original into a spooled file (the function's ``/tmp``, 512 MB by default on
Lambda) and decodes it in its ``MemorySize``. A task that tried would fill ``/tmp`` or be killed at its
timeout, twice, before failing; instead it is refused at once with the codes the workers use anyway:
``file.too_large`` past the task's byte limit, and ``image.too_many_pixels`` for an image whose header
(read by ingest) says it has more pixels than ``MAX_IMAGE_PIXELS``.

The limits leave room under ``/tmp`` and the functions' memory: an image of 100 MP (the pixel limit)
stored uncompressed is 400 MB at 4 bytes a pixel; 256 MiB of text, a PDF or an Office file is far more
than extraction keeps (``MAX_TEXT_CHARS``) or reads in its time.
"""

from __future__ import annotations

from typing import Any

from docpipe.errors import DocpipeError, FileTooLarge, ImageTooManyPixels

MIB = 1024 * 1024

MAX_BYTES = {
    "presets": 400 * MIB,
    "extract": 256 * MIB,
    "ocr": 256 * MIB,
}


def refusal(task: str, file: dict[str, Any], max_pixels: int | None = None) -> DocpipeError | None:
    """Why ``task`` cannot take the stored file ``file`` (its FilesTable record), or ``None``."""
    size, limit = int(file.get("size") or 0), MAX_BYTES.get(task)
    if limit is not None and size > limit:
        return FileTooLarge(f"The file is {size} bytes; {task} takes files of up to {limit} bytes.")
    width, height = int(file.get("width") or 0), int(file.get("height") or 0)
    if max_pixels and width * height > max_pixels:
        return ImageTooManyPixels(
            f"The image is {width} x {height} ({width * height} pixels); the limit is {max_pixels} pixels."
        )
    return None

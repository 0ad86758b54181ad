"""The files the bench uploads: kinds, generated files with distinct bytes, and twins of them.

Every file is made before the stack starts, in a process pool, each from its own seed, so no upload is
a dedupe shortcut. A twin (:func:`twin`) is the same picture or document with fresh bytes: a JPEG with
a comment segment, a DOCX with an XML comment in its body. It costs the pipeline the same work as its
original at the same size, which is what a side-by-side reference needs, and it is made in a
millisecond, so a phase can make more of them while it runs.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import random
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

from tests.fixtures import documents
from tests.fixtures.files import docx_bytes


@dataclass(frozen=True)
class Kind:
    name: str
    ext: str
    content_type: str
    about: str


KINDS = {
    "photo": Kind("photo", ".jpg", "image/jpeg", "JPEG photo 0.1-0.5 MB"),
    "photo-3mb": Kind("photo-3mb", ".jpg", "image/jpeg", "JPEG photo ~3 MB (3000x2000)"),
    "docx": Kind(
        "docx",
        ".docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "DOCX, a few paragraphs",
    ),
    "scan": Kind("scan", ".pdf", "application/pdf", "scanned PDF ~20 MB, 2-3 noisy pages, no text layer"),
    "photo-13mb": Kind("photo-13mb", ".jpg", "image/jpeg", "JPEG photo ~13 MB (5000x3500)"),
}

WORDS = ["invoice", "payment", "quarter", "design", "pipeline", "document", "thirty", "billing", "support", "service"]


@dataclass(frozen=True)
class Item:
    path: Path
    kind: str
    size: int
    sha256: str
    pages: int = 0

    @property
    def content_type(self) -> str:
        return KINDS[self.kind].content_type


def photo(size: tuple[int, int], seed: int, noise: float) -> Image.Image:
    """Photo-like content that JPEG cannot squeeze to nothing: gradients with grain, shapes, a label."""
    rng = random.Random(seed)
    ramp = Image.linear_gradient("L").rotate(rng.randrange(360)).resize(size)
    grain = Image.effect_noise(size, noise)
    image = Image.merge(
        "RGB",
        (
            ImageChops.add(ramp, grain, scale=1.6, offset=-40),
            ImageChops.add(ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT), grain, scale=1.6, offset=-40),
            Image.effect_noise(size, noise),
        ),
    )
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(12):
        x, y = rng.randrange(w), rng.randrange(h)
        draw.ellipse((x, y, x + w // 6, y + h // 5), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw.text((10, 10), f"docpipe load {seed}", fill=(0, 0, 0))
    return image


def jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def scan_lines(seed: int, page: int) -> list[str]:
    return [
        f"{seed}.{page}.{n} " + " ".join(WORDS[(seed + page * 7 + n * 3 + i) % len(WORDS)] for i in range(8))
        for n in range(30)
    ]


def scanned_pdf(seed: int) -> tuple[bytes, int]:
    """About 20 MB: 2 letter pages at 420 dpi or 3 at 350 dpi, grey, with scanner noise, as JPEG images."""
    pages, dpi, noise = (2, 420, 48) if seed % 2 == 0 else (3, 350, 40)
    lines = [scan_lines(seed, page) for page in range(pages)]
    return documents.pdf(lines, frozenset(range(1, pages + 1)), dpi=dpi, noise=noise, quality=92), pages


def make_file(kind: str, seed: int, folder: str) -> Item:
    """One file of ``kind``, distinct by ``seed`` (runs in a pool process)."""
    rng = random.Random(seed)
    pages = 0
    if kind == "photo":
        width = rng.randint(760, 1400)
        data = jpeg(photo((width, width * 3 // 4), seed, 20), 85)
    elif kind == "photo-3mb":
        data = jpeg(photo((3000, 2000), seed, 64), 90)
    elif kind == "photo-13mb":
        data = jpeg(photo((5000, 3500), seed, 64), 95)
    elif kind == "docx":
        text = " ".join(
            f"Paragraph {seed}.{n}: " + " ".join(rng.choice(WORDS) for _ in range(40)) + "." for n in range(6)
        )
        data = docx_bytes(text)
    elif kind == "scan":
        data, pages = scanned_pdf(seed)
    else:
        raise ValueError(kind)
    path = Path(folder) / f"{kind}-{seed:05d}{KINDS[kind].ext}"
    path.write_bytes(data)
    return Item(path, kind, len(data), hashlib.sha256(data).hexdigest(), pages)


def make_corpus(specs: list[tuple[str, int]], folder: Path) -> list[Item]:
    workers = len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(make_file, *zip(*specs, strict=True), [str(folder)] * len(specs), chunksize=4))


def twin(item: Item, nonce: str, folder: Path) -> Item:
    """``item``'s picture or document with fresh bytes: the same pixels or text, a few bytes larger."""
    data = item.path.read_bytes()
    mark = f"docpipe twin {nonce}".encode()
    if KINDS[item.kind].ext == ".jpg":  # a COM segment after SOI and the JFIF header, if any
        at = 4 + int.from_bytes(data[4:6], "big") if data[2:4] == b"\xff\xe0" else 2
        data = data[:at] + b"\xff\xfe" + (len(mark) + 2).to_bytes(2, "big") + mark + data[at:]
    elif item.kind == "docx":  # an XML comment after the body's root element; entries rewritten in order
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
            for info in source.infolist():
                body = source.read(info)
                if info.filename == "word/document.xml":
                    body += b"<!-- " + mark + b" -->"
                copy.writestr(info, body)
        data = out.getvalue()
    else:
        raise ValueError(f"no twins of {item.kind}")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in nonce)
    path = folder / f"{item.path.stem}-{safe}{item.path.suffix}"
    path.write_bytes(data)
    return Item(path, item.kind, len(data), hashlib.sha256(data).hexdigest(), item.pages)


def describe(items: list[Item]) -> str:
    parts = []
    for kind in KINDS:
        sizes = [i.size for i in items if i.kind == kind]
        if sizes:
            pages = [i.pages for i in items if i.kind == kind and i.pages]
            extra = f", {min(pages)}-{max(pages)} pages ({sum(pages)} in all)" if pages else ""
            if max(sizes) < 1e5:
                span = f"{min(sizes) / 1e3:.1f}-{max(sizes) / 1e3:.1f} KB"
            else:
                span = f"{min(sizes) / 1e6:.2f}-{max(sizes) / 1e6:.2f} MB"
            parts.append(f"{len(sizes)} {kind} ({span}{extra})")
    return ", ".join(parts)


def split_mix(total: int, scans: int | None, docx: int | None, mid: int | None) -> dict[str, int]:
    scans = round(total * 0.05) if scans is None else scans
    docx = round(total * 0.10) if docx is None else docx
    mid = round(total * 0.05) if mid is None else mid
    photos = total - scans - docx - mid
    if photos < 0:
        raise SystemExit("--scans + --docx + --mid exceed --uploads")
    return {"photo": photos, "photo-3mb": mid, "docx": docx, "scan": scans}

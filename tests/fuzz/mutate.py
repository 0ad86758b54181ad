"""A small seeded mutator for the fuzz suite: good files in, broken files out, each one replayable.

Mutation ``index`` of a run with seed ``seed`` is :func:`mutate` ``(seeds, seed, index)``: its own random
generator is made from the pair, so any one mutation is made again without the others (a failure is
replayed by its seed and index alone, whatever ran before it or in which process).

What it does to a seed, one to four times over:

- flips bits (often in the first 256 bytes, where the headers are), sets bytes to 0x00/0x7F/0x80/0xFF;
- truncates, removes a chunk, duplicates a chunk (in place or elsewhere, up to 64 times), splices in a
  chunk of another seed;
- sets a structural field to an extreme (0, 1, the largest value, the sign bit, ...) or nudges it: the
  fields are found by walking the format, so they are lengths and dimensions that mean something: PNG
  chunk lengths and IHDR, JPEG segment lengths, frame header and scans (and the EXIF inside), GIF screen,
  frame descriptors and sub-block lengths, WebP RIFF and chunk sizes, canvas and frame sizes, TIFF and
  BigTIFF directories (every entry's tag, type, count and value), BMP headers, HEIF box sizes and the
  words of its small boxes (``ispe``, ``iloc``, ...), ZIP local and central headers, numbers in PDFs
  (``/Length``, ``/Count``, ``/MediaBox``, object numbers, xref offsets) and in text;
- inserts tokens of the format's syntax (PDF, XML, JSON, CSV, text encodings);
- in Office files, mutates one part (XML numbers and cell references set to extremes, tokens, chunks)
  and zips the package again, or drops, doubles or renames a part: flipping compressed bytes mostly
  ends at a CRC check, while this reaches the Office libraries;
- and a PNG's chunk CRCs are usually made right again, so the mutated fields reach the decoder.

No fuzzing library fits this shape: atheris (libFuzzer) is coverage-guided and open-ended in one
process, where a run here is a fixed number of mutations spread over a process pool, each replayable
by (seed, index) and each run under the functions' memory and time limits in a process of its own.
"""

from __future__ import annotations

import io
import random
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

MAX_SIZE = 512 * 1024  # a mutation never grows a file past this
_HEADER_BYTES = 256


@dataclass(frozen=True)
class Field:
    """A number in a file: ``size`` bytes at ``offset`` in ``order`` (``big``/``little``), or, with order
    ``text``, the ASCII digits there (which may be replaced by a number of another length)."""

    offset: int
    size: int
    order: str
    what: str


@dataclass(frozen=True)
class Mutation:
    seed_name: str  # the seed it was made from; also the name the file is uploaded under
    data: bytes
    ops: tuple[str, ...]  # what was done, in order

    @property
    def description(self) -> str:
        return f"{self.seed_name}: " + "; ".join(self.ops)


KINDS = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".gif": "gif",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".heic": "heif",
    ".pdf": "pdf",
    ".docx": "zip",
    ".xlsx": "zip",
    ".pptx": "zip",
    ".json": "json",
    ".csv": "csv",
    ".txt": "text",
    ".md": "text",
}


def kind_of(name: str) -> str:
    return KINDS.get(name[name.rfind(".") :].lower(), "text")


def mutate(seeds: dict[str, bytes], seed: int, index: int) -> Mutation:
    """Mutation ``index`` of the run ``seed``: the same bytes for the same pair, every time."""
    rng = random.Random(f"docpipe-fuzz/{seed}/{index}")
    name = rng.choice(sorted(seeds))
    kind = kind_of(name)
    data = seeds[name]
    ops = []
    table = _OPS[kind]
    names, weights = list(table), list(table.values())
    for _ in range(rng.choices((1, 2, 3, 4), weights=(60, 25, 10, 5))[0]):
        op = rng.choices(names, weights=weights)[0]
        data, done = _APPLY[op](rng, data, kind, seeds)
        ops.append(done)
        data = data[:MAX_SIZE]
    if kind == "png" and rng.random() < 0.75:
        data = fix_png_crcs(data)
        ops.append("CRCs fixed")
    return Mutation(name, data, tuple(ops))


# ------------------------------------------------------------------------------------ byte operations


def _position(rng: random.Random, data: bytes | bytearray) -> int:
    if rng.random() < 0.5:
        return rng.randrange(min(len(data), _HEADER_BYTES) or 1)
    return rng.randrange(len(data) or 1)


def flip(rng: random.Random, data: bytes, kind: str, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    if not data:
        return data, "flip (empty)"
    out = bytearray(data)
    spots = []
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4, 8))):
        at, bit = _position(rng, out), rng.randrange(8)
        out[at] ^= 1 << bit
        spots.append(f"{at}.{bit}")
    return bytes(out), "flip bits " + ",".join(spots)


def interesting_bytes(rng: random.Random, data: bytes, kind: str, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    if not data:
        return data, "set bytes (empty)"
    out = bytearray(data)
    at, value = _position(rng, out), rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
    width = rng.choice((1, 1, 2, 4))
    out[at : at + width] = bytes([value]) * len(out[at : at + width])
    return bytes(out), f"set {width} bytes at {at} to {value:#04x}"


def truncate(rng: random.Random, data: bytes, kind: str, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    if len(data) < 2:
        return data, "truncate (too short)"
    cut = len(data) - rng.randint(1, min(16, len(data) - 1)) if rng.random() < 0.3 else rng.randrange(1, len(data))
    return data[:cut], f"truncate to {cut} of {len(data)}"


def duplicate(rng: random.Random, data: bytes, kind: str, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    if not data:
        return data, "duplicate (empty)"
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice((1, 2, 4, 8, 16, 64, 256, 1024, 4096)))
    chunk = data[start:end]
    times = rng.choice((1, 1, 1, 2, 8, 64))
    times = max(1, min(times, (MAX_SIZE - len(data)) // max(1, len(chunk))))
    at = end if rng.random() < 0.5 else rng.randrange(len(data) + 1)
    return data[:at] + chunk * times + data[at:], f"duplicate {start}:{end} x{times} at {at}"


def remove(rng: random.Random, data: bytes, kind: str, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    if len(data) < 2:
        return data, "remove (too short)"
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice((1, 2, 4, 8, 16, 64, 256, 1024)))
    return data[:start] + data[end:], f"remove {start}:{end}"


def splice(rng: random.Random, data: bytes, kind: str, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    other_name = rng.choice(sorted(seeds))
    other = seeds[other_name]
    start = rng.randrange(len(other) or 1)
    chunk = other[start : start + rng.choice((4, 16, 64, 512, 4096))]
    at = rng.randrange(len(data) + 1)
    source = f"{other_name}[{start}:+{len(chunk)}]"
    if rng.random() < 0.5:
        return data[:at] + chunk + data[at + len(chunk) :], f"overwrite at {at} with {source}"
    return data[:at] + chunk + data[at:], f"insert at {at} {source}"


_TOKENS = {
    "pdf": (
        b"<<",
        b">>",
        b"[",
        b"]",
        b"(",
        b")",
        b"\\",
        b" R ",
        b" 0 obj ",
        b"endobj\n",
        b"stream\n",
        b"\nendstream",
        b"/Type /Page ",
        b"/Type /Pages /Kids [2 0 R 3 0 R] /Count 9999 ",
        b"/Parent 3 0 R ",
        b"/Filter /FlateDecode ",
        b"/Filter /LZWDecode ",
        b"/Filter [/ASCIIHexDecode /FlateDecode] ",
        b"/DecodeParms << /Predictor 15 /Columns 99999 >> ",
        b"/Encrypt 1 0 R ",
        b"/AcroForm << /Fields [5 0 R] >> ",
        b"/Rotate 91 ",
        b"%%EOF\n",
        b"xref\n0 1\n",
        b"trailer << /Root 2 0 R >>\n",
        b"q " * 64,
        b"Q " * 64,
        b"BT ",
        b"ET ",
        b"1e308 ",
        b"-0.000000001 ",
        b"\x00",
        b"\xff\xfe",
    ),
    "json": (
        b"[" * 64,
        b"]",
        b"{",
        b"}",
        b'"',
        b"\\",
        b"\\u0000",
        b"\\ud800",
        b"1e999999",
        b"-",
        b"NaN",
        b"Infinity",
        b",",
        b":",
        b"\x00",
        b"\xff",
        b"\xef\xbb\xbf",
        b'{"a":' * 40,
        b"0" * 5000,
    ),
    "csv": (b'"', b",", b",,,,,,,,", b"\r", b"\n", b"\r\n", b"\x00", b";", b"\t", b'"' * 7, b"," * 3000, b"\xff\xfe"),
    "text": (
        b"\x00",
        b"\xff\xfe",
        b"\xfe\xff",
        b"\xef\xbb\xbf",
        b"\xff\xfe\x00\x00",
        b"\xc3",
        b"\xed\xa0\x80",
        b"\x1b[31m",
        b"\r",
        b"\x0b\x0c",
        b"\xe2\x80\xae",
        b"<html>",
        b"<svg",
        b"%PDF-1.7\n",
        b"PK\x03\x04",
        b"\x89PNG\r\n\x1a\n",
        b"a" * 5000,
        b"\n" * 500,
    ),
    "xml": (
        b"<",
        b">",
        b"/>",
        b"&",
        b"&amp;",
        b"&#0;",
        b"&#x110000;",
        b"<![CDATA[",
        b"]]>",
        b"<!DOCTYPE x>",
        b'<?xml version="1.0" encoding="utf-16"?>',
        b'xmlns:w="urn:other" ',
        b"<w:p>" * 200,
        b"<a:p>" * 200,
        b"<row>" * 200,
        b'<c r="XFD1048576"><v>1</v></c>',
        b'<c r="A1" t="s"><v>99999</v></c>',
        b'<c r="B2" t="e"><v>#N/A</v></c>',
        b"<f>SUM(A1:XFD1048576)</f>",
        b'<w:gridSpan w:val="4294967295"/>',
        b'<w:vMerge w:val="restart"/>',
        b'r:id="rId999" ',
        b'r:embed="rId1" ',
        b"\x00",
        b"\xff",
    ),
}


def insert_token(rng: random.Random, data: bytes, kind: str, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    tokens = _TOKENS.get(kind, _TOKENS["text"])
    token = rng.choice(tokens)
    at = rng.randrange(len(data) + 1)
    if rng.random() < 0.3 and data:  # at a token boundary of the format, where parsers look
        boundaries = [m.start() for m in re.finditer(rb"[\s<>\[\]{},:\"]", data[:MAX_SIZE])]
        if boundaries:
            at = rng.choice(boundaries)
    return data[:at] + token + data[at:], f"insert {token[:24]!r} at {at}"


# ------------------------------------------------------------------------------------ fields


def set_field(rng: random.Random, data: bytes, kind: str, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    fields = find_fields(data, kind)
    if not fields:
        return flip(rng, data, kind, seeds)
    groups: dict[str, list[Field]] = {}
    for found in fields:  # one kind of field as likely as another, however many of it a file has
        groups.setdefault(found.what, []).append(found)
    field = rng.choice(groups[rng.choice(sorted(groups))])
    if field.order == "text":
        return _set_text_number(rng, data, field)
    raw = data[field.offset : field.offset + field.size]
    if len(raw) < field.size:
        return flip(rng, data, kind, seeds)
    old = int.from_bytes(raw, field.order)  # type: ignore[arg-type]
    top = (1 << (8 * field.size)) - 1
    new = rng.choice(
        (
            0,
            1,
            2,
            top,
            top - 1,
            top >> 1,
            (top >> 1) + 1,
            0xFF,
            0x100,
            0xFFFF,
            0x10000,
            old + 1,
            old - 1,
            old * 2,
            old * 256,
            old // 2,
            old + rng.randint(-16, 16),
            rng.getrandbits(8 * field.size),
        )
    )
    new &= top
    out = bytearray(data)
    out[field.offset : field.offset + field.size] = new.to_bytes(field.size, field.order)  # type: ignore[arg-type]
    return bytes(out), f"set {field.what} at {field.offset} from {old} to {new}"


_TEXT_NUMBERS = (
    b"0",
    b"-1",
    b"1",
    b"2",
    b"255",
    b"65535",
    b"65536",
    b"14400",
    b"100000",
    b"1000000",
    b"2147483647",
    b"2147483648",
    b"-2147483648",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"99999999999999999999",
    b"1e308",
    b"3.4e38",
    b"0.0001",
    b"-0",
    b".",
    b"",
)


def _set_text_number(rng: random.Random, data: bytes, field: Field) -> tuple[bytes, str]:
    old = data[field.offset : field.offset + field.size]
    if rng.random() < 0.7:
        new = rng.choice(_TEXT_NUMBERS)
    else:
        try:
            value = float(old)
        except ValueError:
            value = 0.0
        new = str(int(value * rng.choice((-1, 2, 10, 1000)) + rng.randint(-2, 2))).encode()
    return data[: field.offset] + new + data[field.offset + field.size :], f"set {field.what} {old!r} to {new!r}"


def find_fields(data: bytes, kind: str) -> list[Field]:
    """The structural numbers of ``data`` read as ``kind``; a file broken by an earlier mutation gives
    the fields found before the break."""
    try:
        return _LOCATORS.get(kind, _text_fields)(data)
    except (IndexError, ValueError, struct.error, OverflowError):
        return []


def _png_fields(data: bytes) -> list[Field]:
    fields: list[Field] = []
    pos = 8
    while pos + 8 <= len(data) and len(fields) < 400:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8].decode("latin-1")
        fields.append(Field(pos, 4, "big", f"PNG {kind} length"))
        body = pos + 8
        if kind == "IHDR":
            fields += [Field(body, 4, "big", "PNG width"), Field(body + 4, 4, "big", "PNG height")]
            fields += [Field(body + 8 + i, 1, "big", f"PNG IHDR byte {8 + i}") for i in range(5)]
        elif kind in ("acTL", "fcTL", "pHYs", "tRNS", "PLTE", "sBIT", "gAMA", "cHRM", "iCCP", "eXIf", "sPLT"):
            fields += [Field(body + k, 4, "big", f"PNG {kind} word {k}") for k in range(0, min(length, 32) - 3, 4)]
        if length > len(data):
            break
        pos = body + length + 4
    return fields


def fix_png_crcs(data: bytes) -> bytes:
    """Every chunk's CRC made right for its (possibly mutated) type and body."""
    out = bytearray(data)
    pos = 8
    while pos + 12 <= len(out):
        length = int.from_bytes(out[pos : pos + 4], "big")
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4 : end])))
        pos = end + 4
    return bytes(out)


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def _jpeg_fields(data: bytes) -> list[Field]:
    fields: list[Field] = []
    pos = 2
    while pos + 4 <= len(data) and len(fields) < 400:
        if data[pos] != 0xFF:  # entropy-coded data: on to the next marker
            found = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]").search(data, pos)
            if found is None:
                break
            pos = found.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = pos + 4
        name = f"JPEG {marker:02X}"
        fields.append(Field(pos + 2, 2, "big", f"{name} length"))
        if marker in _SOF:
            fields += [Field(body, 1, "big", "JPEG precision"), Field(body + 1, 2, "big", "JPEG height")]
            fields += [Field(body + 3, 2, "big", "JPEG width"), Field(body + 5, 1, "big", "JPEG components")]
            fields += [Field(body + 6 + i, 1, "big", f"JPEG component byte {i}") for i in range(min(12, length - 8))]
        elif marker == 0xDA:
            fields += [Field(body + i, 1, "big", f"JPEG scan byte {i}") for i in range(min(10, length - 2))]
        elif marker in (0xC4, 0xDB):
            fields += [Field(body + i, 1, "big", f"{name} table byte {i}") for i in range(min(17, length - 2))]
        elif marker == 0xDD:
            fields.append(Field(body, 2, "big", "JPEG restart interval"))
        elif marker == 0xE1 and data[body : body + 6] == b"Exif\x00\x00":
            fields += _tiff_fields(data, body + 6, "EXIF")
        elif marker == 0xE2 and data[body : body + 12] == b"ICC_PROFILE\x00":
            icc = body + 14
            fields += [Field(icc + k, 4, "big", f"ICC word {k}") for k in range(0, 132, 4)]
        elif marker == 0xEE:
            fields += [Field(body + i, 1, "big", f"Adobe byte {i}") for i in range(min(12, length - 2))]
        pos = body + length - 2
    return fields


_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def _tiff_fields(data: bytes, base: int = 0, name: str = "TIFF") -> list[Field]:
    order = "little" if data[base : base + 2] == b"II" else "big"
    big = int.from_bytes(data[base + 2 : base + 4], order) == 43  # type: ignore[arg-type]
    word = 8 if big else 4
    fields = [Field(base + 2, 2, order, f"{name} version")]
    if big:
        fields += [Field(base + 4, 2, order, "BigTIFF offset size"), Field(base + 8, 8, order, "BigTIFF first IFD")]
        ifd = int.from_bytes(data[base + 8 : base + 16], order)  # type: ignore[arg-type]
    else:
        fields.append(Field(base + 4, 4, order, f"{name} first IFD"))
        ifd = int.from_bytes(data[base + 4 : base + 8], order)  # type: ignore[arg-type]
    seen: set[int] = set()
    count_size, entry_size = (8, 20) if big else (2, 12)
    while ifd > 0 and base + ifd + count_size <= len(data) and ifd not in seen and len(seen) < 8:
        seen.add(ifd)
        at = base + ifd
        count = int.from_bytes(data[at : at + count_size], order)  # type: ignore[arg-type]
        fields.append(Field(at, count_size, order, f"{name} IFD entry count"))
        entries = at + count_size
        for i in range(min(count, 64)):
            entry = entries + i * entry_size
            if entry + entry_size > len(data):
                break
            tag = int.from_bytes(data[entry : entry + 2], order)  # type: ignore[arg-type]
            kind = int.from_bytes(data[entry + 2 : entry + 4], order)  # type: ignore[arg-type]
            number = int.from_bytes(data[entry + 4 : entry + 4 + word], order)  # type: ignore[arg-type]
            fields += [
                Field(entry, 2, order, f"{name} tag {tag} id"),
                Field(entry + 2, 2, order, f"{name} tag {tag} type"),
                Field(entry + 4, word, order, f"{name} tag {tag} count"),
                Field(entry + 4 + word, word, order, f"{name} tag {tag} value"),
            ]
            width = _TIFF_TYPE_SIZES.get(kind, 1)
            if width * number > word and width in (2, 4, 8):  # the values are elsewhere: the first few of them
                where = base + int.from_bytes(data[entry + 4 + word : entry + 4 + 2 * word], order)  # type: ignore[arg-type]
                fields += [
                    Field(where + k * width, width, order, f"{name} tag {tag} value {k}")
                    for k in range(min(number, 4))
                    if where + (k + 1) * width <= len(data)
                ]
        next_at = entries + count * entry_size
        fields.append(Field(next_at, word, order, f"{name} next IFD"))
        ifd = int.from_bytes(data[next_at : next_at + word], order)  # type: ignore[arg-type]
    return fields


def _gif_fields(data: bytes) -> list[Field]:
    fields = [Field(6, 2, "little", "GIF screen width"), Field(8, 2, "little", "GIF screen height")]
    fields += [Field(10, 1, "little", "GIF screen flags"), Field(11, 1, "little", "GIF background")]
    pos = 13 + ((3 << ((data[10] & 7) + 1)) if data[10] & 0x80 else 0)
    while pos < len(data) and len(fields) < 400:
        block = data[pos]
        if block == 0x21:  # extension: label, then sub-blocks
            label = data[pos + 1]
            if label == 0xF9:
                fields += [Field(pos + 3, 1, "little", "GIF disposal flags"), Field(pos + 4, 2, "little", "GIF delay")]
            pos = _gif_sub_blocks(data, pos + 2, fields)
        elif block == 0x2C:
            names = ("left", "top", "width", "height")
            fields += [Field(pos + 1 + 2 * i, 2, "little", f"GIF frame {n}") for i, n in enumerate(names)]
            flags = data[pos + 9]
            fields.append(Field(pos + 9, 1, "little", "GIF frame flags"))
            pos += 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
            fields.append(Field(pos, 1, "little", "GIF LZW code size"))
            pos = _gif_sub_blocks(data, pos + 1, fields)
        else:
            break
    return fields


def _gif_sub_blocks(data: bytes, pos: int, fields: list[Field]) -> int:
    while pos < len(data):
        length = data[pos]
        if len(fields) < 400:
            fields.append(Field(pos, 1, "little", "GIF sub-block length"))
        if not length:
            return pos + 1
        pos += 1 + length
    return pos


def _webp_fields(data: bytes) -> list[Field]:
    fields = [Field(4, 4, "little", "RIFF size")]
    _riff_chunks(data, 12, len(data), fields)
    return fields


def _riff_chunks(data: bytes, pos: int, end: int, fields: list[Field]) -> None:
    while pos + 8 <= end and len(fields) < 200:
        fourcc = data[pos : pos + 4].decode("latin-1")
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        fields.append(Field(pos + 4, 4, "little", f"WebP {fourcc} size"))
        if fourcc == "VP8X":
            fields += [Field(body, 1, "little", "WebP VP8X flags")]
            fields += [
                Field(body + 4, 3, "little", "WebP canvas width-1"),
                Field(body + 7, 3, "little", "WebP canvas height-1"),
            ]
        elif fourcc == "ANIM":
            fields += [Field(body + 4, 2, "little", "WebP loop count")]
        elif fourcc == "ANMF":
            names = ("x", "y", "width-1", "height-1", "duration")
            fields += [Field(body + 3 * i, 3, "little", f"WebP frame {n}") for i, n in enumerate(names)]
            fields.append(Field(body + 15, 1, "little", "WebP frame flags"))
            _riff_chunks(data, body + 16, min(end, body + size), fields)
        elif fourcc == "VP8 ":
            fields += [Field(body, 3, "little", "VP8 frame tag"), Field(body + 3, 3, "little", "VP8 start code")]
            fields += [Field(body + 6, 2, "little", "VP8 width"), Field(body + 8, 2, "little", "VP8 height")]
        elif fourcc == "VP8L":
            fields += [Field(body, 1, "little", "VP8L signature"), Field(body + 1, 4, "little", "VP8L size bits")]
        elif fourcc == "ALPH":
            fields.append(Field(body, 1, "little", "WebP alpha header"))
        pos = body + size + (size & 1)


def _bmp_fields(data: bytes) -> list[Field]:
    layout = (
        (2, 4, "file size"),
        (10, 4, "pixel offset"),
        (14, 4, "header size"),
        (18, 4, "width"),
        (22, 4, "height"),
        (26, 2, "planes"),
        (28, 2, "bits per pixel"),
        (30, 4, "compression"),
        (34, 4, "image size"),
        (46, 4, "colours used"),
        (50, 4, "important colours"),
        (54, 4, "red mask"),
        (58, 4, "green mask"),
        (62, 4, "blue mask"),
        (66, 4, "alpha mask"),
    )
    return [Field(at, size, "little", f"BMP {what}") for at, size, what in layout if at + size <= len(data)]


_BMFF_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0, b"dinf": 0, b"iinf": 6, b"iref": 4, b"moov": 0, b"trak": 0}


def _heif_fields(data: bytes) -> list[Field]:
    fields: list[Field] = []
    _boxes(data, 0, len(data), fields, 0)
    return fields


def _boxes(data: bytes, pos: int, end: int, fields: list[Field], depth: int) -> None:
    while pos + 8 <= end and len(fields) < 400 and depth < 6:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        name = kind.decode("latin-1")
        fields.append(Field(pos, 4, "big", f"HEIF {name} size"))
        header = 8
        if size == 1:
            fields.append(Field(pos + 8, 8, "big", f"HEIF {name} large size"))
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        if size < header:
            break
        body, box_end = pos + header, min(end, pos + size)
        if kind in _BMFF_CONTAINERS:
            skip = _BMFF_CONTAINERS[kind]
            if kind == b"iinf":  # version and flags, then a 16- or 32-bit entry count
                skip = 8 if data[body] else 6
                fields.append(Field(body + 4, skip - 4, "big", "HEIF iinf entry count"))
            _boxes(data, body + skip, box_end, fields, depth + 1)
        elif kind != b"mdat" and box_end - body <= 256:  # the words of a small box: ispe, iloc, pitm, ipma, hvcC ...
            fields += [Field(body + k, 4, "big", f"HEIF {name} word {k}") for k in range(0, box_end - body - 3, 4)]
            fields += [Field(body + k, 2, "big", f"HEIF {name} half {k}") for k in range(2, box_end - body - 1, 4)]
        pos += size


_Layout = tuple[tuple[int, int, str], ...]  # (offset, size, name) of each field of a header
_ZIP_LOCAL: _Layout = (
    (4, 2, "version"),
    (6, 2, "flags"),
    (8, 2, "method"),
    (14, 4, "CRC"),
    (18, 4, "compressed size"),
    (22, 4, "size"),
    (26, 2, "name length"),
    (28, 2, "extra length"),
)
_ZIP_CENTRAL: _Layout = (
    (8, 2, "flags"),
    (10, 2, "method"),
    (16, 4, "CRC"),
    (20, 4, "compressed size"),
    (24, 4, "size"),
    (28, 2, "name length"),
    (30, 2, "extra length"),
    (32, 2, "comment length"),
    (34, 2, "disk"),
    (38, 4, "attributes"),
    (42, 4, "local header offset"),
)
_ZIP_END: _Layout = (
    (4, 2, "disk"),
    (6, 2, "directory disk"),
    (8, 2, "entries here"),
    (10, 2, "entries"),
    (12, 4, "directory size"),
    (16, 4, "directory offset"),
    (20, 2, "comment length"),
)


def _zip_fields(data: bytes) -> list[Field]:
    fields: list[Field] = []
    for magic, layout, what in (
        (b"PK\x03\x04", _ZIP_LOCAL, "ZIP local"),
        (b"PK\x01\x02", _ZIP_CENTRAL, "ZIP central"),
        (b"PK\x05\x06", _ZIP_END, "ZIP end"),
    ):
        for found in re.finditer(re.escape(magic), data):
            fields += [Field(found.start() + at, size, "little", f"{what} {name}") for at, size, name in layout]
    return [f for f in fields if f.offset + f.size <= len(data)]


_PDF_KEYED = re.compile(
    rb"/(Length|Count|Width|Height|BitsPerComponent|Size|Columns|Rows|Colors|Predictor|K|N|First|Prev|Rotate|"
    rb"Ff|Q|MaxLen|W|Index|StructParents|Parent|Contents|Root|Pages|Kids|SMask|Im\d+|F\d+|Font)\s+\[?\s*(-?\d+(?:\.\d+)?)"
)
_PDF_ARRAYS = re.compile(rb"/(MediaBox|CropBox|BBox|Rect|Matrix|Kids|W|Opt|Decode)\s*\[([^\]]{0,300})\]")
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?")
_PDF_POINTERS = re.compile(rb"(\d+) \d+ (?:obj|R)\b|startxref\s+(\d+)|(\d{10}) \d{5} [nf]")


def _pdf_fields(data: bytes) -> list[Field]:
    fields = [
        Field(m.start(2), len(m.group(2)), "text", f"PDF /{m.group(1).decode()}") for m in _PDF_KEYED.finditer(data)
    ]
    for array in _PDF_ARRAYS.finditer(data):
        key = array.group(1).decode()
        fields += [
            Field(array.start(2) + n.start(), len(n.group()), "text", f"PDF /{key} number")
            for n in _NUMBER.finditer(array.group(2))
        ]
    for pointer in _PDF_POINTERS.finditer(data):
        group = next(g for g in (1, 2, 3) if pointer.group(g))
        fields.append(Field(pointer.start(group), len(pointer.group(group)), "text", "PDF object number or offset"))
    return fields[:600] or _text_fields(data)


def _text_fields(data: bytes) -> list[Field]:
    return [
        Field(m.start(), len(m.group()), "text", "number")
        for _, m in zip(range(300), _NUMBER.finditer(data), strict=False)
    ]


_XML_NUMBERS = re.compile(rb'="(-?\d+(?:\.\d+)?)"|<(?:\w+:)?v>(-?\d+(?:\.\d+)?)<')
_CELL_REFS = re.compile(rb'"\$?([A-Z]{1,3})\$?(\d{1,7})(?::\$?([A-Z]{1,3})\$?(\d{1,7}))?"')
_CELL_EXTREMES = (b"A0", b"A1", b"XFD1048576", b"XFE1048577", b"ZZZZ1", b"A99999999", b"A1:XFD1048576")


def _xml_field(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """An XML number or cell reference set to an extreme; a flip when the part holds neither."""
    refs = list(_CELL_REFS.finditer(data[:MAX_SIZE]))
    if refs and rng.random() < 0.4:
        ref = rng.choice(refs)
        new = b'"' + rng.choice(_CELL_EXTREMES) + b'"'
        return data[: ref.start()] + new + data[ref.end() :], f"set cell reference {ref.group()!r} to {new!r}"
    numbers = [
        Field(m.start(g), len(m.group(g)), "text", "XML number")
        for m in _XML_NUMBERS.finditer(data[:MAX_SIZE])
        for g in (1, 2)
        if m.group(g)
    ]
    if not numbers:
        return flip(rng, data, "xml", {})
    return _set_text_number(rng, data, rng.choice(numbers))


_LOCATORS: dict[str, Callable[[bytes], list[Field]]] = {
    "png": _png_fields,
    "jpeg": _jpeg_fields,
    "gif": _gif_fields,
    "webp": _webp_fields,
    "tiff": _tiff_fields,
    "bmp": _bmp_fields,
    "heif": _heif_fields,
    "zip": _zip_fields,
    "pdf": _pdf_fields,
}


# --------------------------------------------------------------------------------- Office packages

_MEMBER_OPS = {"xml_field": 30, "token": 20, "duplicate": 15, "remove": 15, "flip": 10, "truncate": 10}
_MEMBER_LIMIT = 2 * 1024 * 1024  # a part that inflates past this (a mutated size field) is not rewritten


def mutate_member(rng: random.Random, data: bytes, kind: str, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    """One part of a zip package mutated (or dropped, doubled, renamed), and the package zipped again."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = []
            for info in archive.infolist():
                with archive.open(info) as part:
                    body = part.read(_MEMBER_LIMIT + 1)
                if len(body) > _MEMBER_LIMIT:
                    raise ValueError("part too large")
                parts.append((info.filename, info.compress_type, body))
    except Exception:  # an earlier mutation broke the zip: mutate its bytes instead
        return flip(rng, data, kind, seeds)
    if not parts:
        return data, "member (no parts)"
    xml = [i for i, (name, _, _) in enumerate(parts) if name.endswith((".xml", ".rels"))]
    index = rng.choice(xml) if xml and rng.random() < 0.9 else rng.randrange(len(parts))
    name, method, body = parts[index]
    action = rng.choices(("change", "drop", "double", "rename"), weights=(85, 5, 5, 5))[0]
    if action == "drop":
        del parts[index]
        done = f"drop part {name}"
    elif action == "double":
        parts.insert(index + 1, (name, method, body))
        done = f"double part {name}"
    elif action == "rename":
        parts[index] = (name.upper() if rng.random() < 0.5 else name + "x", method, body)
        done = f"rename part {name}"
    else:
        op = rng.choices(list(_MEMBER_OPS), weights=list(_MEMBER_OPS.values()))[0]
        if op == "xml_field":
            body, inner = _xml_field(rng, body)
        else:
            body, inner = _APPLY[op](rng, body, "xml", seeds)
        parts[index] = (name, method, body[:MAX_SIZE])
        done = f"in part {name}: {inner}"
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as archive:
        warnings.simplefilter("ignore")  # a doubled part is a duplicate name, on purpose
        for part_name, part_method, part_body in parts:
            info = zipfile.ZipInfo(part_name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = part_method
            archive.writestr(info, part_body)
    return out.getvalue(), done


# -------------------------------------------------------------------------------------- the tables

_APPLY: dict[str, Callable[[random.Random, bytes, str, dict[str, bytes]], tuple[bytes, str]]] = {
    "flip": flip,
    "bytes": interesting_bytes,
    "truncate": truncate,
    "duplicate": duplicate,
    "remove": remove,
    "splice": splice,
    "field": set_field,
    "token": insert_token,
    "member": mutate_member,
}
_IMAGE_OPS = {"field": 35, "flip": 20, "bytes": 10, "truncate": 10, "duplicate": 10, "remove": 10, "splice": 5}
_TEXT_OPS = {"token": 35, "flip": 15, "truncate": 10, "duplicate": 15, "remove": 10, "field": 10, "splice": 5}
_OPS: dict[str, dict[str, int]] = {
    **dict.fromkeys(("jpeg", "png", "gif", "webp", "tiff", "bmp", "heif"), _IMAGE_OPS),
    "pdf": {
        "field": 30,
        "token": 15,
        "flip": 15,
        "truncate": 10,
        "duplicate": 10,
        "remove": 10,
        "splice": 5,
        "bytes": 5,
    },
    "zip": {"member": 60, "field": 15, "flip": 10, "truncate": 5, "duplicate": 5, "remove": 5},
    "json": _TEXT_OPS,
    "csv": _TEXT_OPS,
    "text": _TEXT_OPS,
}

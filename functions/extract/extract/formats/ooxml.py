"""Office files are zip archives: :func:`check_ooxml` runs before any Office library opens one.

Bombs (too many entries, too much declared data, extreme compression, parts that inflate past their
declared size) and any XML part carrying a DTD are refused as :class:`ArchiveUnsafe`. A DTD has no
business in OOXML; refusing it stops entity expansion and external entities whatever parser reads
the part later. XML parts are those with an XML name (``.xml``, ``.rels``, ``.vml``) or an XML
content type in ``[Content_Types].xml``, so an SVG image with its usual DOCTYPE is left alone.
"""

from __future__ import annotations

import codecs
import zipfile

from defusedxml import ElementTree as SafeElementTree

from docpipe.errors import ArchiveUnsafe, FileCorrupt
from extract.formats.common import Source, as_stream, failures_as_corrupt

ZIP_MAX_ENTRIES = 2_000
ZIP_MAX_TOTAL = 200 * 1024 * 1024
ZIP_MAX_RATIO = 200
ZIP_RATIO_MIN_SIZE = 10 * 1024 * 1024
CORE_PROPERTIES = "docProps/core.xml"

_CHUNK = 1024 * 1024
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_CONTENT_TYPES = "[Content_Types].xml"
_CT_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_DTD_MARKERS = ("<!DOCTYPE", "<!ENTITY")


def check_ooxml(source: Source, required: str | None = None) -> frozenset[str]:
    """Refuse an Office file that is unsafe to unpack; returns the names of its parts.

    Raises :class:`ArchiveUnsafe` for a zip bomb or an XML part with a DTD, :class:`FileCorrupt`
    for something that is not a readable zip, has no ``[Content_Types].xml`` or lacks ``required``.
    """
    with failures_as_corrupt("Office document"), zipfile.ZipFile(as_stream(source)) as archive:
        _check_sizes(archive.infolist())
        entries = [info for info in archive.infolist() if not info.is_dir()]
        names = frozenset(info.filename for info in entries)
        for name in (_CONTENT_TYPES, required):
            if name and name not in names:
                raise FileCorrupt(f"The Office document has no {name}.")
        xml_parts = _xml_part_names(archive, names)
        for info in entries:
            if info.filename in xml_parts:
                _scan_xml_part(archive, info)
        return names


def _check_sizes(entries: list[zipfile.ZipInfo]) -> None:
    if len(entries) > ZIP_MAX_ENTRIES:
        raise ArchiveUnsafe(f"The archive has {len(entries)} entries; at most {ZIP_MAX_ENTRIES} are opened.")
    total = sum(info.file_size for info in entries)
    if total > ZIP_MAX_TOTAL:
        raise ArchiveUnsafe(f"The archive unpacks to {total} bytes; at most {ZIP_MAX_TOTAL} are opened.")
    for info in entries:
        if info.file_size > ZIP_RATIO_MIN_SIZE and info.file_size > ZIP_MAX_RATIO * max(info.compress_size, 1):
            raise ArchiveUnsafe(f"The archive entry {info.filename} is compressed more than {ZIP_MAX_RATIO} to 1.")


def _xml_part_names(archive: zipfile.ZipFile, names: frozenset[str]) -> frozenset[str]:
    """Parts with an XML name, or an XML content type by extension or override."""
    _scan_xml_part(archive, archive.getinfo(_CONTENT_TYPES))
    root = SafeElementTree.fromstring(archive.read(_CONTENT_TYPES), forbid_dtd=True)
    extensions = {
        item.get("Extension", "").lower()
        for item in root.iter(f"{_CT_NS}Default")
        if _is_xml_type(item.get("ContentType", ""))
    }
    overrides = {
        item.get("PartName", "").lstrip("/")
        for item in root.iter(f"{_CT_NS}Override")
        if _is_xml_type(item.get("ContentType", ""))
    }
    return frozenset(
        name
        for name in names
        if name.lower().endswith(_XML_SUFFIXES) or name.rpartition(".")[2].lower() in extensions or name in overrides
    )


def _is_xml_type(content_type: str) -> bool:
    return content_type.endswith(("+xml", "/xml"))


def _scan_xml_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Stream one XML part, refusing a DTD and any byte past its declared size."""
    markers: tuple[bytes, ...] = ()
    tail = b""
    read = 0
    with archive.open(info) as part:
        while chunk := part.read(_CHUNK):
            read += len(chunk)
            if read > info.file_size:
                raise ArchiveUnsafe(f"The archive entry {info.filename} unpacks past its declared size.")
            markers = markers or _markers_for(chunk)
            window = tail + chunk
            if any(marker in window for marker in markers):
                raise ArchiveUnsafe(f"The XML part {info.filename} declares a DTD or entities.")
            tail = window[-32:]


def _markers_for(head: bytes) -> tuple[bytes, ...]:
    """The DTD markers in the encoding the part's first bytes show (UTF-8 or UTF-16)."""
    if head.startswith((codecs.BOM_UTF16_LE, b"<\x00")):
        encoding = "utf-16-le"
    elif head.startswith((codecs.BOM_UTF16_BE, b"\x00<")):
        encoding = "utf-16-be"
    else:
        encoding = "utf-8"
    return tuple(marker.encode(encoding) for marker in _DTD_MARKERS)

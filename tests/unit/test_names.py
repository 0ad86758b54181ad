"""Names as shown back and as downloads are named: the extension survives truncation, invisible
characters go, and Content-Disposition is RFC 6266 for any raw name."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from docpipe.adapters.s3 import ObjectStore
from docpipe.errors import UnsupportedType
from docpipe.storage import MAX_NAME_CHARS, content_disposition, display_name

NAMES = [
    'say "hi".pdf',
    "back\\slash.txt",
    "100% done.txt",
    "résumé.docx",
    "日本語.pdf",
    "semi; colon, comma.txt",
    "photo\u202egpj.exe",
    "a" * 300 + ".html",
    "",
]


@pytest.mark.parametrize("ext", [".exe", ".html", ".svg"])
def test_a_long_name_loses_its_stem_not_its_extension(ext: str) -> None:
    shown = display_name("a" * 300 + ext)

    assert (len(shown), shown[-len(ext) :]) == (MAX_NAME_CHARS, ext)


@pytest.mark.parametrize("ext", [".exe", ".html"])
def test_a_long_name_of_a_refused_type_is_refused(ext: str) -> None:
    from api.uploads import UploadRequest, prepare

    with pytest.raises(UnsupportedType):
        prepare(UploadRequest(name="a" * 300 + ext, size=10), "alice", 1024, 60)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("photo\u202egpj.exe", "photogpj.exe"),
        ("\u2067report\u2069.pdf", "report.pdf"),
        ("zero\u200bwidth\u200d.txt", "zerowidth.txt"),
        ("\ufeffbom.txt", "bom.txt"),
        ("line\u2028break\u2029.txt", "linebreak.txt"),
        ("e\u200b\u0301.txt", "\u00e9.txt"),
    ],
)
def test_format_characters_and_separators_are_removed_before_nfc(name: str, shown: str) -> None:
    assert display_name(name) == shown


# RFC 6266: attachment; filename="<quoted-string without quotes or escapes>"; filename*=UTF-8''<attr-chars and %HH>
RFC_6266 = re.compile(
    r"""attachment; filename="([ !#-\[\]-~]*)"; filename\*=UTF-8''((?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-F]{2})+)"""
)


@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
def test_content_disposition_is_an_attachment_with_ascii_and_utf8_names(name: str) -> None:
    header = content_disposition(name)

    parsed = RFC_6266.fullmatch(header)
    assert parsed is not None, header
    fallback, encoded = parsed.groups()
    assert not any(c in fallback for c in "%/")
    assert unquote(encoded, errors="strict") == (display_name(name) or "download")


def test_the_ascii_name_keeps_what_ascii_can_say() -> None:
    assert content_disposition('résumé "final".pdf').startswith('attachment; filename="resume _final_.pdf"; ')


def presigned(aws: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    url = ObjectStore().presign_get("bucket", "files/x/original", 300, **kwargs)
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.mark.parametrize("name", ['say "hi".pdf', "", "日本語.pdf"])
def test_an_original_is_always_an_attachment_named_per_rfc_6266(aws, name: str) -> None:
    query = presigned(aws, filename=name, content_type="application/pdf")

    assert query["response-content-disposition"] == content_disposition(name)
    assert query["response-content-type"] == "application/pdf"
    assert query["response-cache-control"] == "private, max-age=300"  # an original: no shared cache keeps it

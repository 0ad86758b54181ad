"""Names over real HTTP: a long name keeps its extension (so a long ``.exe`` is refused like a short
one), invisible characters never come back, and the original downloads from S3 as an attachment whose
Content-Disposition is RFC 6266 for the owner's own name, quotes and all."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from docpipe_local.client import ApiError, DocpipeClient, post_file

# RFC 6266: attachment; filename="<quoted-string without quotes or escapes>"; filename*=UTF-8''<attr-chars and %HH>
RFC_6266 = re.compile(
    r"""attachment; filename="([ !#-\[\]-~]*)"; filename\*=UTF-8''((?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-F]{2})+)"""
)


@pytest.mark.parametrize("ext", [".exe", ".html"])
def test_a_long_name_of_a_refused_type_is_415(alice: DocpipeClient, ext: str) -> None:
    with pytest.raises(ApiError) as refused:
        alice.create_upload("a" * 300 + ext, 12)

    assert (refused.value.status, refused.value.code) == (415, "file.unsupported_type")


def test_bidi_controls_are_not_shown_back(alice: DocpipeClient) -> None:
    created = alice.create_upload("invoice\u202ecod.txt\u200b", 12, "text/plain")

    assert alice.job(created["jobId"])["name"] == "invoicecod.txt"


def test_the_original_downloads_as_an_attachment_named_per_rfc_6266(alice: DocpipeClient, tmp_path: Path) -> None:
    name = 'my "résumé"\u202e 日本.txt'
    path = tmp_path / "upload.txt"
    path.write_bytes(b"a plain text file, named with quotes and bidi controls\n")
    created = alice.create_upload(name, path.stat().st_size, "text/plain")
    post_file(created["upload"], path)
    job = alice.wait(created["jobId"], timeout=60)
    assert job["state"] == "ready", job

    redirect = alice.session.get(f"{alice.api_url}/files/{job['hash']}/original", allow_redirects=False, timeout=30)
    download = requests.get(redirect.headers["Location"], timeout=30)

    assert (redirect.status_code, redirect.headers["X-Content-Type-Options"]) == (302, "nosniff")
    assert download.status_code == 200
    parsed = RFC_6266.fullmatch(download.headers["Content-Disposition"])
    assert parsed is not None, download.headers["Content-Disposition"]
    fallback, encoded = parsed.groups()
    assert (fallback, unquote(encoded, errors="strict")) == ("my _resume_ __.txt", 'my "résumé" 日本.txt')
    assert download.headers["Content-Type"] == "text/plain"

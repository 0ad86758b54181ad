from __future__ import annotations

from urllib.parse import quote_plus, unquote_plus

import pytest

from docpipe.lanes import lane_for
from docpipe.storage import display_name, parse_upload_key, safe_name, upload_key

MB = 1024 * 1024


@pytest.mark.parametrize(
    ("name", "shown", "safe"),
    [
        ("../../etc/passwd", "passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf", "report.pdf"),
        ("bad\x00na\x1bme\n.txt", "badname.txt", "badname.txt"),
        ("holiday photo (1).JPG", "holiday photo (1).JPG", "holiday_photo_1.JPG"),
        ("résumé.docx", "résumé.docx", "resume.docx"),
        (".hidden", ".hidden", "hidden"),
        ("日本語.pdf", "日本語.pdf", "file.pdf"),
    ],
)
def test_names_lose_paths_and_control_characters(name: str, shown: str, safe: str) -> None:
    assert display_name(name) == shown
    assert safe_name(name) == safe


JOB = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


@pytest.mark.parametrize("owner", ["alice", "a+b", "user%41", "zoë"])
def test_upload_key_round_trips_through_one_s3_event_decoding(owner: str) -> None:
    key = upload_key("high", owner, JOB, "a b.txt")
    encoded = quote_plus(key, safe="")  # how S3 notifications carry keys
    assert parse_upload_key(unquote_plus(encoded)) == ("high", owner, JOB)


@pytest.mark.parametrize(
    "key",
    [
        "uploads/high/alice/x",
        "other/high/alice/job/name",
        "uploads/high//job/name",
        "uploads/fast/a/b/c",
        f"uploads/alice/{JOB}/old-layout.txt",
        "uploads/high/a/b/c/d",
    ],
)
def test_keys_outside_the_upload_layout_are_not_parsed(key: str) -> None:
    assert parse_upload_key(key) is None


@pytest.mark.parametrize(
    ("size", "requested", "lane"),
    [
        (100_000, None, "high"),
        (2 * MB, None, "normal"),
        (50 * MB, None, "low"),
        (5 * MB, "high", "high"),
        (50 * MB, "high", "low"),
        (100_000, "low", "low"),
        (100_000, "bogus", "high"),
    ],
)
def test_lane_is_chosen_by_size_and_request(size: int, requested: str | None, lane: str) -> None:
    assert lane_for(size, requested) == lane

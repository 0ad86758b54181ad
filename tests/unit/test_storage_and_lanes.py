from __future__ import annotations

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


def test_upload_key_round_trips_through_an_s3_event_encoding() -> None:
    key = upload_key("alice", "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "a b.txt")
    encoded = key.replace("/", "%2F")
    assert parse_upload_key(encoded) == ("alice", "1b4e28ba-2fa1-11d2-883f-0016d3cca427")


@pytest.mark.parametrize("key", ["uploads/alice/x", "other/alice/job/name", "uploads//job/name", "uploads/a/b/c/d"])
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

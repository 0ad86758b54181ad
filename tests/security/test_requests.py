"""Malformed requests over real HTTP: each is a 4xx with a stable code, never a 500 or a 503. Bodies the
event handler's own parse could not survive (digits past Python's limit, bytes that are not UTF-8,
nesting past the recursion limit), JSON types taken as they are, and listing cursors of any shape but
the one the listing gives out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests

from docpipe_local.stack import LocalStack

HEADERS = {"Authorization": "Bearer tok-alice", "Content-Type": "application/json"}


def post_upload(stack: LocalStack, body: str | bytes, headers: dict[str, str] = HEADERS) -> requests.Response:
    return requests.post(f"{stack.api_url}/uploads", data=body, headers=headers, timeout=60)


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ('{"name": "notes.txt", "size": ' + "9" * 5000 + "}", "request.number_too_long"),
        (b'{"name": "\xff\xfe notes.txt", "size": 12}', "request.invalid_encoding"),
        ("[" * 100_000 + "]" * 100_000, "request.too_deep"),
        ('{"name": "notes.txt", "size": 12, "tags": ' + "[" * 100_000 + "]" * 100_000 + "}", "request.too_deep"),
        ('{"name": "notes.txt", "size": Infinity}', "request.invalid_json"),
        ('{"name": "notes.txt", "size": 12, "size": 99}', "request.invalid_json"),
    ],
    ids=["5000-digits", "not-utf8", "deep", "deep-inside", "infinity", "key-twice"],
)
def test_a_malformed_body_is_400_with_its_code(stack: LocalStack, body: str | bytes, code: str) -> None:
    response = post_upload(stack, body)

    assert (response.status_code, response.json()["code"]) == (400, code)


@pytest.mark.parametrize(
    "fields", [{"size": True}, {"size": "12"}, {"ocr": 1}], ids=["size-true", "size-text", "ocr-1"]
)
def test_json_types_are_taken_as_they_are(stack: LocalStack, fields: dict[str, Any]) -> None:
    response = post_upload(stack, json.dumps({"name": "notes.txt", "size": 12, **fields}))

    assert (response.status_code, response.json()["code"]) == (400, "request.invalid")


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data"])
def test_a_body_that_is_not_json_is_415(stack: LocalStack, content_type: str) -> None:
    response = post_upload(stack, '{"name": "notes.txt", "size": 12}', {**HEADERS, "Content-Type": content_type})

    assert (response.status_code, response.json()["code"]) == (415, "request.unsupported_media_type")


START = {
    "jobId": {"S": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
    "owner": {"S": "alice"},
    "createdAt": {"S": "2026-01-01T00:00:00.000Z"},
}


@pytest.mark.parametrize(
    "value",
    [
        {"owner": {"S": "alice"}},
        {**START, "status": {"S": "ready"}},
        {**START, "owner": "alice"},
        {**START, "jobId": {"N": "1"}},
    ],
    ids=["owner-only", "extra-key", "untyped-owner", "number-id"],
)
def test_a_cursor_of_another_shape_is_400(stack: LocalStack, value: Any) -> None:
    response = requests.get(f"{stack.api_url}/jobs", params={"cursor": cursor(value)}, headers=HEADERS, timeout=60)

    assert (response.status_code, response.json()["code"]) == (400, "request.invalid")


def test_a_cursor_nested_past_the_recursion_limit_is_400(stack: LocalStack) -> None:
    deep = base64.urlsafe_b64encode(b"[" * 1500).decode()

    response = requests.get(f"{stack.api_url}/jobs", params={"cursor": deep}, headers=HEADERS, timeout=60)

    assert (response.status_code, response.json()["code"]) == (400, "request.invalid")


def test_every_answer_says_nosniff(stack: LocalStack) -> None:
    answers = [
        post_upload(stack, "[" * 100_000),
        requests.get(f"{stack.api_url}/jobs", headers=HEADERS, timeout=60),
        requests.get(f"{stack.api_url}/health", timeout=60),
    ]

    assert [a.headers.get("X-Content-Type-Options") for a in answers] == ["nosniff"] * 3

"""The API's edge: a request body is bounded JSON before the event handler parses it, a malformed one is
a 4xx with a stable code on every route, the upload request is strict, and every response says nosniff."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from docpipe import bounded_json
from docpipe.errors import BadRequest
from docpipe_local.apigw import http_event, response_body

pytestmark = pytest.mark.usefixtures("aws")

UPLOAD = {"name": "notes.txt", "size": 12}
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def send(lambda_context):
    from api import handler

    def send(
        body: str | bytes | None,
        path: str = "/uploads",
        method: str = "POST",
        content_type: str | None = "application/json",
        event: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if event is None:
            headers = {"content-type": content_type} if content_type else {}
            event = http_event(method, path, headers=headers, body=body, claims={"sub": "alice"})
        response = handler.lambda_handler(event, lambda_context)
        return response["statusCode"], json.loads(response_body(response)), response.get("headers", {})

    return send


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ('{"name": "notes.txt", "size": ' + "9" * 5000 + "}", "request.number_too_long"),
        ('{"name": "notes.txt", "size": 0.' + "1" * 5000 + "}", "request.number_too_long"),
        (b'{"name": "\xff\xfe.txt", "size": 12}', "request.invalid_encoding"),
        (DEEP, "request.too_deep"),
        ('{"name": "notes.txt", "size": 12, "extra": ' + DEEP + "}", "request.too_deep"),
        ('{"name": ', "request.invalid_json"),
        ('{"name": "notes.txt", "size": NaN}', "request.invalid_json"),
        ('{"name": "notes.txt", "size": 12, "size": 99}', "request.invalid_json"),
        ('{"name": "\\ud800.txt", "size": 12}', "request.invalid_json"),
    ],
    ids=["long-int", "long-float", "not-utf8", "deep", "deep-inside", "truncated", "nan", "twice", "surrogate"],
)
def test_a_malformed_body_is_400_with_its_code(send, body: str | bytes, code: str) -> None:
    status, error, _ = send(body)

    assert (status, error["code"]) == (400, code)


def test_a_body_over_the_limit_is_413(send) -> None:
    from api.requests import MAX_BODY_BYTES

    status, error, _ = send(json.dumps({**UPLOAD, "padding": "x" * MAX_BODY_BYTES}))

    assert (status, error["code"]) == (413, "request.too_large")


def test_base64_that_does_not_decode_is_400(send) -> None:
    event = http_event("POST", "/uploads", headers={"content-type": "application/json"}, claims={"sub": "alice"})
    event.update(body="not base64!", isBase64Encoded=True)

    status, error, _ = send(None, event=event)

    assert (status, error["code"]) == (400, "request.invalid_encoding")


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_is_415(send, content_type: str) -> None:
    status, error, _ = send("name=notes.txt&size=12", content_type=content_type)

    assert (status, error["code"]) == (415, "request.unsupported_media_type")


def test_every_route_with_a_body_is_guarded(send) -> None:
    status, error, _ = send(b"\xff", path="/jobs/1b4e28ba-2fa1-11d2-883f-0016d3cca427/retry")

    assert (status, error["code"]) == (400, "request.invalid_encoding")


def test_a_refusal_has_the_shape_of_every_other_error(send) -> None:
    _, error, headers = send(DEEP)

    assert set(error) == {"code", "message"}
    assert (headers["Content-Type"], headers["X-Content-Type-Options"]) == ("application/json", "nosniff")


@pytest.mark.parametrize(
    ("path", "method", "expected"), [("/health", "GET", 200), ("/nope", "GET", 404), ("/uploads", "POST", 201)]
)
def test_every_response_says_nosniff(send, path: str, method: str, expected: int) -> None:
    status, _, headers = send(json.dumps(UPLOAD) if method == "POST" else None, path=path, method=method)

    assert (status, headers["X-Content-Type-Options"]) == (expected, "nosniff")


@pytest.mark.parametrize(
    "fields",
    [{"size": True}, {"size": "12"}, {"size": 12.0}, {"ocr": 1}, {"ocr": "true"}],
)
def test_the_upload_request_takes_json_types_as_they_are(send, fields: dict[str, Any]) -> None:
    status, error, _ = send(json.dumps({**UPLOAD, **fields}))

    assert (status, error["code"]) == (400, "request.invalid")


def test_a_checked_body_is_handed_on_as_the_text_that_was_checked() -> None:
    from api.requests import checked

    text = json.dumps(UPLOAD)
    event = http_event("POST", "/uploads", headers={"content-type": "application/json"})
    event.update(body=base64.b64encode(text.encode()).decode(), isBase64Encoded=True)

    passed = checked(event)

    assert (passed["body"], passed["isBase64Encoded"]) == (text, False)


@pytest.mark.parametrize(
    ("text", "depth"),
    [("1", 0), ("[[1], {}]", 2), ('["[[[[", "\\"[[["]', 1), ('{"a": {"b": [{"c": 1}]}}', 4)],
)
def test_depth_is_counted_outside_strings_without_recursion(text: str, depth: int) -> None:
    assert bounded_json.depth(text) == depth


def test_numbers_within_bounds_parse_as_json_does() -> None:
    assert bounded_json.loads('{"a": [1, -2.5e3, 12345678901234567890]}') == {"a": [1, -2500.0, 12345678901234567890]}


def test_a_deep_value_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(BadRequest) as refused:
        bounded_json.loads("[" * 33 + "]" * 33)

    assert refused.value.code == "request.too_deep"

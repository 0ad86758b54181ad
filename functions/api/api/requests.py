"""What every request and response of the HTTP API goes through, once, at the function's edge.

A request body is checked before the event handler sees it, whatever the route: the event handler's
own parse (``json.loads`` on the decoded body) knows no bounds, and what it raises besides
``JSONDecodeError`` (``UnicodeDecodeError``, ``RecursionError``, the ``ValueError`` of an integer
past 4,300 digits, an unsupported content type) would be a 500. :func:`checked` refuses, in order:

- ``request.unsupported_media_type`` (415): a body, or a POST/PUT/PATCH, whose ``Content-Type`` is
  not ``application/json`` (no type at all counts as JSON, as it does for the event handler);
- ``request.invalid_encoding`` (400): base64 that does not decode, or bytes that are not UTF-8;
- ``request.too_large`` (413): more than :data:`MAX_BODY_BYTES` (API Gateway itself allows 10 MB);
- ``request.too_deep``, ``request.number_too_long``, ``request.invalid_json`` (400): see
  :mod:`docpipe.bounded_json`.

A body that passes is handed on as the plain UTF-8 text that was checked (``isBase64Encoded`` false),
so the event handler parses exactly what was bounded and cannot fail differently.

Every response carries :data:`SECURITY_HEADERS` (:func:`with_security_headers`), redirects included.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aws_lambda_powertools.event_handler import Response

from docpipe import bounded_json
from docpipe.errors import BadRequest, RequestTooLarge, UnsupportedMediaType

# Well above any body this API takes (an upload request is under 2 KB), far below API Gateway's 10 MB.
MAX_BODY_BYTES = 256 * 1024
JSON_MEDIA_TYPE = "application/json"
# Methods whose requests carry a body the event handler may parse, even an empty one.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# On every response: a browser never second-guesses the declared Content-Type (a JSON error body is
# never run as HTML or script, whatever it quotes back).
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}


def checked(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its body checked and as plain text; raises a :class:`BadRequest` that says why not."""
    body = event.get("body")
    method = str((event.get("requestContext") or {}).get("http", {}).get("method", "")).upper()
    if not body and method not in BODY_METHODS:
        return event
    media_type = _header(event, "content-type").split(";")[0].strip().lower()
    if media_type and media_type != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType()
    if not body:
        return event
    raw = _bytes(body, bool(event.get("isBase64Encoded")))
    if len(raw) > MAX_BODY_BYTES:
        raise RequestTooLarge(f"The body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES} bytes.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The body is not UTF-8.", code="request.invalid_encoding") from None
    bounded_json.loads(text)
    return {**event, "body": text, "isBase64Encoded": False}


def _bytes(body: Any, base64_encoded: bool) -> bytes:
    if not isinstance(body, str):
        raise BadRequest("The body is not text.", code="request.invalid_encoding")
    try:
        if base64_encoded:
            if len(body) > (MAX_BODY_BYTES + 2) // 3 * 4:  # not decoded at all when it cannot fit
                raise RequestTooLarge(f"The body is larger than {MAX_BODY_BYTES} bytes.")
            return base64.b64decode(body, validate=True)
        return body.encode("utf-8")
    except (binascii.Error, UnicodeEncodeError):
        raise BadRequest("The body is not UTF-8.", code="request.invalid_encoding") from None


def _header(event: dict[str, Any], name: str) -> str:
    """A request header (API Gateway lowercases names in payload 2.0; a test event may not)."""
    headers = event.get("headers") or {}
    return str(next((value for key, value in headers.items() if key.lower() == name), "") or "")


def proxy_result(response: Response[str]) -> dict[str, Any]:
    """A response the event handler never resolved, in the shape it returns its own (HTTP API payload 2.0)."""
    headers = {
        name: value if isinstance(value, str) else ", ".join(value)
        for name, value in response.headers.items()
        if value is not None
    }
    return {
        "statusCode": response.status_code,
        "body": response.body,
        "isBase64Encoded": False,
        "headers": headers,
        "cookies": [],
    }


def with_security_headers(result: dict[str, Any]) -> dict[str, Any]:
    """A resolved response with :data:`SECURITY_HEADERS` added (a header the route set itself wins)."""
    return {**result, "headers": {**SECURITY_HEADERS, **(result.get("headers") or {})}}

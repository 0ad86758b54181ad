"""A request's body as the local gateway reads it, as API Gateway's HTTP API takes it: by ``Content-Length``
or ``Transfer-Encoding: chunked``, at most :data:`MAX_BODY`, and never both framings at once."""

from __future__ import annotations

import re
from io import BufferedIOBase
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from email.message import Message

MAX_BODY = 10 * 1024 * 1024  # HTTP API's payload limit
_DIGITS = re.compile(r"[0-9]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")
_LINE = 4096  # the longest chunk-size or trailer line read


class Refused(Exception):
    """A request the gateway answers itself: status, stable code, message. ``close`` when the rest of
    the connection cannot be read as requests any more (its body's length is unknown, or was not read)."""

    def __init__(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.close = status, code, message, close


class ClientGone(ConnectionResetError):
    """The client closed the connection in the middle of a body."""


def read_body(headers: Message, rfile: BufferedIOBase) -> bytes:
    """The request's body, by ``Content-Length`` or ``Transfer-Encoding: chunked`` (as HTTP API takes it)."""
    lengths = headers.get_all("Content-Length") or []
    encodings = headers.get_all("Transfer-Encoding") or []
    if encodings:
        if lengths:  # the two disagree on where the body ends: the classic request-smuggling shape
            raise Refused(400, "request.bad_length", "Send Content-Length or Transfer-Encoding, not both.", close=True)
        if ",".join(encodings).strip().lower() != "chunked":
            raise Refused(
                501, "request.unsupported_encoding", "Transfer-Encoding must be chunked (and only that).", close=True
            )
        return _read_chunked(rfile)
    if not lengths:
        return b""
    if len({v.strip() for v in lengths}) != 1 or not _DIGITS.fullmatch(lengths[0].strip()):
        raise Refused(400, "request.bad_length", "Content-Length must be one non-negative integer.", close=True)
    length = int(lengths[0])
    if length > MAX_BODY:
        raise Refused(413, "request.too_large", "Request bodies are limited to 10 MB.", close=True)
    body = rfile.read(length)
    if len(body) < length:
        raise ClientGone("the client closed the connection before the end of its body")
    return body


def _read_chunked(rfile: BufferedIOBase) -> bytes:
    body = bytearray()
    while True:
        line = rfile.readline(_LINE + 1)
        if not line:
            raise ClientGone("the client closed the connection before the end of its body")
        size = line.split(b";", 1)[0].strip()
        if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size):
            raise Refused(400, "request.bad_chunk", "A chunk's size line is not a hexadecimal number.", close=True)
        if not int(size, 16):
            break
        if len(body) + int(size, 16) > MAX_BODY:
            raise Refused(413, "request.too_large", "Request bodies are limited to 10 MB.", close=True)
        chunk = rfile.read(int(size, 16))
        if len(chunk) < int(size, 16):
            raise ClientGone("the client closed the connection before the end of its body")
        body += chunk
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise Refused(400, "request.bad_chunk", "A chunk is longer than its size line says.", close=True)
    for _ in range(100):  # trailers, up to the empty line
        if rfile.readline(_LINE + 1) in (b"\r\n", b"\n", b""):
            return bytes(body)
    raise Refused(400, "request.bad_chunk", "Too many trailer lines.", close=True)

"""The local gateway's pure parts: the claims it passes, the admin claim read from the template, the
page's Content-Security-Policy with the local storage added, and how it reads a request's body."""

from __future__ import annotations

import io
from email.message import Message
from http.client import parse_headers
from pathlib import Path

import pytest

from docpipe_local.gateway import MAX_BODY, Refused, jwt_claims, page_with_sources, read_body
from docpipe_local.stack import admin_claim
from docpipe_local.template import Template

ROOT = Path(__file__).resolve().parents[2]


def headers(*lines: str) -> Message:
    return parse_headers(io.BytesIO("".join(f"{line}\r\n" for line in (*lines, "")).encode()))


# ------------------------------------------------------------------ claims
def test_a_users_claims_name_the_user_only() -> None:
    assert jwt_claims("alice") == {"sub": "alice", "iss": "docpipe-local", "aud": "docpipe"}


def test_an_admins_claims_carry_the_group_as_api_gateway_passes_a_list_claim() -> None:
    claims = jwt_claims("root", ("cognito:groups", "docpipe-admins"))

    assert claims["sub"] == "root" and claims["cognito:groups"] == "[docpipe-admins]"


def test_the_admin_claim_is_the_templates_defaults() -> None:
    assert admin_claim(Template.load(ROOT / "template.yaml")) == ("cognito:groups", "docpipe-admins")


def test_the_admin_claim_follows_the_stacks_parameters() -> None:
    template = Template.load(ROOT / "template.yaml", parameters={"AdminGroup": "ops", "AdminGroupClaim": "groups"})

    assert admin_claim(template) == ("groups", "ops")


# ------------------------------------------------------------------ the page
def test_the_page_as_served_lets_it_talk_to_the_local_storage() -> None:
    page = (ROOT / "web" / "index.html").read_text()

    served = page_with_sources(page, ["http://127.0.0.1:5000"])

    policy = served.split('http-equiv="Content-Security-Policy" content="')[1].split('"')[0]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    assert "http://127.0.0.1:5000" in directives["connect-src"] and "http://127.0.0.1:5000" in directives["img-src"]
    assert directives["default-src"] == ["'self'"] and directives["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy


# ------------------------------------------------------------------ bodies
def test_a_body_is_read_by_its_content_length() -> None:
    assert read_body(headers("Content-Length: 2"), io.BytesIO(b"{}GET /")) == b"{}"


@pytest.mark.parametrize("value", ["-1", "abc", "+2", "1e3", "2, 3", ""])
def test_a_content_length_that_is_not_one_number_is_refused(value: str) -> None:
    with pytest.raises(Refused) as refused:
        read_body(headers(f"Content-Length: {value}"), io.BytesIO(b"{}"))

    assert (refused.value.status, refused.value.code, refused.value.close) == (400, "request.bad_length", True)


def test_two_different_content_lengths_are_refused() -> None:
    with pytest.raises(Refused) as refused:
        read_body(headers("Content-Length: 2", "Content-Length: 3"), io.BytesIO(b"{} "))

    assert refused.value.code == "request.bad_length"


def test_a_body_over_10_mb_is_refused_without_reading_it() -> None:
    with pytest.raises(Refused) as refused:
        read_body(headers(f"Content-Length: {MAX_BODY + 1}"), io.BytesIO(b""))

    assert (refused.value.status, refused.value.code, refused.value.close) == (413, "request.too_large", True)


def test_a_chunked_body_is_joined_and_its_trailers_skipped() -> None:
    wire = b'4\r\n{"a"\r\n3;ext=1\r\n:1}\r\n0\r\nX-Trailer: yes\r\n\r\nGET /'

    assert read_body(headers("Transfer-Encoding: chunked"), io.BytesIO(wire)) == b'{"a":1}'


@pytest.mark.parametrize(
    "wire", [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}}\r\n0\r\n\r\n", b"-2\r\n{}\r\n0\r\n\r\n"], ids=str
)
def test_a_malformed_chunk_is_refused(wire: bytes) -> None:
    with pytest.raises(Refused) as refused:
        read_body(headers("Transfer-Encoding: chunked"), io.BytesIO(wire))

    assert (refused.value.status, refused.value.code, refused.value.close) == (400, "request.bad_chunk", True)


def test_chunks_over_10_mb_in_all_are_refused() -> None:
    wire = f"{MAX_BODY:x}\r\n".encode() + b"x" * MAX_BODY + b"\r\n1\r\nx\r\n0\r\n\r\n"

    with pytest.raises(Refused) as refused:
        read_body(headers("Transfer-Encoding: chunked"), io.BytesIO(wire))

    assert refused.value.status == 413


def test_content_length_and_transfer_encoding_together_are_refused() -> None:
    with pytest.raises(Refused) as refused:
        read_body(headers("Content-Length: 7", "Transfer-Encoding: chunked"), io.BytesIO(b"2\r\n{}\r\n0\r\n\r\n"))

    assert (refused.value.status, refused.value.code) == (400, "request.bad_length")


def test_a_transfer_encoding_other_than_chunked_is_not_implemented() -> None:
    with pytest.raises(Refused) as refused:
        read_body(headers("Transfer-Encoding: gzip, chunked"), io.BytesIO(b""))

    assert (refused.value.status, refused.value.code) == (501, "request.unsupported_encoding")


def test_a_request_without_a_length_has_no_body() -> None:
    assert read_body(headers("Host: x"), io.BytesIO(b"{}")) == b""


# ------------------------------------------------------------------ one user's burst of requests
def test_a_busy_users_requests_yield_to_other_users() -> None:
    import threading

    from docpipe_local import gateway as gateway_module
    from docpipe_local.gateway import Gateway

    class Api:
        """Records how each request was invoked; holds them until released."""

        def __init__(self) -> None:
            self.calls: list[tuple[str, int, bool]] = []
            self.hold = threading.Event()
            self.lock = threading.Lock()

        def invoke(self, event: dict, nice: int = 0, first: bool = False) -> dict:
            with self.lock:
                self.calls.append((event["user"], nice, first))
            self.hold.wait(5)
            return {}

    api = Api()
    gateway = Gateway(None, {}, {})
    gateway.api = api  # type: ignore[assignment]
    try:
        busy = gateway_module.BUSY_REQUESTS
        burst = [threading.Thread(target=gateway._invoke_api, args=("a", {"user": "a"})) for _ in range(busy + 2)]
        for thread in burst:
            thread.start()
        while len(api.calls) < busy + 2:
            threading.Event().wait(0.01)
        quiet = threading.Thread(target=gateway._invoke_api, args=("b", {"user": "b"}))
        quiet.start()
        while len(api.calls) < busy + 3:
            threading.Event().wait(0.01)
        api.hold.set()
        for thread in [*burst, quiet]:
            thread.join(5)
    finally:
        gateway.stop()

    a_calls = [(nice, first) for user, nice, first in api.calls if user == "a"]
    # a's first requests, before a was busy, then two while it was
    assert sorted(a_calls) == sorted([(0, True)] * busy + [(0, False)] * 2)
    assert [(nice, first) for user, nice, first in api.calls if user == "b"] == [(0, True)]
    assert gateway._in_flight == {}  # every request counted out

"""The local gateway's pure parts: the claims it passes, the admin claim read from the template, the
page's Content-Security-Policy with the local storage added, and how it reads a request's body."""

from __future__ import annotations

import io
import time
from email.message import Message
from http.client import parse_headers
from pathlib import Path

import pytest

from docpipe_local.gateway import jwt_claims, page_with_sources
from docpipe_local.http_body import MAX_BODY, Refused, read_body
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
def _wait_until(predicate, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_freed_api_worker_goes_to_the_user_with_the_fewest_requests_running() -> None:
    """Two workers, user a's burst of six requests, then one request of b: b's runs as soon as one of a's
    ends, before a's four others; each user's requests run in the order they came; nothing is dropped."""
    import threading
    from types import SimpleNamespace

    from docpipe_local.gateway import Gateway

    class Api:
        concurrency = 2
        spec = SimpleNamespace(http_routes=[])

        def __init__(self) -> None:
            self.started: list[str] = []
            self.release: dict[str, threading.Event] = {}
            self.lock = threading.Lock()

        def invoke(self, event: dict) -> dict:
            with self.lock:
                self.started.append(event["id"])
                done = self.release.setdefault(event["id"], threading.Event())
            assert done.wait(5)
            return {}

        def finish(self, request_id: str) -> None:
            with self.lock:
                self.release.setdefault(request_id, threading.Event()).set()

    api = Api()
    gateway = Gateway(None, {}, {})
    gateway.serve_api(api)  # type: ignore[arg-type]
    threads = []
    try:
        for n in range(6):
            threads.append(threading.Thread(target=gateway._invoke_api, args=("a", {"id": f"a{n}"})))
            threads[-1].start()
            _wait_until(lambda n=n: len(api.started) == min(n + 1, 2) and _waiting(gateway.share) == max(0, n - 1))
        threads.append(threading.Thread(target=gateway._invoke_api, args=("b", {"id": "b0"})))
        threads[-1].start()
        _wait_until(lambda: "b" in gateway.share.waiting)
        api.finish("a0")
        _wait_until(lambda: len(api.started) == 3)
        assert api.started == ["a0", "a1", "b0"]  # b's request took the freed worker, before a2..a5
        for request_id in ["a1", "b0", "a2", "a3", "a4", "a5"]:
            api.finish(request_id)
        for thread in threads:
            thread.join(5)
    finally:
        for request_id in [f"a{n}" for n in range(6)] + ["b0"]:
            api.finish(request_id)
        gateway.stop()
    assert api.started == ["a0", "a1", "b0", "a2", "a3", "a4", "a5"]
    assert gateway.share.free == 2 and not gateway.share.running and not gateway.share.waiting


def _waiting(share) -> int:
    return sum(len(q) for q in share.waiting.values())


def test_the_api_workers_are_shared_evenly_among_busy_users() -> None:
    """a holds all three workers and has more waiting; then b and c wait too. As a's requests end one at
    a time, the workers go to b, then c (nothing running, b asked first), then a: one each."""
    import threading

    from docpipe_local.user_share import UserShare

    share = UserShare(3)
    granted: list[str] = []
    done: dict[str, threading.Event] = {}
    lock = threading.Lock()

    def request(request_id: str) -> None:
        share.acquire(request_id[0])
        with lock:
            granted.append(request_id)
            event = done.setdefault(request_id, threading.Event())
        event.wait(5)
        share.release(request_id[0])

    def finish(request_id: str) -> None:
        with lock:
            done.setdefault(request_id, threading.Event()).set()

    threads = []
    for request_id in ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "c0", "c1"]:
        threads.append(threading.Thread(target=request, args=(request_id,)))
        threads[-1].start()
        _wait_until(lambda: len(granted) + _waiting(share) == len(threads))
    try:
        assert granted == ["a0", "a1", "a2"]
        for n, request_id in enumerate(["a0", "a1", "a2"]):
            finish(request_id)
            _wait_until(lambda n=n: len(granted) == 4 + n)
        assert granted[3:] == ["b0", "c0", "a3"]
    finally:
        for request_id in ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "c0", "c1"]:
            finish(request_id)
        for thread in threads:
            thread.join(5)
    assert sorted(granted) == ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "c0", "c1"]
    assert share.free == 3 and not share.running and not share.waiting


def test_a_quarter_of_the_api_workers_are_kept_for_users_with_nothing_running() -> None:
    """Eight workers: a's burst takes six and waits with two free; b's request then runs at once."""
    import threading

    from docpipe_local.user_share import UserShare

    share = UserShare(8)
    granted: list[str] = []
    done = threading.Event()

    def request(request_id: str) -> None:
        share.acquire(request_id[0])
        granted.append(request_id)
        done.wait(5)
        share.release(request_id[0])

    threads = [threading.Thread(target=request, args=(f"a{n}",)) for n in range(10)]
    for thread in threads:
        thread.start()
    try:
        _wait_until(lambda: len(granted) == 6 and _waiting(share) == 4)
        time.sleep(0.05)
        assert len(granted) == 6 and share.free == 2  # the reserve stays free while only a asks
        threads.append(threading.Thread(target=request, args=("b0",)))
        threads[-1].start()
        _wait_until(lambda: "b0" in granted)
        assert len(granted) == 7 and share.free == 1
    finally:
        done.set()
        for thread in threads:
            thread.join(5)
    assert len(granted) == 11 and share.free == 8 and not share.running and not share.waiting


def test_a_client_gone_between_requests_leaves_no_traceback_and_any_other_failure_is_logged(capsys, caplog) -> None:
    from http.server import BaseHTTPRequestHandler

    from docpipe_local.gateway import GatewayServer

    server = GatewayServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    try:
        for error in (ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(), ValueError("boom")):
            try:
                raise error
            except Exception:
                server.handle_error(None, ("127.0.0.1", 40000))
    finally:
        server.server_close()

    assert capsys.readouterr().err == ""  # socketserver's own handle_error prints each traceback there
    assert [(r.levelname, r.exc_info[1]) for r in caplog.records if r.exc_info] == [("ERROR", error)]


def test_an_api_invocation_that_fails_answers_500_and_the_stack_says_why(caplog) -> None:
    """A timed-out (or crashed) API invocation is a 500 to the client, as API Gateway answers, and a warning
    in the stack's log with the route and the runtime's reason: a 500 under load must not be a mystery."""
    from types import SimpleNamespace

    import requests

    from docpipe_local.gateway import Gateway
    from docpipe_local.runtime import Invocation
    from docpipe_local.template import HttpRoute

    class Api:
        concurrency = 1
        spec = SimpleNamespace(http_routes=[HttpRoute("GET", "/usage", False)])

        def invoke(self, event: dict) -> Invocation:
            return Invocation("timeout", error={"errorType": "timeout", "errorMessage": "exceeded Timeout 10 s"})

    gateway = Gateway(None, {}, {})
    gateway.serve_api(Api())  # type: ignore[arg-type]
    gateway.start()
    try:
        with caplog.at_level("WARNING", logger="docpipe.local"):
            answer = requests.get(f"{gateway.url}/usage", timeout=5)
    finally:
        gateway.stop()
    assert (answer.status_code, answer.json()["code"]) == (500, "internal")
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "GET /usage answered 500: the API function's invocation timeout (timeout: exceeded Timeout 10 s)"
    ]

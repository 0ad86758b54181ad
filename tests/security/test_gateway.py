"""The local gateway over real HTTP: Lambda's Invoke API answers only the stack's own token, never a web
page, and only a JSON object; every request must name the gateway's loopback address; a body whose
length cannot be read is answered 400 at once; admins' tokens carry the admin group claim."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from docpipe_local.apigw import http_event
from docpipe_local.client import DocpipeClient
from docpipe_local.gateway import jwt_claims
from docpipe_local.stack import LocalStack


def invocations(stack: LocalStack, function: str = "ApiFunction") -> str:
    return f"{stack.api_url}/2015-03-31/functions/{function}/invocations"


def forged_cancel(job_id: str) -> dict[str, Any]:
    """What a page on another site sent: alice's identity, written by the sender, cancelling her job."""
    return http_event("DELETE", f"/jobs/{job_id}", claims=jwt_claims("alice"), route_key="DELETE /jobs/{id}")


@pytest.fixture
def open_job(alice: DocpipeClient) -> str:
    """A job of alice's waiting for its upload (the file is never sent)."""
    return str(alice.create_upload("letter.txt", 12, "text/plain")["jobId"])


def host(stack: LocalStack) -> str:
    return stack.api_url.removeprefix("http://")


def raw(stack: LocalStack, request: bytes, timeout: float = 5) -> tuple[bytes, float]:
    """Everything the gateway sends back on one connection until it closes it, and how long that took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", int(host(stack).rsplit(":", 1)[1])), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def answers(received: bytes) -> list[tuple[int, dict[str, Any]]]:
    """The HTTP responses in a connection's bytes: status and JSON body of each."""
    found = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        body, received = rest[:length], rest[length:]
        found.append((int(lines[0].split()[1]), json.loads(body) if "json" in headers.get("content-type", "") else {}))
    return found


# ------------------------------------------------------------------ the Invoke API
REFUSED = {
    "no token": ({"Content-Type": "application/json"}, 401, "auth.required"),
    "a user's token": ({"Authorization": "Bearer tok-bob", "Content-Type": "application/json"}, 403, "auth.forbidden"),
    "another site's Host": (
        {"Host": "rebound.example:{port}", "Content-Type": "application/json"},
        403,
        "request.bad_host",
    ),
    "an Origin": (
        {"Origin": "https://elsewhere.example", "Content-Type": "application/json"},
        403,
        "invoke.from_browser",
    ),
    "a browser's Sec-Fetch-Site": (
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"},
        403,
        "invoke.from_browser",
    ),
    "a text body": ({"Content-Type": "text/plain"}, 415, "request.not_json"),
    "no Content-Type": ({}, 415, "request.not_json"),
}


@pytest.mark.parametrize("case", REFUSED, ids=str)
def test_the_invoke_api_refuses_a_forged_cancel_and_invokes_nothing(stack, alice, open_job, case) -> None:
    headers, status, code = REFUSED[case]
    headers = {k: v.format(port=host(stack).rsplit(":", 1)[1]) for k, v in headers.items()}
    if case not in ("no token", "a user's token"):
        headers.setdefault("Authorization", f"Bearer {stack.invoke_token}")

    response = requests.post(invocations(stack), data=json.dumps(forged_cancel(open_job)), headers=headers, timeout=30)

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert response.json()["message"]
    assert alice.job(open_job)["state"] == "uploading"


@pytest.mark.parametrize("body", [b"[]", b"not json", b'"a string"'], ids=["a list", "not JSON", "a string"])
def test_the_invoke_api_takes_only_a_json_object(stack, body) -> None:
    response = requests.post(
        invocations(stack),
        data=body,
        headers={"Authorization": f"Bearer {stack.invoke_token}", "Content-Type": "application/json"},
        timeout=30,
    )

    assert (response.status_code, response.json()["code"]) == (400, "request.bad_json")


def test_the_invoke_api_invokes_with_the_stacks_token_from_a_loopback_host(stack, alice, open_job) -> None:
    response = requests.post(
        invocations(stack),
        json=forged_cancel(open_job),
        headers={"Authorization": f"Bearer {stack.invoke_token}"},
        timeout=60,
    )

    assert response.status_code == 200 and response.json()["statusCode"] == 200
    assert alice.job(open_job)["state"] == "cancelled"


def test_the_invoke_api_answers_localhost_by_name(stack) -> None:
    response = requests.post(
        invocations(stack).replace("127.0.0.1", "localhost"),
        json=http_event("GET", "/health", route_key="GET /health"),
        headers={"Authorization": f"Bearer {stack.invoke_token}"},
        timeout=60,
    )

    assert response.status_code == 200 and response.json()["statusCode"] == 200


def lambda_client(stack: LocalStack, access_key: str) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=stack.api_url,
        region_name=stack.region,
        aws_access_key_id=access_key,
        aws_secret_access_key="unused",
    )


def test_boto3s_lambda_client_invokes_with_the_stacks_token_as_its_access_key(stack) -> None:
    event = json.dumps(http_event("GET", "/health", route_key="GET /health")).encode()

    result = lambda_client(stack, stack.invoke_token).invoke(FunctionName="ApiFunction", Payload=event)

    assert result["StatusCode"] == 200 and json.loads(result["Payload"].read())["statusCode"] == 200


def test_boto3s_lambda_client_with_another_access_key_is_refused(stack) -> None:
    event = json.dumps(http_event("GET", "/health", route_key="GET /health")).encode()

    with pytest.raises(ClientError) as refused:
        lambda_client(stack, "testing").invoke(FunctionName="ApiFunction", Payload=event)

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401


# ------------------------------------------------------------------ the whole gateway
def test_every_route_refuses_a_host_that_is_not_the_gateways_loopback_address(stack, alice) -> None:
    port = host(stack).rsplit(":", 1)[1]

    for path in ("/health", "/jobs", "/"):
        response = requests.get(
            f"{stack.api_url}{path}", headers={"Host": f"rebound.example:{port}", **alice.session.headers}, timeout=30
        )
        assert (response.status_code, response.json()["code"]) == (403, "request.bad_host"), path


def test_the_api_answers_its_loopback_address_by_ip_and_by_name(stack) -> None:
    assert requests.get(f"{stack.api_url}/health", timeout=30).status_code == 200
    assert requests.get(f"{stack.api_url.replace('127.0.0.1', 'localhost')}/health", timeout=30).status_code == 200


# ------------------------------------------------------------------ request bodies
@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "12, 13"])
@pytest.mark.parametrize("path", ["/2015-03-31/functions/ApiFunction/invocations", "/uploads"])
def test_a_content_length_that_is_not_a_number_is_400_at_once_and_closes(stack, length, path) -> None:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host(stack)}\r\nAuthorization: Bearer {stack.invoke_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{}}"
    ).encode()

    received, seconds = raw(stack, request)

    assert [(status, body["code"]) for status, body in answers(received)] == [(400, "request.bad_length")]
    assert seconds < 3


def test_content_length_with_transfer_encoding_is_400_and_closes(stack) -> None:
    request = (
        f"POST /uploads HTTP/1.1\r\nHost: {host(stack)}\r\nContent-Type: application/json\r\n"
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ).encode()

    received, _ = raw(stack, request)

    assert [(status, body["code"]) for status, body in answers(received)] == [(400, "request.bad_length")]


def test_a_chunked_body_is_read_as_http_api_reads_it(stack, alice) -> None:
    body = json.dumps({"name": "chunked.txt", "size": 12, "contentType": "text/plain"}).encode()

    response = alice.session.post(
        f"{stack.api_url}/uploads",
        data=iter([body[:10], body[10:]]),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )

    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 201, response.text
    assert alice.job(response.json()["jobId"])["name"] == "chunked.txt"


def test_a_malformed_chunk_is_400_and_closes(stack) -> None:
    request = (
        f"POST /uploads HTTP/1.1\r\nHost: {host(stack)}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    ).encode()

    received, _ = raw(stack, request)

    assert [(status, body["code"]) for status, body in answers(received)] == [(400, "request.bad_chunk")]


def test_a_body_sent_without_a_length_is_never_read_as_a_second_request(stack) -> None:
    # given a POST with a body but neither Content-Length nor Transfer-Encoding: by HTTP, it has no body
    request = (
        f"POST /2015-03-31/functions/ApiFunction/invocations HTTP/1.1\r\nHost: {host(stack)}\r\n"
        f"Authorization: Bearer {stack.invoke_token}\r\nContent-Type: application/json\r\n\r\n"
        "GET /health HTTP/1.1\r\n\r\n"
    ).encode()

    received, seconds = raw(stack, request, timeout=30)

    # then it is answered as an empty event ({}), once, and the connection closed
    assert [status for status, _ in answers(received)] == [200]
    assert seconds < 20


# ------------------------------------------------------------------ the admin role
class Recorder:
    """The API function, with every event the gateway sends it kept."""

    def __init__(self, api: Any) -> None:
        self.api, self.events = api, []

    def invoke(self, event: dict[str, Any], **how: Any) -> Any:
        self.events.append(event)
        return self.api.invoke(event, **how)


def claims_of(recorder: Recorder) -> dict[str, Any]:
    return dict(recorder.events[-1]["requestContext"]["authorizer"]["jwt"]["claims"])


def test_an_admins_token_carries_the_admin_group_claim(stack, root, alice, monkeypatch) -> None:
    recorder = Recorder(stack.gateway.api)
    monkeypatch.setattr(stack.gateway, "api", recorder)

    root.jobs()
    admin = claims_of(recorder)
    alice.jobs()
    user = claims_of(recorder)

    assert (admin["sub"], admin["cognito:groups"]) == ("root", "[docpipe-admins]")
    assert user["sub"] == "alice" and "cognito:groups" not in user


def test_the_gateways_own_refusals_carry_nosniff_like_the_apis(stack) -> None:
    unauthorized = requests.get(f"{stack.api_url}/jobs", timeout=10)
    no_route = requests.get(f"{stack.api_url}/no-such-route", headers={"Authorization": "Bearer tok-alice"}, timeout=10)

    assert unauthorized.status_code == 401 and no_route.status_code == 404
    assert unauthorized.headers["X-Content-Type-Options"] == no_route.headers["X-Content-Type-Options"] == "nosniff"

"""``$connect``'s JWT check: against an issuer whose JWKS is served over real HTTP, as Cognito's is; the
connections table under moto."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from docpipe.adapters.push import ConnectionsRepository
from docpipe_local.tokens import LocalIssuer

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    """An issuer at a local URL that serves its key at ``/.well-known/jwks.json``."""
    holder: dict[str, LocalIssuer] = {}

    class Jwks(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps(holder["issuer"].jwks()).encode() if self.path == "/.well-known/jwks.json" else b"{}"
            self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    holder["issuer"] = LocalIssuer(f"http://127.0.0.1:{server.server_address[1]}", "docpipe")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield holder["issuer"]
    server.shutdown()
    server.server_close()


@pytest.fixture
def connect(issuer: LocalIssuer, lambda_context, monkeypatch):
    from push import handler

    monkeypatch.setattr(
        handler, "settings", dataclasses.replace(handler.settings, jwt_issuer=issuer.issuer, jwt_audience="docpipe")
    )
    handler.connections.cache_clear()

    def connect(token: str | None, connection_id: str = "conn-1") -> dict[str, Any]:
        event = {
            "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": connection_id},
            "queryStringParameters": {"token": token} if token is not None else None,
            "isBase64Encoded": False,
        }
        return handler.lambda_handler(event, lambda_context)

    return connect


def connections_of(owner: str) -> list[str]:
    from push import handler

    repository: ConnectionsRepository = handler.connections()
    return repository.for_owner(owner, 0)


def test_a_good_token_connects_its_user(connect, issuer: LocalIssuer) -> None:
    answer = connect(issuer.mint("alice"))

    assert answer["statusCode"] == 200
    assert connections_of("alice") == ["conn-1"]


def test_a_token_signed_by_another_key_is_refused(connect, issuer: LocalIssuer) -> None:
    forger = LocalIssuer(issuer.issuer, "docpipe")
    forger.kid = issuer.kid  # the same key id, another key: only the signature tells them apart

    answer = connect(forger.mint("alice"))

    assert answer["statusCode"] == 401
    assert json.loads(answer["body"])["code"] == "auth.required"
    assert connections_of("alice") == []


def test_a_token_for_another_audience_is_refused(connect, issuer: LocalIssuer) -> None:
    other = LocalIssuer(issuer.issuer, "another-app")
    other.key, other.kid = issuer.key, issuer.kid

    assert connect(other.mint("alice"))["statusCode"] == 401
    assert connections_of("alice") == []


def test_an_expired_token_is_refused(connect, issuer: LocalIssuer) -> None:
    assert connect(issuer.mint("alice", seconds=-120))["statusCode"] == 401  # past the 30 s leeway


def test_a_missing_or_opaque_token_is_refused(connect) -> None:
    assert connect(None)["statusCode"] == 401
    assert connect("")["statusCode"] == 401
    assert connect("dev-opaque-token")["statusCode"] == 401
    assert connections_of("alice") == []


def test_a_user_past_the_bound_of_connections_is_refused(connect, issuer: LocalIssuer, monkeypatch) -> None:
    from push import handler

    monkeypatch.setattr(handler, "settings", dataclasses.replace(handler.settings, max_connections_per_user=2))
    token = issuer.mint("alice")

    answers = [connect(token, f"conn-{i}")["statusCode"] for i in range(3)]

    assert answers == [200, 200, 429]
    assert json.loads(connect(token, "conn-9")["body"])["code"] == "push.too_many_connections"


def test_ping_is_answered_pong_and_disconnect_forgets_the_connection(
    connect, issuer: LocalIssuer, lambda_context
) -> None:
    from push import handler

    connect(issuer.mint("alice"), "conn-7")
    pong = handler.lambda_handler(
        {"requestContext": {"routeKey": "$default", "connectionId": "conn-7"}, "body": '{"action": "ping"}'},
        lambda_context,
    )
    handler.lambda_handler({"requestContext": {"routeKey": "$disconnect", "connectionId": "conn-7"}}, lambda_context)

    assert json.loads(pong["body"]) == {"type": "pong"}
    assert connections_of("alice") == []

"""The local HTTP gateway: API Gateway HTTP API (v2) in front of the API function, plus Lambda's Invoke API.

- It listens on loopback and answers only requests addressed to it by a loopback name: ``Host`` must
  be ``127.0.0.1:PORT`` or ``localhost:PORT``, else 403 ``request.bad_host`` (a site that points its
  own DNS name at 127.0.0.1 gets nothing from it).
- Requests are matched against the template's ``HttpApi`` routes. A route with an authorizer needs
  ``Authorization: Bearer <token>`` where the token is one of the stack's development tokens; the
  gateway then passes ``{"sub": <user>}`` as the JWT claims, as API Gateway's JWT authorizer would,
  plus, for the stack's admins, the template's ``AdminGroupClaim`` naming its ``AdminGroup`` in the
  form API Gateway gives a list claim (``"[docpipe-admins]"``). Without a valid token it answers 401
  itself, like API Gateway.
- ``POST /2015-03-31/functions/{name}/invocations`` invokes any function with a raw event (what
  ``sam local start-lambda`` offers and ``docpipe replay`` uses). Whoever may call it can act as any
  user, so it takes only the stack's own token (``Bearer``, or as the access key id of a SigV4-signed
  request, which is what boto3's Lambda client sends), refuses anything a browser sends (a request
  with ``Origin`` or ``Sec-Fetch-Site``), and takes only a JSON object.
- Bodies are delimited by ``Content-Length`` or ``Transfer-Encoding: chunked``. A length that is not
  one non-negative integer is 400 ``request.bad_length``, and the connection is closed; so is a body
  over 10 MB (413). A request without either has no body.
- ``/`` is the upload page (``web/``), with the emulator's S3 origin added to its Content-Security-Policy.
- The template's WebSocket API is served on the same port (:mod:`docpipe_local.websocket`): the upgrade at
  ``/{stage}`` (what ``GET /config`` reports as ``push.url``), and the management API at
  ``/{stage}/@connections/{id}``. The stack's JWT issuer (:mod:`docpipe_local.tokens`) publishes its key at
  ``/.well-known/jwks.json``, and the HTTP routes take its tokens as well as the development tokens.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from docpipe_local.apigw import http_event, response_body
from docpipe_local.cors import Cors
from docpipe_local.http_body import Refused, read_body
from docpipe_local.template import HttpRoute
from docpipe_local.user_share import UserShare

if TYPE_CHECKING:
    from docpipe_local.runtime import FunctionRuntime
    from docpipe_local.tokens import LocalIssuer
    from docpipe_local.websocket import PushHub

log = logging.getLogger("docpipe.local")
# A client that went away: closed or reset its connection, or let it stall past the idle timeout.
GONE = (BrokenPipeError, ConnectionResetError, TimeoutError)
WEB = Path(__file__).resolve().parents[2] / "web"
# What the gateway serves of web/: the page and its script and style (files of their own, so that the
# page's Content-Security-Policy needs no 'unsafe-inline').
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/connection.js": ("connection.js", "text/javascript; charset=utf-8"),  # the API and token, for both pages
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/parts.js": ("parts.js", "text/javascript; charset=utf-8"),  # the page's uploads in parts
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    # the operators' console: its routes (/admin/...) answer 403 to anyone else, and it says so
    "/console.html": ("console.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
}
IDLE_SECONDS = 60  # a connection that sends nothing (or stops halfway through a body) for this long is closed
_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
_SIGV4_KEY = re.compile(r"^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/")
_CSP = re.compile(r'(<meta http-equiv="Content-Security-Policy" content=")([^"]*)(")')


def jwt_claims(user: str, admin_claim: tuple[str, str] | None = None) -> dict[str, str]:
    """The claims API Gateway's JWT authorizer passes for ``user``; ``admin_claim`` is ``(claim, group)``
    for an admin. API Gateway passes a list claim as one string, ``"[group other]"``, and so does this."""
    claims = {"sub": user, "iss": "docpipe-local", "aud": "docpipe"}
    if admin_claim is not None:
        name, group = admin_claim
        claims[name] = f"[{group}]"
    return claims


def page_with_sources(page: str, sources: Iterable[str]) -> str:
    """The page with ``sources`` (origins) added to its Content-Security-Policy's ``connect-src`` and
    ``img-src``: the page posts uploads to storage and shows the images it links to."""
    extra = [html.escape(s, quote=True) for s in sources]

    def widen(match: re.Match[str]) -> str:
        directives = [d.strip() for d in match.group(2).split(";") if d.strip()]
        widened = [" ".join([d, *extra]) if d.split()[0] in ("connect-src", "img-src") else d for d in directives]
        return match.group(1) + "; ".join(widened) + match.group(3)

    return _CSP.sub(widen, page, count=1)


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _route_pattern(path: str) -> re.Pattern[str]:
    parts = []
    for segment in path.strip("/").split("/"):
        if segment.endswith("+}"):
            parts.append(".+")
        elif segment.startswith("{"):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(segment))
    return re.compile("^/" + "/".join(parts) + "$")


def match_route(routes: list[HttpRoute], method: str, path: str) -> HttpRoute | None:
    """The most specific route for a request, as API Gateway picks it (greedy ``{proxy+}`` last)."""
    candidates = [r for r in routes if r.method in (method, "ANY") and _route_pattern(r.path).match(path)]
    candidates.sort(key=lambda r: ("+}" in r.path, r.method == "ANY", -len(r.path)))
    return candidates[0] if candidates else None


class Gateway:
    def __init__(
        self,
        api: FunctionRuntime | None,
        functions: dict[str, FunctionRuntime],
        tokens: dict[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        invoke_token: str | None = None,
        admins: Iterable[str] = (),
        admin_claim: tuple[str, str] | None = None,
        page_sources: Iterable[str] = (),
    ) -> None:
        """``invoke_token`` opens the Invoke API (without one it answers no one); ``admins`` are the users
        whose claims carry ``admin_claim`` (``(claim, group)``); ``page_sources`` are the origins the
        upload page may talk to besides its own (the emulator's S3)."""
        self.functions, self.tokens = functions, tokens
        self.invoke_token, self.admins, self.admin_claim = invoke_token, frozenset(admins), admin_claim
        self.page_sources = tuple(page_sources)
        self.cors: Cors | None = (
            None  # the HttpApi's CorsConfiguration (set by the stack once its parameters are known)
        )
        self.serve_api(api)
        self.push: PushHub | None = None  # the WebSocket API, set by the stack once its functions are up
        self.issuer: LocalIssuer | None = None  # the stack's JWT issuer
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = IDLE_SECONDS

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    gateway.handle(self)
                except GONE:  # the client went away or stalled
                    self.close_connection = True

            do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

        self.server = GatewayServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)
        # The Host values it answers: its loopback address by number and by name, with its port.
        self.port = int(self.server.server_address[1])
        names = {"127.0.0.1", "localhost", host} - {"0.0.0.0", "::", ""}
        self.hosts = {f"{name}:{self.port}" for name in names} | (names if self.port == 80 else set())

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def serve_api(self, api: FunctionRuntime | None) -> None:
        """Serve the HTTP API function (the local stack makes the gateway before the functions' workers
        are up, so that the buckets' CORS origins can follow its port)."""
        self.api = api
        self.routes = api.spec.http_routes if api else []
        self.share = UserShare(api.concurrency if api else 1)  # the API's workers, shared among users

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.push is not None:
            self.push.close_all()
        if self.thread.is_alive():  # shutdown() waits for a serve_forever() that never ran otherwise
            self.server.shutdown()
        self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        headers = request.headers
        # No length means no body (RFC 9112); should the client send one anyway, it must not be read as
        # the connection's next request: answer, then close.
        unread = request.command in ("POST", "PUT", "PATCH") and not (
            headers["Content-Length"] or headers["Transfer-Encoding"]
        )
        request.close_connection = request.close_connection or unread
        try:
            body = read_body(headers, request.rfile)
            if (headers["Host"] or "").lower() not in self.hosts:
                hosts = " or ".join(sorted(self.hosts))
                raise Refused(403, "request.bad_host", f"This gateway answers requests for {hosts} only.")
            self._route(request, body)
        except Refused as refusal:
            unread = unread or refusal.close
            request.close_connection = request.close_connection or refusal.close
            self._send(request, refusal.status, {"code": refusal.code, "message": refusal.message})
        if unread:
            _linger(request)

    def _route(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        url = urlsplit(request.path)
        invoke = _INVOKE.match(url.path)
        if invoke and request.command == "POST":
            return self._invoke(request, invoke.group(1), body)
        if self.push is not None and url.path == self.push.path and request.command == "GET":
            if (request.headers.get("Upgrade") or "").lower() == "websocket":
                return self.push.serve(request)
            raise Refused(426, "request.upgrade_required", "Connect with a WebSocket client.")
        managed = self.push.management_id(url.path) if self.push is not None else None
        if managed is not None:
            return self._manage(request, managed, body)
        if url.path == "/.well-known/jwks.json" and self.issuer is not None and request.command == "GET":
            return self._send(request, 200, self.issuer.jwks(), {"Cache-Control": "max-age=300"})
        if url.path in ASSETS and request.command in ("GET", "HEAD") and (WEB / ASSETS[url.path][0]).is_file():
            return self._asset(request, *ASSETS[url.path])
        if self.api is None:
            return self._send(request, 404, {"code": "route.not_found", "message": "This stack has no HTTP API."})
        origin = request.headers["Origin"]
        if self.cors and request.command == "OPTIONS" and origin and request.headers["Access-Control-Request-Method"]:
            allowed = self.cors.preflight(
                origin,
                request.headers["Access-Control-Request-Method"],
                request.headers["Access-Control-Request-Headers"],
            )
            return self._send(request, 204, None, allowed)  # API Gateway answers a preflight itself, before auth
        cors = self.cors.response_headers(origin) if self.cors else {}
        route = match_route(self.routes, request.command, url.path)
        if route is None:
            return self._send(request, 404, {"message": "Not Found"})
        claims = None
        if route.authorized:
            scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
            claims = self._claims(token.strip()) if scheme.lower() == "bearer" else None
            if claims is None:
                return self._send(request, 401, {"code": "auth.required", "message": "Unauthorized"}, cors)
        event = http_event(
            request.command,
            url.path,
            query=url.query,
            headers=dict(request.headers.items()),
            body=body or None,
            claims=claims,
            route_key=f"{route.method} {route.path}",
            source_ip=request.client_address[0],
        )
        invocation = self._invoke_api(claims["sub"] if claims else None, event)
        if not invocation.ok or not isinstance(invocation.result, dict):
            error = invocation.error or {"errorMessage": "no response object"}
            log.warning(
                "%s %s answered 500: the API function's invocation %s (%s: %s)",
                route.method,
                route.path,
                invocation.status,
                error.get("errorType"),
                error.get("errorMessage"),
            )
            return self._send(request, 500, {"code": "internal", "message": "Internal Server Error"})
        result = invocation.result
        headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(values)
        headers.update(cors)
        payload = response_body(result)
        request.send_response(int(result.get("statusCode", 200)))
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                request.send_header(name, value)
        for cookie in result.get("cookies") or []:
            request.send_header("Set-Cookie", cookie)
        self._end_headers(request, len(payload))
        if request.command != "HEAD":
            request.wfile.write(payload)

    def _invoke_api(self, user: str | None, event: dict[str, Any]) -> Any:
        """Invoke the HTTP API function for ``user``'s request.

        On AWS each request runs on compute of its own, up to the function's concurrency, so one user's
        burst of requests does not make another user's request wait. The local stack has a few workers on
        a few cores, shared among users by :class:`~docpipe_local.user_share.UserShare`: a freed worker
        goes to the user with the fewest requests running. (Their CPU priority is left alone: a pool of
        lower-priority API workers meant cold starts in the middle of a burst, which on a loaded laptop ran
        past the function's timeout.)
        """
        assert self.api is not None
        self.share.acquire(user)
        try:
            return self.api.invoke(event)
        finally:
            self.share.release(user)

    def _claims(self, token: str) -> dict[str, str] | None:
        """The claims API Gateway's JWT authorizer would pass for ``token``: a development token's user, or a
        token the stack's issuer signed (verified: signature, issuer, audience, expiry), else None."""
        user = self.tokens.get(token)
        if user is not None:
            return jwt_claims(user, self.admin_claim if user in self.admins else None)
        verified = self.issuer.claims(token) if self.issuer is not None and token else None
        if verified is None:
            return None
        # API Gateway passes every claim as a string, a list one as "[a b]"
        return {k: f"[{' '.join(map(str, v))}]" if isinstance(v, list) else str(v) for k, v in verified.items()}

    def _manage(self, request: BaseHTTPRequestHandler, connection_id: str, body: bytes) -> None:
        """The WebSocket API's management endpoint: for the stack's functions (SigV4-signed), never a page."""
        assert self.push is not None
        headers = request.headers
        if headers["Origin"] is not None or headers["Sec-Fetch-Site"] is not None:
            raise Refused(403, "manage.from_browser", "The management API does not answer web pages.")
        if not _SIGV4_KEY.match(headers["Authorization"] or ""):
            raise Refused(403, "auth.forbidden", "The management API takes SigV4-signed requests only.")
        status, answer = self.push.manage(request.command, connection_id, body)
        if status == 410:
            return self._send(request, 410, answer, {"x-amzn-ErrorType": "GoneException"})
        if answer is None:
            request.send_response(status)
            self._end_headers(request, 0)
            return None
        return self._send(request, status, answer)

    def _asset(self, request: BaseHTTPRequestHandler, name: str, content_type: str) -> None:
        """The upload page and its files: same origin as the API, so the page needs no CORS."""
        payload = (WEB / name).read_bytes()
        if name == "index.html":
            payload = page_with_sources(payload.decode(), self.page_sources).encode()
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        request.send_header("Cache-Control", "no-store")
        request.send_header("X-Content-Type-Options", "nosniff")
        request.send_header("X-Frame-Options", "DENY")
        self._end_headers(request, len(payload))
        if request.command != "HEAD":
            request.wfile.write(payload)

    def _invoke(self, request: BaseHTTPRequestHandler, name: str, body: bytes) -> None:
        headers = request.headers
        if headers["Origin"] is not None or headers["Sec-Fetch-Site"] is not None:
            raise Refused(403, "invoke.from_browser", "The Invoke API does not answer web pages.")
        authorization = headers["Authorization"] or ""
        scheme, _, bearer = authorization.partition(" ")
        signed = _SIGV4_KEY.match(authorization)
        token = bearer.strip() if scheme.lower() == "bearer" else signed.group(1) if signed else ""
        if not (self.invoke_token and token and hmac.compare_digest(token.encode(), self.invoke_token.encode())):
            if token in self.tokens or (self.issuer is not None and self.issuer.claims(token) is not None):
                raise Refused(403, "auth.forbidden", "The Invoke API takes the stack's token, not a user's.")
            raise Refused(
                401, "auth.required", "The Invoke API needs the stack's token: Authorization: Bearer <token>."
            )
        content_type = headers["Content-Type"]
        # boto3's Lambda client signs its requests and sends the payload without a Content-Type.
        if not (_is_json(content_type or "") or (signed and content_type is None)):
            raise Refused(415, "request.not_json", "The event must be sent as Content-Type: application/json.")
        try:
            event = json.loads(body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            event = None
        if not isinstance(event, dict):
            raise Refused(400, "request.bad_json", "The event must be a JSON object.")
        runtime = self.functions.get(name) or next((f for f in self.functions.values() if f.spec.name == name), None)
        if runtime is None:
            return self._send(request, 404, {"Type": "User", "message": f"Function not found: {name}"})
        invocation = runtime.invoke(event)
        if invocation.ok:
            return self._send(request, 200, invocation.result)
        return self._send(request, 200, invocation.error, {"X-Amz-Function-Error": "Unhandled"})

    @staticmethod
    def _end_headers(request: BaseHTTPRequestHandler, length: int) -> None:
        request.send_header("Content-Length", str(length))
        if request.close_connection:
            request.send_header("Connection", "close")
        request.end_headers()

    @classmethod
    def _send(
        cls, request: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("X-Content-Type-Options", "nosniff")  # as the API's own answers carry it
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        cls._end_headers(request, len(payload))
        if request.command != "HEAD":
            request.wfile.write(payload)


def _linger(request: BaseHTTPRequestHandler) -> None:
    """Half-close, then drop what the client still sends for up to a second: closing a socket with
    unread data resets it, and the reset can overtake the answer on its way to the client."""
    with contextlib.suppress(OSError):
        request.connection.shutdown(socket.SHUT_WR)
        request.connection.settimeout(0.25)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline and request.connection.recv(65536):
            pass


class GatewayServer(ThreadingHTTPServer):
    """http.server's threading server, quiet about clients that went away.

    socketserver prints a traceback to stderr for any exception a request's handling raises; one raised
    while reading the next request of a kept-alive connection (a client that gave up on a slow answer,
    or closed between requests) is none of the gateway's business, as it is none of API Gateway's.
    Anything else is logged once, with its traceback.

    Its listen backlog is socketserver's 5 pending connections unless raised: a burst of clients
    connecting while the accepting thread waits for the interpreter would have their connections
    dropped and retried by TCP a second or three later, which API Gateway never does."""

    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], GONE):
            return
        log.exception("the gateway failed on a request from %s", client_address)

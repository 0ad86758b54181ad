"""The local HTTP gateway: API Gateway HTTP API (v2) in front of the API function, plus Lambda's Invoke API.

- Requests are matched against the template's ``HttpApi`` routes. A route with an authorizer needs
  ``Authorization: Bearer <token>`` where the token is one of the stack's development tokens; the
  gateway then passes ``{"sub": <user>}`` as the JWT claims, as API Gateway's JWT authorizer would.
  Without a valid token it answers 401 itself, like API Gateway.
- ``POST /2015-03-31/functions/{name}/invocations`` invokes any function with a raw event (what
  ``sam local start-lambda`` offers and ``docpipe replay`` uses). It listens on loopback only.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from docpipe_local.apigw import http_event, response_body
from docpipe_local.template import HttpRoute

if TYPE_CHECKING:
    from docpipe_local.runtime import FunctionRuntime

MAX_BODY = 10 * 1024 * 1024  # HTTP API's payload limit
PAGE = Path(__file__).resolve().parents[2] / "web" / "index.html"
_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


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
    ) -> None:
        self.api, self.functions, self.tokens = api, functions, tokens
        self.routes = api.spec.http_routes if api else []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client went away
                    gateway.handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _page(self, request: BaseHTTPRequestHandler) -> None:
        """The upload page (``web/index.html``): same origin as the API, so it needs no CORS."""
        payload = PAGE.read_bytes()
        request.send_response(200)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Cache-Control", "no-store")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._send(
                request, 413, {"code": "request.too_large", "message": "Request bodies are limited to 10 MB."}
            )
        body = request.rfile.read(length) if length else b""
        url = urlsplit(request.path)
        invoke = _INVOKE.match(url.path)
        if invoke and request.command == "POST":
            return self._invoke(request, invoke.group(1), body)
        if url.path in ("/", "/index.html") and request.command in ("GET", "HEAD") and PAGE.is_file():
            return self._page(request)
        if self.api is None:
            return self._send(request, 404, {"code": "route.not_found", "message": "This stack has no HTTP API."})
        route = match_route(self.routes, request.command, url.path)
        if route is None:
            return self._send(request, 404, {"message": "Not Found"})
        claims = None
        if route.authorized:
            scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
            user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if user is None:
                return self._send(request, 401, {"code": "auth.required", "message": "Unauthorized"})
            claims = {"sub": user, "iss": "docpipe-local", "aud": "docpipe"}
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
        invocation = self.api.invoke(event)
        if not invocation.ok or not isinstance(invocation.result, dict):
            return self._send(request, 500, {"code": "internal", "message": "Internal Server Error"})
        result = invocation.result
        headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(values)
        payload = response_body(result)
        request.send_response(int(result.get("statusCode", 200)))
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                request.send_header(name, value)
        for cookie in result.get("cookies") or []:
            request.send_header("Set-Cookie", cookie)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)

    def _invoke(self, request: BaseHTTPRequestHandler, name: str, body: bytes) -> None:
        runtime = self.functions.get(name) or next((f for f in self.functions.values() if f.spec.name == name), None)
        if runtime is None:
            return self._send(request, 404, {"Type": "User", "message": f"Function not found: {name}"})
        try:
            event = json.loads(body or b"{}")
        except json.JSONDecodeError:
            return self._send(request, 400, {"Type": "User", "message": "The event is not valid JSON."})
        invocation = runtime.invoke(event)
        if invocation.ok:
            return self._send(request, 200, invocation.result)
        return self._send(request, 200, invocation.error, {"X-Amz-Function-Error": "Unhandled"})

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)

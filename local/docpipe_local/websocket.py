"""The local WebSocket API: what API Gateway does for the template's ``AWS::ApiGatewayV2`` WebSocket API,
served by the local gateway on its own port.

- ``GET /{stage}`` with ``Upgrade: websocket`` opens a connection: the ``$connect`` route's function is
  invoked with API Gateway's event (``requestContext.connectionId``, ``routeKey``, ``eventType``,
  ``queryStringParameters``, headers); any answer but 2xx refuses the handshake with that status.
- Each text frame is routed by the API's ``RouteSelectionExpression`` (``$request.body.action``) to its
  route, else ``$default``; a route with a RouteResponse sends the function's ``body`` back.
- Closing (either side) invokes ``$disconnect``.
- ``/{stage}/@connections/{id}`` is the management API (what boto3's ``apigatewaymanagementapi`` calls
  with ``endpoint_url`` set to the stage): ``POST`` sends the body as a text frame, ``DELETE`` closes,
  ``GET`` describes; an unknown or closed id answers 410 ``GoneException``. It takes only SigV4-signed
  requests and none a browser sends.

Frames are read and written by wsproto (a sans-I/O WebSocket implementation) on the accepted socket.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from docpipe_local.template import Template

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

    from docpipe_local.runtime import FunctionRuntime

log = logging.getLogger("docpipe.local")
MAX_FRAME = 128 * 1024  # API Gateway's message limit
IDLE_SECONDS = 600  # API Gateway closes a connection that has been idle for 10 minutes
# A frame that cannot be written within this long (a client that stopped reading) closes the connection, so
# one stuck client never holds up the notifier's posts to others: the post answers 410 Gone.
SEND_SECONDS = 5
_FUNCTION_ARN = re.compile(r"\$\{(\w+)\.Arn\}")


@dataclass(frozen=True)
class WebSocketApi:
    """A template's WebSocket API: its stage name, and each route's function and whether it answers."""

    logical: str
    stage: str
    routes: dict[str, str]  # route key -> function logical id
    answering: frozenset[str]  # route keys with a RouteResponse

    @classmethod
    def of(cls, template: Template) -> WebSocketApi | None:
        apis = [k for k, r in template.of_type("AWS::ApiGatewayV2::Api").items() if _is_websocket(r)]
        if not apis:
            return None
        logical = apis[0]
        routes, route_ids = {}, {}
        for route_logical, route in template.of_type("AWS::ApiGatewayV2::Route").items():
            props = route.get("Properties", {})
            if props.get("ApiId") != {"Ref": logical}:
                continue
            target = str(props.get("Target", {}).get("Fn::Sub", ""))
            integration = target.removeprefix("integrations/${").removesuffix("}")
            uri = template.resources.get(integration, {}).get("Properties", {}).get("IntegrationUri", {})
            match = _FUNCTION_ARN.search(json.dumps(uri))
            if match:
                routes[str(props["RouteKey"])] = match.group(1)
                route_ids[route_logical] = str(props["RouteKey"])
        answering = {
            route_ids[r["Properties"]["RouteId"]["Ref"]]
            for r in template.of_type("AWS::ApiGatewayV2::RouteResponse").values()
            if r["Properties"].get("RouteId", {}).get("Ref") in route_ids
        }
        stages = [
            s["Properties"]["StageName"]
            for s in template.of_type("AWS::ApiGatewayV2::Stage").values()
            if s["Properties"].get("ApiId") == {"Ref": logical}
        ]
        return cls(logical, str(stages[0]) if stages else "$default", routes, frozenset(answering))


def _is_websocket(resource: dict[str, Any]) -> bool:
    return str(resource.get("Properties", {}).get("ProtocolType")) == "WEBSOCKET"


@dataclass
class Connection:
    id: str
    sock: socket.socket
    ws: WSConnection
    source_ip: str
    user_agent: str
    connected_at: float = field(default_factory=time.time)
    last_active_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)
    open: bool = True

    def send(self, text: str) -> bool:
        with self.lock:
            if not self.open:
                return False
            try:
                self.sock.sendall(self.ws.send(TextMessage(data=text)))
            except (OSError, RuntimeError):  # gone, or not reading: half a frame may be out, so it ends here
                self.open = False
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
                return False
            return True

    def close(self, code: int = 1000) -> None:
        with self.lock:
            if not self.open:
                return
            self.open = False
            with contextlib.suppress(Exception):  # the peer may be gone already, or closing itself
                self.sock.sendall(self.ws.send(CloseConnection(code=code)))
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


class PushHub:
    """The connections of the local WebSocket API and its routes' functions."""

    def __init__(self, api: WebSocketApi, runtimes: dict[str, FunctionRuntime], api_id: str = "local") -> None:
        self.api, self.runtimes, self.api_id = api, runtimes, api_id
        self.connections: dict[str, Connection] = {}
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return f"/{self.api.stage}"

    def management_id(self, path: str) -> str | None:
        """The connection id of a management API path (``/{stage}/@connections/{id}``), else None."""
        prefix = f"{self.path}/@connections/"
        return unquote(path.removeprefix(prefix)) if path.startswith(prefix) and len(path) > len(prefix) else None

    # ------------------------------------------------------------------ events
    def _event(self, route: str, kind: str, conn_id: str, ip: str, agent: str, **extra: Any) -> dict[str, Any]:
        now = time.time()
        event: dict[str, Any] = {
            "requestContext": {
                "routeKey": route,
                "eventType": kind,
                "messageDirection": "IN",
                "stage": self.api.stage,
                "connectionId": conn_id,
                "connectedAt": int(now * 1000),
                "requestTimeEpoch": int(now * 1000),
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "requestId": str(uuid.uuid4()),
                "extendedRequestId": str(uuid.uuid4()),
                "messageId": secrets.token_urlsafe(8) if kind == "MESSAGE" else None,
                "apiId": self.api_id,
                "domainName": "127.0.0.1",
                "identity": {"sourceIp": ip, "userAgent": agent},
            },
            "isBase64Encoded": False,
        }
        event.update(extra)
        return event

    def _invoke(self, route: str, event: dict[str, Any]) -> dict[str, Any] | None:
        logical = self.api.routes.get(route)
        runtime = self.runtimes.get(logical) if logical else None
        if runtime is None:
            return None
        invocation = runtime.invoke(event)
        if not invocation.ok or not isinstance(invocation.result, dict):
            log.warning("websocket route %s failed: %s", route, (invocation.error or {}).get("errorMessage"))
            return {"statusCode": 500}
        return invocation.result

    # ------------------------------------------------------------------ the upgrade, then the frames
    def serve(self, request: BaseHTTPRequestHandler) -> None:
        """Take over a request that asks for ``Upgrade: websocket`` until the connection closes."""
        sock: socket.socket = request.connection
        sock.settimeout(SEND_SECONDS)  # bounds each send; an idle receive just comes round again
        ws = WSConnection(ConnectionType.SERVER)
        head = f"{request.command} {request.path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in request.headers.items()
        )
        ws.receive_data(head.encode("latin-1") + b"\r\n")
        handshake = next((e for e in ws.events() if isinstance(e, Request)), None)
        request.close_connection = True
        if handshake is None:
            return
        conn_id = base64.b64encode(secrets.token_bytes(10)).decode()  # as API Gateway's: L0SM9cOFvHcCIhw=
        ip, agent = request.client_address[0], request.headers.get("User-Agent", "")
        query = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
        headers = {k: v for k, v in request.headers.items()}
        answer = self._invoke(
            "$connect",
            self._event(
                "$connect",
                "CONNECT",
                conn_id,
                ip,
                agent,
                headers=headers,
                multiValueHeaders={k: [v] for k, v in headers.items()},
                queryStringParameters=query or None,
            ),
        )
        status = int((answer or {"statusCode": 200}).get("statusCode", 200))
        if not 200 <= status < 300:
            body = str((answer or {}).get("body") or "").encode()
            reject = RejectConnection(
                status_code=status, headers=[(b"content-length", str(len(body)).encode())], has_body=bool(body)
            )
            out = ws.send(reject)
            if body:
                out += ws.send(RejectData(data=body))
            sock.sendall(out)
            return
        connection = Connection(conn_id, sock, ws, ip, agent)
        with connection.lock:
            sock.sendall(ws.send(AcceptConnection()))
        with self._lock:
            self.connections[conn_id] = connection
        try:
            self._frames(connection)
        finally:
            with self._lock:
                self.connections.pop(conn_id, None)
            connection.close()
            self._invoke("$disconnect", self._event("$disconnect", "DISCONNECT", conn_id, ip, agent))

    def _frames(self, connection: Connection) -> None:
        text: list[str] = []
        while connection.open:
            try:
                data = connection.sock.recv(65536)
            except TimeoutError:
                if time.time() - connection.last_active_at > IDLE_SECONDS:
                    return
                continue
            except OSError:
                return
            with connection.lock:
                connection.ws.receive_data(data or None)
                events = list(connection.ws.events())
            if not data:
                return
            for event in events:
                connection.last_active_at = time.time()
                if isinstance(event, Ping):
                    with connection.lock:
                        connection.sock.sendall(connection.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    with connection.lock:
                        if connection.open:
                            connection.open = False
                            with contextlib.suppress(Exception):  # the peer is gone already
                                connection.sock.sendall(connection.ws.send(event.response()))
                    return
                elif isinstance(event, TextMessage | BytesMessage):
                    chunk = event.data if isinstance(event.data, str) else event.data.decode("utf-8", "replace")
                    text.append(chunk)
                    if sum(len(t) for t in text) > MAX_FRAME:
                        connection.close(1009)
                        return
                    if event.message_finished:
                        self._message(connection, "".join(text))
                        text = []

    def _message(self, connection: Connection, body: str) -> None:
        try:
            action = json.loads(body).get("action")
        except (ValueError, AttributeError):
            action = None
        route = action if isinstance(action, str) and action in self.api.routes else "$default"
        event = self._event(route, "MESSAGE", connection.id, connection.source_ip, connection.user_agent, body=body)
        answer = self._invoke(route, event)
        if route in self.api.answering and answer and answer.get("body") is not None:
            connection.send(str(answer["body"]))

    # ------------------------------------------------------------------ the management API
    def manage(self, method: str, conn_id: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        """``@connections/{id}``: status and JSON body (None: empty)."""
        with self._lock:
            connection = self.connections.get(conn_id)
        if connection is None or not connection.open:
            return 410, {"message": f"Connection {conn_id} is gone"}
        if method == "POST":
            if len(body) > MAX_FRAME:
                return 413, {"message": "Payload too large"}
            if not connection.send(body.decode("utf-8", "replace")):
                return 410, {"message": f"Connection {conn_id} is gone"}
            return 200, None
        if method == "DELETE":
            connection.close()
            return 204, None
        if method == "GET":
            return 200, {
                "connectedAt": _iso(connection.connected_at),
                "lastActiveAt": _iso(connection.last_active_at),
                "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            }
        return 405, {"message": "Method not allowed"}

    def close_all(self) -> None:
        with self._lock:
            connections = list(self.connections.values())
        for connection in connections:
            connection.close(1001)

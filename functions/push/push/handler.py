"""PushFunction: the WebSocket API's three routes, by ``requestContext.routeKey``.

- ``$connect``: the JWT in ``?token=`` (a browser cannot set headers on a WebSocket) is verified against
  the issuer's JWKS (:mod:`push.tokens`); the connection is recorded under the token's ``sub``, at most
  ``MaxConnectionsPerUser`` per user (429 past it). Any answer but 200 refuses the connection.
- ``$disconnect``: the connection is forgotten.
- ``$default``: ``{"action": "ping"}`` is answered ``{"type": "pong"}`` through the route's response
  (the route has a RouteResponse, so API Gateway sends the body back to the client); anything else 400.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docpipe import push
from docpipe.adapters.push import ConnectionsRepository
from docpipe.config import PushSettings
from docpipe.errors import DocpipeError, Unauthorized
from docpipe.observability import MetricUnit, logger, metrics, tracer
from push.tokens import verified_claims

settings = PushSettings.from_env(required=("CONNECTIONS_TABLE", "JWT_ISSUER", "JWT_AUDIENCE"))


@functools.cache
def connections() -> ConnectionsRepository:
    return ConnectionsRepository(str(settings.connections_table))


def _answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body)}


def connect(event: dict[str, Any], connection_id: str) -> dict[str, Any]:
    token = (event.get("queryStringParameters") or {}).get("token")
    try:
        owner = verified_claims(token, str(settings.jwt_issuer), str(settings.jwt_audience))["sub"]
    except Unauthorized as error:
        logger.info("connection refused", extra={"code": error.code, "reason": error.message})
        return _answer(401, error.to_dict())
    added = connections().add(
        owner, connection_id, int(time.time()), settings.connection_ttl_seconds, settings.max_connections_per_user
    )
    if not added:
        metrics.add_metric(name="PushConnectionsRefused", unit=MetricUnit.Count, value=1)
        return _answer(
            429,
            {
                "code": "push.too_many_connections",
                "message": f"At most {settings.max_connections_per_user} connections per user; close one first.",
            },
        )
    metrics.add_metric(name="PushConnections", unit=MetricUnit.Count, value=1)
    return {"statusCode": 200}


def route(event: dict[str, Any]) -> dict[str, Any]:
    context = event.get("requestContext") or {}
    key, connection_id = context.get("routeKey"), str(context.get("connectionId") or "")
    if not connection_id:
        return _answer(400, {"code": "request.invalid", "message": "No connection."})
    if key == "$connect":
        return connect(event, connection_id)
    if key == "$disconnect":
        connections().remove(connection_id)
        return {"statusCode": 200}
    if push.is_ping(event.get("body")):
        return {"statusCode": 200, "body": push.PONG}
    return _answer(400, {"type": "error", "code": "request.invalid", "message": 'Send {"action": "ping"}.'})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return route(event)
    except DocpipeError as error:  # the connections table failed: the client may connect again
        logger.warning("push route failed", extra={"code": error.code})
        return _answer(503 if error.retryable else 500, error.to_dict())

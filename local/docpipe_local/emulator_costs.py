"""moto's costs on every request cut, without changing any answer: DynamoDB's requests answered without
moto's Flask application (:func:`answer_dynamodb_directly`), its update expressions parsed once
(:func:`remember_update_expressions`), and names moto works out again on every request remembered
(:func:`remember_names`)."""

from __future__ import annotations

import functools
from typing import Any

TARGET = "DynamoDB_20120810."  # the X-Amz-Target of DynamoDB's operations (its streams' differ)
PARSES_KEPT = 1024  # distinct update expressions remembered: the functions send a few dozen
NAMES_KEPT = 4096  # names turned into Python names remembered: actions and queue attributes, a few hundred


def answer_dynamodb_directly() -> None:
    """Answer DynamoDB's requests without moto's Flask application (idempotent; apply it before
    :func:`docpipe_local.emulator.count_requests`, which then counts them as before).

    moto's server hands each request to a Flask application per service, whose only route for DynamoDB
    calls ``DynamoHandler.dispatch`` with the werkzeug request, its URL and its headers, and turns the
    handler's ``(status, headers, body)`` into a response. The application's context, its routing, its
    request hooks (a gzip body, which no SDK sends DynamoDB) and its CORS headers (for browsers, which
    do not call DynamoDB here) were a tenth of the DynamoDB emulator's CPU under a stream of photos, on
    every call of every function. A DynamoDB request (a ``POST`` with DynamoDB's ``X-Amz-Target``) now
    goes to the same handler with the same werkzeug request, URL and headers, and its answer and a
    ``ClientError``'s 400 are made as moto's ``convert_to_flask_response`` makes them. Every other
    request goes the way it went."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    call = DomainDispatcherApplication.__call__
    if getattr(call, "_docpipe_direct", False):
        return

    def direct(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") != "POST" or not environ.get("HTTP_X_AMZ_TARGET", "").startswith(TARGET):
            return call(self, environ, start_response)
        return _answer(environ, start_response)

    functools.update_wrapper(direct, call)
    direct._docpipe_direct = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = direct  # type: ignore[method-assign]


def _answer(environ: dict[str, Any], start_response: Any) -> Any:
    from botocore.exceptions import ClientError
    from moto.dynamodb.responses import DynamoHandler
    from werkzeug.wrappers import Request, Response

    request = Request(environ)
    try:
        result = DynamoHandler.dispatch(request, request.url, dict(request.headers))
    except ClientError as exc:
        result = 400, {}, exc.response["Error"]["Message"]
    status, headers, body = result if len(result) == 3 else (200, {}, result)
    return Response(response=body, status=status, headers=headers)(environ, start_response)


def remember_update_expressions() -> None:
    """Parse each distinct update expression once (idempotent).

    moto parses an ``UpdateItem``'s update expression twice, once to check its names and values and once
    to apply it, on every request: a twentieth of the DynamoDB emulator's CPU under a stream of photos,
    where the functions send a few dozen distinct expressions (names and values are placeholders). The
    tree a parse makes is only read: what applies it works on its own deep copy (moto's ``Validator``),
    so a tree kept per expression answers every later parse of the same text. An expression that does
    not parse raises as before, every time."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    make = UpdateExpressionParser.make.__func__  # type: ignore[attr-defined]
    if getattr(make, "_docpipe_kept", False):
        return

    @functools.lru_cache(maxsize=PARSES_KEPT)
    def parsed(cls: Any, expression: str) -> Any:
        return make(cls, expression)

    def kept(cls: Any, expression: str) -> Any:
        return parsed(cls, expression) if isinstance(expression, str) else make(cls, expression)

    functools.update_wrapper(kept, make)
    kept._docpipe_kept = True  # type: ignore[attr-defined]
    kept.cache_info = parsed.cache_info  # type: ignore[attr-defined]
    UpdateExpressionParser.make = classmethod(kept)  # type: ignore[method-assign,assignment]


def remember_names() -> None:
    """Remember two answers moto works out on every request, though each depends only on its argument
    (idempotent):

    - **Action lookup.** moto finds the method of each request's action by listing every member of its
      handler's class (``inspect.getmembers``): 5 % of the DynamoDB emulator's CPU under a stream of
      photos. The list is kept per class.
    - **Attribute names.** moto's SQS builds a queue's attributes afresh each time one is read, turning
      each attribute's name into its Python name letter by letter, several times for every message sent
      or received: a tenth of the S3 and SQS emulator's CPU. The names are kept per name (as are the
      actions' that every request turns into method names)."""
    from moto.core import responses
    from moto.sqs import models

    names_of = responses.method_names_from_class
    if getattr(names_of, "_docpipe_fast", False):
        return
    known: dict[type, list[str]] = {}

    def remembered(clazz: Any) -> list[str]:
        if clazz not in known:
            known[clazz] = names_of(clazz)
        return list(known[clazz])

    functools.update_wrapper(remembered, names_of)
    remembered._docpipe_fast = True  # type: ignore[attr-defined]
    responses.method_names_from_class = remembered  # type: ignore[assignment]
    underscored = functools.lru_cache(maxsize=NAMES_KEPT)(responses.camelcase_to_underscores)
    responses.camelcase_to_underscores = underscored  # type: ignore[assignment]
    models.camelcase_to_underscores = underscored  # type: ignore[assignment]

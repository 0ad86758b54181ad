"""The push channel on the local stack: the JWT issuer, the WebSocket API on the gateway's port, and the
stream pollers that run the notifier as the template's stream consumer (not a shortcut from the API).

:func:`prepare` runs once the gateway has its port (the issuer is the gateway's URL, and the template's
``JwtIssuer`` becomes it), :func:`describe_api` once the tables exist (the WebSocket API's endpoint is
``ws://127.0.0.1:PORT``, so ``PUSH_URL`` resolves to ``ws://127.0.0.1:PORT/{stage}``), and :func:`start`
once the functions are up.
"""

from __future__ import annotations

import threading
from typing import Any

from docpipe_local.gateway import Gateway
from docpipe_local.runtime import FunctionRuntime
from docpipe_local.streams import StreamPoller
from docpipe_local.template import Template
from docpipe_local.tokens import LocalIssuer
from docpipe_local.websocket import PushHub, WebSocketApi


def prepare(template: Template, gateway: Gateway, parameters: dict[str, str]) -> LocalIssuer | None:
    """The stack's issuer, which the functions are told to trust, unless ``JwtIssuer`` was passed."""
    declared = template.doc.get("Parameters") or {}
    if "JwtIssuer" not in declared or "JwtIssuer" in parameters:
        return None
    audience = str(template.parameter("JwtAudience")) if "JwtAudience" in declared else "docpipe"
    issuer = LocalIssuer(gateway.url, audience)
    template.parameters["JwtIssuer"] = issuer.issuer
    gateway.issuer = issuer
    return issuer


def describe_api(template: Template, gateway: Gateway) -> WebSocketApi | None:
    """Record the WebSocket API's attributes as the gateway serves it (before the functions' environments
    are resolved)."""
    api = WebSocketApi.of(template)
    if api is not None:
        template.attributes[api.logical] = {"Ref": "local", "ApiEndpoint": gateway.url.replace("http://", "ws://", 1)}
    return api


def concurrency(spec: Any) -> int:
    """Workers for a function with stream sources: one per source and concurrent batch of its shard
    (``ParallelizationFactor``; each shard's batches of one key are invoked in turn)."""
    return sum(max(1, source.parallelization) for source in spec.stream_sources)


def start(
    template: Template,
    gateway: Gateway,
    api: WebSocketApi | None,
    runtimes: dict[str, FunctionRuntime],
    clients: dict[str, Any],
    region: str,
    stop: threading.Event,
) -> list[StreamPoller]:
    """Serve the WebSocket API and start a poller per stream source and shard."""
    if api is not None:
        gateway.push = PushHub(api, runtimes)
    queues = {
        attributes["Arn"]: attributes["QueueUrl"]
        for logical, attributes in template.attributes.items()
        if "QueueUrl" in attributes
    }
    pollers = []
    for runtime in runtimes.values():
        for source in runtime.spec.stream_sources:
            stream_arn = template.attributes[source.table]["StreamArn"]
            shards = clients["dynamodbstreams"].describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
            for shard in shards:
                poller = StreamPoller(
                    runtime,
                    clients["dynamodbstreams"],
                    clients["sqs"],
                    source,
                    stream_arn,
                    shard["ShardId"],
                    region,
                    stop,
                    queues.get(source.on_failure_arn or ""),
                    _partition_key(template, source.table),
                )
                poller.start()
                pollers.append(poller)
    return pollers


def _partition_key(template: Template, table: str) -> str | None:
    """The ``HASH`` attribute of a table's key schema (None when the template does not say)."""
    schema = (template.resources.get(table) or {}).get("Properties", {}).get("KeySchema") or []
    return next((str(k.get("AttributeName")) for k in schema if k.get("KeyType") == "HASH"), None)

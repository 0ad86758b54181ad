"""AWS clients, made lazily and cached: never at import time, so the emulator can be up first.

Endpoints, region and credentials come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_REGION``), which is how the local stack points handlers at
moto or LocalStack without the handlers knowing. Tests call :func:`reset` between emulators.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
# Presigned URLs and POSTs must be SigV4 (what S3 requires in every region).
_S3_CONFIG = _CONFIG.merge(Config(signature_version="s3v4"))


_loader: Any = None
_loader_lock = threading.Lock()


def session() -> Any:
    """A new boto3 session (its own credentials and settings, read from the environment now) that shares one
    loader of the services' models with every other: a client's model is read from disk and parsed once a
    process, not once a client (about 30 ms a client; 150 ms on a busy machine)."""
    global _loader
    core = botocore.session.get_session()
    with _loader_lock:
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core)


@functools.cache
def client(service: str, single_attempt: bool = False) -> Any:
    """The service's client. ``single_attempt``: one that never retries, for a call whose failure picks
    another way at once (an emulator that does not implement an action answers 500, which the
    standard retry mode would try five times)."""
    config = _S3_CONFIG if service == "s3" else _CONFIG
    if single_attempt:
        config = config.merge(Config(retries={"mode": "standard", "max_attempts": 1}))
    return session().client(service, config=config)


@functools.cache
def client_at(service: str, endpoint_url: str) -> Any:
    """The service's client at an endpoint of the stack's own (API Gateway's management API is reached at
    the WebSocket API's own host and stage, not at a regional endpoint)."""
    return session().client(service, config=_CONFIG, endpoint_url=endpoint_url)


def reset() -> None:
    client.cache_clear()
    client_at.cache_clear()

"""AWS clients, made lazily and cached: never at import time, so the emulator can be up first.

Endpoints, region and credentials come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_REGION``), which is how the local stack points handlers at
moto or LocalStack without the handlers knowing. Tests call :func:`reset` between emulators.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    s3={"signature_version": "s3v4"},
    signature_version=None,
)


@functools.cache
def client(service: str) -> Any:
    config = _CONFIG.merge(Config(signature_version="s3v4")) if service == "s3" else _CONFIG
    return boto3.session.Session().client(service, config=config)


def reset() -> None:
    client.cache_clear()

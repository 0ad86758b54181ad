"""Does each AWS service the local stack needs answer at an endpoint? One cheap call per service, in parallel.

An emulator can list a service and still not serve it: LocalStack without Docker or Java reports
DynamoDB ``available`` and answers its first call with a 500 after trying to download Java, and a
``CreateTable`` after a minute of its own retries. Without a check, provisioning waits on botocore's
retries of those 500s for minutes and prints nothing. :func:`unavailable` asks each service one
read-only question (``ListTables``, ``ListBuckets``, ...) with no retries and a deadline, and says which
did not answer and how: ``500 on ListTables``, ``no answer to ListTables within 10 s``, ``nothing
listens there``. A 4xx is an answer: the service is there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ConnectTimeoutError, ReadTimeoutError

# The services the local stack uses at an endpoint, and the read-only call that shows each one is served.
PROBES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "s3": ("ListBuckets", lambda client: client.list_buckets()),
    "sqs": ("ListQueues", lambda client: client.list_queues()),
    "dynamodb": ("ListTables", lambda client: client.list_tables(Limit=1)),
    "sts": ("GetCallerIdentity", lambda client: client.get_caller_identity()),
    "cloudwatch": ("ListMetrics", lambda client: client.list_metrics(Namespace="docpipe/probe")),
}
SERVICE_NAMES = {"s3": "S3", "sqs": "SQS", "dynamodb": "DynamoDB", "sts": "STS", "cloudwatch": "CloudWatch"}
PROBE_SECONDS = 10.0


class EndpointUnavailable(RuntimeError):
    """Services at an endpoint that did not answer: ``reasons`` maps each (boto3's name) to what happened."""

    def __init__(self, who: str, reasons: dict[str, str]) -> None:
        self.who, self.reasons = who, dict(reasons)
        parts = [f"{who}'s {SERVICE_NAMES.get(s, s)} is not available ({reason})" for s, reason in reasons.items()]
        super().__init__("; ".join(parts))

    @property
    def services(self) -> list[str]:
        return list(self.reasons)


def _probe(
    endpoint: str, service: str, credentials: dict[str, str], region: str, timeout: float
) -> tuple[str, str | None]:
    operation, call = PROBES[service]
    client = boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
        config=Config(connect_timeout=3, read_timeout=timeout, retries={"total_max_attempts": 1}),
    )
    started = time.monotonic()
    try:
        call(client)
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status >= 500:
            return service, f"{status} on {operation}"
    except (ReadTimeoutError, ConnectTimeoutError):
        return service, f"no answer to {operation} within {time.monotonic() - started:.0f} s"
    except ConnectionError:
        return service, "nothing answers there"
    except BotoCoreError as exc:
        return service, f"{type(exc).__name__} on {operation}"
    return service, None


def unavailable(
    endpoint: str,
    services: Iterable[str],
    credentials: dict[str, str],
    region: str = "us-east-1",
    timeout: float = PROBE_SECONDS,
) -> dict[str, str]:
    """The services (of :data:`PROBES`) that do not answer at ``endpoint``, each with what happened; within
    about ``timeout`` seconds in all, whatever the endpoint does."""
    services = [s for s in services if s in PROBES]
    if not services:
        return {}
    pool = ThreadPoolExecutor(max_workers=len(services), thread_name_prefix="probe")
    futures = {pool.submit(_probe, endpoint, s, credentials, region, timeout): s for s in services}
    done, late = wait_for(futures, timeout=timeout + 2)
    pool.shutdown(wait=False)  # a late probe ends at its own read timeout
    reasons = {futures[f]: f"no answer to {PROBES[futures[f]][0]} within {timeout:.0f} s" for f in late}
    for future in done:
        service, reason = future.result()
        if reason:
            reasons[service] = reason
    return {s: reasons[s] for s in services if s in reasons}

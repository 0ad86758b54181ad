"""What the API's route modules share: the resolver, the settings, the adapters, the caller's identity and
role, and the views of jobs and queues that more than one route gives.

Identity is the ``sub`` claim the JWT authorizer put in the request context (locally, the dev gateway's
token map does the same); a header the client sets is never trusted.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from docpipe.adapters.cloudwatch import QueueAges
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.adapters.sqs import QueueStats
from docpipe.adapters.usage import UsageRepository
from docpipe.config import LANES, ConfigError, Settings
from docpipe.errors import Forbidden, Unauthorized
from docpipe.job_views import JobViews, LaneThroughput

settings = Settings.from_env()
app = APIGatewayHttpResolver(enable_validation=True)
JSON = "application/json"


@functools.cache
def adapters() -> tuple[ObjectStore, JobsRepository, FilesRepository]:
    return ObjectStore(), JobsRepository.for_settings(settings), FilesRepository(settings.files_table)


def usage() -> UsageRepository:
    """The usage table (the jobs repository's, which also releases an ended job's place)."""
    repository = adapters()[1].usage
    if repository is None:
        raise ConfigError("environment variable USAGE_TABLE is not set (see template.yaml)")
    return repository


@functools.cache
def queue_readers() -> tuple[QueueStats, QueueAges]:
    return QueueStats(), QueueAges()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status_code=status, content_type=JSON, body=json.dumps(body), headers=headers)


def ttl_at() -> int:
    """When a job that ends now is removed by the table's TTL."""
    return int(time.time()) + settings.job_ttl_days * 86400


def current_user() -> str:
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or "/" in sub:
        raise Unauthorized()
    return sub


def is_admin() -> bool:
    """Whether the caller is an operator: the JWT claim ``AdminGroupClaim`` lists ``AdminGroup``. API Gateway
    passes a list claim to the function as a string (``"[a b]"``), an authorizer or a test as a list."""
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    groups = claims.get(settings.admin_group_claim)
    if isinstance(groups, str):
        groups = groups.strip().removeprefix("[").removesuffix("]").replace(",", " ").split()
    return isinstance(groups, list) and settings.admin_group in groups


def require_admin() -> str:
    """The caller, who must be an operator: 401 ``auth.required`` without a user, 403 ``auth.forbidden``
    for anyone else."""
    user = current_user()
    if not is_admin():
        raise Forbidden()
    return user


def all_queues() -> list[dict[str, Any]]:
    """Every queue's depth, in-flight and delayed counts, its DLQ's depth and its oldest message's age."""
    stats, ages = queue_readers()
    lanes = [("ingest", lane, url) for lane, url in settings.ingest_queues.items()]
    lanes += [(task, lane, urls[lane]) for task, urls in settings.task_queues.items() for lane in LANES]
    rows = [{"concern": concern, "lane": lane, **stats.stats(url)} for concern, lane, url in lanes if url]
    oldest = ages.oldest_seconds([row["queue"] for row in rows])
    for row in rows:
        row["oldestAgeSeconds"] = oldest.get(row["queue"])
    return rows


def job_views() -> JobViews:
    """The views of jobs the API and the notifier share (:mod:`docpipe.job_views`); the API settles on read."""
    _, jobs_repo, files_repo = adapters()
    return JobViews(jobs_repo, files_repo, settings.task_queues, lane_throughput, ttl_at)


def settled(job: dict[str, Any], file: dict[str, Any] | None) -> dict[str, Any]:
    """The job as its file's task states leave it: a task whose final attempt was killed has no worker
    left to say so, so an open job whose tasks have all ended is settled on read."""
    return job_views().settled(job, file)


def views(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs as :func:`docpipe.jobs.public_view` shows them, with their tasks' states (one ``BatchGetItem``)."""
    return job_views().views(items)


# Each lane's throughput, cached per container (docpipe.job_views.THROUGHPUT_TTL_SECONDS).
lane_throughput = LaneThroughput()
_throughput = lane_throughput.cache


def queue_positions(owner: str, items: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The place in its lane of each of ``owner``'s queued jobs among ``items``, by job id (see
    :mod:`docpipe.positions`)."""
    return job_views().positions(owner, items)

"""``GET /admin/metrics``: the operators' console's last hour, from CloudWatch.

Per lane (each ingest and task queue): its depth, in flight, oldest message's age, its DLQ's depth and
the messages its consumers finished (``AWS/SQS``); per function: invocations, errors, failure rate and
duration (``AWS/Lambda``). On AWS, SQS and Lambda publish these every minute; the local stack publishes
the same metrics under the same namespaces (``docpipe_local.queue_metrics``,
``docpipe_local.function_metrics``), so the route answers the same way on a laptop.

Series are ``[[epoch ms, value], ...]`` per period, oldest first; a period without a datapoint is left
out (an idle queue or function publishes nothing: read it as zero for counts). Operators only: 403
``auth.forbidden`` for anyone else; 503 ``metrics.unavailable`` when CloudWatch cannot be read.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from api.context import json_response, queue_readers, require_admin, settings
from docpipe.adapters.metric_series import MetricSeries, Series
from docpipe.config import LANES

router = APIGatewayHttpRouter()

# At most this many points per series: the period grows with the window (60 minutes: 2-minute periods).
POINTS = 30
# What each queue's series read, by the answer's name: (metric, statistic).
QUEUE_METRICS = {
    "depth": ("ApproximateNumberOfMessagesVisible", "Maximum"),
    "inFlight": ("ApproximateNumberOfMessagesNotVisible", "Maximum"),
    "oldestAgeSeconds": ("ApproximateAgeOfOldestMessage", "Maximum"),
    "deleted": ("NumberOfMessagesDeleted", "Sum"),
}
FUNCTION_METRICS = {
    "invocations": ("Invocations", "Sum"),
    "errors": ("Errors", "Sum"),
    "durationMs": ("Duration", "Average"),
}


def period_for(minutes: int) -> int:
    """Seconds per point: a whole number of minutes, at most :data:`POINTS` points in the window."""
    return 60 * max(1, math.ceil(minutes / POINTS))


def _lanes() -> list[tuple[str, str, str]]:
    """``(concern, lane, queue URL)`` of every ingest and task queue."""
    lanes = [("ingest", lane, url) for lane, url in settings.ingest_queues.items()]
    lanes += [(task, lane, urls[lane]) for task, urls in settings.task_queues.items() for lane in LANES]
    return [(concern, lane, url) for concern, lane, url in lanes if url]


def _points(points: list[tuple[datetime, float]]) -> list[list[float]]:
    return [[int(moment.timestamp() * 1000), round(value, 3)] for moment, value in points]


def _total(points: list[tuple[datetime, float]]) -> float:
    return sum(value for _, value in points)


@router.get("/admin/metrics")
def admin_metrics(minutes: Annotated[int, Query(ge=5, le=180)] = 60) -> Response[str]:
    """Every lane's and function's series over the last ``minutes`` (5 to 180), and per function its
    totals: ``invocations``, ``errors``, ``failureRate`` (errors over invocations, %), ``perMinute``
    (invocations a minute: its throughput) and ``averageDurationMs``, and its ``series`` (invocations,
    errors and average duration per period)."""
    require_admin()
    period = period_for(minutes)
    end_s = (int(time.time()) // period + 1) * period  # the period under way is the last one
    end = datetime.fromtimestamp(end_s, UTC)
    start = datetime.fromtimestamp(end_s - minutes * 60, UTC)
    stats = queue_readers()[0]
    wanted: list[Series] = []
    queues: list[dict[str, Any]] = []
    for concern, lane, url in _lanes():
        name = url.rsplit("/", 1)[1]
        dlq_url = stats.dead_letter_of(url)
        dlq = dlq_url.rsplit("/", 1)[1] if dlq_url else None
        queues.append({"concern": concern, "lane": lane, "queue": name, "dlq": dlq})
        for key, (metric, stat) in QUEUE_METRICS.items():
            wanted.append(Series(f"{name}/{key}", "AWS/SQS", metric, "QueueName", name, stat))
        if dlq:
            wanted.append(
                Series(f"{name}/dlqDepth", "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq, "Maximum")
            )
    for concern, function_name in settings.functions.items():
        for key, (metric, stat) in FUNCTION_METRICS.items():
            wanted.append(Series(f"{concern}/{key}", "AWS/Lambda", metric, "FunctionName", function_name, stat))
    read = MetricSeries().read(wanted, start, end, period)
    for row in queues:
        for key in (*QUEUE_METRICS, "dlqDepth"):
            row[key] = _points(read.get(f"{row['queue']}/{key}", []))
    functions = []
    for concern, function_name in settings.functions.items():
        invocations, errors = _total(read[f"{concern}/invocations"]), _total(read[f"{concern}/errors"])
        durations = [value for _, value in read[f"{concern}/durationMs"]]
        functions.append(
            {
                "function": concern,
                "name": function_name,
                "invocations": int(invocations),
                "errors": int(errors),
                "failureRate": round(100 * errors / invocations, 1) if invocations else None,
                "perMinute": round(invocations / minutes, 2),
                "averageDurationMs": round(sum(durations) / len(durations), 1) if durations else None,
                "series": {key: _points(read[f"{concern}/{key}"]) for key in FUNCTION_METRICS},
            }
        )
    body = {
        "minutes": minutes,
        "periodSeconds": period,
        "start": int(start.timestamp() * 1000),
        "end": int(end.timestamp() * 1000),
        "queues": queues,
        "functions": functions,
    }
    return json_response(200, body, {"Cache-Control": "no-store"})

"""GET /admin/metrics over moto's CloudWatch: every lane's series and each function's totals, from the
AWS/SQS and AWS/Lambda metrics the local stack publishes as AWS does; the local publishers themselves."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from docpipe.config import LANES, TASKS, Settings
from docpipe_local.function_metrics import FunctionMetricsPublisher
from docpipe_local.queue_metrics import QueueAgePublisher, QueueAges
from tests.unit.test_api import call  # noqa: F401 - the API fixture

pytestmark = pytest.mark.usefixtures("aws")
ADMIN = {"cognito:groups": ["docpipe-admins"]}


class Ran:
    """A runtime's outcomes, as :class:`docpipe_local.runtime.FunctionRuntime` reports them."""

    def __init__(self, outcomes: list[tuple[bool, float]]) -> None:
        self.outcomes = outcomes

    def drain_outcomes(self) -> list[tuple[bool, float]]:
        outcomes, self.outcomes = self.outcomes, []
        return outcomes


def put(namespace: str, metric: str, dimension: str, value: str, amount: float, minutes_ago: float = 1) -> None:
    boto3.client("cloudwatch").put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": dimension, "Value": value}],
                "Value": amount,
                "Timestamp": datetime.now(UTC) - timedelta(minutes=minutes_ago),
            }
        ],
    )


def test_the_local_publishers_write_what_the_route_reads(aws: dict[str, Any], call) -> None:  # noqa: F811
    # given: three presets-high messages waiting, two finished by a poller, and the presets function ran 4 times
    template = aws["template"]
    high = template.attributes["PresetsHighQueue"]
    for _ in range(3):
        aws["sqs"].send_message(QueueUrl=high["QueueUrl"], MessageBody="{}")
    ages = QueueAges()
    ages.deleted(high["QueueUrl"], 2)
    queues = {template.attributes[q]["QueueName"]: template.attributes[q]["QueueUrl"] for q in ("PresetsHighQueue",)}
    QueueAgePublisher(aws["sqs"], boto3.client("cloudwatch"), queues, ages, threading.Event()).publish_once()
    presets = Settings.from_env().functions.get("presets") or template.physical_name("PresetsFunction")
    ran = Ran([(True, 100.0), (True, 300.0), (False, 50.0), (True, 150.0)])
    published = FunctionMetricsPublisher(boto3.client("cloudwatch"), {presets: ran}, threading.Event()).publish_once()

    # when
    status, body, headers = call("GET", "/admin/metrics", query="minutes=10", claims=ADMIN)

    # then
    assert (status, headers["Cache-Control"], published) == (200, "no-store", 3)
    assert (body["minutes"], body["periodSeconds"]) == (10, 60)
    rows = {(q["concern"], q["lane"]): q for q in body["queues"]}
    assert len(rows) == len(LANES) * (1 + len(TASKS))  # ingest and each task, three lanes each
    assert [v for _, v in rows["presets", "high"]["depth"]] == [3]
    assert [v for _, v in rows["presets", "high"]["deleted"]] == [2]
    assert rows["presets", "normal"]["depth"] == []  # an idle queue publishes nothing
    assert rows["presets", "high"]["dlq"] and rows["presets", "high"]["oldestAgeSeconds"]
    functions = {f["function"]: f for f in body["functions"]}
    assert functions["presets"]["name"] == presets
    assert (functions["presets"]["invocations"], functions["presets"]["errors"]) == (4, 1)
    assert functions["presets"]["failureRate"] == 25.0
    assert functions["presets"]["averageDurationMs"] == 150.0
    assert functions["ocr"]["invocations"] == 0 and functions["ocr"]["failureRate"] is None


def test_a_dead_letter_queues_depth_is_its_own_series(aws: dict[str, Any], call) -> None:  # noqa: F811
    dlq = aws["template"].attributes["OcrLowDLQ"]["QueueName"]
    put("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq, 5, minutes_ago=30)

    _, body, _ = call("GET", "/admin/metrics", claims=ADMIN)

    rows = {(q["concern"], q["lane"]): q for q in body["queues"]}
    assert (body["minutes"], body["periodSeconds"]) == (60, 120)
    assert [v for _, v in rows["ocr", "low"]["dlqDepth"]] == [5]
    assert rows["ocr", "low"]["depth"] == []
    ((moment, _),) = rows["ocr", "low"]["dlqDepth"]
    assert body["start"] <= moment < body["end"]


def test_metrics_are_for_operators_only(call) -> None:  # noqa: F811
    assert call("GET", "/admin/metrics")[:2] == (
        403,
        {"code": "auth.forbidden", "message": "This route is for operators (the AdminGroup claim)."},
    )
    assert call("GET", "/admin/metrics", user=None)[0] == 401


@pytest.mark.parametrize("minutes", ["0", "4", "181", "an-hour"])
def test_the_window_is_bounded(call, minutes: str) -> None:  # noqa: F811
    status, body, _ = call("GET", "/admin/metrics", query=f"minutes={minutes}", claims=ADMIN)

    assert (status, body["code"]) == (400, "request.invalid")

"""The ``AWS/Lambda`` metrics of the local stack's functions, published to the emulator's CloudWatch.

On AWS, Lambda publishes ``Invocations``, ``Errors`` and ``Duration`` per function (dimension
``FunctionName``) every minute, and the operators' console reads them through ``GET /admin/metrics``.
The emulator publishes nothing, so the local stack does, from what its runtimes saw: every
``every_seconds`` one datapoint per metric and function that ran (``Duration`` as statistic values:
count, sum, minimum and maximum). A function that did not run publishes nothing, as on AWS. An
invocation that raised, timed out, crashed or ran out of memory is an error, as Lambda counts them;
a batch with partial failures is not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("docpipe.local")


class Outcomes(Protocol):
    """What a function runtime reports (:meth:`docpipe_local.runtime.FunctionRuntime.drain_outcomes`)."""

    def drain_outcomes(self) -> list[tuple[bool, float]]: ...


def metric_data(function_name: str, outcomes: list[tuple[bool, float]]) -> list[dict[str, Any]]:
    """The ``PutMetricData`` entries of one function's invocations (none when it did not run)."""
    if not outcomes:
        return []
    dimensions = [{"Name": "FunctionName", "Value": function_name}]
    durations = [duration for _, duration in outcomes]
    errors = sum(1 for ok, _ in outcomes if not ok)
    data: list[dict[str, Any]] = [
        {"MetricName": "Invocations", "Dimensions": dimensions, "Value": len(outcomes), "Unit": "Count"},
        {"MetricName": "Errors", "Dimensions": dimensions, "Value": errors, "Unit": "Count"},
        {
            "MetricName": "Duration",
            "Dimensions": dimensions,
            "StatisticValues": {
                "SampleCount": len(durations),
                "Sum": round(sum(durations), 3),
                "Minimum": round(min(durations), 3),
                "Maximum": round(max(durations), 3),
            },
            "Unit": "Milliseconds",
        },
    ]
    return data


class FunctionMetricsPublisher(threading.Thread):
    """Publishes ``AWS/Lambda`` metrics of ``runtimes`` (by physical function name) until ``stop`` is set."""

    def __init__(
        self, cloudwatch: Any, runtimes: Mapping[str, Outcomes], stop: threading.Event, every_seconds: float = 10.0
    ) -> None:
        super().__init__(name="function-metrics", daemon=True)
        self.cloudwatch, self.runtimes, self.stop_event, self.every = cloudwatch, runtimes, stop, every_seconds

    def publish_once(self) -> int:
        """Publish what ran since the last call; returns how many datapoints were sent."""
        data = [
            entry for name, runtime in self.runtimes.items() for entry in metric_data(name, runtime.drain_outcomes())
        ]
        for i in range(0, len(data), 20):
            self.cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data[i : i + 20])
        return len(data)

    def run(self) -> None:
        while not self.stop_event.wait(self.every):
            try:
                self.publish_once()
            except (BotoCoreError, ClientError) as exc:
                if not self.stop_event.is_set():
                    log.warning("publishing function metrics failed: %s", exc)

"""CloudWatch metric series for the operators' console (``GET /admin/metrics``): several metrics over the
same window and period, read in as few ``GetMetricData`` calls as CloudWatch allows (500 queries each)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from docpipe import aws
from docpipe.errors import Transient

QUERIES_PER_CALL = 500


class MetricsUnavailable(Transient):
    """CloudWatch cannot be read: 503 ``metrics.unavailable``."""

    code = "metrics.unavailable"


@dataclass(frozen=True)
class Series:
    """One metric to read: ``key`` names it in the answer."""

    key: str
    namespace: str
    metric: str
    dimension: str
    value: str
    stat: str


class MetricSeries:
    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("cloudwatch")

    def read(
        self, series: list[Series], start: datetime, end: datetime, period: int
    ) -> dict[str, list[tuple[datetime, float]]]:
        """Each series' datapoints by ``key``, oldest first (a period without data has none)."""
        out: dict[str, list[tuple[datetime, float]]] = {s.key: [] for s in series}
        for first in range(0, len(series), QUERIES_PER_CALL):
            chunk = series[first : first + QUERIES_PER_CALL]
            queries = [
                {
                    "Id": f"m{first + i}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": s.namespace,
                            "MetricName": s.metric,
                            "Dimensions": [{"Name": s.dimension, "Value": s.value}],
                        },
                        "Period": period,
                        "Stat": s.stat,
                    },
                    "ReturnData": True,
                }
                for i, s in enumerate(chunk)
            ]
            token: str | None = None
            while True:
                try:
                    answer = self.client.get_metric_data(
                        MetricDataQueries=queries,
                        StartTime=start,
                        EndTime=end,
                        ScanBy="TimestampAscending",
                        **({"NextToken": token} if token else {}),
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise MetricsUnavailable("CloudWatch could not be read; try again shortly.") from exc
                for result in answer.get("MetricDataResults") or []:
                    key = series[int(result["Id"][1:])].key
                    out[key] += zip(
                        result.get("Timestamps") or [], map(float, result.get("Values") or []), strict=False
                    )
                token = answer.get("NextToken")
                if not token:
                    break
        for points in out.values():
            points.sort(key=lambda point: point[0])
        return out

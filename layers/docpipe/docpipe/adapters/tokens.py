"""DynamoDB: the shared token bucket of a rate-limited API (:mod:`docpipe.admission`), in UsageTable.

The bucket lives under a reserved owner, ``@{api}`` (a user id never starts with ``@``): one item per
window, ``tokens#{window}`` (``used`` counted by a conditional ``ADD``, kept a minute by its TTL; the
window number carries the windows a second, so windows of different rates never share an item), and
``rate`` (the last AIMD cut: ``rate`` and ``at``).
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from docpipe.adapters.dynamo import _dump, _is_condition_failure, _Table
from docpipe.errors import OcrUnavailable

TOKEN_TTL_SECONDS = 60


class TokenStore(_Table):
    def __init__(self, name: str, api: str = "textract", client: Any | None = None) -> None:
        super().__init__(name, client)
        self.owner = f"@{api}"

    def take(self, window: int, capacity: int) -> bool:
        try:
            self.client.update_item(
                TableName=self.name,
                Key=_dump({"owner": self.owner, "item": f"tokens#{window}"}),
                UpdateExpression="ADD #u :one SET #e = :e",
                ConditionExpression="attribute_not_exists(#u) OR #u < :cap",
                ExpressionAttributeNames={"#u": "used", "#e": "expiresAt"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":cap": {"N": str(capacity)},
                    ":e": {"N": str(int(time.time()) + TOKEN_TTL_SECONDS)},
                },
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise OcrUnavailable(f"The OCR admission bucket cannot be reached: {exc}") from exc
        return True

    def rate(self) -> tuple[float, float] | None:
        item = self._get({"owner": self.owner, "item": "rate"})
        return None if item is None else (float(item["rate"]), float(item["at"]))

    def cut_rate(self, rate: float, at: float) -> None:
        try:
            self.client.update_item(
                TableName=self.name,
                Key=_dump({"owner": self.owner, "item": "rate"}),
                UpdateExpression="SET #r = :r, #a = :a",
                ExpressionAttributeNames={"#r": "rate", "#a": "at"},
                ExpressionAttributeValues={":r": {"N": f"{rate:.3f}"}, ":a": {"N": f"{at:.3f}"}},
            )
        except ClientError as exc:
            raise OcrUnavailable(f"The OCR admission bucket cannot be reached: {exc}") from exc

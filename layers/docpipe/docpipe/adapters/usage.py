"""DynamoDB: UsageTable, what each user has used of their limits, and the per-user overrides.

pk ``owner``, sk ``item``. Every count is one item, changed only by atomic ``ADD`` updates; a limit is
a condition on the same update, so twenty requests racing for the last unit admit exactly one and no
count is ever read, compared and written back. Items:

- ``limits``: the user's overrides, one attribute per limit name (absent: the stack's default);
- ``uploads#m#{minute}``, ``high#m#{minute}``, ``bytes#d#{yyyymmdd}``: fixed windows, with a TTL;
- ``open``: jobs created and not ended; ``stored``: the bytes of the distinct originals the user's jobs
  reference, plus the declared size of uploads not ingested yet (a reservation, settled by ingest);
- ``ref#{hash}``: how many of the user's jobs reference those bytes (the first adds them to ``stored``,
  the last one purged takes them out).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from docpipe.adapters.dynamo import _dump, _is_condition_failure, _load, _Table
from docpipe.errors import QuotaUnavailable

LIMITS_ITEM = "limits"


def _unavailable(exc: ClientError, what: str) -> QuotaUnavailable:
    return QuotaUnavailable(
        f"Usage limits cannot be checked right now ({what}: {exc.response.get('Error', {}).get('Code', exc)})."
    )


class UsageRepository(_Table):
    def _add(
        self, owner: str, item: str, amount: int, room: int | None = None, expires_at: int | None = None
    ) -> int | None:
        """``used += amount`` on one item; the new value, or ``None`` when ``used`` was above ``room``."""
        names = {"#u": "used"}
        values: dict[str, Any] = {":n": {"N": str(amount)}}
        expression = "ADD #u :n"
        if expires_at is not None:
            names["#e"] = "expiresAt"
            values[":e"] = {"N": str(expires_at)}
            expression += " SET #e = :e"
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": _dump({"owner": owner, "item": item}),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        if room is not None:
            kwargs["ConditionExpression"] = "attribute_not_exists(#u) OR #u <= :room"
            values[":room"] = {"N": str(room)}
        try:
            r = self.client.update_item(**kwargs)
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise _unavailable(exc, "update_item") from exc
        return int(_load(r["Attributes"]).get("used", 0))

    def take(self, owner: str, item: str, amount: int, limit: int, expires_at: int | None = None) -> bool:
        """Count ``amount`` against ``limit`` (0: unlimited, still counted); False when it would pass the limit."""
        if limit and amount > limit:
            return False
        return self._add(owner, item, amount, limit - amount if limit else None, expires_at) is not None

    def add(self, owner: str, item: str, amount: int) -> int:
        """Change a count without a limit (a release, or a reservation settled at its real size)."""
        value = self._add(owner, item, amount)
        assert value is not None
        return value

    def used(self, owner: str, items: list[str]) -> dict[str, int]:
        """The current value of each of ``items`` (0 for one never counted)."""
        try:
            r = self.client.batch_get_item(
                RequestItems={
                    self.name: {
                        "Keys": [_dump({"owner": owner, "item": item}) for item in items],
                        "ConsistentRead": True,
                    }
                }
            )
        except ClientError as exc:
            raise _unavailable(exc, "batch_get_item") from exc
        found = {row["item"]: int(row.get("used", 0)) for row in map(_load, r.get("Responses", {}).get(self.name, []))}
        return {item: found.get(item, 0) for item in items}

    def overrides(self, owner: str) -> dict[str, int]:
        try:
            r = self.client.get_item(
                TableName=self.name, Key=_dump({"owner": owner, "item": LIMITS_ITEM}), ConsistentRead=True
            )
        except ClientError as exc:
            raise _unavailable(exc, "get_item") from exc
        return {k: int(v) for k, v in _load(r.get("Item", {})).items() if k not in ("owner", "item")}

    def set_override(self, owner: str, name: str, value: int | None) -> dict[str, int]:
        """Raise or lower one limit for one user (``None`` goes back to the stack's default)."""
        new = self._update({"owner": owner, "item": LIMITS_ITEM}, {name: value})
        return {k: int(v) for k, v in (new or {}).items() if k not in ("owner", "item")}

    def add_ref(self, owner: str, digest: str) -> bool:
        """One more of ``owner``'s jobs references these bytes; True when it is the first."""
        return self.add(owner, f"ref#{digest}", 1) == 1

    def drop_ref(self, owner: str, digest: str) -> bool:
        """One job fewer references these bytes; True when it was the owner's last (the item then goes)."""
        if self.add(owner, f"ref#{digest}", -1) > 0:
            return False
        try:
            self.client.delete_item(
                TableName=self.name,
                Key=_dump({"owner": owner, "item": f"ref#{digest}"}),
                ConditionExpression="#u <= :zero",
                ExpressionAttributeNames={"#u": "used"},
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):  # a new reference came in between: it keeps the item
                raise _unavailable(exc, "delete_item") from exc
        return True

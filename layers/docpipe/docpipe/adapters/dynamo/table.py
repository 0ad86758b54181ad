"""The shared part of the DynamoDB repositories: (de)serializing items, conditional updates, faults."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from docpipe import aws
from docpipe.errors import Transient

_ser = TypeSerializer()
_de = TypeDeserializer()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [_plain(v) for v in value]
    return value


def _dump(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def _load(item: dict[str, Any]) -> dict[str, Any]:
    return _plain({k: _de.deserialize(v) for k, v in item.items()})


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


BATCH_GET_KEYS = 100  # BatchGetItem's limit per call
BATCH_GET_ROUNDS = 5  # calls for the keys DynamoDB leaves unprocessed, before a Transient fault


def _fault(exc: ClientError, what: str) -> Transient:
    return Transient(f"DynamoDB failed on {what}: {exc.response.get('Error', {}).get('Code', exc)}")


class _Table:
    def __init__(self, name: str, client: Any | None = None) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("dynamodb")

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            r = self.client.get_item(TableName=self.name, Key=_dump(key), ConsistentRead=True)
        except ClientError as exc:
            raise _fault(exc, "get_item") from exc
        return _load(r["Item"]) if "Item" in r else None

    def _get_many(self, key_attr: str, keys: list[str], what: str) -> dict[str, dict[str, Any]]:
        """Items by their ``key_attr`` value, read strongly consistent in ``BatchGetItem`` calls of at most
        :data:`BATCH_GET_KEYS` keys; an item that is not there is absent. Keys DynamoDB leaves unprocessed
        (throttling, the 16 MB response limit) are asked for again after a short backoff, up to
        :data:`BATCH_GET_ROUNDS` rounds; any still left then is a :class:`Transient` fault, never an item
        silently missing. ``what`` names the items in that fault."""
        wanted = list(dict.fromkeys(keys))  # each key once, in the order given
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), BATCH_GET_KEYS):
            pending: list[dict[str, Any]] = [_dump({key_attr: k}) for k in wanted[start : start + BATCH_GET_KEYS]]
            for round_ in range(BATCH_GET_ROUNDS):
                if round_:
                    time.sleep(min(0.05 * 2**round_, 1.0))
                try:
                    r = self.client.batch_get_item(RequestItems={self.name: {"Keys": pending, "ConsistentRead": True}})
                except ClientError as exc:
                    raise _fault(exc, "batch_get_item") from exc
                for item in r.get("Responses", {}).get(self.name, []):
                    loaded = _load(item)
                    found[loaded[key_attr]] = loaded
                pending = r.get("UnprocessedKeys", {}).get(self.name, {}).get("Keys", [])
                if not pending:
                    break
            if pending:
                raise Transient(f"DynamoDB left {len(pending)} {what} unread after {BATCH_GET_ROUNDS} rounds")
        return found

    def _put_new(self, item: dict[str, Any], key_attr: str) -> bool:
        return self._put_new_else_current(item, key_attr, read=False) is None

    def _put_new_else_current(self, item: dict[str, Any], key_attr: str, read: bool = True) -> dict[str, Any] | None:
        """Put ``item`` unless an item with its key is there: ``None`` when it was put, else the item that was
        there (``{}`` when ``read`` is false, or when it went between the put and the read). The failed
        condition returns that item (``ReturnValuesOnConditionCheckFailure``), so finding one costs no
        read; it is read where the store does not return it."""
        try:
            self.client.put_item(
                TableName=self.name,
                Item=_dump(item),
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": key_attr},
                **({"ReturnValuesOnConditionCheckFailure": "ALL_OLD"} if read else {}),
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return self._current(exc, {key_attr: item[key_attr]}) if read else {}
            raise _fault(exc, "put_item") from exc
        return None

    def _current(self, exc: ClientError, key: dict[str, Any]) -> dict[str, Any]:
        """The item a failed condition returned, else the item read now (``{}`` when there is none)."""
        returned: Any = exc.response.get("Item")
        if returned:
            return _load(returned)
        return self._get(key) or {}

    def _update(self, key: dict[str, Any], fields: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Set ``fields`` (``None`` removes) if ``condition`` holds; the new item, or ``None`` when it did not.
        The arguments are :meth:`_update_else_current`'s, which reads nothing here (``read`` false)."""
        return self._update_else_current(key, fields, *args, **{**kwargs, "read": False})[0]

    def _update_else_current(
        self,
        key: dict[str, Any],
        fields: dict[str, Any],
        condition: str | None = None,
        values: dict[str, Any] | None = None,
        extra_names: dict[str, str] | None = None,
        *,
        set_also: str = "",
        add: str = "",
        read: bool = True,
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Set ``fields`` (``None`` removes) if ``condition`` holds: ``(new item, {})`` when it did, else
        ``(None, the item as it is)`` (as :meth:`_put_new_else_current` finds it: returned by the failed
        condition, else read; ``{}`` when there is none or ``read`` is false).

        ``set_also`` is one more ``SET`` clause and ``add`` an ``ADD`` clause, with their names and
        values passed in ``extra_names`` and ``values``.
        """
        names: dict[str, str] = dict(extra_names or {})
        vals: dict[str, Any] = {}
        sets: list[str] = []
        removes: list[str] = []
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            else:
                vals[f":f{i}"] = _ser.serialize(value)
                sets.append(f"#f{i} = :f{i}")
        for name, value in (values or {}).items():
            vals[name] = _ser.serialize(value)
        if set_also:
            sets.append(set_also)
        expression = " ".join(
            part
            for part in (
                f"SET {', '.join(sets)}" if sets else "",
                f"REMOVE {', '.join(removes)}" if removes else "",
                f"ADD {add}" if add else "",
            )
            if part
        )
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": _dump(key),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ReturnValues": "ALL_NEW",
        }
        if vals:
            kwargs["ExpressionAttributeValues"] = vals
        if condition:
            kwargs["ConditionExpression"] = condition
            if read:
                kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            r = self.client.update_item(**kwargs)
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None, self._current(exc, key) if read else {}
            raise _fault(exc, "update_item") from exc
        return _load(r["Attributes"]), {}

    def ping(self) -> None:
        try:
            self.client.describe_table(TableName=self.name)
        except ClientError as exc:
            raise _fault(exc, "describe_table") from exc

"""DynamoDB: UsageTable, what each user has used of their limits, and the per-user overrides.

pk ``owner``, sk ``item``. A user's counts and overrides are one item, ``counts``, so that admitting an
upload is one conditional update (:meth:`UsageRepository.take_all`): each count it takes is an ``ADD``
and each limit a condition of the same request, so twenty requests racing for the last unit admit
exactly one, nothing taken has to be given back, and no count is ever read, compared and written back.
The item's attributes:

- ``open``: jobs created and not ended; ``stored``: the bytes of the distinct originals the user's jobs
  reference, plus the declared size of uploads not ingested yet (a reservation, settled by ingest);
- a windowed count (``uploads#s10``, ``uploads#m``, ``high#m``, ``bytes#d``: a 10-second slot, a
  minute, a day) is two attributes: the window it counts now (``w.uploads#m`` = ``uploads#m#{minute}``)
  and its count (``n.uploads#m``). A request that finds an older window there starts the new one at
  zero (a conditional update, so one of several racing requests does it) and asks again;
- ``limit.{Name}``: the user's overrides (absent: the stack's default), and ``limitsVersion``, a random
  token each change replaces (a counter could start again at a number a worker has seen, if the item
  were ever removed). An admission names the version of the limits it checked, so a change made between a
  worker's reading of them and its admission fails the condition, and the refused request's answer
  (``ReturnValuesOnConditionCheckFailure``) carries the new ones. A worker keeps each user's limits
  it has seen, so an admission costs one request, not one more to read the overrides.

``ref#{hash}`` items stay one per hash: how many of the user's jobs reference those bytes.

Callers name a count by its item name (``open``, ``stored``, or a window's ``uploads#m#{minute}``, see
:func:`docpipe.quotas.windows`), as when each count was an item of its own (the layout before this one,
never deployed beyond development stacks: its items are not read, and its window items expire).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from docpipe.adapters.dynamo import _dump, _is_condition_failure, _load, _Table
from docpipe.errors import QuotaUnavailable

COUNTS_ITEM = "counts"
PLAIN = ("open", "stored")  # counts that never reset
LIMIT_PREFIX = "limit."
VERSION = "limitsVersion"
USERS_KEPT = 10_000  # users whose limits a worker remembers (a few hundred bytes each)


def _unavailable(exc: ClientError, what: str) -> QuotaUnavailable:
    return QuotaUnavailable(
        f"Usage limits cannot be checked right now ({what}: {exc.response.get('Error', {}).get('Code', exc)})."
    )


def _attributes(item: str) -> tuple[str | None, str]:
    """``(window attribute or None, count attribute)`` of a count named by its item name."""
    if item in PLAIN:
        return None, item
    kind = item.rsplit("#", 1)[0]
    return f"w.{kind}", f"n.{kind}"


@dataclass(frozen=True)
class Take:
    """``amount`` more of the count ``item``, as long as it stays within ``room`` of it (None: no limit)."""

    item: str
    amount: int
    room: int | None


@dataclass(frozen=True)
class Limits:
    overrides: dict[str, int]
    version: str  # "" while the user has never had an override


def limits_of(counts: dict[str, Any]) -> Limits:
    overrides = {k[len(LIMIT_PREFIX) :]: int(v) for k, v in counts.items() if k.startswith(LIMIT_PREFIX)}
    return Limits(overrides, str(counts.get(VERSION, "")))


def current(counts: dict[str, Any], item: str) -> bool:
    """Whether ``counts`` (as read) count in the window ``item`` (always, for a count without windows)."""
    window, _count = _attributes(item)
    return window is None or counts.get(window) == item


def window_held(counts: dict[str, Any], item: str) -> str | None:
    """The window of ``item``'s kind that ``counts`` (as read) hold (None for none, or a count without windows)."""
    window, _count = _attributes(item)
    return None if window is None else counts.get(window)


def newer(item: str, than: Any) -> bool:
    """Whether the window ``item`` is later than the window ``than`` of the same kind (or there is none).
    Their numbers have as many digits for centuries, so DynamoDB compares them as strings just as well."""
    return than is None or int(item.rsplit("#", 1)[1]) > int(str(than).rsplit("#", 1)[1])


def used_of(counts: dict[str, Any], item: str) -> int:
    """The count ``item`` in a user's ``counts`` as read (0 for a window that is not the current one)."""
    if not current(counts, item):
        return 0  # an older window (or none): nothing counted in this one yet
    return int(counts.get(_attributes(item)[1], 0))


class UsageRepository(_Table):
    def __init__(self, name: str, client: Any | None = None) -> None:
        super().__init__(name, client)
        self._known: OrderedDict[str, Limits] = OrderedDict()  # user: the limits last seen (USERS_KEPT)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the one-request admission
    def take_all(self, owner: str, takes: Sequence[Take]) -> dict[str, Any] | None:
        """Count every one of ``takes`` in one conditional update, if each stays within its room, each
        window is the current one, and the user's limits are the ones :meth:`limits` last answered.
        ``None`` when all were counted; else nothing was, and the answer is the user's counts as they
        are (``{}`` when there are none yet), from which the caller sees why (:meth:`limits` then
        answers the limits in them)."""
        limits = self.limits(owner)
        names: dict[str, str] = {"#v": VERSION}
        values: dict[str, Any] = {}
        adds: list[str] = []
        conditions = ["#v = :v" if limits.version else "attribute_not_exists(#v)"]
        if limits.version:
            values[":v"] = {"S": limits.version}
        for i, take in enumerate(takes):
            window, count = _attributes(take.item)
            names[f"#n{i}"] = count
            values[f":a{i}"] = {"N": str(take.amount)}
            adds.append(f"#n{i} :a{i}")
            if window is not None:
                names[f"#w{i}"] = window
                values[f":w{i}"] = {"S": take.item}
                conditions.append(f"#w{i} = :w{i}")
            if take.room is not None:
                values[f":r{i}"] = {"N": str(take.room)}
                conditions.append(f"(attribute_not_exists(#n{i}) OR #n{i} <= :r{i})")
        refused = self._update_if(owner, "ADD " + ", ".join(adds), conditions, names, values)
        if refused is None:
            return None
        held: Any = refused.response.get("Item")  # the item as the failed condition found it
        counts = _load(held) if isinstance(held, dict) else self._counts(owner)
        self._remember(owner, limits_of(counts))
        return counts

    def start_windows(self, owner: str, items: Sequence[str], counts: dict[str, Any]) -> None:
        """Start the windows ``items`` at zero where ``counts`` (as read) holds an older one, or none.
        Conditional on the window still being older, so of racing requests one starts it, and a window
        never moves back (a worker whose clock is behind another's; see :func:`newer`)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {":zero": {"N": "0"}}
        sets: list[str] = []
        conditions: list[str] = []
        for i, item in enumerate(items):
            window, count = _attributes(item)
            if window is None or not newer(item, counts.get(window)):
                continue
            names[f"#w{i}"], names[f"#n{i}"] = window, count
            values[f":w{i}"] = {"S": item}
            sets += [f"#w{i} = :w{i}", f"#n{i} = :zero"]
            conditions.append(f"(attribute_not_exists(#w{i}) OR #w{i} < :w{i})")
        if not sets:
            return
        self._update_if(owner, "SET " + ", ".join(sets), conditions, names, values)  # refused: started by another

    def _update_if(
        self, owner: str, expression: str, conditions: list[str], names: dict[str, str], values: dict[str, Any]
    ) -> ClientError | None:
        """Update the user's counts item if every one of ``conditions`` holds; the refusal when one did not
        (with the item as it was, ``ReturnValuesOnConditionCheckFailure``), None when it was updated."""
        try:
            self.client.update_item(
                TableName=self.name,
                Key=_dump({"owner": owner, "item": COUNTS_ITEM}),
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise _unavailable(exc, "update_item") from exc
            return exc
        return None

    # ------------------------------------------------------------------ single counts
    def take(self, owner: str, item: str, amount: int, limit: int) -> bool:
        """Count ``amount`` of a count without windows (``open``) against ``limit`` (0: unlimited, still
        counted); False when it would pass the limit. (Windowed counts are taken by ``quotas.admit``.)"""
        if limit and amount > limit:
            return False
        for _ in range(3):  # again when the limits changed since this worker saw them
            counts = self.take_all(owner, [Take(item, amount, limit - amount if limit else None)])
            if counts is None:
                return True
            if limit and used_of(counts, item) + amount > limit:
                return False
        return False

    def add(self, owner: str, item: str, amount: int) -> int:
        """Change a count without a limit (a release, or a reservation settled at its real size); the new
        value. A window's count changes only while that window is the current one (else 0)."""
        window, count = _attributes(item)
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": _dump({"owner": owner, "item": COUNTS_ITEM}),
            "UpdateExpression": "ADD #n :a",
            "ExpressionAttributeNames": {"#n": count},
            "ExpressionAttributeValues": {":a": {"N": str(amount)}},
            "ReturnValues": "ALL_NEW",
        }
        if window is not None:
            kwargs["ConditionExpression"] = "#w = :w"
            kwargs["ExpressionAttributeNames"]["#w"] = window
            kwargs["ExpressionAttributeValues"][":w"] = {"S": item}
        try:
            r = self.client.update_item(**kwargs)
        except ClientError as exc:
            if _is_condition_failure(exc):
                return 0  # that window is over: its count no longer matters
            raise _unavailable(exc, "update_item") from exc
        return int(_load(r["Attributes"]).get(count, 0))

    def used(self, owner: str, items: list[str]) -> dict[str, int]:
        """The current value of each of ``items`` (0 for one never counted, or a window that is over)."""
        counts = self._counts(owner)
        return {item: used_of(counts, item) for item in items}

    # ------------------------------------------------------------------ overrides
    def limits(self, owner: str) -> Limits:
        """The user's overrides and their version, as this worker last saw them (read the first time)."""
        with self._lock:
            known = self._known.get(owner)
            if known is not None:
                self._known.move_to_end(owner)
                return known
        limits = limits_of(self._counts(owner))
        self._remember(owner, limits)
        return limits

    def overrides(self, owner: str) -> dict[str, int]:
        """The user's overrides, read now."""
        limits = limits_of(self._counts(owner))
        self._remember(owner, limits)
        return dict(limits.overrides)

    def set_override(self, owner: str, name: str, value: int | None) -> dict[str, int]:
        """Raise or lower one limit for one user (``None`` goes back to the stack's default)."""
        names = {"#l": LIMIT_PREFIX + name, "#v": VERSION}
        values: dict[str, Any] = {":v": {"S": uuid.uuid4().hex}}
        if value is None:
            expression = "SET #v = :v REMOVE #l"
        else:
            expression = "SET #l = :l, #v = :v"
            values[":l"] = {"N": str(int(value))}
        try:
            r = self.client.update_item(
                TableName=self.name,
                Key=_dump({"owner": owner, "item": COUNTS_ITEM}),
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            raise _unavailable(exc, "update_item") from exc
        limits = limits_of(_load(r["Attributes"]))
        self._remember(owner, limits)
        return dict(limits.overrides)

    # ------------------------------------------------------------------ references
    def add_ref(self, owner: str, digest: str) -> bool:
        """One more of ``owner``'s jobs references these bytes; True when it is the first."""
        return self._add_ref(owner, f"ref#{digest}", 1) == 1

    def drop_ref(self, owner: str, digest: str) -> bool:
        """One job fewer references these bytes; True when it was the owner's last (the item then goes)."""
        if self._add_ref(owner, f"ref#{digest}", -1) > 0:
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

    def _add_ref(self, owner: str, item: str, amount: int) -> int:
        try:
            r = self.client.update_item(
                TableName=self.name,
                Key=_dump({"owner": owner, "item": item}),
                UpdateExpression="ADD #u :n",
                ExpressionAttributeNames={"#u": "used"},
                ExpressionAttributeValues={":n": {"N": str(amount)}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            raise _unavailable(exc, "update_item") from exc
        return int(_load(r["Attributes"]).get("used", 0))

    # ------------------------------------------------------------------ the item itself
    def _counts(self, owner: str) -> dict[str, Any]:
        try:
            r = self.client.get_item(
                TableName=self.name, Key=_dump({"owner": owner, "item": COUNTS_ITEM}), ConsistentRead=True
            )
        except ClientError as exc:
            raise _unavailable(exc, "get_item") from exc
        return _load(r.get("Item", {}))

    def _remember(self, owner: str, limits: Limits) -> None:
        with self._lock:
            self._known[owner] = limits
            self._known.move_to_end(owner)
            while len(self._known) > USERS_KEPT:
                self._known.popitem(last=False)

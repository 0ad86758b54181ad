"""What moto's DynamoDB needs to keep DynamoDB's promises under concurrency.

DynamoDB applies each write, with its condition, atomically: of twenty conditional ``ADD``s racing
for the last unit of a quota, exactly one succeeds. moto evaluates the condition and applies the
update in Python without a lock, so under threads (its server serves each request on a thread) two
writers can both pass the same condition, and its ``TransactWriteItems`` restores whole-table copies
on failure, undoing concurrent writes. :func:`serialize_dynamodb_writes` puts one lock around
moto's DynamoDB writes, which makes each of them atomic, as on AWS. The embedded emulator's server
applies it at start, and the tests' in-process moto too.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_lock = threading.RLock()


def serialize_dynamodb_writes() -> None:
    """Make moto's DynamoDB writes atomic with respect to each other (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_docpipe_serialized", False):
            continue

        def serialized(self: Any, *args: Any, __method: Any = method, **kwargs: Any) -> Any:
            with _lock:
                return __method(self, *args, **kwargs)

        functools.update_wrapper(serialized, method)
        serialized._docpipe_serialized = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, serialized)

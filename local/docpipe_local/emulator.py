"""What moto needs to keep AWS's promises: DynamoDB's under concurrency, S3's response overrides.

DynamoDB applies each write, with its condition, atomically: of twenty conditional ``ADD``s racing
for the last unit of a quota, exactly one succeeds. moto evaluates the condition and applies the
update in Python without a lock, so under threads (its server serves each request on a thread) two
writers can both pass the same condition, and its ``TransactWriteItems`` restores whole-table copies
on failure, undoing concurrent writes. :func:`serialize_dynamodb_writes` puts one lock around
moto's DynamoDB writes, which makes each of them atomic, as on AWS. The embedded emulator's server
applies it at start, and the tests' in-process moto too.

A presigned S3 GET may override some of the response's headers with ``response-content-type``,
``response-content-disposition``, ``response-cache-control``, ``response-content-language``,
``response-content-encoding`` and ``response-expires``: that is how a download gets its name, its
``attachment`` and its exact type. moto ignores them; :func:`honour_s3_response_overrides` applies
them to ``GetObject`` answers as S3 does. The embedded emulator's server applies it at start.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_lock = threading.RLock()
# GetObject's query parameters that set a response header, and the header each sets.
S3_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-disposition": "Content-Disposition",
    "response-cache-control": "Cache-Control",
    "response-content-language": "Content-Language",
    "response-content-encoding": "Content-Encoding",
    "response-expires": "Expires",
}


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


def honour_s3_response_overrides() -> None:
    """Make moto's ``GetObject`` answer with the headers its ``response-*`` parameters ask for (idempotent)."""
    from moto.s3.responses import S3Response

    get_object = S3Response.get_object
    if getattr(get_object, "_docpipe_overrides", False):
        return

    def overridden(self: Any) -> Any:
        status, headers, body = get_object(self)
        if status in (200, 206):
            for parameter, header in S3_RESPONSE_OVERRIDES.items():
                values = (self.querystring or {}).get(parameter)
                if values:
                    for name in [name for name in headers if name.lower() == header.lower()]:
                        del headers[name]
                    headers[header] = values[0]
        return status, headers, body

    functools.update_wrapper(overridden, get_object)
    overridden._docpipe_overrides = True  # type: ignore[attr-defined]
    S3Response.get_object = overridden  # type: ignore[method-assign]

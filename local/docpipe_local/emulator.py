"""What moto needs to keep AWS's promises: DynamoDB's and SQS's under concurrency, S3's response overrides.

DynamoDB applies each write, with its condition, atomically: of twenty conditional ``ADD``s racing
for the last unit of a quota, exactly one succeeds. moto evaluates the condition and applies the
update in Python without a lock, so under threads (its server serves each request on a thread) two
writers can both pass the same condition, and its ``TransactWriteItems`` restores whole-table copies
on failure, undoing concurrent writes. :func:`serialize_dynamodb_writes` puts one lock around
moto's DynamoDB writes, which makes each of them atomic, as on AWS. The embedded emulator's server
applies it at start, and the tests' in-process moto too.

SQS never loses a message it accepted. moto's ``DeleteMessage`` rebuilds the queue's list of messages
and puts the new list in its place without the lock ``SendMessage`` appends under, so a message sent
while another is deleted could vanish: a 500-upload run lost two scan tasks that way, their jobs
stuck in ``scanning``. :func:`serialize_sqs_deletes` takes that lock around the delete. The embedded
emulator's servers and the tests' in-process moto apply it. (``PurgeQueue`` may drop a message sent
while it runs: SQS documents that too.)

A presigned S3 GET may override some of the response's headers with ``response-content-type``,
``response-content-disposition``, ``response-cache-control``, ``response-content-language``,
``response-content-encoding`` and ``response-expires``: that is how a download gets its name, its
``attachment`` and its exact type. moto ignores them; :func:`honour_s3_response_overrides` applies
them to ``GetObject`` answers as S3 does. The embedded emulator's server applies it at start.

What a workload costs on AWS follows the requests it makes: :func:`count_requests` counts each request
the emulator's server answers, by service and operation, and serves the counts at ``/_docpipe/requests``
(:func:`request_counts` reads them). The embedded emulator's servers apply it at start.

Four of moto's costs grow with a busy stack and change no answer: :func:`speed_up_moto` cuts them.
The embedded emulator's servers and the tests' in-process moto apply it.

moto keeps every DynamoDB Streams shard iterator it hands out, and each ``GetRecords`` hands out one:
a stream poller reading an idle shard ten times a second left about 100 MB an hour in the emulator.
:func:`expire_stream_iterators` forgets an iterator 15 minutes after it was handed out, as AWS expires
it. The embedded emulator's servers apply it.
"""

from __future__ import annotations

import functools
import threading
import time
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


def serialize_sqs_deletes() -> None:
    """Make moto's SQS delete change a queue's messages under the lock its sends append under (idempotent)."""
    from moto.sqs.models import Queue

    delete = Queue.delete_message
    if getattr(delete, "_docpipe_serialized", False):
        return

    def serialized(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            delete(self, receipt_handle)

    functools.update_wrapper(serialized, delete)
    serialized._docpipe_serialized = True  # type: ignore[attr-defined]
    Queue.delete_message = serialized  # type: ignore[method-assign]


def speed_up_moto() -> None:
    """Cut four of moto's costs that grow with a busy stack, without changing any answer (idempotent).

    - **Dispatch.** moto's server finds each request's service under one process-wide lock, and for
      that lists its own package's folder and tries its services' URL patterns one by one, on every
      request: under the load bench, half of the DynamoDB emulator's CPU, and every request waited for
      that lock. The answer depends only on the host the request is inferred to be for, so it is kept
      per host.
    - **Query.** moto answers a DynamoDB ``Query`` by sorting every item of the table and keeping those
      of the key; on a table of thousands of jobs that is most of the Query's time. A Query of the
      table now reads only the items of its partition key, and a Query of an index reads the items
      unsorted (moto sorts the ones it keeps, as before) and, of those, only the ones whose index key is
      the string asked for (a plain comparison of strings; moto compares its typed values again). Under
      the tenants bench, a listing of a user's jobs had moto compare every job of the table: 52 ms of
      the emulator's CPU a Query. ``Scan`` is unchanged.
    - **Index projections.** moto projects each item a Query of a ``KEYS_ONLY`` or ``INCLUDE`` index
      keeps by turning the whole item into plain JSON once per projected attribute, and back: for a
      user with hundreds of open jobs (a burst), each job view's Query of the ``byOwnerOpen`` index
      converted hundreds of whole job items, with their histories, five times each. Under the tenants
      bench that was 30 % of the DynamoDB emulator's CPU and pegged its core, and every call waited.
      The projection now keeps the item's top-level attributes the index projects (an index projects
      only top-level attributes), and stands for moto's copy of each whole item kept, which moto made
      only to project it: the answer shares the stored attributes' values, which nothing changes.
    - **Answers of the JSON protocols** (DynamoDB, its streams, SQS): see :func:`_pick_members_of_plain_dicts`.
    """
    _pick_members_of_plain_dicts()
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import SecondaryIndex, Table
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    backend_for_host = DomainDispatcherApplication.get_backend_for_host
    if not getattr(backend_for_host, "_docpipe_fast", False):
        backends: dict[str | None, Any] = {}

        def remembered(self: Any, host: str | None) -> Any:
            if host not in backends:
                backends[host] = backend_for_host(self, host)
            return backends[host]

        functools.update_wrapper(remembered, backend_for_host)
        remembered._docpipe_fast = True  # type: ignore[attr-defined]
        DomainDispatcherApplication.get_backend_for_host = remembered  # type: ignore[method-assign]

    _project_index_items_cheaply()
    query, all_items, deepcopy_item = Table.query, Table.all_items, Item.__deepcopy__
    if getattr(query, "_docpipe_fast", False):
        return
    scope = threading.local()  # the table a Query on this thread is reading, and its partition key if of the table

    def items_for_query(self: Any) -> Any:
        if getattr(scope, "table", None) is not self:
            return all_items(self)
        if scope.partition is not None:
            found = self.items.get(scope.partition)  # .get: the items are a defaultdict
            if found is None:
                return []
            return list(found.values()) if self.range_key_attr else [found]
        items = [
            item for kept in list(self.items.values()) for item in (kept.values() if self.range_key_attr else [kept])
        ]
        for name, value in scope.strings:  # the index's string keys asked for: moto checks them again
            items = [i for i in items if (v := i.attrs.get(name)) is not None and v.type == "S" and v.value == value]
        return items

    def fast_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name") if "index_name" in kwargs else (args[6] if len(args) > 6 else None)
        scope.table, scope.partition = self, (None if index_name else hash_key)
        conditions = (kwargs.get("hash_key_conditions") or []) if index_name else []
        scope.strings = [(name, value.value) for name, value in conditions if value.type == "S"]
        index = next((i for i in self.all_indexes() if i.name == index_name), None) if index_name else None
        # moto copies every item it keeps, then projects the copies: the projection is the copy
        scope.projecting = index if (index is not None and _projects_part(index)) else None
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            scope.table = scope.partition = scope.projecting = None
            scope.strings = []

    def copied(self: Any, memo: dict[int, Any]) -> Any:
        index = getattr(scope, "projecting", None)
        return deepcopy_item(self, memo) if index is None else SecondaryIndex.project(index, self)

    functools.update_wrapper(fast_query, query)
    functools.update_wrapper(items_for_query, all_items)
    functools.update_wrapper(copied, deepcopy_item)
    Item.__deepcopy__ = copied  # type: ignore[method-assign]
    fast_query._docpipe_fast = True  # type: ignore[attr-defined]
    Table.query = fast_query  # type: ignore[method-assign]
    Table.all_items = items_for_query  # type: ignore[method-assign]


def _projects_part(index: Any) -> bool:
    """Whether a moto index keeps only some of an item's attributes (``KEYS_ONLY`` or ``INCLUDE``)."""
    return (index.projection or {}).get("ProjectionType") in ("KEYS_ONLY", "INCLUDE")


def _project_index_items_cheaply() -> None:
    """An index's ``KEYS_ONLY`` or ``INCLUDE`` projection of an item: the item's top-level attributes
    that the projection names (see :func:`speed_up_moto`); ``ALL`` is moto's, the item itself."""
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import SecondaryIndex

    project = SecondaryIndex.project
    if getattr(project, "_docpipe_fast", False):
        return

    def projected(self: Any, item: Any) -> Any:
        if not _projects_part(self):
            return project(self, item)
        names = {*self.table_key_attrs, *self.schema_key_attrs}
        if self.projection["ProjectionType"] == "INCLUDE":
            names.update(self.projection.get("NonKeyAttributes", []))
        kept = Item(hash_key=item.hash_key, range_key=item.range_key, attrs={})
        for name in names:
            if name in item.attrs:  # the item passed moto's size check when it was written
                dict.__setitem__(kept.attrs, name, item.attrs[name])
        return kept

    functools.update_wrapper(projected, project)
    projected._docpipe_fast = True  # type: ignore[attr-defined]
    SecondaryIndex.project = projected  # type: ignore[method-assign]


# A DynamoDB Streams shard iterator expires 15 minutes after it is returned (AWS's GetShardIterator).
STREAM_ITERATOR_SECONDS = 15 * 60


def expire_stream_iterators() -> None:
    """Make moto forget each shard iterator a ``GetRecords`` answers with once it is
    :data:`STREAM_ITERATOR_SECONDS` old, as AWS expires it (idempotent). A ``GetRecords`` with an
    iterator moto has forgotten fails, as one with an expired iterator fails on AWS."""
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    get_records = DynamoDBStreamsBackend.get_records
    if getattr(get_records, "_docpipe_expiring", False):
        return
    handed_out: dict[str, tuple[float, Any]] = {}  # iterator: (when, its backend), oldest first
    lock = threading.Lock()

    def expiring(self: Any, iterator_arn: str, limit: int) -> Any:
        answer = get_records(self, iterator_arn, limit)
        now = time.monotonic()
        with lock:
            handed_out[answer["NextShardIterator"]] = (now, self)
            while handed_out:
                oldest, (at, backend) = next(iter(handed_out.items()))
                if now - at < STREAM_ITERATOR_SECONDS:
                    break
                del handed_out[oldest]
                backend.shard_iterators.pop(oldest, None)
        return answer

    functools.update_wrapper(expiring, get_records)
    expiring._docpipe_expiring = True  # type: ignore[attr-defined]
    DynamoDBStreamsBackend.get_records = expiring  # type: ignore[method-assign]


def _pick_members_of_plain_dicts() -> None:
    """moto's JSON serializer finds each member of an answer's structure by trying aliases of its name
    (the name, its snake_case, a prefix-less form, the model's serialization name) on the result, for
    every member the model declares, present or not. A DynamoDB item is a map of attribute values, each a
    structure of ten members, so an item of 15 attributes cost 150 such searches and 300 lookups: under
    load a third of the DynamoDB emulator's CPU. Where the result is a plain ``dict`` whose keys are all
    members' names, of a structure whose members have no serialization name of their own, and the
    service transforms no answer, every search ends at the member's own name: the members are read
    from the dict directly. Anything else (an object, an alias, a key the model does not declare) goes
    the way it went, and every value is serialized by moto's own code as before. A DynamoDB attribute
    value whose JSON is itself (a string, a number, a boolean, null, their sets, maps and lists of them:
    everything but binary values) is copied as it is, not walked member by member: the answers of
    listings (a page of a hundred jobs, their files) were a sixth of the DynamoDB emulator's CPU under
    the tenants bench."""
    from moto.core.serialize import BaseJSONSerializer

    structure = BaseJSONSerializer._serialize_type_structure
    if getattr(structure, "_docpipe_fast", False):
        return

    def plain(shape: Any) -> bool:
        known = shape.__dict__.get("_docpipe_plain")
        if known is None:
            known = all(m.serialization.get("name", k) == k for k, m in shape.members.items())
            shape._docpipe_plain = known
        return bool(known)

    def picked(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and type(value) is dict:
            answer = _plain_attribute(value)
            if answer is not None:  # already its JSON: a string, number, boolean or null, sets and nestings of them
                serialized[self.get_serialized_name(shape, key)] = answer
                return
        members = shape.members
        if (
            type(value) is not dict
            or shape.is_document_type
            or getattr(self._value_picker, "response_transformers", None)
            or not plain(shape)
            or any(k not in members for k in value)
        ):
            return structure(self, serialized, value, shape, key)
        wrapper = self.MAP_TYPE() if key else serialized
        for member_key, member_shape in members.items():
            member_value = value.get(member_key)
            if member_value is not None:
                member_shape.parent = shape
                self._serialize(wrapper, member_value, member_shape, member_key)
        if key:
            self._default_serialize(serialized, wrapper, shape, key)

    functools.update_wrapper(picked, structure)
    picked._docpipe_fast = True  # type: ignore[attr-defined]
    picked._docpipe_original = structure  # type: ignore[attr-defined]
    BaseJSONSerializer._serialize_type_structure = picked  # type: ignore[method-assign]


def _plain_attribute(value: dict[str, Any]) -> dict[str, Any] | None:
    """A DynamoDB attribute value that is its own JSON (``S``, ``N``, ``BOOL``, ``NULL``, ``SS``, ``NS``, and
    ``M`` and ``L`` of those), copied; None for anything else (binary values, which moto encodes), which
    moto's serializer then walks member by member as before."""
    if len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if (kind in ("S", "N") and type(inner) is str) or (kind == "BOOL" and type(inner) is bool):
        return {kind: inner}
    if kind == "NULL" and inner is True:
        return {kind: True}
    if kind in ("SS", "NS") and type(inner) is list and all(type(member) is str for member in inner):
        return {kind: list(inner)}
    if kind == "M" and type(inner) is dict:
        members = {name: _plain_member(member) for name, member in inner.items()}
        return None if None in members.values() else {kind: members}
    if kind == "L" and type(inner) is list:
        items = [_plain_member(member) for member in inner]
        return None if None in items else {kind: items}
    return None


def _plain_member(member: Any) -> dict[str, Any] | None:
    """A map's or a list's member as :func:`_plain_attribute` answers it (None for anything else)."""
    return _plain_attribute(member) if type(member) is dict else None


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


# ----------------------------------------------------------------------------------------- request counts

REQUESTS_PATH = "/_docpipe/requests"
# DynamoDB operations whose request units follow the items they name, not the request
_DYNAMODB_ITEMS = {"BatchWriteItem": "RequestItems", "BatchGetItem": "RequestItems"}
_DYNAMODB_TRANSACT = ("TransactWriteItems", "TransactGetItems")
# caller: service: operation: [requests, items, CPU seconds]
_requests: dict[str, dict[str, dict[str, list[float]]]] = {}
NO_CALLER = "-"
_requests_lock = threading.Lock()


def _service_and_operation(environ: dict[str, Any]) -> tuple[str, str]:
    """The AWS service a request is for and its operation, from what every SDK sends: the SigV4
    credential scope (the header's, or a presigned URL's ``X-Amz-Credential``) and the JSON protocols'
    ``X-Amz-Target``, or for S3's REST API the method and whether it names an object. A request signed
    by neither (a browser's presigned POST form) is S3's."""
    from urllib.parse import parse_qs

    query = parse_qs(environ.get("QUERY_STRING", ""))
    scope = environ.get("HTTP_AUTHORIZATION", "").split("Credential=", 1)[-1].split(",", 1)[0]
    if "/" not in scope:
        scope = (query.get("X-Amz-Credential") or [""])[0]
    parts = scope.split("/")
    service = parts[3].lower() if len(parts) > 3 else "s3"
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rsplit(".", 1)[-1]
    if "Action" in query:
        return service, query["Action"][0]
    if service != "s3":
        return service, environ.get("REQUEST_METHOD", "?")
    method = environ.get("REQUEST_METHOD", "?")
    path = environ.get("PATH_INFO", "/").strip("/")
    host = environ.get("HTTP_HOST", "").split(":", 1)[0]
    virtual = host.count(".") > 0 and not host.replace(".", "").isdigit() and host != "localhost"
    on_object = bool(path) if virtual else "/" in path
    if method == "PUT" and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
        return service, "CopyObject"
    names = {
        ("GET", True): "GetObject",
        ("HEAD", True): "HeadObject",
        ("PUT", True): "UploadPart" if "partNumber" in query else "PutObject",
        ("DELETE", True): "DeleteObject",
        ("POST", True): "CompleteMultipartUpload" if "uploadId" in query else "CreateMultipartUpload",
        ("GET", False): "ListObjects",
        ("HEAD", False): "HeadBucket",
        ("POST", False): "DeleteObjects" if "delete" in query else "PostObject",
    }
    return service, names.get((method, on_object), f"{method} {'object' if on_object else 'bucket'}")


def _items_named(environ: dict[str, Any], operation: str) -> int:
    """The items a DynamoDB batch or transaction names (its request units follow them); 1 otherwise. The
    body is read and put back for moto."""
    if operation not in _DYNAMODB_ITEMS and operation not in _DYNAMODB_TRANSACT:
        return 1
    import io
    import json

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return 1
    if operation in _DYNAMODB_TRANSACT:
        return len(request.get("TransactItems") or []) or 1
    per_table = request.get(_DYNAMODB_ITEMS[operation]) or {}
    return sum(len(v) if isinstance(v, list) else len(v.get("Keys") or []) for v in per_table.values()) or 1


def _caller(environ: dict[str, Any]) -> str:
    """Who made a request: the ``app/<id>`` an SDK puts in its User-Agent (botocore's
    ``AWS_SDK_UA_APP_ID``, which the local stack sets to each function's logical id), else ``-``."""
    for part in environ.get("HTTP_USER_AGENT", "").split():
        if part.startswith("app/"):
            return part[4:] or NO_CALLER
    return NO_CALLER


def count_requests() -> None:
    """Count every request moto's server answers, by caller, service and operation (idempotent). ``GET
    /_docpipe/requests`` answers the counts as JSON, ``{caller: {service: {operation: [requests,
    items, seconds]}}}`` (items: those a DynamoDB batch or transaction names, else the requests;
    seconds: the CPU time the server's thread spent answering them, up to the first byte of the answer
    it streams; caller: the function whose SDK made the request, ``-`` for the stack's own: its event
    source pollers, a test's or a bench's clients); ``DELETE`` sets them to zero. What a bench prices
    per file, as AWS bills each of these requests (DynamoDB by the items' request units), and where
    the emulator's own CPU goes."""
    import json
    import time

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    call = DomainDispatcherApplication.__call__
    if getattr(call, "_docpipe_counted", False):
        return

    def counted(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == REQUESTS_PATH:
            with _requests_lock:
                if environ.get("REQUEST_METHOD") == "DELETE":
                    _requests.clear()
                body = json.dumps(_requests).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        started = time.thread_time()
        service, operation = _service_and_operation(environ)
        items = _items_named(environ, operation) if service == "dynamodb" else 1
        try:
            return call(self, environ, start_response)
        finally:
            spent = time.thread_time() - started
            with _requests_lock:
                by_service = _requests.setdefault(_caller(environ), {})
                counts = by_service.setdefault(service, {}).setdefault(operation, [0, 0, 0.0])
                counts[0] += 1
                counts[1] += items
                counts[2] += spent

    functools.update_wrapper(counted, call)
    counted._docpipe_counted = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = counted  # type: ignore[method-assign]


def request_counts(url: str, reset: bool = False) -> dict[str, dict[str, dict[str, list[float]]]]:
    """The counts of the emulator's server at ``url`` (:func:`count_requests`); ``reset`` zeroes them after."""
    import requests

    response = requests.request("DELETE" if reset else "GET", url.rstrip("/") + REQUESTS_PATH, timeout=10)
    response.raise_for_status()
    return dict(response.json())

"""moto's costs on every request cut, without changing any answer: DynamoDB's requests answered without
moto's Flask application (:func:`answer_dynamodb_directly`), its update expressions parsed once
(:func:`remember_update_expressions`), its condition expressions parsed once for their names
(:func:`remember_condition_expressions`), names moto works out again on every request remembered
(:func:`remember_names`), SQS's passes over a queue's messages cut (:func:`count_sqs_messages_cheaply`), and
update expressions' trees walked and items sized with less overhead (:func:`walk_update_trees_quickly`,
:func:`size_items_quickly`). :func:`cut_moto_s_costs` applies every one of them that works in process: the
embedded emulator and the tests' moto both run with them."""

from __future__ import annotations

import copy
import functools
import threading
from typing import Any

TARGET = "DynamoDB_20120810."  # the X-Amz-Target of DynamoDB's operations (its streams' differ)
PARSES_KEPT = 1024  # distinct update (or condition) expressions remembered: the functions send a few dozen
# The type a kept condition's value placeholder is parsed with: no DynamoDB type, so never a real value's.
PLACEHOLDER = "docpipe:placeholder"
NAMES_KEPT = 4096  # names turned into Python names remembered: actions and queue attributes, a few hundred


def answer_dynamodb_directly() -> None:
    """Answer DynamoDB's requests without moto's Flask application (idempotent; apply it before
    :func:`docpipe_local.emulator.count_requests`, which then counts them as before).

    moto's server hands each request to a Flask application per service, whose only route for DynamoDB
    calls ``DynamoHandler.dispatch`` with the werkzeug request, its URL and its headers, and turns the
    handler's ``(status, headers, body)`` into a response. The application's context, its routing, its
    request hooks (a gzip body, which no SDK sends DynamoDB) and its CORS headers (for browsers, which
    do not call DynamoDB here) were a tenth of the DynamoDB emulator's CPU under a stream of photos, on
    every call of every function. A DynamoDB request (a ``POST`` with DynamoDB's ``X-Amz-Target``) now
    goes to the same handler with the same werkzeug request, URL and headers, and its answer and a
    ``ClientError``'s 400 are made as moto's ``convert_to_flask_response`` makes them. Every other
    request goes the way it went."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    call = DomainDispatcherApplication.__call__
    if getattr(call, "_docpipe_direct", False):
        return

    def direct(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") != "POST" or not environ.get("HTTP_X_AMZ_TARGET", "").startswith(TARGET):
            return call(self, environ, start_response)
        return _answer(environ, start_response)

    functools.update_wrapper(direct, call)
    direct._docpipe_direct = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = direct  # type: ignore[method-assign]


def _answer(environ: dict[str, Any], start_response: Any) -> Any:
    from botocore.exceptions import ClientError
    from moto.dynamodb.responses import DynamoHandler
    from werkzeug.wrappers import Request, Response

    request = Request(environ)
    try:
        result = DynamoHandler.dispatch(request, request.url, dict(request.headers))
    except ClientError as exc:
        result = 400, {}, exc.response["Error"]["Message"]
    status, headers, body = result if len(result) == 3 else (200, {}, result)
    return Response(response=body, status=status, headers=headers)(environ, start_response)


def remember_update_expressions() -> None:
    """Parse each distinct update expression once (idempotent).

    moto parses an ``UpdateItem``'s update expression twice, once to check its names and values and once
    to apply it, on every request: a twentieth of the DynamoDB emulator's CPU under a stream of photos,
    where the functions send a few dozen distinct expressions (names and values are placeholders). The
    tree a parse makes is only read: what applies it works on its own deep copy (moto's ``Validator``),
    so a tree kept per expression answers every later parse of the same text. An expression that does
    not parse raises as before, every time.

    That deep copy went through ``copy.deepcopy``'s generic path for every node of the tree: a tenth of
    the DynamoDB emulator's CPU under the tenants bench. A kept tree is pickled once, and the
    ``Validator``'s copy of it is unpickled from those bytes (the same objects, made by C code); any other
    value is deep-copied as before."""
    import pickle

    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    make = UpdateExpressionParser.make.__func__  # type: ignore[attr-defined]
    if getattr(make, "_docpipe_kept", False):
        return
    pickles: dict[int, tuple[Any, bytes]] = {}  # id of a kept tree: the tree (so the id stays its own), its bytes
    lock = threading.Lock()
    copies = {"unpickled": 0}

    @functools.lru_cache(maxsize=PARSES_KEPT)
    def parsed(cls: Any, expression: str) -> Any:
        tree = make(cls, expression)
        try:
            data = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a tree that does not pickle is deep-copied
            return tree
        with lock:
            pickles[id(tree)] = (tree, data)
            while len(pickles) > PARSES_KEPT:
                pickles.pop(next(iter(pickles)))
        return tree

    def copied(value: Any, memo: dict[int, Any] | None = None) -> Any:
        entry = pickles.get(id(value)) if memo is None else None
        if entry is not None and entry[0] is value:
            copies["unpickled"] += 1
            return pickle.loads(entry[1])
        return copy.deepcopy(value, memo)

    copied.copies = copies  # type: ignore[attr-defined]
    validators.deepcopy = copied  # type: ignore[attr-defined]

    def kept(cls: Any, expression: str) -> Any:
        return parsed(cls, expression) if isinstance(expression, str) else make(cls, expression)

    functools.update_wrapper(kept, make)
    kept._docpipe_kept = True  # type: ignore[attr-defined]
    kept.cache_info = parsed.cache_info  # type: ignore[attr-defined]
    UpdateExpressionParser.make = classmethod(kept)  # type: ignore[method-assign,assignment]


def walk_update_trees_quickly() -> None:
    """Walk an update expression's tree with less of moto's per-node overhead (idempotent).

    moto validates and applies an ``UpdateItem`` with ten walks of its expression's tree, one per
    processor (``moto.dynamodb.parsing.validators.UpdateExpressionValidator``), each node visited
    recursively: with a SET of four paths and an ADD, 420 visits an update. At every node moto's walk
    rebuilt the processor's map of node types to functions twice (to ask whether the node is one it
    processes, then to find its function) and asked ``isinstance`` of abstract classes several times,
    3,100 such checks an update. The walk is the same, depth first, children before their parent, each
    child announced to the processor first (``pre_processing_of_child``), a processed node put in its
    parent's place; what a processor does with a node is worked out once per kind of processor and class
    of node (the maps are constants of the processors' classes, and ``isinstance`` of a class answers
    as ``issubclass`` of the object's class), and a processor with a ``process`` of its own still
    chooses for itself. An ``UpdateItem`` of five actions on an item of 30 attributes, answered in
    process: 1.97 ms of CPU before, 1.82 ms after (three runs each); see also :func:`size_items_quickly`."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]

    walk = DepthFirstTraverser.traverse
    if getattr(walk, "_docpipe_quick", False):
        return
    announce_nothing = DepthFirstTraverser.pre_processing_of_child
    process_by_map = DepthFirstTraverser.process
    nodes: dict[type, bool] = {}  # class: whether its objects are nodes (have children and a parent)
    choices: dict[tuple[type, type], int] = {}  # (processor, node) classes: its function's place, -1 none, -2 process

    def choice(processor: Any, node_type: type) -> int:
        key = (type(processor), node_type)
        found = choices.get(key)
        if found is None:
            found = -1
            if issubclass(node_type, processor.nodes_to_be_processed()):
                found = -2
                if type(processor).process is process_by_map:
                    kinds = list(processor._processing_map())
                    found = next((n for n, kind in enumerate(kinds) if issubclass(node_type, kind)), -2)
            choices[key] = found
        return found

    def traverse(self: Any, root: Any) -> Any:
        functions = list(self._processing_map().values())
        announce = None if type(self).pre_processing_of_child is announce_nothing else self.pre_processing_of_child

        def visit(node: Any, child_id: int) -> Any:
            node_type = type(node)
            is_node = nodes.get(node_type)
            if is_node is None:
                is_node = nodes[node_type] = issubclass(node_type, Node)
            if not is_node:
                return node
            parent = node.parent
            if node.children is not None:
                for i, child in enumerate(node.children):
                    if announce is not None:
                        announce(node, i)
                    visit(child, i)
            chosen = choice(self, node_type)
            if chosen != -1:
                node = functions[chosen](node) if chosen >= 0 else self.process(node)
                node.parent = parent
                if parent:
                    parent.children[child_id] = node
            return node

        return visit(root, -1)

    functools.update_wrapper(traverse, walk)
    traverse._docpipe_quick = True  # type: ignore[attr-defined]
    DepthFirstTraverser.traverse = traverse  # type: ignore[method-assign]


def size_items_quickly() -> None:
    """Work out an attribute value's size without rebuilding it (idempotent).

    moto checks an item's size against DynamoDB's 400 KB at every attribute an update sets, summing the
    size of every attribute of the item; and the size of a map rebuilt each of its values, and their
    values in turn, as new ``DynamoType`` objects only to ask their sizes. With a few nested maps on an
    item that was a fifth of an ``UpdateItem``'s time. The size is the same sum, worked out from the
    values as they are: a number's digits, the bytes of a string or binary, 1 for a boolean, a set's or
    list's members, a map's names and values. A list member that is not a ``DynamoType`` still fails
    as it did. With :func:`walk_update_trees_quickly`, an ``UpdateItem`` of five actions on an item of
    30 attributes (one a small map), answered in process: 2.02 ms of CPU before, 1.63 ms after (five
    runs each)."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import bytesize

    if getattr(DynamoType.size, "_docpipe_quick", False):
        return
    sets = ("SS", "NS", "BS")

    def size_of(value: Any, rebuilt: bool) -> int:
        """``value``: a DynamoType, or (``rebuilt``: below a map, where moto rebuilt every value) the
        ``{type: value}`` a DynamoType would be made from."""
        if type(value) is DynamoType:
            kind, content = value.type, value.value
        else:
            kind = list(value)[0]  # noqa: RUF015 - moto's own, and its IndexError for an empty value
            content = value[kind]
        if kind == "N":
            return len(str(content))
        if kind in sets:
            return sum(size_of({kind[0]: member}, True) for member in content)
        if kind == "L":
            if rebuilt:
                return sum(size_of(member, True) for member in content)
            return sum(size_of(member, False) if type(member) is DynamoType else member.size() for member in content)
        if kind == "M":
            return sum(bytesize(name) + size_of(member, True) for name, member in content.items())
        if isinstance(content, bool):
            return 1
        return bytesize(content)

    def size(self: Any) -> int:
        return size_of(self, False)

    functools.update_wrapper(size, DynamoType.size)
    size._docpipe_quick = True  # type: ignore[attr-defined]
    DynamoType.size = size  # type: ignore[method-assign]


def remember_names() -> None:
    """Remember two answers moto works out on every request, though each depends only on its argument
    (idempotent):

    - **Action lookup.** moto finds the method of each request's action by listing every member of its
      handler's class (``inspect.getmembers``): 5 % of the DynamoDB emulator's CPU under a stream of
      photos. The list is kept per class.
    - **Attribute names.** moto's SQS builds a queue's attributes afresh each time one is read, turning
      each attribute's name into its Python name letter by letter, several times for every message sent
      or received: a tenth of the S3 and SQS emulator's CPU. The names are kept per name (as are the
      actions' that every request turns into method names)."""
    from moto.core import responses
    from moto.sqs import models

    names_of = responses.method_names_from_class
    if getattr(names_of, "_docpipe_fast", False):
        return
    known: dict[type, list[str]] = {}

    def remembered(clazz: Any) -> list[str]:
        if clazz not in known:
            known[clazz] = names_of(clazz)
        return list(known[clazz])

    functools.update_wrapper(remembered, names_of)
    remembered._docpipe_fast = True  # type: ignore[attr-defined]
    responses.method_names_from_class = remembered  # type: ignore[assignment]
    underscored = functools.lru_cache(maxsize=NAMES_KEPT)(responses.camelcase_to_underscores)
    responses.camelcase_to_underscores = underscored  # type: ignore[assignment]
    models.camelcase_to_underscores = underscored  # type: ignore[assignment]


def remember_condition_expressions() -> None:
    """Parse each distinct condition expression once for its names and placeholders (idempotent).

    moto parses a conditional write's ``ConditionExpression`` twice, once to check its names and values
    and once to test the item, and a ``FilterExpression`` once, on every request: under the tenants bench
    a sixth of the DynamoDB emulator's CPU, though the functions send a few dozen distinct conditions.
    What a parse makes depends on the expression, its names and which value placeholders exist, and the
    values only fill its leaves. So a condition is parsed once per (expression, names, placeholders),
    with each value standing as a placeholder; every later parse of the same takes a copy of that tree
    with the request's own values put in the placeholders' place, and the names and placeholders moto's
    checks read. A condition that does not parse is parsed by moto every time, and raises as before."""
    from moto.dynamodb.comparisons import ConditionExpressionParser

    parse = ConditionExpressionParser.parse
    if getattr(parse, "_docpipe_kept", False):
        return

    @functools.lru_cache(maxsize=PARSES_KEPT)
    def kept(expression: str, names: tuple[tuple[str, str], ...] | None, placeholders: frozenset[str] | None) -> Any:
        """The tree of a parse with each value a placeholder, and the names and placeholders it found."""
        marked = ConditionExpressionParser(
            expression,
            None if names is None else dict(names),
            None if placeholders is None else {name: {PLACEHOLDER: name} for name in placeholders},
        )
        tree = parse(marked)
        return tree, tuple(marked.expr_attr_names_found), tuple(marked.expr_attr_values_found)

    def parsed(self: Any) -> Any:
        expression, names, values = (
            self.condition_expression,
            self.expression_attribute_names,
            self.expression_attribute_values,
        )
        if not isinstance(expression, str) or not expression or not _plain_mapping(names, values):
            return parse(self)
        try:
            tree, names_found, values_found = kept(
                expression,
                None if names is None else tuple(sorted(names.items())),
                None if values is None else frozenset(values),
            )
        except Exception:
            return parse(self)  # moto's own error, from its own parse of the request as it came
        self.expr_attr_names_found.extend(names_found)
        self.expr_attr_values_found.extend(values_found)
        return _filled(tree, values or {}, {})

    functools.update_wrapper(parsed, parse)
    parsed._docpipe_kept = True  # type: ignore[attr-defined]
    parsed.cache_info = kept.cache_info  # type: ignore[attr-defined]
    ConditionExpressionParser.parse = parsed  # type: ignore[method-assign]


def _plain_mapping(names: Any, values: Any) -> bool:
    """Whether a condition's names and values are what a request's JSON gives (so they can key a tree)."""
    return (names is None or (isinstance(names, dict) and all(isinstance(v, str) for v in names.values()))) and (
        values is None or isinstance(values, dict)
    )


def _filled(node: Any, values: dict[str, Any], memo: dict[int, Any]) -> Any:
    """A copy of a kept condition tree (moto's ``Op``, ``Func`` and ``Operand`` objects, which hold each
    other in their attributes, lists and tuples) with each placeholder value replaced by the request's."""
    from moto.dynamodb.comparisons import AttributeValue, Func, Op, Operand

    if isinstance(node, AttributeValue) and node.type == PLACEHOLDER:
        return AttributeValue(values[node.value])
    if isinstance(node, (Op, Func, Operand)):
        if id(node) not in memo:
            filled = memo[id(node)] = copy.copy(node)
            for name, value in vars(node).items():
                setattr(filled, name, _filled(value, values, memo))
        return memo[id(node)]
    if isinstance(node, list):
        return [_filled(item, values, memo) for item in node]
    if type(node) is tuple:
        return tuple(_filled(item, values, memo) for item in node)
    return node


def count_sqs_messages_cheaply() -> None:
    """Cut three of moto's SQS costs that grow with the messages a queue holds, without changing any
    answer (idempotent).

    - **Retention on every receive.** moto checks each message it hands out against the queue's
      retention period by building every attribute of the queue, its three message counts among them,
      each a pass over all of the queue's messages: every receive cost the queue's length times the
      messages received. Under the tenants bench, with hundreds of a busy tenant's messages in flight in
      a lane, a receive of ten took 13 ms of the emulator's CPU on average, and more the longer the
      backlog grew, which slowed every lane's delivery in turn. The check now reads the queue's
      retention period alone.
    - **Named attributes.** ``GetQueueAttributes`` for some attributes built all of them three times per
      name asked for; now once per request.
    - **The clock.** Every message's visibility and delay is tested against moto's clock, which makes
      the time from three ``datetime`` objects; it is now ``time.time()``, the same instant."""
    import time

    from moto.sqs import models

    backend = models.SQSBackend
    if getattr(backend.is_message_valid_based_on_retention_period, "_docpipe_fast", False):
        return
    unix_time, unix_time_millis = models.unix_time, models.unix_time_millis

    def now(dt: Any = None) -> float:
        return time.time() if dt is None else unix_time(dt)

    def now_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else unix_time_millis(dt)

    def retained(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > time.time())

    get_attributes = backend.get_queue_attributes

    def named_attributes(self: Any, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
        queue = self.get_queue(queue_name)
        valid = {"All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES}
        if not attribute_names or "All" in attribute_names or not valid.issuperset(attribute_names):
            return get_attributes(self, queue_name, attribute_names)  # moto's, its error among them
        built = queue.attributes
        return {name: built[name] for name in attribute_names if built.get(name) is not None}

    retained._docpipe_fast = True  # type: ignore[attr-defined]
    models.unix_time, models.unix_time_millis = now, now_millis  # type: ignore[assignment]
    backend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]
    backend.get_queue_attributes = named_attributes  # type: ignore[method-assign]


def cut_moto_s_costs() -> None:
    """Every cut of this module that works on moto in process, whatever serves it (idempotent): what the
    embedded emulator's server runs with besides :func:`answer_dynamodb_directly`, and what the tests'
    moto runs with."""
    remember_update_expressions()
    remember_condition_expressions()
    remember_names()
    count_sqs_messages_cheaply()
    walk_update_trees_quickly()
    size_items_quickly()

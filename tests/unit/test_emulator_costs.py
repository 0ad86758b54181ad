"""DynamoDB's requests answered without moto's Flask application
(:func:`docpipe_local.emulator_costs.answer_dynamodb_directly`) get the answers the application gives:
the same operations, successes and errors, sent to two tables of the same server, one each way. Update
expressions parsed once (:func:`~docpipe_local.emulator_costs.remember_update_expressions`) apply as
before, and queues whose names are remembered (:func:`~docpipe_local.emulator_costs.remember_names`)
answer as before, and so are conditions parsed once for their names
(:func:`~docpipe_local.emulator_costs.remember_condition_expressions`) and queues whose messages are
counted cheaply (:func:`~docpipe_local.emulator_costs.count_sqs_messages_cheaply`), and update trees walked
quickly (:func:`~docpipe_local.emulator_costs.walk_update_trees_quickly`), and so are items whose sizes are
worked out without rebuilding their values (:func:`~docpipe_local.emulator_costs.size_items_quickly`)."""

from __future__ import annotations

import json
import random
import uuid
import zlib
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from flask import Flask
from moto import mock_aws
from moto.core import responses as moto_responses
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.parsing import validators
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser
from moto.dynamodb.parsing.expressions import UpdateExpressionParser
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs import models as sqs_models
from moto.sqs.responses import SQSResponse
from werkzeug.test import Client

from docpipe_local.emulator_costs import (
    answer_dynamodb_directly,
    count_sqs_messages_cheaply,
    remember_condition_expressions,
    remember_names,
    remember_update_expressions,
    size_items_quickly,
    walk_update_trees_quickly,
)

HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": "AWS4-HMAC-SHA256 Credential=test/20261203/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0",
    "Host": "localhost",
}


def _operations(table: str) -> list[tuple[str, dict[str, Any]]]:
    """Successes and failures of the kinds the functions send, on ``table``."""
    key = {"pk": {"S": "job-1"}}
    return [
        (
            "CreateTable",
            {
                "TableName": table,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "open", "AttributeType": "S"},
                ],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "GlobalSecondaryIndexes": [
                    {
                        "IndexName": "byOpen",
                        "KeySchema": [{"AttributeName": "open", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
            },
        ),
        ("PutItem", {"TableName": table, "Item": {**key, "state": {"S": "uploading"}, "open": {"S": "h1"}}}),
        (
            "PutItem",  # a second put of the same key, refused
            {"TableName": table, "Item": key, "ConditionExpression": "attribute_not_exists(pk)"},
        ),
        (
            "UpdateItem",
            {
                "TableName": table,
                "Key": key,
                "UpdateExpression": "SET #s = :new, #h = list_append(if_not_exists(#h, :empty), :step) ADD #n :one",
                "ConditionExpression": "#s = :old",
                "ExpressionAttributeNames": {"#s": "state", "#h": "history", "#n": "moves"},
                "ExpressionAttributeValues": {
                    ":new": {"S": "scanning"},
                    ":old": {"S": "uploading"},
                    ":empty": {"L": []},
                    ":step": {"L": [{"M": {"to": {"S": "scanning"}}}]},
                    ":one": {"N": "1"},
                },
                "ReturnValues": "ALL_NEW",
            },
        ),
        (
            "UpdateItem",  # the same move again: its condition fails, and the item comes back
            {
                "TableName": table,
                "Key": key,
                "UpdateExpression": "SET #s = :new",
                "ConditionExpression": "#s = :old",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":new": {"S": "scanning"}, ":old": {"S": "uploading"}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
        ),
        ("GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}),
        ("GetItem", {"TableName": table, "Key": {"pk": {"S": "nobody"}}}),
        (
            "Query",
            {
                "TableName": table,
                "IndexName": "byOpen",
                "KeyConditionExpression": "#o = :h",
                "ExpressionAttributeNames": {"#o": "open"},
                "ExpressionAttributeValues": {":h": {"S": "h1"}},
            },
        ),
        ("BatchGetItem", {"RequestItems": {table: {"Keys": [key, {"pk": {"S": "nobody"}}]}}}),
        (
            "TransactWriteItems",  # cancelled: one condition fails
            {
                "TransactItems": [
                    {"Put": {"TableName": table, "Item": {"pk": {"S": "job-2"}}}},
                    {
                        "ConditionCheck": {
                            "TableName": table,
                            "Key": key,
                            "ConditionExpression": "#s = :x",
                            "ExpressionAttributeNames": {"#s": "state"},
                            "ExpressionAttributeValues": {":x": {"S": "ready"}},
                        }
                    },
                ]
            },
        ),
        ("UpdateItem", {"TableName": table, "Key": key, "UpdateExpression": "SET = broken"}),  # a validation error
        ("GetItem", {"TableName": table + "-missing", "Key": key}),  # no such table
        ("DeleteItem", {"TableName": table, "Key": key, "ReturnValues": "ALL_OLD"}),
        ("DeleteTable", {"TableName": table}),
    ]


def _call(client: Client, operation: str, body: dict[str, Any]) -> tuple[int, str, dict[str, Any], str]:
    answer = client.post(
        "/", data=json.dumps(body), headers={**HEADERS, "X-Amz-Target": f"DynamoDB_20120810.{operation}"}
    )
    text = answer.get_data(as_text=True)
    assert answer.headers.get("x-amz-crc32") == str(zlib.crc32(answer.get_data()))
    return answer.status_code, answer.headers.get("Content-Type", ""), json.loads(text or "{}"), text


def _plain(answer: dict[str, Any], table: str) -> Any:
    """An answer with its table's name, and the times and ids that differ between two tables, taken out."""
    text = json.dumps(answer).replace(table, "TABLE")
    plain = json.loads(text)
    for description in (plain.get("TableDescription") or {},):
        for varying in ("CreationDateTime", "TableId", "LatestStreamLabel"):
            description.pop(varying, None)
        for index in description.get("GlobalSecondaryIndexes") or []:
            index.pop("IndexArn", None)
    return plain


@pytest.fixture(scope="module")
def clients() -> tuple[Client, Client]:
    """One server's application, reached directly (patched) and through moto's Flask application."""
    answer_dynamodb_directly()
    app = DomainDispatcherApplication(create_backend_app)
    through_flask = DomainDispatcherApplication.__call__.__wrapped__  # type: ignore[attr-defined]
    return Client(app), Client(lambda environ, start: through_flask(app, environ, start))


def test_every_answer_is_the_one_moto_s_application_gives(
    clients: tuple[Client, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given one server, reached directly and through moto's Flask application, and a table for each way
    direct, flask = clients
    through_flask = []
    wsgi_app = Flask.wsgi_app
    monkeypatch.setattr(Flask, "wsgi_app", lambda app, *args: through_flask.append(1) or wsgi_app(app, *args))
    mine, theirs = f"direct-{uuid.uuid4().hex[:8]}", f"flask-{uuid.uuid4().hex[:8]}"
    statuses = []
    # when the same operations are sent to each table, each its own way
    for (operation, body), (_, same) in zip(_operations(mine), _operations(theirs), strict=True):
        got, want = _call(direct, operation, body), _call(flask, operation, same)
        # then the status, the content type and the answer are the same
        assert got[:2] == want[:2], (operation, got, want)
        assert _plain(got[2], mine) == _plain(want[2], theirs), operation
        statuses.append(got[0])
    # and the operations included successes and failures, and only the second way went through Flask
    assert statuses.count(200) >= 8 and statuses.count(400) >= 4
    assert len(through_flask) == len(statuses)


def test_other_requests_go_through_moto_s_application(clients: tuple[Client, Client]) -> None:
    # given the direct way in place, when DynamoDB Streams is asked (another target), then moto answers it
    direct, _ = clients
    answer = direct.post(
        "/",
        data="{}",
        headers={**HEADERS, "X-Amz-Target": "DynamoDBStreams_20120810.ListStreams"},
    )
    assert answer.status_code == 200
    assert "Streams" in json.loads(answer.get_data(as_text=True))


def test_an_update_expression_is_parsed_once_and_applied_as_before() -> None:
    # given update expressions remembered, and a table
    remember_update_expressions()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        expression = "SET #s = :s, #h = list_append(if_not_exists(#h, :empty), :step) ADD #n :one"
        parses = UpdateExpressionParser.make.cache_info().hits  # type: ignore[attr-defined]
        unpickled = validators.deepcopy.copies["unpickled"]  # type: ignore[attr-defined]
        # when the same expression updates an item three times, with other values each time
        for state in ("queued", "processing", "ready"):
            item = client.update_item(
                TableName="t",
                Key={"pk": {"S": "a"}},
                UpdateExpression=expression,
                ExpressionAttributeNames={"#s": "state", "#h": "history", "#n": "moves"},
                ExpressionAttributeValues={
                    ":s": {"S": state},
                    ":empty": {"L": []},
                    ":step": {"L": [{"S": state}]},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        # then each applied its own values to the item the one before left
        assert item == {
            "pk": {"S": "a"},
            "state": {"S": "ready"},
            "history": {"L": [{"S": "queued"}, {"S": "processing"}, {"S": "ready"}]},
            "moves": {"N": "3"},
        }
        # and the later ones (moto parses each twice) reused the first parse, each applying its own copy of
        # it, unpickled from the kept tree's bytes
        assert UpdateExpressionParser.make.cache_info().hits - parses >= 5  # type: ignore[attr-defined]
        assert validators.deepcopy.copies["unpickled"] - unpickled == 4  # type: ignore[attr-defined]  # a new item: 2
        # and an expression that does not parse is refused every time
        for _ in range(2):
            with pytest.raises(ClientError, match="ValidationException"):
                client.update_item(TableName="t", Key={"pk": {"S": "a"}}, UpdateExpression="SET = broken")


def _conditions(table: str) -> list[tuple[str, dict[str, Any]]]:
    """Conditional writes, checks and filters, each condition sent again with other values (first parsed,
    then kept), passing and failing, and conditions moto refuses."""
    names = {"#s": "state", "#n": "moves", "#h": "history", "#t": "tags"}
    key = {"pk": {"S": "a"}}

    def update(condition: str, values: dict[str, Any], used: tuple[str, ...] = ("#s", "#n")) -> dict[str, Any]:
        return {
            "TableName": table,
            "Key": key,
            "UpdateExpression": "SET #s = :new ADD #n :one",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {k: names[k] for k in {*used, "#s", "#n"}},
            "ExpressionAttributeValues": {":new": {"S": "moved"}, ":one": {"N": "1"}, **values},
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    item = {
        "pk": {"S": "a"},
        "state": {"S": "queued"},
        "moves": {"N": "0"},
        "history": {"L": [{"S": "x"}]},
        "tags": {"SS": ["red", "blue"]},
    }
    absent = "attribute_not_exists(pk)"
    window = "#s IN (:a, :b) AND #n BETWEEN :lo AND :hi"
    typed = "attribute_type(#s, :type) AND NOT begins_with(#s, :p) OR size(#h) > :size"
    filtered = "contains(#t, :tag) AND #n < :max"
    return [
        ("PutItem", {"TableName": table, "Item": item, "ConditionExpression": absent}),
        ("PutItem", {"TableName": table, "Item": item, "ConditionExpression": absent}),  # now refused
        ("UpdateItem", update(window, {":a": {"S": "queued"}, ":b": {"S": "x"}, ":lo": {"N": "0"}, ":hi": {"N": "2"}})),
        ("UpdateItem", update(window, {":a": {"S": "moved"}, ":b": {"S": "x"}, ":lo": {"N": "5"}, ":hi": {"N": "9"}})),
        ("UpdateItem", update(window, {":a": {"S": "moved"}, ":b": {"S": "y"}, ":lo": {"N": "0"}, ":hi": {"N": "1"}})),
        (
            "UpdateItem",
            update(typed, {":type": {"S": "S"}, ":p": {"S": "mo"}, ":size": {"N": "0"}}, ("#h",)),
        ),
        (
            "UpdateItem",
            update(typed, {":type": {"S": "N"}, ":p": {"S": "zz"}, ":size": {"N": "5"}}, ("#h",)),
        ),
        ("UpdateItem", update("#s = :nope", {":a": {"S": "moved"}})),  # a placeholder with no value
        ("UpdateItem", update("#s = :a", {":a": {"S": "moved"}, ":unused": {"S": "x"}})),  # a value unused
        ("UpdateItem", update("#missing = :a", {":a": {"S": "moved"}})),  # a name with no attribute name
        ("UpdateItem", update("#s = = :a", {":a": {"S": "moved"}})),  # does not parse
        ("UpdateItem", update("#s = = :a", {":a": {"S": "moved"}})),  # and again
        *[
            (
                "Scan",
                {
                    "TableName": table,
                    "FilterExpression": filtered,
                    "ExpressionAttributeNames": {"#t": "tags", "#n": "moves"},
                    "ExpressionAttributeValues": {":tag": {"S": tag}, ":max": {"N": limit}},
                },
            )
            for tag, limit in (("red", "9"), ("green", "9"), ("blue", "1"))
        ],
        (
            "DeleteItem",
            {
                "TableName": table,
                "Key": key,
                "ConditionExpression": "#s = :s",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":s": {"S": "moved"}},
                "ReturnValues": "ALL_OLD",
            },
        ),
    ]


def _tables(client: Any, *names: str) -> None:
    for table in names:
        client.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )


def _ours_and_motos(operations: Any, moto_s_own: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[Any]]:
    """The answers to ``operations(table)`` on a table of ours, then on one where ``moto_s_own(patch)`` has put
    back what moto does (its table's name in them read as ours), each as JSON has it."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _tables(client, "ours", "moto")
        ours = _answers(client, operations("ours"))
        with monkeypatch.context() as patch:
            moto_s_own(patch)
            theirs = _answers(client, operations("moto"))
    return json.loads(json.dumps(ours)), json.loads(json.dumps(theirs).replace('"moto"', '"ours"'))


def _answers(client: Any, operations: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Each operation's answer, its error (with the item a refused condition returns), or what moto raised."""
    answers: list[Any] = []
    for operation, body in operations:
        try:
            answer = getattr(client, moto_responses.camelcase_to_underscores(operation))(**body)
            answer.pop("ResponseMetadata", None)
            answers.append(("ok", answer))
        except ClientError as exc:
            answers.append(("error", exc.response["Error"], exc.response.get("Item")))
        except (KeyError, ValueError, TypeError) as exc:  # moto's own failures, raised as they are in process
            answers.append(("raised", repr(exc)))
    return answers


def test_a_condition_is_parsed_once_and_tested_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    # given conditions remembered, and two tables
    remember_condition_expressions()
    cache_info = ConditionExpressionParser.parse.cache_info  # type: ignore[attr-defined]
    before = cache_info()
    # when the same requests go to one table with conditions kept, and to the other as moto parses them
    kept, theirs = _ours_and_motos(
        _conditions,
        lambda patch: patch.setattr(ConditionExpressionParser, "parse", ConditionExpressionParser.parse.__wrapped__),
        monkeypatch,
    )
    # then every answer is moto's: passes, refusals with the item, errors, filtered items
    assert kept == theirs
    outcomes = [a[0] for a in kept]
    assert outcomes.count("error") == 6, kept  # the second put, four refused updates, an unused value
    assert outcomes.count("raised") == 4, kept  # a placeholder or a name with no value, twice one that does not parse
    assert sorted(len(a[1]["Items"]) for a in kept if "Items" in a[1]) == [0, 0, 1]
    # and each distinct condition was parsed once, the rest were copies of it with their own values
    after = cache_info()
    assert after.currsize - before.currsize <= 7  # the conditions parsed (and kept)
    assert after.hits - before.hits >= 10  # copies of a kept one


def _updates(table: str) -> list[tuple[str, dict[str, Any]]]:
    """Updates of every kind of clause, path and function, then nine that moto's checks refuse."""
    names = {"#s": "state", "#n": "moves", "#h": "history", "#t": "tags", "#m": "meta", "#a": "a", "#b": "b"}
    names |= {"#z": "zero", "#k": "pk", "#x": "nowhere", "#d": "deep"}
    values = {":s": {"S": "moved"}, ":one": {"N": "1"}, ":more": {"L": [{"S": "y"}]}, ":zero": {"N": "0"}}
    values |= {":tags": {"SS": ["green"]}, ":gone": {"SS": ["red"]}, ":x": {"S": "x"}, ":empty": {"L": []}}

    def update(expression: str) -> dict[str, Any]:
        given = {name: value for name, value in values.items() if name in expression}
        return {
            "TableName": table,
            "Key": {"pk": {"S": "a"}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": {name: names[name] for name in names if name in expression},
            "ReturnValues": "ALL_NEW",
        } | ({"ExpressionAttributeValues": given} if given else {})

    item = {
        "pk": {"S": "a"},
        "state": {"S": "queued"},
        "moves": {"N": "0"},
        "history": {"L": [{"S": "x"}]},
        "tags": {"SS": ["red", "blue"]},
        "meta": {"M": {"a": {"S": "1"}, "b": {"N": "2"}}},
    }
    return [
        ("PutItem", {"TableName": table, "Item": item}),
        *[
            ("UpdateItem", update(expression))
            for expression in (
                "SET #s = :s, #m.#a = :x, #h[0] = :x, #n = #n + :one",
                "SET #h = list_append(#h, :more), #z = if_not_exists(#z, :zero) REMOVE #m.#b",
                "ADD #t :tags, #n :one",
                "DELETE #t :gone",
                "SET #h = list_append(:empty, #h), #n = #n - :one REMOVE #h[0]",
                "REMOVE #s, #z",
                "SET #s = :s, #s = :x",  # two paths the same
                "ADD #t :tags DELETE #t :gone",  # overlapping paths
                "SET #s = :s SET #n = :one",  # two SET clauses
                "SET #s = :s SET #n = :one ADD #t :tags ADD #z :one",  # two SETs and two ADDs
                "ADD #h :one",  # a number added to a list
                "SET #k = :x",  # the key
                "SET #x.#d = :x",  # a path that does not exist
                "SET #n = #n + :x",  # a string added to a number
                "SET #n = :nothing",  # a value not given
            )
        ],
        ("GetItem", {"TableName": table, "Key": {"pk": {"S": "a"}}}),
    ]


def test_an_update_tree_is_walked_quickly_and_applied_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    # given update trees walked quickly, and two tables
    walk_update_trees_quickly()
    assert getattr(DepthFirstTraverser.traverse, "_docpipe_quick", False)
    # when the same updates go to one table walked quickly, and to the other as moto walks them
    quick, theirs = _ours_and_motos(
        _updates,
        lambda patch: patch.setattr(DepthFirstTraverser, "traverse", DepthFirstTraverser.traverse.__wrapped__),
        monkeypatch,
    )
    # then every answer is moto's: the items each update left, and each refusal with its message
    assert quick == theirs
    outcomes = [a[0] for a in quick]
    assert outcomes == ["ok"] * 7 + ["error"] * 9 + ["ok"], quick  # each of the nine refused for its own reason
    assert len({a[1]["Message"] for a in quick if a[0] == "error"}) == 9
    left = quick[-1][1]["Item"]
    assert left == {
        "pk": {"S": "a"},
        "moves": {"N": "1"},
        "history": {"L": [{"S": "y"}]},
        "tags": left["tags"],
        "meta": {"M": {"a": {"S": "x"}}},
    }
    assert sorted(left["tags"]["SS"]) == ["blue", "green"]


def _a_value(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """A random attribute value as DynamoDB's JSON has it: every type, maps and lists nested."""
    kinds = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"] + (["L", "M"] if depth < 4 else [])
    kind = rng.choice(kinds)
    text = "".join(rng.choice("aé€😀z") for _ in range(rng.randrange(0, 12)))  # 1 to 4 bytes a letter
    if kind == "S":
        return {"S": text}
    if kind == "N":
        return {"N": str(rng.choice([0, -7, 12.5, 10**20, rng.randrange(10**6)]))}
    if kind == "B":
        return {"B": bytes(rng.randrange(256) for _ in range(rng.randrange(0, 9)))}
    if kind == "BOOL":
        return {"BOOL": rng.random() < 0.5}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "SS":
        return {"SS": [text + str(n) for n in range(rng.randrange(1, 4))]}
    if kind == "NS":
        return {"NS": [str(rng.randrange(10**9)) for _ in range(rng.randrange(1, 4))]}
    if kind == "BS":
        return {"BS": [bytes([n, 255]) for n in range(rng.randrange(1, 4))]}
    if kind == "L":
        return {"L": [_a_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]}
    return {"M": {f"{text}{n}": _a_value(rng, depth + 1) for n in range(rng.randrange(0, 4))}}


def test_an_items_size_is_worked_out_as_moto_does() -> None:
    # given sizes worked out quickly, and moto's own way
    size_items_quickly()
    assert getattr(DynamoType.size, "_docpipe_quick", False)
    theirs = DynamoType.size.__wrapped__  # type: ignore[attr-defined]
    rng = random.Random(20261204)
    # when both size values of every type, nested in lists and maps (500 of them)
    values = [DynamoType(_a_value(rng)) for _ in range(500)]
    # then every size is moto's
    assert [value.size() for value in values] == [theirs(value) for value in values]
    assert {value.type for value in values} >= {"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"}
    assert max(value.size() for value in values) > 100
    # and a list holding something that is not a DynamoType fails as it did (below a map, moto rebuilds it)
    odd = DynamoType({"L": []})
    odd.value.append({"S": "raw"})
    for size in (DynamoType.size, theirs):
        with pytest.raises(AttributeError):
            size(odd)
    assert DynamoType({"M": {"k": odd}}).size() == theirs(DynamoType({"M": {"k": odd}})) == 4


def test_an_item_past_400_kb_is_still_refused() -> None:
    size_items_quickly()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _tables(client, "t")
        client.put_item(TableName="t", Item={"pk": {"S": "a"}, "big": {"M": {"text": {"S": "x" * 300_000}}}})
        client.update_item(
            TableName="t",
            Key={"pk": {"S": "a"}},
            UpdateExpression="SET more = :v",
            ExpressionAttributeValues={":v": {"S": "y" * 100_000}},
        )
        with pytest.raises(ClientError, match="Item size to update has exceeded the maximum allowed size"):
            client.update_item(
                TableName="t",
                Key={"pk": {"S": "a"}},
                UpdateExpression="SET most = :v",
                ExpressionAttributeValues={":v": {"S": "z" * 10_000}},
            )


def test_names_are_worked_out_once_and_queues_answer_as_before() -> None:
    # given names remembered, and a queue with a dead-letter queue
    remember_names()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
        url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "45", "RedrivePolicy": redrive})[
            "QueueUrl"
        ]
        before = moto_responses.camelcase_to_underscores.cache_info().hits
        # when messages are sent and received, and the attributes read
        for n in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        # then the answers are SQS's
        assert sorted(m["Body"] for m in received) == ["m0", "m1", "m2"]
        assert (
            attributes["VisibilityTimeout"] == "45" and json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 3
        )
        assert attributes["ApproximateNumberOfMessages"] == "3"
        # and the names were worked out before, not again
        assert moto_responses.camelcase_to_underscores.cache_info().hits - before > 20
        # and each handler's actions are listed once, the same each time (a caller's change to a list stays its own)
        names = moto_responses.method_names_from_class(SQSResponse)
        assert "receive_message" in names
        names.clear()
        assert "receive_message" in moto_responses.method_names_from_class(SQSResponse)


def test_a_receive_costs_no_pass_over_the_queue_per_message_and_answers_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given queues counted cheaply: one with 300 messages, 250 of them in flight
    count_sqs_messages_cheaply()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="busy", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        for n in range(0, 300, 10):
            sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{n + i}"} for i in range(10)]
            )
        for _ in range(25):
            sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)
        built = []
        attributes = sqs_models.Queue.attributes
        monkeypatch.setattr(sqs_models.Queue, "attributes", property(lambda q: built.append(1) or attributes.fget(q)))
        # when ten are received
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)["Messages"]
        # then they are the next ten, and no message cost a build of the queue's attributes (moto: one each)
        assert [m["Body"] for m in received] == [f"m{n}" for n in range(250, 260)]
        assert built == []
        # and named attributes are moto's, built once for the request (moto: three times a name)
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "VisibilityTimeout"]
        answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        assert answer == {
            "ApproximateNumberOfMessages": "40",
            "ApproximateNumberOfMessagesNotVisible": "260",
            "VisibilityTimeout": "30",
        }
        assert len(built) == 1
        with pytest.raises(ClientError, match="InvalidAttributeName"):
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["NoSuchAttribute"])
        # and a message past the queue's retention period is not delivered
        backend = sqs_models.sqs_backends["123456789012"]["us-east-1"]
        for message in backend.get_queue("busy")._messages[-40:]:
            message.sent_timestamp -= 61_000
        assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []

"""The embedded emulator's shortcuts through moto (:func:`docpipe_local.emulator.speed_up_moto`) give the
answers moto gives without them: Queries of a table and of its indexes, over items written, rewritten
and deleted, compared with the same table read whole by a Scan; and DynamoDB Streams' shard iterators
expire (:func:`docpipe_local.emulator.expire_stream_iterators`)."""

from __future__ import annotations

import json
import random
import time

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table

from docpipe_local import emulator
from docpipe_local.emulator import expire_stream_iterators, speed_up_moto


@pytest.fixture
def table():
    speed_up_moto()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
                {"AttributeName": "open", "AttributeType": "S"},
                {"AttributeName": "at", "AttributeType": "N"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "byOpen",  # sparse, hash only
                    "KeySchema": [{"AttributeName": "open", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
                {
                    "IndexName": "byOpenAt",
                    "KeySchema": [
                        {"AttributeName": "open", "KeyType": "HASH"},
                        {"AttributeName": "at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": "byOpenWithAt",  # as the jobs' byOwnerOpen: keys and a few attributes
                    "KeySchema": [{"AttributeName": "open", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["at", "tags"]},
                },
            ],
        )
        yield client


def _all(client, **kwargs) -> list[dict]:
    items, kwargs = [], {"TableName": "t", **kwargs}
    while True:
        page = client.query(**kwargs) if "KeyConditionExpression" in kwargs else client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _open(client, index: str, values: dict) -> list[dict]:
    """Every item of ``index`` whose ``open`` is ``:h`` of ``values``, 5 a page."""
    return _all(
        client,
        IndexName=index,
        KeyConditionExpression="#o = :h",
        ExpressionAttributeNames={"#o": "open"},
        ExpressionAttributeValues=values,
        Limit=5,
    )


def _plain(item: dict) -> str:
    """An item as comparable text: attributes in name order, a set's members sorted."""
    return json.dumps(
        {k: {t: sorted(v) if t == "SS" else v for t, v in a.items()} for k, a in item.items()}, sort_keys=True
    )


def test_queries_answer_what_the_whole_table_holds(table) -> None:
    rng = random.Random(7)
    for n in range(300):
        item = {
            "pk": {"S": f"p{rng.randrange(20)}"},
            "sk": {"N": str(n)},
            "at": {"N": str(rng.randrange(50))},
            "history": {"L": [{"M": {"state": {"S": "queued"}, "n": {"N": "1.50"}}}]},  # not projected
        }
        if n % 4:
            item["tags"] = {"SS": ["a", f"t{n % 7}"]}
        if rng.random() < 0.6:
            item["open"] = {"S": f"h{rng.randrange(8)}"}
        table.put_item(TableName="t", Item=item)
    for n in rng.sample(range(300), 60):  # rewrites that leave or join the sparse indexes, and deletes
        key = {"pk": _all(table, FilterExpression="sk = :n", ExpressionAttributeValues={":n": {"N": str(n)}})[0]["pk"]}
        key["sk"] = {"N": str(n)}
        if n % 3 == 0:
            table.delete_item(TableName="t", Key=key)
        elif n % 3 == 1:
            table.update_item(
                TableName="t", Key=key, UpdateExpression="REMOVE #o", ExpressionAttributeNames={"#o": "open"}
            )
        else:
            table.update_item(
                TableName="t",
                Key=key,
                UpdateExpression="SET #o = :o",
                ExpressionAttributeNames={"#o": "open"},
                ExpressionAttributeValues={":o": {"S": "h0"}},
            )
    everything = _all(table)

    for p in range(21):
        got = _all(table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": f"p{p}"}}, Limit=7)
        expected = sorted((i for i in everything if i["pk"]["S"] == f"p{p}"), key=lambda i: int(i["sk"]["N"]))
        assert got == expected
    for h in range(9):
        values = {":h": {"S": f"h{h}"}}
        mine = [i for i in everything if i.get("open", {}).get("S") == f"h{h}"]
        keys = _open(table, "byOpen", values)
        assert sorted((k["pk"]["S"], k["sk"]["N"]) for k in keys) == sorted((i["pk"]["S"], i["sk"]["N"]) for i in mine)
        assert all(set(k) == {"pk", "sk", "open"} for k in keys)
        included = _open(table, "byOpenWithAt", values)
        projected = [{k: v for k, v in i.items() if k in ("pk", "sk", "open", "at", "tags")} for i in mine]
        assert sorted(map(_plain, included)) == sorted(map(_plain, projected))
        ranged = _all(
            table,
            IndexName="byOpenAt",
            KeyConditionExpression="#o = :h AND #a >= :a",
            ExpressionAttributeNames={"#o": "open", "#a": "at"},
            ExpressionAttributeValues={**values, ":a": {"N": "20"}},
            ScanIndexForward=False,
        )
        assert [int(i["at"]["N"]) for i in ranged] == sorted(
            (int(i["at"]["N"]) for i in mine if int(i["at"]["N"]) >= 20), reverse=True
        )
        assert sorted(map(str, ranged)) == sorted(str(i) for i in mine if int(i["at"]["N"]) >= 20)


def test_a_query_of_an_index_has_moto_examine_only_the_items_of_its_key(table, monkeypatch) -> None:
    # given 60 items spread over six index keys, and a count of the items moto's Query examines
    for n in range(60):
        table.put_item(TableName="t", Item={"pk": {"S": "p"}, "sk": {"N": str(n)}, "open": {"S": f"h{n % 6}"}})
    examined = []
    all_items = Table.all_items
    monkeypatch.setattr(Table, "all_items", lambda t: examined.append(len(items := all_items(t))) or items)
    # when one key is asked for
    keys = _open(table, "byOpen", {":h": {"S": "h1"}})
    # then its ten items are the answer, and the only ones moto compared (a page of five at a time)
    assert sorted(int(k["sk"]["N"]) for k in keys) == list(range(1, 60, 6))
    assert examined and set(examined) == {10}


def test_json_answers_are_those_moto_serializes(monkeypatch) -> None:
    """Every answer of a DynamoDB, DynamoDB Streams and SQS workload (items of every attribute type,
    stream records, a table's description, messages with attributes) serializes to the same JSON with the
    members of plain dicts picked directly as through moto's aliases, and attribute values that are their
    own JSON copied, and the shortcuts did take some."""
    import json

    from moto.core.responses import ActionResult
    from moto.core.serialize import BaseJSONSerializer

    speed_up_moto()
    picked = BaseJSONSerializer._serialize_type_structure
    original = picked._docpipe_original
    answers: list[tuple[ActionResult, object]] = []
    execute = ActionResult.execute_result

    def recorded(self, context):
        answers.append((self, context))
        return execute(self, context)

    monkeypatch.setattr(ActionResult, "execute_result", recorded)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        item = {
            "pk": {"S": "a"},
            "n": {"N": "1.5"},
            "b": {"B": b"\x00\xffbytes"},
            "ss": {"SS": ["x", "y"]},
            "ns": {"NS": ["1", "2"]},
            "bs": {"BS": [b"a", b"b"]},
            "m": {"M": {"deep": {"L": [{"S": "v"}, {"NULL": True}, {"BOOL": False}, {"N": "0"}]}}},
            "empty": {"S": ""},
        }
        ddb.put_item(TableName="t", Item=item)
        ddb.put_item(TableName="t", Item={"pk": {"S": "b"}, "flag": {"BOOL": True}})
        ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})
        ddb.get_item(TableName="t", Key={"pk": {"S": "missing"}})
        ddb.update_item(
            TableName="t",
            Key={"pk": {"S": "a"}},
            UpdateExpression="ADD n :one SET m.deep[0] = :s",
            ExpressionAttributeValues={":one": {"N": "1"}, ":s": {"S": "w"}},
            ReturnValues="ALL_NEW",
        )
        ddb.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}})
        ddb.scan(TableName="t", Limit=1)
        ddb.batch_get_item(RequestItems={"t": {"Keys": [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}]}})
        ddb.describe_table(TableName="t")
        streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        arn = ddb.describe_table(TableName="t")["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        streams.get_records(ShardIterator=iterator["ShardIterator"])
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message(
            QueueUrl=url,
            MessageBody="body",
            MessageGroupId="alice",
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "photo"}},
        )
        sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"])
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])

        assert len(answers) >= 15
        searched = {"moto": 0, "picked": 0}  # members found through moto's aliases, each way
        walked = {"moto": 0, "picked": 0}  # values moto's serializer walked, each way
        search, walk = BaseJSONSerializer._serialize_structure_member, BaseJSONSerializer._serialize
        for answer, context in answers:
            serialized = {}
            for way, method in (("moto", original), ("picked", picked)):

                def counted(self, *args, _way=way):
                    searched[_way] += 1
                    return search(self, *args)

                def walking(self, *args, _way=way):
                    walked[_way] += 1
                    return walk(self, *args)

                BaseJSONSerializer._serialize_type_structure = method
                monkeypatch.setattr(BaseJSONSerializer, "_serialize_structure_member", counted)
                monkeypatch.setattr(BaseJSONSerializer, "_serialize", walking)
                try:
                    serialized[way] = execute(answer, context)
                finally:
                    BaseJSONSerializer._serialize_type_structure = picked
                    monkeypatch.setattr(BaseJSONSerializer, "_serialize_structure_member", search)
                    monkeypatch.setattr(BaseJSONSerializer, "_serialize", walk)
            assert serialized["picked"][:2] == serialized["moto"][:2]
            name = context.operation_model.name
            assert json.loads(serialized["picked"][2] or "{}") == json.loads(serialized["moto"][2] or "{}"), name
        assert searched["picked"] * 5 < searched["moto"], searched
        # and the attribute values that are their own JSON were copied, not walked member by member
        assert walked["picked"] * 4 < walked["moto"] * 3, walked


def test_stream_iterators_are_forgotten_once_expired_and_records_still_flow(monkeypatch) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    expire_stream_iterators()
    monkeypatch.setattr(emulator, "STREAM_ITERATOR_SECONDS", 0.5)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        arn = ddb.create_table(
            TableName="s",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )["TableDescription"]["LatestStreamArn"]
        streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
        kept = dynamodbstreams_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].shard_iterators
        before = len(kept)
        for _ in range(5):  # an idle shard, read as a poller reads it: each answer is a new iterator
            iterator = streams.get_records(ShardIterator=iterator)["NextShardIterator"]
        assert len(kept) == before + 5
        time.sleep(0.6)
        ddb.put_item(TableName="s", Item={"pk": {"S": "a"}})
        answer = streams.get_records(ShardIterator=iterator)
        assert len(kept) == before + 1  # the five older ones are gone, the one just handed out is kept
        assert [r["dynamodb"]["NewImage"]["pk"]["S"] for r in answer["Records"]] == ["a"]
        ddb.put_item(TableName="s", Item={"pk": {"S": "b"}})
        answer = streams.get_records(ShardIterator=answer["NextShardIterator"])
        assert [r["dynamodb"]["NewImage"]["pk"]["S"] for r in answer["Records"]] == ["b"]

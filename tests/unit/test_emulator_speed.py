"""The embedded emulator's shortcuts through moto (:func:`docpipe_local.emulator.speed_up_moto`) give the
answers moto gives without them: Queries of a table and of its indexes, over items written, rewritten
and deleted, compared with the same table read whole by a Scan."""

from __future__ import annotations

import random

import boto3
import pytest
from moto import mock_aws

from docpipe_local.emulator import speed_up_moto


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


def test_queries_answer_what_the_whole_table_holds(table) -> None:
    rng = random.Random(7)
    for n in range(300):
        item = {"pk": {"S": f"p{rng.randrange(20)}"}, "sk": {"N": str(n)}, "at": {"N": str(rng.randrange(50))}}
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
        keys = _all(
            table,
            IndexName="byOpen",
            KeyConditionExpression="#o = :h",
            ExpressionAttributeNames={"#o": "open"},
            ExpressionAttributeValues=values,
            Limit=5,
        )
        assert sorted((k["pk"]["S"], k["sk"]["N"]) for k in keys) == sorted((i["pk"]["S"], i["sk"]["N"]) for i in mine)
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

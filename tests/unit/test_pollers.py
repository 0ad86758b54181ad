"""How a local event source mapping builds events and settles a batch, as Lambda does."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from docpipe_local.gateway import match_route
from docpipe_local.pollers import failed_ids, sqs_event
from docpipe_local.runtime import Invocation
from docpipe_local.template import HttpRoute

MESSAGES = [
    {
        "MessageId": f"m{i}",
        "ReceiptHandle": f"r{i}",
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MessageAttributes": {"kind": {"StringValue": "x", "DataType": "String"}},
    }
    for i in range(3)
]


def test_the_sqs_event_has_lambdas_record_shape() -> None:
    (record, *_) = sqs_event(MESSAGES, "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")["Records"]
    assert record["messageId"] == "m0" and record["receiptHandle"] == "r0" and record["body"] == "{}"
    assert record["messageAttributes"]["kind"]["stringValue"] == "x"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs",
        "arn:aws:sqs:us-east-1:123456789012:q",
        "us-east-1",
    )
    assert len(record["md5OfBody"]) == 32


def test_every_message_becomes_one_record_in_order_with_its_attributes() -> None:
    records = sqs_event(MESSAGES, "arn:q", "us-east-1")["Records"]
    assert [r["messageId"] for r in records] == ["m0", "m1", "m2"]
    assert set(records[0]) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert records[0]["attributes"] == {"ApproximateReceiveCount": "1"}


def test_md5_of_body_is_computed_or_taken_from_sqs() -> None:
    computed, given = sqs_event(
        [{**MESSAGES[0], "Body": "héllo"}, {**MESSAGES[1], "MD5OfBody": "f" * 32}], "arn:q", "us-east-1"
    )["Records"]
    assert computed["md5OfBody"] == hashlib.md5("héllo".encode()).hexdigest()
    assert given["md5OfBody"] == "f" * 32


def test_a_message_without_attributes_has_empty_attribute_maps() -> None:
    (record,) = sqs_event([{"MessageId": "m", "ReceiptHandle": "r", "Body": "b"}], "arn:q", "us-east-1")["Records"]
    assert (record["attributes"], record["messageAttributes"]) == ({}, {})


def test_a_binary_message_attribute_is_base64_as_on_lambda() -> None:
    message = {**MESSAGES[0], "MessageAttributes": {"blob": {"BinaryValue": b"\x00\xff", "DataType": "Binary"}}}
    event = sqs_event([message], "arn:q", "us-east-1")
    assert event["Records"][0]["messageAttributes"]["blob"]["binaryValue"] == base64.b64encode(b"\x00\xff").decode()
    json.dumps(event)  # Worker.invoke serialises the event


@pytest.mark.parametrize(
    ("invocation", "report", "kept"),
    [
        (Invocation("ok", result=None), False, set()),
        (Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": "m1"}]}), False, set()),
        (Invocation("ok", result=None), True, set()),
        (Invocation("ok", result={"batchItemFailures": None}), True, set()),
        (Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": "m1"}]}), True, {"m1"}),
        (
            Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m2"}]}),
            True,
            {"m0", "m2"},
        ),
        (Invocation("ok", result={"batchItemFailures": []}), True, set()),
        (Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": "zz"}]}), True, {"m0", "m1", "m2"}),
        (Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": ""}]}), True, {"m0", "m1", "m2"}),
        (Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": None}]}), True, {"m0", "m1", "m2"}),
        (Invocation("ok", result={"batchItemFailures": [{"id": "m1"}]}), True, {"m0", "m1", "m2"}),
        (
            Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "zz"}]}),
            True,
            {"m0", "m1", "m2"},
        ),
        (Invocation("error", error={}), True, {"m0", "m1", "m2"}),
        (Invocation("timeout", error={}), True, {"m0", "m1", "m2"}),
        (Invocation("crashed", error={}), True, {"m0", "m1", "m2"}),
        (Invocation("out_of_memory", error={}), True, {"m0", "m1", "m2"}),
        (Invocation("error", error={}), False, {"m0", "m1", "m2"}),
    ],
)
def test_which_messages_stay_after_an_invocation(invocation, report, kept) -> None:
    assert failed_ids(MESSAGES, invocation, report) == kept


ROUTES = [HttpRoute("GET", "/health", False), HttpRoute("ANY", "/{proxy+}", True)]


def test_health_picks_its_own_open_route_and_everything_else_the_proxy() -> None:
    assert match_route(ROUTES, "GET", "/health").authorized is False
    assert match_route(ROUTES, "POST", "/health").path == "/{proxy+}"
    assert match_route(ROUTES, "DELETE", "/jobs/1").path == "/{proxy+}"


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "PURGE"])
def test_an_unlisted_method_still_matches_any(method: str) -> None:
    route = match_route(ROUTES, method, "/jobs")
    assert route is not None and (route.method, route.authorized) == ("ANY", True)


def test_health_by_its_own_route_even_when_the_proxy_is_listed_first() -> None:
    assert match_route(list(reversed(ROUTES)), "GET", "/health") == ROUTES[0]


def test_a_deeper_path_and_a_trailing_slash_go_to_the_proxy() -> None:
    assert match_route(ROUTES, "GET", "/health/").path == "/{proxy+}"
    assert match_route(ROUTES, "GET", "/jobs/1/files/2").path == "/{proxy+}"


def test_the_root_path_matches_no_route() -> None:
    assert match_route(ROUTES, "GET", "/") is None


def test_a_parameter_route_beats_the_greedy_proxy() -> None:
    routes = [*ROUTES, HttpRoute("GET", "/jobs/{id}", True)]
    assert match_route(routes, "GET", "/jobs/1").path == "/jobs/{id}"
    assert match_route(routes, "GET", "/jobs/1/x").path == "/{proxy+}"
    assert match_route(routes, "DELETE", "/jobs/1").path == "/{proxy+}"

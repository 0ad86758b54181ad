"""How a local event source mapping builds events and settles a batch, as Lambda does."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    ("invocation", "report", "kept"),
    [
        (Invocation("ok", result=None), False, set()),
        (Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": "m1"}]}), True, {"m1"}),
        (Invocation("ok", result={"batchItemFailures": []}), True, set()),
        (Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": "zz"}]}), True, {"m0", "m1", "m2"}),
        (Invocation("ok", result={"batchItemFailures": [{"itemIdentifier": ""}]}), True, {"m0", "m1", "m2"}),
        (Invocation("error", error={}), True, {"m0", "m1", "m2"}),
        (Invocation("timeout", error={}), True, {"m0", "m1", "m2"}),
    ],
)
def test_which_messages_stay_after_an_invocation(invocation, report, kept) -> None:
    assert failed_ids(MESSAGES, invocation, report) == kept


ROUTES = [HttpRoute("GET", "/health", False), HttpRoute("ANY", "/{proxy+}", True)]


def test_health_picks_its_own_open_route_and_everything_else_the_proxy() -> None:
    assert match_route(ROUTES, "GET", "/health").authorized is False
    assert match_route(ROUTES, "POST", "/health").path == "/{proxy+}"
    assert match_route(ROUTES, "DELETE", "/jobs/1").path == "/{proxy+}"

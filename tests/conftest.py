"""Shared test setup: the functions' environment and AWS resources come from ``template.yaml`` itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_DEV="false",
)
for _name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(_name, None)

from docpipe_local.template import Template  # noqa: E402

TEMPLATE = Template.load(ROOT / "template.yaml")
for _spec in TEMPLATE.functions().values():
    os.environ.update(_spec.environment(TEMPLATE))


@pytest.fixture
def template() -> Template:
    return Template.load(ROOT / "template.yaml")


@pytest.fixture
def aws(template: Template) -> Iterator[dict[str, Any]]:
    """moto's in-process AWS with the template's buckets, queues and tables; clients for the test to use."""
    import boto3
    from moto import mock_aws

    from docpipe import aws as docpipe_aws
    from docpipe_local.emulator import serialize_dynamodb_writes, speed_up_moto
    from docpipe_local.provision import provision

    serialize_dynamodb_writes()  # conditional writes atomic under threads, as on DynamoDB
    speed_up_moto()  # as the embedded emulator runs: every test's queries go through its shortcuts

    with mock_aws():
        docpipe_aws.reset()
        clients = {name: boto3.client(name) for name in ("s3", "sqs", "dynamodb")}
        provision(template, clients)
        yield {**clients, "template": template}
    docpipe_aws.reset()


class LambdaContext:
    """What Lambda passes as ``context``: enough for Powertools' decorators."""

    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()

"""Shared test setup: the functions' environment and AWS resources come from ``template.yaml`` itself."""

from __future__ import annotations

import copy
import copyreg
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from tests.fixtures import suite_report  # noqa: E402

TEMPLATE = Template.load(ROOT / "template.yaml")
for _spec in TEMPLATE.functions().values():
    os.environ.update(_spec.environment(TEMPLATE))


# `make test` runs the suites in two processes (pytest-xdist, ``--dist loadgroup``). A suite whose tests
# share one stack or LocalStack runs whole in one of them, so that it starts its stack once; the
# integration and unit suites' files are shared out one by one (each process starts the integration
# stack it needs for itself).
WHOLE_SUITES = {"fuzz", "localstack", "reliability", "security"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which turns the marker into each test's group
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(ROOT / "tests"):
            continue
        parts = item.path.relative_to(ROOT / "tests").parts
        group = parts[0] if parts[0] in WHOLE_SUITES else "/".join(parts)
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session: pytest.Session) -> None:
    suite_report.send(session.config)  # in an xdist worker: what its suites print, for the controller


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    suite_report.receive(node)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    suite_report.report(terminalreporter)


@pytest.fixture
def template() -> Template:
    return Template.load(ROOT / "template.yaml")


_PROVISIONED = ("s3", "sqs", "dynamodb")  # the services provision() writes to


@dataclass
class _Provisioned:
    """moto's state once :func:`~docpipe_local.provision.provision` has run on the template: each backend
    it wrote to (the backend object, and a copy of its state), S3's bucket owners, and the attributes
    provision recorded on the template."""

    backends: dict[tuple[str, str, str], tuple[Any, dict[str, Any]]] = field(default_factory=dict)
    bucket_accounts: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)


def _copyable_locks() -> None:
    """moto's backends hold locks, which ``copy.deepcopy`` cannot copy: a copy gets a new lock of its own, and
    a copied condition waits on the copy of its lock (its bound methods would otherwise stay the old lock's)."""
    for factory in (threading.Lock, threading.RLock):
        copyreg.pickle(type(factory()), lambda _lock, factory=factory: (factory, ()))
    copyreg.pickle(threading.Condition, lambda condition: (threading.Condition, (condition._lock,)))  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def _provisioned() -> _Provisioned:
    """The template provisioned into moto once a session (about 0.5 s and 107 requests); each ``aws``
    fixture starts from a copy of that state (a few ms), as if it had provisioned it itself."""
    import boto3
    from moto import mock_aws
    from moto.backends import get_backend
    from moto.s3.models import s3_backends

    from docpipe_local.emulator import serialize_dynamodb_writes, serialize_sqs_deletes, speed_up_moto
    from docpipe_local.emulator_costs import cut_moto_s_costs
    from docpipe_local.provision import provision

    serialize_dynamodb_writes()  # conditional writes atomic under threads, as on DynamoDB
    serialize_sqs_deletes()  # a message sent while another is deleted is kept, as on SQS
    speed_up_moto()  # as the embedded emulator runs: every test's queries go through its shortcuts
    cut_moto_s_costs()  # and its updates, conditions, names, SQS counts and item sizes
    _copyable_locks()
    template, saved = Template.load(ROOT / "template.yaml"), _Provisioned()
    with mock_aws():
        provision(template, {name: boto3.client(name) for name in _PROVISIONED})
        for service in _PROVISIONED:
            for account, regions in get_backend(service).items():  # type: ignore[arg-type]
                for region, backend in regions.items():
                    # a reference back to the backend stays one to the backend in use (see aws)
                    state = copy.deepcopy(backend.__dict__, {id(backend): backend})
                    saved.backends[(service, account, region)] = (backend, state)
        saved.bucket_accounts = dict(s3_backends.bucket_accounts)
        saved.attributes = copy.deepcopy(template.attributes)
    return saved


@pytest.fixture
def aws(template: Template, _provisioned: _Provisioned) -> Iterator[dict[str, Any]]:
    """moto's in-process AWS with the template's buckets, queues and tables (a fresh copy of the session's
    provisioned state, see :func:`_provisioned`); clients for the test to use."""
    from moto import mock_aws
    from moto.backends import get_backend
    from moto.s3.models import s3_backends

    from docpipe import aws as docpipe_aws

    with mock_aws():
        for (service, account, region), (then, state) in _provisioned.backends.items():
            backend = get_backend(service)[account][region]  # type: ignore[arg-type]
            backend.__dict__ = copy.deepcopy(state, {id(then): backend})
        s3_backends.bucket_accounts.update(_provisioned.bucket_accounts)
        template.attributes.update(copy.deepcopy(_provisioned.attributes))
        docpipe_aws.reset()
        clients = {name: docpipe_aws.session().client(name) for name in _PROVISIONED}
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

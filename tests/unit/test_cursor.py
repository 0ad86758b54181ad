"""A listing's cursor is taken back only in the exact shape the listing gives out, for the caller's own
index; a cursor DynamoDB still refuses is the client's 400, not our 503."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from docpipe.adapters.dynamo import JobsRepository
from docpipe.config import Settings
from docpipe.errors import BadRequest, Transient

JOB_ID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
CREATED = "2026-01-01T00:00:00.000Z"
START = {"jobId": {"S": JOB_ID}, "owner": {"S": "alice"}, "createdAt": {"S": CREATED}}


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.fixture
def jobs(aws: dict[str, Any]) -> JobsRepository:
    repository = JobsRepository(Settings.from_env().jobs_table)
    for i in range(3):
        job_id = f"{i}b4e28ba-2fa1-11d2-883f-0016d3cca427"
        repository.create({"jobId": job_id, "owner": "alice", "state": "ready", "createdAt": f"2026-01-0{i + 1}"})
    return repository


@pytest.mark.parametrize(
    "value",
    [
        {"owner": {"S": "alice"}},
        {**START, "hash": {"S": "x"}},
        {**START, "owner": "alice"},
        {**START, "jobId": {"N": "1"}},
        {**START, "jobId": {"S": "x" * 1000}},
        {**START, "createdAt": {"S": "x" * 1000}},
        {**START, "createdAt": {"S": CREATED, "N": "1"}},
    ],
    ids=["owner-only", "extra-key", "untyped", "number", "long-id", "long-time", "two-types"],
)
def test_a_cursor_of_any_other_shape_is_refused(jobs: JobsRepository, value: Any) -> None:
    with pytest.raises(BadRequest):
        jobs.list_for_owner("alice", 2, cursor(value))


def test_a_cursor_nested_past_the_recursion_limit_is_refused(jobs: JobsRepository) -> None:
    with pytest.raises(BadRequest):
        jobs.list_for_owner("alice", 2, base64.urlsafe_b64encode(b"[" * 1500).decode())


class RefusingDynamoDB:
    """A DynamoDB client whose queries all fail with one error code."""

    def __init__(self, code: str) -> None:
        self.code = code

    def query(self, **kwargs: Any) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": self.code, "Message": "refused"}}, "Query")


def test_dynamodb_refusing_a_query_is_the_clients_fault_only_when_the_client_gave_the_cursor() -> None:
    jobs = JobsRepository("jobs", client=RefusingDynamoDB("ValidationException"))

    with pytest.raises(BadRequest):
        jobs.list_for_owner("alice", 2, cursor(START))
    with pytest.raises(Transient):
        jobs.list_for_owner("alice", 2, None)

"""Replay a fixture event from ``events/`` against a running local stack, like ``sam local invoke -e``.

The function is the event file's folder name (``events/IngestFunction/upload-text.json`` →
``IngestFunction``). S3 objects the event names that do not exist yet are seeded first from files of
the same name in the seed folders, so a fixture is self-contained on a fresh stack. Only ``POST /uploads``
creates jobs, and ingest leaves alone an object no job was issued for; so for an upload key the event
names (``uploads/{lane}/{owner}/{jobId}/{name}``) the job the API would have issued is seeded too, when
the stack's JobsTable is known and the job does not exist yet. The Invoke API takes only the stack's
own token (``stack.invoke_token``; the token ``docpipe up`` prints).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import requests
from botocore.exceptions import ClientError

from docpipe.adapters.dynamo import JobsRepository
from docpipe.jobs import UNCLAIMED_JOB_SECONDS, expires_in, now_iso
from docpipe.storage import display_name, parse_upload_key
from docpipe_local.stack import CREDENTIALS


@dataclass
class ReplayResult:
    function: str
    ok: bool
    body: Any


def s3_objects(event: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(bucket, key)`` of every S3 record in an event, direct or wrapped in SQS message bodies."""
    for record in event.get("Records", []):
        if record.get("eventSource") == "aws:sqs":
            try:
                body = json.loads(record.get("body", ""))
            except json.JSONDecodeError:
                continue
            if isinstance(body, dict):
                yield from s3_objects(body)
        elif record.get("eventSource") == "aws:s3":
            yield record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"])


def _client(service: str, endpoint: str, region: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def seed(event: dict[str, Any], endpoint: str, seed_dirs: list[Path], region: str = "us-east-1") -> list[str]:
    s3 = _client("s3", endpoint, region)
    seeded = []
    for bucket, key in s3_objects(event):
        try:
            s3.head_object(Bucket=bucket, Key=key)
            continue
        except ClientError:
            pass
        source = next((d / key.rsplit("/", 1)[-1] for d in seed_dirs if (d / key.rsplit("/", 1)[-1]).is_file()), None)
        if source is not None:
            s3.put_object(Bucket=bucket, Key=key, Body=source.read_bytes())
            seeded.append(key)
    return seeded


def seed_jobs(event: dict[str, Any], dynamodb: str, jobs_table: str, region: str = "us-east-1") -> list[str]:
    """The job ``POST /uploads`` would have issued for each upload key in the event, where there is none."""
    repo = JobsRepository(jobs_table, client=_client("dynamodb", dynamodb, region))
    seeded = []
    for _, key in s3_objects(event):
        parsed = parse_upload_key(key)
        if parsed is None:
            continue
        job = {
            "jobId": parsed.job_id,
            "owner": parsed.owner,
            "name": display_name(key.rsplit("/", 1)[-1]),
            "lane": parsed.lane,
            "uploadKey": key,
            "state": "uploading",
            "createdAt": now_iso(),
            "openOwner": parsed.owner,
            "expiresAt": expires_in(UNCLAIMED_JOB_SECONDS),
        }
        if repo.create_if_absent(job):
            seeded.append(parsed.job_id)
    return seeded


def replay(
    path: Path,
    api: str,
    endpoint: str,
    function: str | None = None,
    seed_dirs: list[Path] | None = None,
    jobs: tuple[str, str, str] | None = None,
    token: str | None = None,
) -> ReplayResult:
    """Replay one fixture; ``jobs`` is the stack's (DynamoDB endpoint, JobsTable name, region) for seeding jobs."""
    event = json.loads(path.read_text())
    function = function or path.parent.name
    seed(event, endpoint, seed_dirs or [Path("samples"), Path("events/seed")])
    if jobs is not None:
        seed_jobs(event, *jobs)
    response = requests.post(
        f"{api}/2015-03-31/functions/{function}/invocations",
        json=event,
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=300,
    )
    body = response.json()
    ok = response.status_code == 200 and "X-Amz-Function-Error" not in response.headers
    return ReplayResult(function, ok, body)

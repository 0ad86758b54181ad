"""Replay a fixture event from ``events/`` against a running local stack, like ``sam local invoke -e``.

The function is the event file's folder name (``events/IngestFunction/upload-text.json`` →
``IngestFunction``). S3 objects the event names that do not exist yet are seeded first from files of
the same name in the seed folders, so a fixture is self-contained on a fresh stack. Only ``POST /uploads``
creates jobs, and ingest leaves alone an object no job was issued for; so for an upload key the event
names (``uploads/{lane}/{owner}/{jobId}/{name}``) the job the API would have issued is seeded too, when
the stack's JobsTable is known and the job does not exist yet. The Invoke API takes only the stack's
own token (``stack.invoke_token``; the token ``docpipe up`` prints).

Fixtures are written for some stack, account and region (moto's 123456789012, as shipped), but no
account is bound into them: given the running stack's :class:`Template`, :func:`for_stack` renames
every bucket the event names, matched against the template's own bucket names
(``${AWS::StackName}-uploads-${AWS::AccountId}-${AWS::Region}``), to that stack's bucket, so the same
fixture replays on the embedded emulator, on LocalStack (account 000000000000) and, rendered by
``docpipe event``, for ``sam local invoke -e`` against a deployed stack.
"""

from __future__ import annotations

import copy
import json
import re
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
from docpipe_local.template import Template


@dataclass
class ReplayResult:
    function: str
    ok: bool
    body: Any


def s3_objects(event: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(bucket, key)`` of every S3 record in an event, direct or wrapped in SQS message bodies, and of
    the object a GuardDuty scan result names (an EventBridge event, as the scan lane receives it)."""
    scanned = (event.get("detail") or {}).get("s3ObjectDetails") if isinstance(event.get("detail"), dict) else None
    if isinstance(scanned, dict) and scanned.get("bucketName") and scanned.get("objectKey"):
        yield str(scanned["bucketName"]), str(scanned["objectKey"])
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


# Stand-ins for the pseudo parameters in a bucket's name, found again in its pattern (bucket names are lowercase).
_PSEUDO = {"xstacknamex": "[a-z0-9][a-z0-9.-]*", "xaccountidx": "[0-9]{12}", "xregionx": "[a-z]{2}(?:-[a-z]+)+-[0-9]"}


def bucket_patterns(template: Template) -> dict[str, re.Pattern[str]]:
    """Each bucket's name in any stack, account and region, by logical id."""
    anywhere = Template(
        template.path,
        template.doc,
        stack_name="xstacknamex",
        region="xregionx",
        account_id="xaccountidx",
        parameters=dict(template.parameters),
    )
    patterns = {}
    for logical in template.of_type("AWS::S3::Bucket"):
        text = re.escape(anywhere.physical_name(logical))
        for stand_in, pattern in _PSEUDO.items():
            text = text.replace(stand_in, pattern)
        patterns[logical] = re.compile(text)
    return patterns


def for_stack(event: dict[str, Any], template: Template) -> dict[str, Any]:
    """``event`` with each bucket it names (S3 records, direct or in SQS bodies, and S3's test event)
    renamed to the same bucket of ``template``'s stack; names that are none of its buckets are kept."""
    patterns = bucket_patterns(template)

    def rename(name: str) -> str:
        logical = next((lg for lg, pattern in patterns.items() if pattern.fullmatch(name)), None)
        return template.physical_name(logical) if logical else name

    def walk(node: dict[str, Any]) -> dict[str, Any]:
        if isinstance(node.get("Bucket"), str) and node.get("Event") == "s3:TestEvent":
            node["Bucket"] = rename(node["Bucket"])
        scanned = (node.get("detail") or {}).get("s3ObjectDetails") if isinstance(node.get("detail"), dict) else None
        if isinstance(scanned, dict) and isinstance(scanned.get("bucketName"), str):  # a GuardDuty scan result
            scanned["bucketName"] = rename(scanned["bucketName"])
        for record in node.get("Records") or []:
            if not isinstance(record, dict):
                continue
            if record.get("eventSource") == "aws:sqs" and isinstance(record.get("body"), str):
                try:
                    body = json.loads(record["body"])
                except json.JSONDecodeError:
                    continue
                if isinstance(body, dict):
                    renamed = walk(copy.deepcopy(body))
                    if renamed != body:
                        record["body"] = json.dumps(renamed)
            elif record.get("eventSource") == "aws:s3":
                bucket = record.get("s3", {}).get("bucket", {})
                if isinstance(bucket.get("name"), str):
                    bucket["name"] = rename(bucket["name"])
                    if "arn" in bucket:
                        bucket["arn"] = f"arn:aws:s3:::{bucket['name']}"
        return node

    return walk(copy.deepcopy(event))


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
    multipart = _multipart_keys(event)
    for bucket, key in s3_objects(event):
        try:
            s3.head_object(Bucket=bucket, Key=key)
            continue
        except ClientError:
            pass
        source = next((d / key.rsplit("/", 1)[-1] for d in seed_dirs if (d / key.rsplit("/", 1)[-1]).is_file()), None)
        if source is not None:
            if key in multipart:  # as a multipart upload makes it: an ETag of "<md5 of the parts' md5s>-<parts>"
                upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
                part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=source.read_bytes())
                s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
                )
            else:
                s3.put_object(Bucket=bucket, Key=key, Body=source.read_bytes())
            seeded.append(key)
    return seeded


def _multipart_keys(event: dict[str, Any]) -> set[str]:
    """The keys of the event's ``ObjectCreated:CompleteMultipartUpload`` records (direct or in SQS bodies)."""
    keys = set()
    for record in event.get("Records", []):
        if record.get("eventSource") == "aws:sqs":
            try:
                keys |= _multipart_keys(json.loads(record.get("body", "")))
            except (json.JSONDecodeError, AttributeError):
                continue
        elif record.get("eventName") == "ObjectCreated:CompleteMultipartUpload":
            keys.add(unquote_plus(record["s3"]["object"]["key"]))
    return keys


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
    template: Template | None = None,
) -> ReplayResult:
    """Replay one fixture; ``jobs`` is the stack's (DynamoDB endpoint, JobsTable name, region) for seeding
    jobs, ``template`` the stack's template (its name, account and region) for the names of its buckets."""
    event = json.loads(path.read_text())
    if template is not None:
        event = for_stack(event, template)
    function = function or path.parent.name
    if jobs is not None:  # the job first: the seeded object's own S3 event then finds it (GuardDuty's verdicts wait
        seed_jobs(event, *jobs)  # for that ingest)
    seed(event, endpoint, seed_dirs or [Path("samples"), Path("events/seed")])
    response = requests.post(
        f"{api}/2015-03-31/functions/{function}/invocations",
        json=event,
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=300,
    )
    body = response.json()
    ok = response.status_code == 200 and "X-Amz-Function-Error" not in response.headers
    return ReplayResult(function, ok, body)

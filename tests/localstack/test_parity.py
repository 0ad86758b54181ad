"""The local stack on LocalStack behaves as on the embedded emulator, and S3 there keeps the promises moto
does not: every POST policy condition is refused, every signature is checked.

S3 and SQS are LocalStack's (signature validation on), DynamoDB is embedded. The samples are also run
on a fresh embedded stack in the same run, and both times are printed at the end (tests.fixtures.suite_report).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from docpipe.adapters.dynamo import JobsRepository
from docpipe.storage import parse_upload_key
from docpipe_local.cli import main as docpipe_main
from docpipe_local.client import DocpipeClient
from docpipe_local.replay import replay, s3_objects
from docpipe_local.stack import LocalStack
from tests.fixtures import suite_report
from tests.integration.test_replay import EXPECTED, FIXTURES, SEEDS, settled
from tests.localstack.conftest import PARAMETERS, SUITE, TOKENS, UPLOAD_URL_SECONDS

pytestmark = [pytest.mark.slow, pytest.mark.localstack]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "samples").iterdir())


def process(client: DocpipeClient, paths: list[Path]) -> list[dict[str, Any]]:
    created = [client.upload_file(path) for path in paths]
    return [client.wait(c["jobId"], timeout=180) for c in created]


@pytest.fixture(scope="module")
def dev(stack: LocalStack) -> DocpipeClient:
    return DocpipeClient(stack.api_url, stack.token_for("dev"))


@pytest.fixture(scope="module")
def samples(stack: LocalStack, dev: DocpipeClient) -> list[dict[str, Any]]:
    """Every sample, uploaded through presigned POSTs to LocalStack's S3 and followed to its end."""
    started = time.monotonic()
    jobs = process(dev, SAMPLES)
    suite_report.record(SUITE, "samples on LocalStack (S3, SQS)", time.monotonic() - started)
    return jobs


def test_the_stack_runs_on_localstacks_s3_and_sqs_with_dynamodb_embedded(stack: LocalStack, localstack_url) -> None:
    assert stack.endpoint == localstack_url
    assert stack.template.account_id == "000000000000"  # LocalStack's account, not moto's
    assert stack.endpoints["dynamodb"] != localstack_url


def test_every_sample_ends_ready(samples) -> None:
    assert {job["name"]: job["state"] for job in samples} == {path.name: "ready" for path in SAMPLES}


def test_the_samples_end_ready_on_the_embedded_stack_too(localstack_url, tmp_path) -> None:
    # the same run's reference (so only where LocalStack runs): a fresh embedded stack, the same parameters and files
    with LocalStack(state_dir=tmp_path, tokens=dict(TOKENS), parameters=dict(PARAMETERS)) as embedded:
        started = time.monotonic()
        jobs = process(DocpipeClient(embedded.api_url, embedded.token_for("dev")), SAMPLES)
        suite_report.record(SUITE, "samples on the embedded stack", time.monotonic() - started)

    assert {job["name"]: job["state"] for job in jobs} == {path.name: "ready" for path in SAMPLES}


@pytest.mark.parametrize("sample", [p.name for p in SAMPLES])
def test_every_variant_downloads_through_docpipe_get(stack, dev, samples, sample, tmp_path, capsys) -> None:
    job = next(j for j in samples if j["name"] == sample)
    variants = dev.file(job["hash"])["variants"]
    target = ["--api", stack.api_url, "--token", stack.token_for("dev")]

    codes = {v: docpipe_main(["get", job["jobId"], v, "-o", str(tmp_path / v), *target]) for v in variants}

    assert codes == dict.fromkeys(variants, 0), capsys.readouterr().err
    assert (tmp_path / "original").read_bytes() == (ROOT / "samples" / sample).read_bytes()
    assert all((tmp_path / v).stat().st_size > 0 for v in variants)
    assert len(variants) > 1  # presets of images, text of documents


def test_a_url_signed_with_another_secret_is_refused(stack, dev, samples) -> None:
    url = dev.variant_url(samples[0]["hash"], "original")
    forged = url.replace("Signature=", "Signature=A")  # the signature of another secret

    assert requests.get(url, timeout=30).status_code == 200
    answer = requests.get(forged, timeout=30)
    assert answer.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in answer.text


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_fixture_replays_with_its_expected_outcome(stack: LocalStack, fixture: Path) -> None:
    expected = EXPECTED[f"{fixture.parent.name}/{fixture.name}"]
    jobs_table = (stack.endpoints["dynamodb"], stack.template.physical_name("JobsTable"), stack.region)

    result = replay(
        fixture,
        stack.api_url,
        stack.endpoint,
        seed_dirs=SEEDS,
        jobs=jobs_table,
        token=stack.invoke_token,
        template=stack.template,  # the fixtures name moto's account; the buckets here are LocalStack's
    )

    assert result.ok, result.body
    if isinstance(expected, int):
        assert result.body["statusCode"] == expected, result.body
        return
    assert result.body == {"batchItemFailures": []}
    jobs = JobsRepository(stack.template.physical_name("JobsTable"), client=stack.client("dynamodb"))
    outcomes = {}
    for _, key in s3_objects(json.loads(fixture.read_text())):
        job = settled(jobs, parse_upload_key(key).job_id)
        outcomes[key.rsplit("/", 1)[-1]] = (job["state"], (job.get("error") or {}).get("code"))
    assert outcomes == expected


# ---------------------------------------------------------------- the presigned POST's conditions
DECLARED = b"ten bytes!"  # the size each upload below declares
CONDITIONS = {
    # condition broken: (what is posted instead, S3's status, S3's code, a phrase of its message)
    "size over the declared": ({"body": DECLARED + b"!"}, 400, "EntityTooLarge", "exceeds the maximum"),
    "zero bytes": ({"body": b""}, 400, "EntityTooSmall", "smaller than the minimum"),
    "another key": ({"key": "other"}, 403, "AccessDenied", "Policy Condition failed"),
    "another Content-Type": ({"Content-Type": "text/html"}, 403, "AccessDenied", "Policy Condition failed"),
    "an expired link": ({"after_expiry": True}, 403, "AccessDenied", "Policy expired"),
}


def _field(text: str, name: str) -> str:
    return text.split(f"<{name}>", 1)[-1].split(f"</{name}>", 1)[0]


@pytest.fixture(scope="module")
def refused(stack: LocalStack) -> dict[str, dict[str, Any]]:
    """Each condition broken once, on an upload of its own: S3's answer, then the job's end."""
    lee = DocpipeClient(stack.api_url, stack.token_for("lee"))
    created = {
        name: lee.create_upload(f"{name.replace(' ', '-')}.txt", len(DECLARED), "text/plain") for name in CONDITIONS
    }

    def post(name: str) -> dict[str, Any]:
        change, *_ = CONDITIONS[name]
        upload = created[name]["upload"]
        fields = dict(upload["fields"])
        if change.get("key"):  # a key of another job of the same user
            fields["key"] = fields["key"].replace(created[name]["jobId"], str(uuid.uuid4()))
        if change.get("Content-Type"):
            fields["Content-Type"] = change["Content-Type"]
        body = change.get("body", DECLARED)
        answer = requests.post(
            upload["url"], data=fields, files={"file": ("f.txt", body, fields["Content-Type"])}, timeout=30
        )
        return {
            "status": answer.status_code,
            "code": _field(answer.text, "Code"),
            "message": _field(answer.text, "Message"),
        }

    results = {name: post(name) for name in CONDITIONS if not CONDITIONS[name][0].get("after_expiry")}
    time.sleep(UPLOAD_URL_SECONDS + 1)
    results.update({name: post(name) for name in CONDITIONS if CONDITIONS[name][0].get("after_expiry")})
    for name, result in results.items():  # the sweeper ends each job whose link expired with nothing sent
        result["job"] = lee.wait(created[name]["jobId"], timeout=60)
    return results


@pytest.mark.parametrize("condition", CONDITIONS)
def test_s3_refuses_a_post_that_breaks_a_condition_and_the_sweeper_ends_its_job(refused, condition) -> None:
    _, status, code, phrase = CONDITIONS[condition]
    result = refused[condition]

    assert (result["status"], result["code"]) == (status, code), result
    assert phrase in result["message"]
    job = result["job"]
    assert (job["state"], job["error"]["code"]) == ("failed", "upload.expired")


def test_a_duplicate_s3_event_has_one_effect(stack: LocalStack, dev: DocpipeClient, tmp_path) -> None:
    path = tmp_path / "twice.txt"
    path.write_text("delivered twice, ingested once\n")
    created = dev.upload_file(path)
    job = dev.wait(created["jobId"], timeout=60)
    files = stack.client("dynamodb")
    before = files.get_item(TableName=stack.template.physical_name("FilesTable"), Key={"hash": {"S": job["hash"]}})[
        "Item"
    ]
    key = created["upload"]["fields"]["key"]
    bucket = stack.template.physical_name("UploadsBucket")
    duplicate = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Post",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
            }
        ]
    }
    sqs = stack.client("sqs")
    queue = stack.template.attributes[f"Ingest{created['lane'].title()}Queue"]["QueueUrl"]

    for _ in range(2):  # S3 delivers at least once: the event again, twice, on LocalStack's queue
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(duplicate))
    drained(sqs, queue)

    after = dev.job(created["jobId"])
    states = [entry["state"] for entry in after["history"]]
    assert after["state"] == "ready"
    assert len(states) == len(set(states)), states  # every transition once
    record = files.get_item(TableName=stack.template.physical_name("FilesTable"), Key={"hash": {"S": job["hash"]}})[
        "Item"
    ]
    assert record == before  # the stored file, its references and its tasks untouched


def drained(sqs: Any, queue: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        if attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0":
            return
        time.sleep(0.2)
    raise AssertionError(f"{queue} still held messages after {timeout} s")


def test_the_buckets_cors_allow_the_page_on_the_gateways_own_port(stack: LocalStack) -> None:
    bucket_url = f"{stack.endpoint}/{stack.template.physical_name('UploadsBucket')}"
    page = f"http://127.0.0.1:{stack.gateway.port}"

    def preflight(origin: str) -> requests.Response:
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        return requests.options(bucket_url, headers=headers, timeout=10)

    assert stack.gateway.port != 8780
    allowed = preflight(page)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == page
    assert preflight("http://127.0.0.1:8780").status_code == 403  # the default port's page is another origin

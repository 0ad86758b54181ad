"""The poison corpus through the local stack over real HTTP: hostile and broken files uploaded at once with
good ones. Every good job ends ``ready``; every bad one ``failed`` with its stable code and a message;
no worker is killed or restarted by a poison file, nothing reaches a dead-letter queue, and nothing a
user sent is lost (a refused upload stays in the uploads bucket; a stored original stays in the store).
"""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from docpipe_local.client import ApiError, DocpipeClient, post_file
from docpipe_local.stack import LocalStack
from tests.fixtures import suite_report
from tests.fixtures.poison import BAD, GOOD, REFUSED_AT_UPLOAD, SURVIVABLE, Case, Refusal

pytestmark = pytest.mark.reliability

USERS = ("alice", "bob")
UPLOADERS = 8  # uploads and waits in flight at once
JOB_TIMEOUT = 150  # seconds for the whole corpus to reach terminal states
# Workers a function may start beyond its concurrency before it counts as a restart storm. Its pool keeps
# workers of two CPU priorities warm, up to twice its concurrency (docpipe_local.runtime): a busy user's API
# requests and a heavy tenant's tasks run in workers of a lower priority.
SPARE_WORKERS = 2


@dataclass
class Outcome:
    case: Case
    owner: str
    path: Path
    job: dict[str, Any]


def _run(stack: LocalStack, case: Case, owner: str, folder: Path, deadline: float) -> Outcome:
    client = DocpipeClient(stack.api_url, stack.token_for(owner))
    path = case.write(folder)
    if case.declared is None:
        created = client.upload_file(path, ocr=case.ocr)
    else:  # a lie about the size: the presigned POST does not stop it here (moto ignores content-length-range)
        created = client.create_upload(case.name, case.declared, mimetypes.guess_type(case.name)[0], ocr=case.ocr)
        post_file(created["upload"], path)
    job = client.wait(created["jobId"], timeout=max(1.0, deadline - time.monotonic()))
    return Outcome(case, owner, path, job)


@pytest.fixture(scope="module")
def outcomes(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case of the corpus uploaded concurrently (good and bad interleaved), followed to its end."""
    folder = tmp_path_factory.mktemp("corpus")
    big = [c for c in BAD if c.make is None]  # the 101 MB upload starts first: it takes longest
    small = [c for c in (*BAD, *SURVIVABLE) if c.make is not None]
    cases = big + [c for pair in itertools.zip_longest(small, GOOD) for c in pair if c is not None]
    deadline = time.monotonic() + JOB_TIMEOUT
    started = time.monotonic()
    with ThreadPoolExecutor(UPLOADERS) as pool:
        futures = {
            case.name: pool.submit(_run, stack, case, USERS[i % len(USERS)], folder, deadline)
            for i, case in enumerate(cases)
        }
        results = {name: future.result() for name, future in futures.items()}
    suite_report.record("poison corpus", f"{len(results)} files settled", time.monotonic() - started)
    return results


def _state(outcome: Outcome) -> tuple[str, str | None]:
    return outcome.job["state"], (outcome.job.get("error") or {}).get("code")


def test_every_good_file_ends_ready(outcomes) -> None:
    states = {c.name: _state(outcomes[c.name]) for c in GOOD}

    assert states == {c.name: ("ready", None) for c in GOOD}


def test_the_corpus_runs_with_scanning_on(stack: LocalStack, outcomes) -> None:
    """The malware scan gates every stored file here as on a deployment: ClamAV where it is installed."""
    if stack.template.parameter("ScanEngine") != "clamav":
        pytest.skip("ClamAV is not installed here (make clamav): the stack runs with ScanEngine none")
    stored = [o.job for o in outcomes.values() if o.job.get("hash")]
    assert stored and all(job["plan"][0] == "scan" for job in stored)
    ready = [job for job in stored if job["state"] == "ready"]
    assert ready and all(job["tasks"]["scan"]["state"] == "done" for job in ready)


@pytest.mark.parametrize("case", SURVIVABLE, ids=lambda c: c.name)
def test_a_hostile_but_valid_file_ends_ready(outcomes, case: Case) -> None:
    assert _state(outcomes[case.name]) == ("ready", None), f"{case.why}: {outcomes[case.name].job}"


# Cases that end otherwise because of code outside the content modules, each with what blocks it.
BLOCKED: dict[str, str] = {}  # cases a known defect keeps from their expected outcome (strict xfail)


def _cases(cases: tuple[Case, ...]) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, reason=BLOCKED[case.name])] if case.name in BLOCKED else [],
        )
        for case in cases
    ]


@pytest.mark.parametrize("case", _cases(BAD))
def test_a_poison_file_fails_with_its_code_and_a_message(outcomes, case: Case) -> None:
    job = outcomes[case.name].job

    assert _state(outcomes[case.name]) == ("failed", case.code), f"{case.why}: {job}"
    assert job["error"]["message"].strip()


@pytest.mark.parametrize("refusal", REFUSED_AT_UPLOAD, ids=lambda r: r.name)
def test_a_request_for_a_refused_file_gets_no_upload(stack: LocalStack, refusal: Refusal) -> None:
    client = DocpipeClient(stack.api_url, stack.token_for("alice"))

    with pytest.raises(ApiError) as refused:
        client.create_upload(refusal.name, refusal.size, refusal.content_type)

    assert (refused.value.status, refused.value.code) == (refusal.status, refusal.code)
    assert refused.value.message.strip()
    assert refusal.name not in {job["name"] for job in client.jobs(limit=100)["jobs"]}


def _queues(stack: LocalStack, dead: bool) -> dict[str, str]:
    assert stack.template is not None
    return {
        logical: attrs["QueueUrl"]
        for logical, attrs in stack.template.attributes.items()
        if "QueueUrl" in attrs and logical.endswith("DLQ") == dead
    }


def _depths(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture(scope="module")
def drained(stack: LocalStack, outcomes) -> dict[str, int]:
    """The work queues once they are empty (or what is left in them after a minute): a job can end while
    another task of its file still runs (an image whose presets failed while its OCR runs)."""
    sqs = stack.client("sqs")
    deadline = time.monotonic() + 60
    while True:
        left = {name: _depths(sqs, url) for name, url in _queues(stack, dead=False).items()}
        if not any(left.values()) or time.monotonic() > deadline:
            return {name: n for name, n in left.items() if n}
        time.sleep(0.25)


def test_every_work_queue_drains(drained) -> None:
    assert drained == {}


def test_nothing_reaches_a_dead_letter_queue(stack: LocalStack, drained) -> None:
    sqs = stack.client("sqs")

    dead = {name: _depths(sqs, url) for name, url in _queues(stack, dead=True).items()}

    # one dead-letter queue per work queue (and the notifier's on-failure queue besides)
    assert {name.removesuffix("Queue") + "DLQ" for name in _queues(stack, dead=False)} <= set(dead)
    assert {name: n for name, n in dead.items() if n} == {}


def test_no_poison_file_crashes_or_restarts_a_worker(stack: LocalStack, drained) -> None:
    workers = {name: (rt.spawned, rt.concurrency, rt.failures) for name, rt in stack.runtimes.items()}

    storms = {name: w for name, w in workers.items() if w[0] > 2 * w[1] + SPARE_WORKERS}
    failed = {name: w for name, w in workers.items() if w[2]}
    assert storms == {}, "(spawned, concurrency, failed invocations) per function"
    assert failed == {}, "invocations that crashed, timed out or raised, per function"


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.name)
def test_a_failed_upload_is_never_lost(stack: LocalStack, outcomes, case: Case) -> None:
    outcome = outcomes[case.name]
    job = outcome.job
    s3 = stack.client("s3")
    assert stack.template is not None
    size = outcome.path.stat().st_size

    if job.get("hash"):  # refused after it was stored: the original is in the store, byte for byte
        client = DocpipeClient(stack.api_url, stack.token_for(outcome.owner))
        original = requests.get(client.variant_url(job["hash"]), timeout=30).content
        assert hashlib.sha256(original).hexdigest() == job["hash"]
        assert original == outcome.path.read_bytes()
    else:  # refused at ingest: the raw upload is kept where it arrived
        bucket = stack.template.physical_name("UploadsBucket")
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"uploads/{job['lane']}/{outcome.owner}/{job['jobId']}/")
        assert [o["Size"] for o in listing.get("Contents", [])] == [size], job
        if size <= 10 * 1024 * 1024:
            key = listing["Contents"][0]["Key"]
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == outcome.path.read_bytes()

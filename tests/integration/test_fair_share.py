"""Fair share on the local stack, over real HTTP: quotas, purge (and its race with a re-upload), and the
CLI's usage and delete. (Abandoned uploads, ended by the sweeper or by their client, are in
tests/security/test_abandoned.py.)"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from docpipe_local.client import ApiError, DocpipeClient
from docpipe_local.quotas import set_quota
from docpipe_local.stack import LocalStack
from tests.integration.test_local_stack import process, write

TOKENS = {"tok-erin": "erin", "tok-finn": "finn", "tok-gail": "gail", "tok-hana": "hana"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        state_dir=tmp_path_factory.mktemp("fair"),
        tokens=dict(TOKENS),
    ) as local:
        yield local


@pytest.fixture
def erin(stack: LocalStack) -> DocpipeClient:
    return DocpipeClient(stack.api_url, stack.token_for("erin"))


@pytest.fixture
def finn(stack: LocalStack) -> DocpipeClient:
    return DocpipeClient(stack.api_url, stack.token_for("finn"))


def test_a_quota_refusal_is_a_429_with_retry_after_over_http(stack) -> None:
    gail = DocpipeClient(stack.api_url, stack.token_for("gail"))
    set_quota(stack, "gail", "UploadsPerMinute", 1)
    gail.create_upload("one.txt", 5, "text/plain")
    response = gail.session.post(
        f"{stack.api_url}/uploads", json={"name": "two.txt", "size": 5, "contentType": "text/plain"}, timeout=10
    )

    assert response.status_code == 429 and response.json()["code"] == "quota.exceeded"
    assert 1 <= int(response.headers["Retry-After"]) <= 61


def test_purge_deletes_the_bytes_with_the_last_job_that_references_them(stack, erin, finn, tmp_path) -> None:
    data = b"shared between erin and finn " + bytes(str(tmp_path), "utf-8")
    mine = process(erin, write(tmp_path, "a.txt", data))
    theirs = process(finn, write(tmp_path, "b.txt", data))
    assert mine["state"] == theirs["state"] == "ready" and mine["hash"] == theirs["hash"]

    erin.purge(mine["jobId"])

    with pytest.raises(ApiError) as gone:
        erin.job(mine["jobId"])
    assert gone.value.status == 404
    assert requests.get(finn.variant_url(theirs["hash"]), timeout=10).content == data

    finn.purge(theirs["jobId"])

    s3 = stack.client("s3")
    listing = s3.list_objects_v2(Bucket=stack.template.physical_name("StoreBucket"), Prefix=f"files/{mine['hash']}/")
    assert listing["KeyCount"] == 0
    assert finn.usage()["limits"][2] == {"name": "StoredBytesPerUser", "limit": 53687091200, "used": 0}


def test_a_purge_racing_a_reupload_leaves_that_job_ready_with_its_files(stack, erin, finn, tmp_path) -> None:
    for round_ in range(3):
        data = f"raced bytes, round {round_} ".encode() + bytes(str(tmp_path), "utf-8")
        first = process(erin, write(tmp_path, f"first{round_}.txt", data))
        assert first["state"] == "ready"
        outcome: dict[str, Any] = {}
        purger = threading.Thread(target=lambda: erin.purge(first["jobId"]))  # noqa: B023
        uploader = threading.Thread(
            target=lambda: outcome.update(job=process(finn, write(tmp_path, f"again{round_}.txt", data)))  # noqa: B023
        )
        purger.start()
        uploader.start()
        purger.join(60)
        uploader.join(90)

        job = outcome["job"]
        assert job["state"] == "ready", job
        original = requests.get(finn.variant_url(job["hash"]), timeout=10).content
        assert hashlib.sha256(original).hexdigest() == job["hash"] == first["hash"]


def test_the_cli_shows_usage_and_deletes_jobs(stack, finn, tmp_path, capsys) -> None:
    from docpipe_local.cli import main

    job = process(finn, write(tmp_path, "cli.txt", b"deleted from the command line " + bytes(str(tmp_path), "utf-8")))
    target = ["--api", stack.api_url, "--token", stack.token_for("finn")]

    assert main(["usage", "--json", *target]) == 0
    limits = {row["name"]: row for row in json.loads(capsys.readouterr().out)["limits"]}
    assert limits["OpenJobsPerUser"]["limit"] == 1000 and limits["StoredBytesPerUser"]["used"] > 0

    assert main(["delete", job["jobId"], *target]) == 0
    assert f"{job['jobId']}: deleted" in capsys.readouterr().out
    assert main(["delete", job["jobId"], *target]) == 1  # gone: the second delete finds nothing


def test_the_client_waits_out_a_rate_limit_and_uploads(stack, tmp_path) -> None:
    hana = DocpipeClient(stack.api_url, stack.token_for("hana"))
    set_quota(stack, "hana", "UploadsPerMinute", 6)  # one in any 10 seconds
    started = time.monotonic()

    first = hana.upload_file(write(tmp_path, "first.txt", b"one"))
    second = hana.upload_file(write(tmp_path, "second.txt", b"two"))  # a 429 first, then after its Retry-After

    assert first["jobId"] != second["jobId"]
    assert time.monotonic() - started <= 12
    assert hana.wait(second["jobId"], timeout=30)["state"] == "ready"

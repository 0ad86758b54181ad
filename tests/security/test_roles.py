"""GET /queues: operators (the AdminGroup claim; locally `docpipe up --admin USER`) see every lane's
totals; everyone else sees only their own open jobs per lane. The operators' /admin routes answer
anyone else 403."""

from __future__ import annotations

from typing import Any

import requests

from tests.security.test_dedupe import png_bomb, upload


def test_a_user_sees_only_their_own_open_jobs_and_an_operator_every_queue(stack, alice, carol, root) -> None:
    for name in ("q1.txt", "q2.txt"):
        carol.create_upload(name, 10, "text/plain")  # open (uploading) until the sweeper ends them
    alice.create_upload("big.pdf", 50 * 1024 * 1024, "application/pdf")

    as_carol = carol.queues()
    as_root = root.queues()

    assert as_carol["scope"] == "own" and "queues" not in as_carol
    lanes = {row["lane"]: row for row in as_carol["lanes"]}
    assert lanes["high"]["uploading"] >= 2 and lanes["low"]["open"] == 0  # alice's low-lane upload is not carol's
    assert as_root["scope"] == "all"
    concerns = {(row["concern"], row["lane"]) for row in as_root["queues"]}
    assert ("ingest", "high") in concerns and ("ocr", "low") in concerns
    assert all({"depth", "inFlight", "dlqDepth"} <= set(row) for row in as_root["queues"])


def test_a_group_claim_cannot_be_forged_with_a_header(stack, carol) -> None:
    response = requests.get(
        f"{stack.api_url}/queues",
        headers={
            "Authorization": "Bearer tok-carol",
            "X-Groups": "docpipe-admins",
            "X-Cognito-Groups": "docpipe-admins",
        },
        timeout=10,
    )

    assert response.status_code == 200 and response.json()["scope"] == "own"


def test_an_operator_retries_every_failed_job_of_a_code_and_a_user_is_forbidden(alice, bob, root, tmp_path) -> None:
    failed = [upload(user, tmp_path, "bomb.png", png_bomb()) for user in (alice, bob)]
    assert [(job["state"], job["error"]["code"]) for job in failed] == [("failed", "image.too_many_pixels")] * 2
    request = {"code": "image.too_many_pixels", "limit": 100}

    refused = alice.session.post(f"{alice.api_url}/admin/jobs/retry", json=request, timeout=30)
    listing = alice.session.get(f"{alice.api_url}/admin/jobs", params={"state": "failed"}, timeout=30)
    retried: list[dict[str, Any]] = []
    while True:
        response = root.session.post(f"{root.api_url}/admin/jobs/retry", json=request, timeout=30)
        assert response.status_code == 200, response.text
        retried += [job for job in response.json()["jobs"] if job["result"] == "retried"]
        if response.json()["nextCursor"] is None:
            break
        request["cursor"] = response.json()["nextCursor"]

    assert (refused.status_code, refused.json()["code"]) == (403, "auth.forbidden")
    assert (listing.status_code, listing.json()["code"]) == (403, "auth.forbidden")
    assert {job["jobId"] for job in failed} <= {job["jobId"] for job in retried}
    assert {("alice", failed[0]["jobId"]), ("bob", failed[1]["jobId"])} <= {(j["owner"], j["jobId"]) for j in retried}
    for client, job in zip((alice, bob), failed, strict=True):  # each ran again, for its owner, and failed again
        again = client.wait(job["jobId"], timeout=60)
        assert (again["state"], again["tasks"]["presets"]["attempts"]) == ("failed", 2)

"""GET /queues: operators (the AdminGroup claim; locally `docpipe up --admin USER`) see every lane's
totals; everyone else sees only their own open jobs per lane."""

from __future__ import annotations

import requests


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

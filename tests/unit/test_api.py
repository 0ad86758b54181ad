"""ApiFunction over moto: uploads, jobs, files, health; identity and isolation."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from docpipe.adapters.dynamo import FilesRepository, JobsRepository, owner_hash
from docpipe.config import Settings
from docpipe.storage import original_key
from docpipe_local.apigw import http_event, response_body

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def call(lambda_context):
    from api import handler

    def call(
        method: str,
        path: str,
        body: Any = None,
        user: str | None = "alice",
        query: str = "",
        accept: str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> tuple[int, Any, dict]:
        event = http_event(
            method,
            path,
            query=query,
            headers={"content-type": "application/json", **({"accept": accept} if accept else {})},
            body=json.dumps(body) if body is not None else None,
            claims={"sub": user, **(claims or {})} if user else None,
        )
        response = handler.lambda_handler(event, lambda_context)
        raw = response_body(response)
        return response["statusCode"], json.loads(raw) if raw else None, response.get("headers", {})

    return call


def upload(call, name: str = "photo.jpg", size: int = 1234, user: str = "alice", **extra: Any) -> dict[str, Any]:
    status, body, _ = call("POST", "/uploads", {"name": name, "size": size, **extra}, user=user)
    assert status == 201, body
    return body


def test_post_uploads_returns_a_presigned_post_bound_to_one_key(call) -> None:
    body = upload(call, "../holiday photo.JPG", 5000, contentType="image/jpeg")

    fields = body["upload"]["fields"]
    assert fields["key"] == f"uploads/high/alice/{body['jobId']}/holiday_photo.JPG"
    assert fields["Content-Type"] == "image/jpeg"
    policy = json.loads(__import__("base64").b64decode(fields["policy"]))
    assert ["content-length-range", 1, 5000] in policy["conditions"]
    assert "docpipe-local-uploads-123456789012-us-east-1" in body["upload"]["url"]
    assert body["lane"] == "high"
    assert body["expiresAt"].endswith("Z")


def test_the_new_job_is_uploading_and_named_without_its_path(call) -> None:
    created = upload(call, "dir/sub\x07dir/report.pdf", 2 * 1024 * 1024)

    status, job, _ = call("GET", f"/jobs/{created['jobId']}")

    assert status == 200
    assert (job["state"], job["name"], job["progress"], job["lane"]) == ("uploading", "report.pdf", 0, "normal")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "big.pdf", "size": 200 * 1024 * 1024}, 413, "file.too_large"),
        ({"name": "tool.exe", "size": 10}, 415, "file.unsupported_type"),
        ({"name": "page.html", "size": 10}, 415, "file.unsupported_type"),
        ({"name": "x", "size": 10, "contentType": "application/x-msdownload"}, 415, "file.unsupported_type"),
        ({"name": "empty.txt", "size": 0}, 400, "file.empty"),
        ({"name": "", "size": 10}, 400, "request.invalid"),
        ({"name": "/\x00/", "size": 10}, 400, "request.invalid"),
        ({"size": 10}, 400, "request.invalid"),
        ({"name": "a.txt", "size": 10, "priority": "urgent"}, 400, "request.invalid"),
    ],
)
def test_bad_upload_requests_get_a_status_and_a_code(call, body, status, code) -> None:
    got, error, _ = call("POST", "/uploads", body)
    assert (got, error["code"]) == (status, code)
    assert error["message"]


def test_a_request_without_identity_is_401(call) -> None:
    status, error, _ = call("GET", "/jobs", user=None)
    assert (status, error["code"]) == (401, "auth.required")


def test_another_users_job_is_not_found(call) -> None:
    created = upload(call, user="alice")

    status, error, _ = call("GET", f"/jobs/{created['jobId']}", user="bob")

    assert (status, error["code"]) == (404, "job.not_found")


def test_jobs_are_listed_newest_first_and_paginated(call) -> None:
    ids = [upload(call, f"f{i}.txt", 10)["jobId"] for i in range(3)]
    upload(call, "other.txt", 10, user="bob")

    status, page1, _ = call("GET", "/jobs", query="limit=2")
    _, page2, _ = call("GET", "/jobs", query=f"limit=2&cursor={page1['nextCursor']}")

    assert status == 200
    assert [j["jobId"] for j in page1["jobs"] + page2["jobs"]] == ids[::-1]
    assert page2["nextCursor"] is None


def test_a_cursor_from_another_user_is_refused(call) -> None:
    for i in range(2):
        upload(call, f"a{i}.txt", 10, user="alice")
    _, page, _ = call("GET", "/jobs", query="limit=1", user="alice")

    status, error, _ = call("GET", "/jobs", query=f"cursor={page['nextCursor']}", user="bob")

    assert (status, error["code"]) == (400, "request.invalid")


def stored_file(aws: dict[str, Any], owner: str, data: bytes) -> str:
    settings = Settings.from_env()
    digest = hashlib.sha256(data).hexdigest()
    aws["s3"].put_object(Bucket=settings.store_bucket, Key=original_key(digest), Body=data)
    FilesRepository(settings.files_table).claim(
        {
            "hash": digest,
            "status": "stored",
            "size": len(data),
            "contentType": "text/plain",
            "type": "text",
            "scanState": "done",  # scanned clean: nothing is served before (docpipe.scanning)
        }
    )
    JobsRepository(settings.jobs_table).create(
        {
            "jobId": "job-" + owner,
            "owner": owner,
            "name": "notes.txt",
            "state": "ready",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "hash": digest,
            "ownerHash": owner_hash(owner, digest),
            "size": len(data),
            "contentType": "text/plain",
            "type": "text",
            "plan": ["extract"],
        }
    )
    return digest


def test_file_metadata_only_for_owners_of_a_job_with_those_bytes(aws, call) -> None:
    digest = stored_file(aws, "alice", b"alice's notes")

    ok, meta, _ = call("GET", f"/files/{digest}", user="alice")
    denied, error, _ = call("GET", f"/files/{digest}", user="bob")

    assert (ok, meta["size"], meta["contentType"]) == (200, 13, "text/plain")
    assert (denied, error["code"]) == (404, "file.not_found")


def test_original_redirects_to_a_short_lived_signed_url(aws, call) -> None:
    digest = stored_file(aws, "alice", b"alice's notes")

    status, _, headers = call("GET", f"/files/{digest}/original")

    assert status == 302
    location = headers["Location"]
    assert f"files/{digest}/original" in location
    assert "X-Amz-Expires=300" in location
    assert "attachment" in location


def test_unknown_variant_is_404(aws, call) -> None:
    digest = stored_file(aws, "alice", b"x")
    status, error, _ = call("GET", f"/files/{digest}/thumbnail")
    assert (status, error["code"]) == (404, "variant.not_found")


def test_health_reports_dependencies_without_a_token(call) -> None:
    status, body, _ = call("GET", "/health", user=None)
    assert status == 200
    assert body["ok"] is True
    assert set(body["dependencies"].values()) == {"ok"}


def test_unknown_route_is_404_with_a_code(call) -> None:
    status, error, _ = call("GET", "/nope")
    assert (status, error["code"]) == (404, "route.not_found")


def test_openapi_schema_lists_the_routes() -> None:
    from api.handler import app

    schema = json.loads(app.get_openapi_json_schema(title="docpipe", version="0.1.0"))
    assert {"/uploads", "/jobs", "/jobs/{job_id}", "/files/{digest}", "/files/{digest}/{variant}", "/health"} <= set(
        schema["paths"]
    )


def test_an_image_uploaded_as_a_document_is_planned_for_ocr(call) -> None:
    asked = upload(call, "receipt.jpg", 5000, ocr=True)
    as_document = upload(call, "whiteboard.jpg", 5000, purpose="document")
    plain = upload(call, "cat.jpg", 5000)

    jobs = JobsRepository(Settings.from_env().jobs_table)
    assert [jobs.get(b["jobId"])["ocr"] for b in (asked, as_document, plain)] == [True, True, False]  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"extractState": "running"}, 202, "variant.pending"),
        ({"extractState": "ocr"}, 202, "variant.pending"),
        (
            {"extractState": "failed", "extractError": {"code": "pdf.encrypted", "message": "locked"}},
            422,
            "pdf.encrypted",
        ),
    ],
)
def test_text_that_is_not_made_yet_is_pending_or_failed(aws, call, fields, status, code) -> None:
    digest = stored_file(aws, "alice", b"alice's notes")
    FilesRepository(Settings.from_env().files_table).update(digest, fields)

    got, body, headers = call("GET", f"/files/{digest}/text")

    assert (got, body["code"]) == (status, code)
    if status == 202:
        assert headers["Retry-After"] == "2"


def test_made_text_is_a_redirect_or_for_a_page_its_url(aws, call) -> None:
    digest = stored_file(aws, "alice", b"alice's notes")
    artifact = {"key": f"text/{digest}.json", "contentType": "application/json", "pages": 1}
    FilesRepository(Settings.from_env().files_table).update(
        digest, {"extractState": "done", "extractArtifacts": {"text": artifact}}
    )

    redirect, _, headers = call("GET", f"/files/{digest}/text")
    page, body, _ = call("GET", f"/files/{digest}/text", accept="application/json")
    listed, meta, _ = call("GET", f"/files/{digest}")

    assert redirect == 302 and f"text/{digest}.json" in headers["Location"]
    assert (page, body["expiresIn"]) == (200, 300) and f"text/{digest}.json" in body["url"]
    assert (listed, meta["variants"]) == (200, ["original", "text"])

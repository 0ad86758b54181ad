"""Abandoned uploads end: a never-sent upload is ended by the stack's sweeper, and a client whose
upload S3 refuses cancels its job on the server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from docpipe_local.client import DocpipeClient, UploadError


def open_jobs(client: DocpipeClient) -> int:
    return next(row["used"] for row in client.usage()["limits"] if row["name"] == "OpenJobsPerUser")


def test_a_never_sent_upload_ends_as_upload_expired(stack) -> None:
    dana = DocpipeClient(stack.api_url, stack.token_for("zoë"))
    before = open_jobs(dana)
    created = dana.create_upload("never.txt", 10, "text/plain")  # the link lives 20 s, no grace
    assert open_jobs(dana) == before + 1

    job = dana.wait(created["jobId"], timeout=90)

    assert (job["state"], job["error"]["code"]) == ("failed", "upload.expired")
    assert open_jobs(dana) == before  # the place it held is given back


class RefusedUploads(DocpipeClient):
    """A client whose uploads S3 refuses: the presigned POST goes to a bucket that does not exist."""

    def create_upload(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        created = super().create_upload(*args, **kwargs)
        self.created = created
        created["upload"]["url"] = created["upload"]["url"].rstrip("/") + "-refused"
        return created


def test_a_client_whose_upload_s3_refuses_cancels_its_job(stack, tmp_path) -> None:
    client = RefusedUploads(stack.api_url, stack.token_for("carol"))
    (tmp_path / "refused.txt").write_bytes(b"S3 will refuse this")

    with pytest.raises(UploadError):
        client.upload_file(tmp_path / "refused.txt")

    assert client.job(client.created["jobId"])["state"] == "cancelled"


class RefusingStorage(BaseHTTPRequestHandler):
    """In front of the API: passes every request through, but hands out upload URLs of a "bucket" (this
    server) that answers every upload as S3 does a POST whose policy it refuses."""

    api = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.path.startswith("/refusing-bucket"):
            payload = b"<Error><Code>AccessDenied</Code><Message>Invalid according to Policy</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        answer = requests.request(self.command, self.api + self.path, headers=headers, data=body, timeout=30)
        payload = answer.content
        if self.command == "POST" and self.path == "/uploads" and answer.status_code == 201:
            created = answer.json()
            host, port = self.server.server_address[:2]
            created["upload"]["url"] = f"http://{host}:{port}/refusing-bucket"
            payload = json.dumps(created).encode()
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _relay


def test_docpipe_process_cancels_the_job_of_an_upload_s3_refuses(stack, carol, tmp_path) -> None:
    handler = type("Relay", (RefusingStorage,), {"api": stack.api_url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "refused.txt").write_bytes(b"the storage refuses this")
    before = {job["jobId"] for job in carol.jobs(limit=100)["jobs"]}
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "docpipe_local.cli",
                "process",
                str(tmp_path / "refused.txt"),
                "--json",
                "--api",
                f"http://127.0.0.1:{server.server_address[1]}",
                "--token",
                stack.token_for("carol"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()

    assert result.returncode == 1, result.stderr
    new = [job for job in carol.jobs(limit=100)["jobs"] if job["jobId"] not in before and job["name"] == "refused.txt"]
    assert [job["state"] for job in new] == ["cancelled"]

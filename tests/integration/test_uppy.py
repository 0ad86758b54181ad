"""The real client: stock Uppy (``uppy`` 4.18.3, with ``@uppy/aws-s3`` 4.3.2, installed from npm by ``make uppy``)
uploads a file in parts from headless Chromium through docpipe's Companion S3 routes; the job ends ready.

The page (tests/fixtures/uppy/index.html) is what an app that uses Uppy already has: ``AwsS3`` with ``endpoint``
and an ``Authorization`` header, nothing else written for docpipe. It is served from an origin of its own,
which the stack's ``AllowedOrigins`` names, so the browser's CORS checks of the API and of S3 are real.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from docpipe_local.client import DocpipeClient
from docpipe_local.stack import LocalStack
from tests.fixtures.browser import chrome, needs_browser

ROOT = Path(__file__).resolve().parents[2]
UPPY_DIST = ROOT / ".tools" / "uppy" / "node_modules" / "uppy" / "dist"
PAGE = ROOT / "tests" / "fixtures" / "uppy"
MIB = 1024 * 1024
# Uppy's default sends files over 100 MiB in parts (``shouldUseMultipart``): a 100 MiB file plus one MiB is.
SIZE = 101 * MIB

needs_uppy = pytest.mark.skipif(
    not (UPPY_DIST / "uppy.min.mjs").is_file(),
    reason="Uppy is not installed in .tools/uppy: run `make uppy` (needs node and npm)",
)


class _Page(SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path.startswith("/uppy/"):
            return str(UPPY_DIST / path.removeprefix("/uppy/"))
        return str(PAGE / "index.html")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Page, directory=str(PAGE)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


# Completed inside the API's request (the default, 256 MiB), and by CompleteFunction after a 202 (0: every upload).
@pytest.fixture(scope="module", params=["inline", "queued"])
def uppy_stack(
    page: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalStack]:
    parameters = {"AllowedOrigins": page, "UploadsPerMinute": "600"}
    if request.param == "queued":
        parameters["MultipartCompleteInlineBytes"] = "0"
    with LocalStack(state_dir=tmp_path_factory.mktemp("uppy"), tokens={"tok-uppy": "uppy"}, parameters=parameters) as s:
        yield s


@needs_browser
@needs_uppy
def test_stock_uppy_uploads_a_big_file_in_parts_and_the_job_ends_ready(uppy_stack: LocalStack, page: str) -> None:
    driver = next(chrome())
    try:
        driver.set_script_timeout(300)
        driver.get(page)
        deadline = time.monotonic() + 20
        while not driver.execute_script("return window.uppyReady === true") and time.monotonic() < deadline:
            time.sleep(0.1)
        raw = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.uploadWithUppy(arguments[0], arguments[1], arguments[2]).then(done, (e) => done(String(e)));",
            uppy_stack.api_url,
            "tok-uppy",
            SIZE,
        )
    finally:
        driver.quit()
    result = json.loads(raw)
    assert result["failed"] == [] and len(result["successful"]) == 1, result
    job_id = result["successful"][0]["uploadURL"].rsplit("/", 1)[-1]
    job = DocpipeClient(uppy_stack.api_url, "tok-uppy").wait(job_id, timeout=180)
    assert (job["state"], job["size"], job["name"]) == ("ready", SIZE, "from-uppy.txt"), job.get("error")
    assert job["parts"]["done"] == job["parts"]["total"] == 21  # Uppy's 5 MiB parts

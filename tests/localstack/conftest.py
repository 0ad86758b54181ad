"""The LocalStack suite's LocalStack: one for the whole package, run in host mode from ``.tools/localstack``
(``make localstack``), started and stopped by ``docpipe localstack start|stop`` on a free port; and the
local stack on it, S3 and SQS there, DynamoDB embedded (LocalStack's needs Java, which cannot be fetched).

Where LocalStack is not installed (no Python 3.13, or no package registry), every test here skips and
says why. The times of the suite, of LocalStack's start and of the samples on both stacks are printed
at the end of the run.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docpipe_local.stack import LocalStack
from tests.fixtures import suite_report
from tests.fixtures.cli import docpipe

ROOT = Path(__file__).resolve().parents[2]
LOCALSTACK_VENV = ROOT / ".tools" / "localstack"
TOKENS = {"tok-dev": "dev", "tok-lee": "lee"}
# Upload links short enough that an expired one is tried, and swept, within the suite.
UPLOAD_URL_SECONDS = 8
PARAMETERS = {"UploadsPerMinute": "600", "UploadUrlTtlSeconds": str(UPLOAD_URL_SECONDS), "UploadGraceSeconds": "0"}
SUITE = "LocalStack suite: times"  # printed at the end of the run (tests.fixtures.suite_report)


def why_not_installed() -> str | None:
    if (LOCALSTACK_VENV / ".installed").exists():
        return None
    if not (glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")) or shutil.which("python3.13")):
        return "no Python 3.13 for LocalStack's runtime, so `make localstack` could not install it"
    return "LocalStack is not installed in .tools/localstack: `make localstack` could not install it (it needs PyPI)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="package")
def localstack_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """LocalStack's URL, for the package's tests; started by ``docpipe localstack start``."""
    reason = why_not_installed()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("localstack")
    port = free_port()
    started = time.monotonic()
    start = docpipe("localstack", "start", "--port", str(port), cwd=folder)
    assert start.returncode == 0, start.stdout + start.stderr
    suite_report.record(SUITE, "LocalStack start", time.monotonic() - started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop = docpipe("localstack", "stop", cwd=folder, timeout=60)
        suite_report.record(SUITE, "LocalStack suite", time.monotonic() - started)
        assert stop.returncode == 0, stop.stdout + stop.stderr


@pytest.fixture(scope="package")
def stack(localstack_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        endpoint=localstack_url,
        embedded_services=("dynamodb",),
        state_dir=tmp_path_factory.mktemp("on-localstack"),
        tokens=dict(TOKENS),
        parameters=dict(PARAMETERS),
        schedule_every={"SweeperFunction": 1.0},
        # a name of its own: test_up's `docpipe up --localstack` (docpipe-local) shares this LocalStack, and two
        # stacks of one name would share its buckets and queues, each polling the other's messages
        stack_name="docpipe-parity",
    ) as local:
        yield local

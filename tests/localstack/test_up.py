"""`docpipe up` against LocalStack as a user runs it: `--localstack` finds it through localstack-client and
embeds what it cannot serve; `--endpoint` alone stops within seconds, saying which service and why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.cli import docpipe

pytestmark = [pytest.mark.slow, pytest.mark.localstack]

ROOT = Path(__file__).resolve().parents[2]


def test_up_on_an_endpoint_whose_dynamodb_fails_stops_within_15_s_and_says_what_to_do(localstack_url, tmp_path) -> None:
    started = time.monotonic()

    run = docpipe("up", "--endpoint", localstack_url, "--port", "0", cwd=tmp_path, timeout=60)

    took = time.monotonic() - started
    assert run.returncode == 2, run.stdout + run.stderr
    assert took < 15
    message = " ".join(run.stderr.split())
    assert "LocalStack's DynamoDB is not available (" in message
    assert "use --embedded dynamodb" in message
    assert not (tmp_path / ".docpipe" / "stack.json").exists()


def test_up_localstack_finds_it_through_localstack_client_and_embeds_its_dynamodb(localstack_url, tmp_path) -> None:
    # given LocalStack where LOCALSTACK_HOST says (localstack-client's configuration), and no other endpoint
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env["LOCALSTACK_HOST"] = localstack_url.removeprefix("http://")
    log = tmp_path / "up.log"  # a file, not a pipe: a pipe nobody reads until the end can fill and block it
    up = subprocess.Popen(
        [sys.executable, "-m", "docpipe_local.cli", "up", "--localstack", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = tmp_path / ".docpipe" / "stack.json"
    try:
        deadline = time.monotonic() + 60
        while not state_file.exists() and up.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state_file.exists(), log.read_text()
        state = json.loads(state_file.read_text())

        # then S3 and SQS are LocalStack's, DynamoDB the embedded emulator's
        assert state["endpoint"] == localstack_url
        assert state["dynamodb"] != localstack_url
        assert state["accountId"] == "000000000000"
        assert requests.get(f"{state['api']}/health", timeout=10).status_code == 200

        # and a file goes through, and a fixture replays from the same folder
        processed = docpipe(
            "process", str(ROOT / "samples/hello.txt"), "--json", "--timeout", "60", cwd=tmp_path, env=env
        )
        assert processed.returncode == 0, processed.stderr
        assert json.loads(processed.stdout)[0]["state"] == "ready"
        replayed = docpipe(
            "replay",
            str(ROOT / "events/IngestFunction/upload-photo.json"),
            "--seed",
            str(ROOT / "samples"),
            cwd=tmp_path,
            env=env,
        )
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert json.loads(replayed.stdout) == {"batchItemFailures": []}
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=30)
    printed = " ".join(log.read_text().split())
    assert code == 0, printed
    assert f"LocalStack at {localstack_url}" in printed
    assert "LocalStack's DynamoDB:" in printed and "embedded" in printed

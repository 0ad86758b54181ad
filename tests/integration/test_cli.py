"""The `docpipe` command as a user runs it: a real process, real HTTP, exit codes that mean something."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from docpipe_local.stack import LocalStack
from tests.fixtures.cli import docpipe
from tests.fixtures.files import image_bytes

ROOT = Path(__file__).resolve().parents[2]


def nothing_listens() -> str:
    """A loopback address where nothing listens (its port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def target(stack: LocalStack) -> list[str]:
    return ["--api", stack.api_url, "--token", stack.token_for("dev")]


def test_process_prints_json_results_and_exits_0_when_all_are_ready(target) -> None:
    run = docpipe("process", "samples/hello.txt", "samples/photo.jpg", "--json", *target)

    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    assert [(Path(r["file"]).name, r["state"]) for r in results] == [("hello.txt", "ready"), ("photo.jpg", "ready")]
    assert all(len(r["hash"]) == 64 and r["seconds"] > 0 for r in results)


def test_process_exits_1_when_a_job_fails(target, tmp_path) -> None:
    bad = tmp_path / "invoice.pdf"
    bad.write_bytes(image_bytes("JPEG", (40, 40)))

    run = docpipe("process", "samples/hello.txt", str(bad), *target)

    assert run.returncode == 1
    assert "file.type_mismatch" in run.stdout
    assert "1 of 2 ready" in run.stdout


def test_process_exits_2_for_a_missing_file(target) -> None:
    run = docpipe("process", "no/such/file.pdf", *target)
    assert run.returncode == 2
    assert "no such file" in run.stderr


def test_a_refused_upload_is_reported_with_its_code(target, tmp_path) -> None:
    exe = tmp_path / "setup.exe"
    exe.write_bytes(b"MZ" + bytes(100))

    run = docpipe("process", str(exe), "--json", *target)

    assert run.returncode == 1
    assert json.loads(run.stdout)[0]["error"]["code"] == "file.unsupported_type"


def test_jobs_lists_the_users_jobs(target) -> None:
    docpipe("process", "samples/cities.csv", *target)

    run = docpipe("jobs", "--json", *target)

    assert run.returncode == 0
    assert "cities.csv" in {job["name"] for job in json.loads(run.stdout)["jobs"]}


def test_jobs_without_a_stack_is_a_usage_error(tmp_path) -> None:
    run = docpipe("jobs", cwd=tmp_path)
    assert run.returncode == 2
    assert "docpipe up" in run.stderr


def test_replay_invokes_the_function_of_the_events_folder(stack, tmp_path) -> None:
    state = tmp_path / ".docpipe"
    state.mkdir()
    (state / "stack.json").write_text(
        json.dumps(
            {
                "api": stack.api_url,
                "endpoint": stack.endpoint,
                "token": stack.token_for("dev"),
                "invokeToken": stack.invoke_token,
            }
        )
    )

    run = docpipe("replay", str(ROOT / "events/ApiFunction/health.json"), cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["statusCode"] == 200


def test_process_without_a_stack_runs_an_embedded_one(tmp_path) -> None:
    run = docpipe("process", str(ROOT / "samples/report.pdf"), "--json", cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)[0]["state"] == "ready"
    assert "embedded" in run.stderr


def test_get_downloads_a_preset_and_waits_for_a_regenerated_one(stack, target, tmp_path) -> None:
    processed = json.loads(docpipe("process", "samples/photo.jpg", "--json", *target).stdout)[0]
    stack.client("s3").delete_object(
        Bucket=stack.template.physical_name("StoreBucket"), Key=f"derived/{processed['hash']}/thumbnail.webp"
    )

    run = docpipe("get", processed["jobId"], "thumbnail", "-o", str(tmp_path / "t.webp"), *target)

    assert run.returncode == 0, run.stderr
    from PIL import Image

    assert Image.open(tmp_path / "t.webp").size == (200, 150)


def test_up_localstack_without_localstack_is_a_usage_error(tmp_path) -> None:
    address = nothing_listens()
    env = {**{k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}, "LOCALSTACK_HOST": address}

    run = docpipe("up", "--localstack", "--port", "0", cwd=tmp_path, env=env, timeout=60)

    assert run.returncode == 2
    message = " ".join(run.stderr.split())
    assert f"LocalStack does not answer at http://{address}" in message
    assert "docpipe localstack start" in message


def test_up_on_an_endpoint_where_nothing_answers_stops_at_once(tmp_path) -> None:
    run = docpipe("up", "--endpoint", f"http://{nothing_listens()}", "--port", "0", cwd=tmp_path, timeout=60)

    assert run.returncode == 2
    message = " ".join(run.stderr.split())
    assert "S3 is not available (nothing answers there)" in message
    assert "use --embedded" in message
    assert not (tmp_path / ".docpipe" / "stack.json").exists()


def test_event_prints_a_fixture_with_a_deployed_stacks_buckets() -> None:
    run = docpipe(
        "event",
        "events/IngestFunction/upload-text.json",
        "--stack-name",
        "docpipe-prod",
        "--region",
        "eu-west-1",
        "--account",
        "111122223333",
    )

    assert run.returncode == 0, run.stderr
    body = json.loads(json.loads(run.stdout)["Records"][0]["body"])
    assert body["Records"][0]["s3"]["bucket"]["name"] == "docpipe-prod-uploads-111122223333-eu-west-1"


def test_localstack_stop_without_one_started_here_is_a_usage_error(tmp_path) -> None:
    run = docpipe("localstack", "stop", cwd=tmp_path)

    assert run.returncode == 2
    assert "no LocalStack was started from here" in " ".join(run.stderr.split())

"""The operators' console's buttons in headless Chromium against ``held_stack`` (presets high lane paused):
retry one job, redrive a dead-letter queue, clean old ended jobs. Each asks first (the dialog is accepted),
reports how many it touched, and the effect is checked in the stack itself (the job, the queues, the table).
The console's Functions table lists every function the template declares."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from docpipe_local.client import DocpipeClient
from docpipe_local.stack import LocalStack
from tests.fixtures.browser import chrome, needs_browser
from tests.fixtures.files import image_bytes
from tests.fixtures.page import open_page, wait_for

pytestmark = needs_browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chrome()


def console(browser: Any, stack: LocalStack) -> None:
    open_page(browser, f"{stack.api_url}/console.html#token={stack.token_for('ops')}&every=1000")
    wait_for(browser, "return !document.getElementById('console').hidden", 30)


def accept(browser: Any) -> str:
    """Accept the console's confirmation dialog; its question."""
    question = wait_for(
        browser,
        "const d = document.getElementById('confirm'); return d.open && d.querySelector('.question').textContent",
    )
    browser.execute_script("document.querySelector('#confirm .ok').click()")
    return str(question)


def reported(browser: Any, start: str) -> str:
    return str(
        wait_for(
            browser,
            "const r = document.getElementById('report');"
            f" return !r.hidden && r.textContent.startsWith({start!r}) && r.textContent",
            60,
        )
    )


def http(stack: LocalStack, user: str, method: str, path: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {stack.token_for(user)}"}
    return requests.request(method, stack.api_url + path, headers=headers, timeout=30)


def test_retry_one_runs_a_failed_job_again(browser: Any, held_stack: LocalStack, tmp_path: Path) -> None:
    # given one of alice's jobs failed (a photo cut in half, on the normal lane, which runs)
    alice = DocpipeClient(held_stack.api_url, held_stack.token_for("alice"))
    data = image_bytes("JPEG", (1600, 1200), seed=int(time.time() * 1000) % 100000)
    path = tmp_path / "torn.jpg"
    path.write_bytes(data[: len(data) // 2])
    job_id = alice.upload_file(path, priority="normal")["jobId"]
    try:
        assert alice.wait(job_id, timeout=90)["error"]["code"] == "file.corrupt"
        console(browser, held_stack)
        browser.execute_script(
            "const f = document.getElementById('filters'); f.elements.owner.value = 'alice';"
            " f.elements.state.value = 'failed'; f.requestSubmit();"
        )
        row = f"document.querySelector('#jobs tr[data-job-id=\"{job_id}\"]')"
        wait_for(browser, f"return {row}?.querySelector('.retry')", 30)

        # when the operator retries it from its row
        browser.execute_script(f"{row}.querySelector('.retry').click()")
        question = accept(browser)

        # then the console reports one job retried, and the job went back to work
        assert question == "Retry alice's job torn.jpg (file.corrupt)?"
        assert reported(browser, "Retried") == "Retried 1 job."
        states = [h["state"] for h in alice.job(job_id)["history"]]
        assert states.index("failed") < len(states) - 1, states  # queued (or further) after the failure
        again = alice.wait(job_id, timeout=90)
        assert (again["state"], again["error"]["code"]) == ("failed", "file.corrupt")  # the bytes are still cut
        assert [h["state"] for h in again["history"]].count("failed") == 2
    finally:  # leave no failed file.corrupt job for other tests' retry-all
        http(held_stack, "alice", "DELETE", f"/jobs/{job_id}?purge=true")


def test_redrive_moves_a_dead_letter_back_to_its_queue(browser: Any, held_stack: LocalStack) -> None:
    # given a message on the presets high lane's DLQ (the lane is paused, so it stays where it is moved)
    sqs = held_stack.client("sqs")
    dlq = sqs.get_queue_url(QueueName=held_stack.template.physical_name("PresetsHighDLQ"))["QueueUrl"]
    queue = sqs.get_queue_url(QueueName=held_stack.template.physical_name("PresetsHighQueue"))["QueueUrl"]
    marker = f"dead-letter-{time.time()}"
    body = json.dumps({"hash": "ab" * 32, "task": "presets", "marker": marker})
    sqs.send_message(QueueUrl=dlq, MessageBody=body, MessageGroupId="carol")
    console(browser, held_stack)
    button = "document.querySelector('#lanes tr[data-queue=\"presets-high\"] .redrive')"
    wait_for(browser, f"return {button} && !{button}.disabled", 30)

    # when the operator redrives it from the lane's row
    browser.execute_script(f"{button}.click()")
    question = accept(browser)

    # then the console reports one message moved, the DLQ is empty and the lane holds the message
    assert question == "Move the 1 message(s) of presets-high's dead-letter queue back to presets-high?"
    assert reported(browser, "Redrove") == "Redrove 1 message of presets-high's DLQ."
    assert sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"] == {
        "ApproximateNumberOfMessages": "0"
    }
    moved = []
    for _ in range(20):  # the paused lane also holds other tests' tasks: look through them
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=5).get("Messages", [])
        moved += [m for m in got if marker in m["Body"]]
        if moved or not got:
            break
    assert [json.loads(m["Body"]) for m in moved] == [json.loads(body)]
    assert wait_for(browser, f"return {button}.disabled", 10)  # the lane's row shows the DLQ empty


def test_clean_purges_only_the_ended_jobs_older_than_the_days_given(
    browser: Any, held_stack: LocalStack, tmp_path: Path
) -> None:
    # given two of alice's ready jobs, one of them last changed 40 days ago
    alice = DocpipeClient(held_stack.api_url, held_stack.token_for("alice"))
    seed = int(time.time() * 1000) % 100000
    ids = []
    for i in range(2):
        path = tmp_path / f"kept-{i}.png"
        path.write_bytes(image_bytes("PNG", (320, 240), seed=seed + i))
        ids.append(alice.upload_file(path, priority="normal")["jobId"])
    old, recent = (alice.wait(job_id, timeout=90) for job_id in ids)
    assert (old["state"], recent["state"]) == ("ready", "ready")
    long_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    held_stack.client("dynamodb").update_item(
        TableName=held_stack.template.physical_name("JobsTable"),
        Key={"jobId": {"S": old["jobId"]}},
        UpdateExpression="SET updatedAt = :t",
        ExpressionAttributeValues={":t": {"S": long_ago}},
    )
    console(browser, held_stack)

    # when the operator cleans ended jobs older than 30 days
    browser.execute_script(
        "const f = document.getElementById('clean'); f.elements.days.value = '30'; f.requestSubmit();"
    )
    question = accept(browser)

    # then the console reports one job purged with its stored file, and only the old job is gone
    assert question.startswith("Purge every ended job (ready, failed, cancelled) older than 30 days")
    assert reported(browser, "Purged") == "Purged 1 ended job older than 30 days (1 stored file deleted)."
    assert http(held_stack, "alice", "GET", f"/jobs/{old['jobId']}").status_code == 404
    assert http(held_stack, "alice", "GET", f"/jobs/{recent['jobId']}").json()["state"] == "ready"


def test_the_functions_table_lists_every_function_of_the_template(browser: Any, held_stack: LocalStack) -> None:
    console(browser, held_stack)

    shown = wait_for(
        browser,
        "const rows = [...document.querySelectorAll('#functions tbody tr')].map((r) => r.dataset.function);"
        " return rows.length ? rows : null",
        30,
    )

    expected = {"ingest", "scan", "presets", "extract", "ocr", "sweeper", "complete", "notifier", "push", "api"}
    assert set(shown) == expected and len(shown) == len(expected)
    assert len(held_stack.template.functions()) == len(expected)

"""The operators' console (``web/console.html``) in headless Chromium against a local stack whose presets
high lane is paused (``held_stack``): a lane's depth seen changing live while a batch arrives, a retry of
every failed job with a code, and what a user who is not an operator sees (and the routes answer)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from docpipe_local.client import DocpipeClient
from docpipe_local.stack import LocalStack
from tests.fixtures.browser import chrome, needs_browser
from tests.fixtures.files import image_bytes
from tests.fixtures.page import NO_SIDEWAYS_SCROLL, desktop, open_page, phone, wait_for

pytestmark = needs_browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chrome()


def console(browser: Any, stack: LocalStack, user: str) -> None:
    open_page(browser, f"{stack.api_url}/console.html#token={stack.token_for(user)}&every=1000")


DEPTH = """
const cell = document.querySelector('#lanes tr[data-queue="presets-high"] td[data-key="depth"]');
return cell ? [Number(cell.firstChild.textContent), Number(cell.querySelector('svg').dataset.max),
               Number(cell.querySelector('svg').dataset.points)] : null;
"""


def test_the_console_shows_a_lanes_depth_change_while_a_batch_arrives(browser, held_stack, tmp_path) -> None:
    console(browser, held_stack, "ops")
    before = wait_for(browser, DEPTH, 30)
    carol = DocpipeClient(held_stack.api_url, held_stack.token_for("carol"))
    batch = 4
    seed = int(time.time() * 1000) % 100000

    for i in range(batch):  # small images: the presets high lane, which is paused
        path = tmp_path / f"batch-{i}.png"
        path.write_bytes(image_bytes("PNG", (160, 120), seed=seed + i))
        carol.upload_file(path)

    after = wait_for(
        browser,
        DEPTH.replace("return cell ?", f"return cell && Number(cell.firstChild.textContent) >= {before[0] + batch} ?"),
        90,
    )
    assert after[0] >= before[0] + batch
    assert after[1] >= before[0] + batch  # the sparkline's live points rose with it
    assert after[2] >= 2


def corrupt(tmp_path: Path, name: str, seed: int) -> Path:
    data = image_bytes("JPEG", (1600, 1200), seed=seed)
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])  # cut in half: file.corrupt
    return path


def test_retry_all_by_code_moves_the_failed_jobs(browser, held_stack, tmp_path) -> None:
    carol = DocpipeClient(held_stack.api_url, held_stack.token_for("carol"))
    seed = int(time.time() * 1000) % 100000
    # the normal lane runs: each cut photo fails there with file.corrupt
    ids = [carol.upload_file(corrupt(tmp_path, f"cut-{i}.jpg", seed + i), priority="normal")["jobId"] for i in range(3)]
    failed = [carol.wait(job_id, timeout=90) for job_id in ids]
    assert [(j["state"], j["error"]["code"]) for j in failed] == [("failed", "file.corrupt")] * 3
    console(browser, held_stack, "ops")
    wait_for(browser, "return !document.getElementById('console').hidden", 30)

    browser.execute_script(
        "const form = document.getElementById('retry-code'); form.elements.code.value = 'file.corrupt';"
        " form.requestSubmit();"
    )
    question = wait_for(
        browser,
        "const d = document.getElementById('confirm'); return d.open && d.querySelector('.question').textContent",
    )
    browser.execute_script("document.querySelector('#confirm .ok').click()")
    report = wait_for(
        browser,
        "const r = document.getElementById('report'); return !r.hidden && r.textContent.startsWith('Retried') && r.textContent",
        60,
    )

    assert "file.corrupt" in question
    assert report.startswith("Retried 3 failed jobs with file.corrupt")
    for job_id in ids:  # each went back to work: a state after its first failure
        states = [h["state"] for h in carol.job(job_id)["history"]]
        assert states.index("failed") < len(states) - 1 or carol.job(job_id)["state"] != "failed", states


ADMIN_ROUTES = [
    ("GET", "/admin/queues", None),
    ("GET", "/admin/jobs", None),
    ("GET", "/admin/metrics", None),
    ("POST", "/admin/jobs/retry", {"code": "file.corrupt"}),
    ("POST", "/admin/dlq/redrive", {"queue": "presets-high"}),
    ("POST", "/admin/clean", {"olderThanDays": 30}),
]


def test_a_user_who_is_not_an_operator_sees_operators_only_and_the_routes_answer_403(browser, held_stack) -> None:
    console(browser, held_stack, "alice")

    shown = wait_for(
        browser,
        "const f = document.getElementById('forbidden'); return !f.hidden &&"
        " [f.querySelector('h2').textContent, document.getElementById('console').hidden]",
        30,
    )

    assert shown == ["Operators only", True]
    headers = {"Authorization": f"Bearer {held_stack.token_for('alice')}"}
    answers = {
        path: requests.request(method, held_stack.api_url + path, json=body, headers=headers, timeout=30)
        for method, path, body in ADMIN_ROUTES
    }
    assert {path: (r.status_code, r.json()["code"]) for path, r in answers.items()} == {
        path: (403, "auth.forbidden") for _, path, _ in ADMIN_ROUTES
    }


def test_the_console_fits_a_phone_its_tables_scroll_inside(browser, held_stack) -> None:
    console(browser, held_stack, "ops")
    phone(browser)
    try:
        wait_for(browser, "return document.querySelectorAll('#lanes tbody tr').length >= 12", 30)
        scroll_width, client_width, inner_width = browser.execute_script(NO_SIDEWAYS_SCROLL)
    finally:
        desktop(browser)

    assert inner_width == 375 and scroll_width <= client_width, (scroll_width, client_width)

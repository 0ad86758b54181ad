"""The upload page's uploads in parts (``web/parts.js``) in headless Chromium against a local stack whose
``MultipartThresholdBytes`` is 8 MiB, so a generated 40 MiB file goes in five parts of 8 MiB: paused after
some parts and resumed with only the missing ones; resumed after a reload by choosing the same file again;
started afresh when the upload it was in has ended. The link to storage is throttled (Chromium's network
emulation), so a pause or a reload lands halfway through, as it would for a person on a slow line.

Needs Chromium and ChromeDriver (`make browser`); without them these tests skip and say so.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from docpipe_local.stack import LocalStack
from tests.fixtures.browser import chrome, needs_browser
from tests.fixtures.page import open_page, wait_for

pytestmark = needs_browser

MIB = 1024 * 1024
PART = 8 * MIB
SIZE = 40 * MIB  # five parts
# The throttled link, slow enough that a pause after two parts lands with parts to go even when the
# machine is busy with other suites (at 6 MiB/s a busy run once saw every part sent before the pause).
LINK = 2 * MIB
PARTS = list(range(1, SIZE // PART + 1))


@pytest.fixture(scope="module")
def parts_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    parameters = {"MultipartThresholdBytes": str(PART), "UploadsPerMinute": "600"}
    with LocalStack(
        state_dir=tmp_path_factory.mktemp("parts-stack"), tokens={"tok-dana": "dana"}, parameters=parameters
    ) as local:
        yield local


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chrome()


def generated(path: Path, size: int = SIZE) -> str:
    """A text file of ``size`` bytes, no two MiB alike (and unlike any other name's); its SHA-256."""
    digest = hashlib.sha256()
    line = (hashlib.sha256(f"{path.name} {time.time()}".encode()).hexdigest() + "\n").encode()
    block = (line * (MIB // len(line) + 1))[:MIB]
    with path.open("wb") as fh:
        for i in range(size // MIB):
            chunk = f"{i:08d}".encode() + block[8:]
            fh.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def slow_link(browser: Any, bytes_per_second: int | None) -> None:
    """Throttle the page's uploads to ``bytes_per_second`` (``None``: full speed again)."""
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second or -1},
    )


def choose(browser: Any, path: Path) -> None:
    """Pick ``path`` in the page's file input (as a person's file dialog would) and press Upload."""
    browser.find_element("id", "files").send_keys(str(path))
    browser.find_element("id", "send").click()


CARD = "document.querySelector('.job')"


def held_parts(stack: LocalStack, job_id: str) -> list[int]:
    """The part numbers storage holds, as the API lists them."""
    headers = {"Authorization": f"Bearer {stack.token_for('dana')}"}
    answer = requests.get(f"{stack.api_url}/uploads/{job_id}/parts", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return [p["number"] for p in answer.json()["parts"]]


def job(stack: LocalStack, job_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {stack.token_for('dana')}"}
    return dict(requests.get(f"{stack.api_url}/jobs/{job_id}", headers=headers, timeout=30).json())


def wait_for_parts_sent(browser: Any, at_least: int, run: int = 0) -> str:
    """Wait until run ``run`` of the page's upload has sent ``at_least`` parts; the job id."""
    return str(
        wait_for(
            browser,
            "const c = document.querySelector('.job'); const p = c && window.docpipe.parts[c.dataset.jobId];"
            f" return p && p.runs.length > {run} && p.runs[{run}].sent.length >= {at_least} && c.dataset.jobId",
            90,
        )
    )


def test_a_big_file_paused_after_some_parts_resumes_with_only_the_missing_ones(
    browser: Any, parts_stack: LocalStack, tmp_path: Path
) -> None:
    # given a file over the threshold, uploading in parts over a slow link
    path = tmp_path / "field-notes.txt"
    sha256 = generated(path)
    open_page(browser, f"{parts_stack.api_url}/#token={parts_stack.token_for('dana')}")
    slow_link(browser, LINK)
    try:
        choose(browser, path)
        job_id = wait_for_parts_sent(browser, 2)

        # when the user pauses it
        browser.execute_script(f"{CARD}.querySelector('.pause').click()")
        assert wait_for(browser, f"return {CARD}.dataset.state === 'paused'", 10)
        time.sleep(1)  # what an aborted request had sent is storage's to keep or drop
        held = held_parts(parts_stack, job_id)
        assert 2 <= len(held) < len(PARTS), held
        shown = browser.execute_script(
            f"const c = {CARD}; return [c.querySelector('.resume').hidden, c.querySelector('.pause').hidden,"
            " c.querySelector('.progress').textContent]"
        )
        assert shown == [False, True, f"{len(held)}/{len(PARTS)} parts, paused"]
        assert job(parts_stack, job_id)["state"] == "uploading"
    finally:
        slow_link(browser, None)

    # and resumes it
    browser.execute_script(f"{CARD}.querySelector('.resume').click()")

    # then only the missing parts are sent, and the job ends ready with the file's bytes
    assert wait_for(browser, f"return {CARD}.dataset.state === 'ready'", 120)
    parts = browser.execute_script(f"return window.docpipe.parts[{job_id!r}]")
    assert parts["count"] == len(PARTS)
    assert [run["held"] for run in parts["runs"]] == [[], held]
    resumed = parts["runs"][1]
    assert sorted(resumed["sent"]) == sorted(set(PARTS) - set(held))
    assert resumed["puts"] == len(PARTS) - len(held)  # one PUT per missing part, none for a part held
    done = job(parts_stack, job_id)
    assert (done["state"], done["hash"], done["size"]) == ("ready", sha256, SIZE)
    assert browser.execute_script(f"return {CARD}.querySelector('.bar.upload .pct').textContent") == "100 %"
    assert (
        browser.execute_script("return Object.keys(localStorage).filter((k) => k.startsWith('docpipe.upload:'))") == []
    )


def test_after_a_reload_choosing_the_same_file_again_resumes_its_upload(
    browser: Any, parts_stack: LocalStack, tmp_path: Path
) -> None:
    # given an upload in parts halfway through when the page is reloaded
    path = tmp_path / "site-survey.txt"
    sha256 = generated(path)
    token = parts_stack.token_for("dana")
    open_page(browser, f"{parts_stack.api_url}/#token={token}")
    slow_link(browser, LINK)
    try:
        choose(browser, path)
        job_id = wait_for_parts_sent(browser, 1)
        saved = browser.execute_script(
            "return Object.entries(localStorage).filter(([k]) => k.startsWith('docpipe.upload:'))"
        )
        browser.refresh()
        wait_for(browser, "return document.readyState === 'complete'")
    finally:
        slow_link(browser, None)
    assert len(saved) == 1
    key, value = saved[0]
    assert json.loads(key[len("docpipe.upload:") :])[1:3] == ["site-survey.txt", SIZE]  # name, size (then lastModified)
    assert json.loads(value) == {"jobId": job_id, "partSize": PART, "partCount": len(PARTS), "checksum": "sha256"}
    assert token not in key + value
    time.sleep(1)
    held = held_parts(parts_stack, job_id)
    assert 1 <= len(held) < len(PARTS), held
    assert browser.execute_script("return document.querySelectorAll('.job').length") == 0

    # when the same file is chosen again
    choose(browser, path)

    # then the page resumes that upload: it sends only the missing parts, and the job ends ready
    assert wait_for(browser, f"return {CARD}.dataset.state === 'ready'", 120)
    assert browser.execute_script(f"return {CARD}.dataset.jobId") == job_id
    runs = browser.execute_script(f"return window.docpipe.parts[{job_id!r}].runs")
    assert [run["held"] for run in runs] == [held]
    assert sorted(runs[0]["sent"]) == sorted(set(PARTS) - set(held))
    assert runs[0]["puts"] == len(PARTS) - len(held)
    done = job(parts_stack, job_id)
    assert (done["state"], done["hash"], done["size"]) == ("ready", sha256, SIZE)
    assert done["history"][0]["parts"] == {"done": len(PARTS), "total": len(PARTS), "bytes": SIZE}


def test_a_file_whose_upload_has_ended_starts_afresh(browser: Any, parts_stack: LocalStack, tmp_path: Path) -> None:
    # given a file the page remembers as part of an upload whose job was cancelled
    path = tmp_path / "old-draft.txt"
    sha256 = generated(path)
    open_page(browser, f"{parts_stack.api_url}/#token={parts_stack.token_for('dana')}")
    slow_link(browser, LINK)
    try:
        choose(browser, path)
        job_id = wait_for_parts_sent(browser, 1)
        kept = browser.execute_script(
            "return Object.entries(localStorage).filter(([k]) => k.startsWith('docpipe.upload:'))"
        )
        headers = {"Authorization": f"Bearer {parts_stack.token_for('dana')}"}
        cancelled = requests.delete(f"{parts_stack.api_url}/jobs/{job_id}", headers=headers, timeout=30)
        assert cancelled.json()["state"] == "cancelled"
        open_page(browser, f"{parts_stack.api_url}/")
    finally:
        slow_link(browser, None)
    assert len(kept) == 1
    browser.execute_script("for (const [k, v] of arguments[0]) localStorage.setItem(k, v)", kept)

    # when the same file is chosen again
    choose(browser, path)

    # then a new upload sends every part, and its job ends ready
    assert wait_for(browser, f"return {CARD}.dataset.state === 'ready'", 120)
    new_id = browser.execute_script(f"return {CARD}.dataset.jobId")
    assert new_id != job_id
    runs = browser.execute_script(f"return window.docpipe.parts[{new_id!r}].runs")
    assert [(run["held"], sorted(run["sent"])) for run in runs] == [([], PARTS)]
    assert job(parts_stack, job_id)["state"] == "cancelled"
    assert (job(parts_stack, new_id)["state"], job(parts_stack, new_id)["hash"]) == ("ready", sha256)

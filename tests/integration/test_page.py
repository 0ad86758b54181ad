"""The upload page (``web/index.html``) in headless Chromium against the local stack, over real HTTP: files
dropped on it (a synthetic drop of real files), each one's upload and processing bars, its thumbnail, its
error code, its place in a paused lane and its cancel, updates by push, and a phone's width.

Needs Chromium and ChromeDriver (`make browser` installs Debian's packages where apt is available;
`make test` runs it first); without them these tests skip and say so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from docpipe_local.client import DocpipeClient
from docpipe_local.stack import LocalStack
from tests.fixtures.browser import chrome, needs_browser
from tests.fixtures.files import image_bytes
from tests.fixtures.page import NO_SIDEWAYS_SCROLL, card, desktop, drop_files, open_page, phone
from tests.fixtures.samples import text_pdf

pytestmark = needs_browser


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from chrome()


def upload_through_the_page(browser, stack: LocalStack, path) -> None:
    browser.get("about:blank")  # a fresh page: the same URL again would only change its fragment
    browser.get(f"{stack.api_url}/#token={stack.token_for('alice')}")
    browser.find_element("id", "files").send_keys(str(path))
    browser.find_element("id", "send").click()


def wait_for(browser, script: str, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(script))


LOADED = """
const images = [...document.querySelectorAll('.job .variants img')];
return images.length === 4 && images.every((i) => i.complete && i.naturalWidth > 0)
  ? Object.fromEntries(images.map((i) => [i.alt, [i.naturalWidth, i.naturalHeight]])) : null;
"""


def test_the_page_uploads_a_photo_and_shows_its_four_presets(browser, stack, tmp_path) -> None:
    path = tmp_path / "beach.jpg"
    path.write_bytes(image_bytes("JPEG", (2400, 1600), seed=21))

    upload_through_the_page(browser, stack, path)

    assert wait_for(browser, "return document.querySelector('.job .state')?.textContent === 'ready'")
    assert wait_for(browser, LOADED) == {
        "ai-vision": [2048, 1365],
        "ai-chat": [1920, 1280],
        "preview": [800, 533],
        "thumbnail": [200, 133],
    }


def test_the_page_waits_out_a_202_for_a_preset_being_remade(browser, stack, alice, tmp_path) -> None:
    path = tmp_path / "again.jpg"
    path.write_bytes(image_bytes("JPEG", (1600, 1200), seed=22))
    first = alice.wait(alice.upload_file(path)["jobId"], timeout=60)
    store = stack.template.physical_name("StoreBucket")
    stack.client("s3").delete_object(Bucket=store, Key=f"derived/{first['hash']}/preview.jpg")  # as if expired

    upload_through_the_page(browser, stack, path)  # the same bytes: ready at once, the preview must be remade

    assert wait_for(browser, LOADED)["preview"] == [800, 600]


def corrupt_jpeg(seed: int) -> bytes:
    """A photo cut in half: a JPEG's header, half its data, no end."""
    data = image_bytes("JPEG", (1600, 1200), seed=seed)
    return data[: len(data) // 2]


def test_three_dropped_files_upload_with_bars_a_thumbnail_and_a_code(browser, stack: LocalStack) -> None:
    seed = int(time.time() * 1000) % 100000
    files = [
        ("holiday photo.jpg", "image/jpeg", image_bytes("JPEG", (1200, 800), seed=seed)),
        ("report.pdf", "application/pdf", text_pdf([f"docpipe page test {seed}", "Numbers went up."])),
        ("broken.jpg", "image/jpeg", corrupt_jpeg(seed + 1)),
    ]
    open_page(browser, f"{stack.api_url}/#token={stack.token_for('alice')}")

    assert drop_files(browser, files) == 3

    for name in ("holiday photo.jpg", "report.pdf"):
        assert wait_for(browser, f"return ({card(name)})?.dataset.state === 'ready'", 90), name
    assert wait_for(browser, f"return ({card('broken.jpg')})?.dataset.state === 'failed'", 90)
    bars = browser.execute_script(
        "return [...document.querySelectorAll('.job')].map((c) => [c.querySelector('.name').textContent,"
        " c.querySelector('.bar.upload progress').value, c.querySelector('.bar.upload .pct').textContent,"
        " c.querySelector('.bar.processing progress').value])"
    )
    assert sorted(bars) == [
        ["broken.jpg", 100, "100 %", 100],
        ["holiday photo.jpg", 100, "100 %", 100],
        ["report.pdf", 100, "100 %", 100],
    ]
    thumb = wait_for(
        browser,
        f"const i = ({card('holiday photo.jpg')}).querySelector('.thumb');"
        " return !i.hidden && i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null",
    )
    assert thumb == [200, 133]
    error = browser.execute_script(
        f"const c = {card('broken.jpg')}; return [c.querySelector('.error code').textContent,"
        " c.querySelector('.error .plain').textContent, c.querySelector('.retry').hidden]"
    )
    assert error == ["file.corrupt", "The file is damaged or incomplete, so it could not be read.", False]
    # the text is fetched once the card is ready: a read right after it may find the preview still empty
    text = f"return ({card('report.pdf')}).querySelector('pre').textContent"
    assert wait_for(browser, f"{text}.startsWith('docpipe page test {seed}')", 30), browser.execute_script(text)


def test_processing_updates_arrive_by_push_while_the_poll_interval_is_long(browser, stack: LocalStack) -> None:
    token = stack.token_for("alice")
    config = requests.get(f"{stack.api_url}/config", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    push = config.json().get("push") if config.status_code == 200 else None
    if not push or not push.get("url"):
        pytest.skip(f"GET /config reports no push url (HTTP {config.status_code}): no push channel to test yet")
    open_page(browser, f"{stack.api_url}/#token={token}&poll=600000")  # ten minutes: polling cannot be it
    wait_for(browser, "return window.docpipe.push === 'push'", 30)

    drop_files(browser, [("pushed.jpg", "image/jpeg", image_bytes("JPEG", (900, 600), seed=int(time.time())))])

    assert wait_for(browser, f"return ({card('pushed.jpg')})?.dataset.state === 'ready'", 90)
    stats = browser.execute_script(
        f"return [window.docpipe.polls, window.docpipe.pushes, ({card('pushed.jpg')}).dataset.via]"
    )
    assert stats[0] <= 1 and stats[1] >= 1 and stats[2] == "push"  # one read after the upload, the rest pushed


def test_a_queued_job_is_cancelled_from_the_page(browser, held_stack: LocalStack) -> None:
    alice = DocpipeClient(held_stack.api_url, held_stack.token_for("alice"))
    open_page(browser, f"{held_stack.api_url}/#token={held_stack.token_for('alice')}")
    drop_files(browser, [("waits.png", "image/png", image_bytes("PNG", (300, 200), seed=int(time.time())))])

    # the presets high lane is paused: the job stays queued, and the page says where, approximately
    queue = wait_for(
        browser,
        f"const c = {card('waits.png')}; return c?.dataset.state === 'queued' && !c.querySelector('.queue').hidden"
        " ? c.querySelector('.queue').textContent : null",
        60,
    )
    assert queue.startswith("Queued in the high lane") and queue.endswith("(approximate)")
    job_id = browser.execute_script(f"return ({card('waits.png')}).dataset.jobId")
    browser.execute_script(f"({card('waits.png')}).querySelector('.cancel').click()")

    assert wait_for(browser, f"return ({card('waits.png')}).dataset.state === 'cancelled'", 30)
    assert alice.job(job_id)["state"] == "cancelled"
    assert browser.execute_script(f"return ({card('waits.png')}).querySelector('.retry').hidden") is False


def test_the_page_fits_a_phone_without_sideways_scrolling(browser, stack: LocalStack) -> None:
    open_page(browser, f"{stack.api_url}/#token={stack.token_for('alice')}")
    phone(browser)
    try:
        long_name = "a-very-long-file-name-that-a-phone-would-have-to-wrap-somewhere-" * 2 + ".jpg"
        drop_files(browser, [(long_name, "image/jpeg", image_bytes("JPEG", (1600, 900), seed=int(time.time())))])
        wait_for(browser, f"return ({card(long_name)})?.dataset.state === 'ready'", 90)
        wait_for(browser, LOADED)

        scroll_width, client_width, inner_width = browser.execute_script(NO_SIDEWAYS_SCROLL)
    finally:
        desktop(browser)

    assert inner_width == 375
    assert scroll_width <= client_width, (scroll_width, client_width)

"""The upload page (``web/index.html``) in headless Chromium against the local stack, over real HTTP.

Needs Chromium and ChromeDriver (`make browser` installs Debian's packages where apt is available;
`make test` runs it first); without them these tests skip and say so.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docpipe_local.stack import LocalStack
from tests.fixtures.browser import chrome, needs_browser
from tests.fixtures.files import image_bytes

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
const images = [...document.querySelectorAll('.job img')];
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

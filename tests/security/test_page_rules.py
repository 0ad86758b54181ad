"""The upload page's rules, in headless Chromium against the local stack: it sends its token only to its
own origin or a listed API, keeps the token in the tab's sessionStorage, and its Content-Security-Policy
keeps it from talking to any other host. Needs Chromium and ChromeDriver (`make browser`)."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from docpipe_local.stack import LocalStack
from tests.fixtures.browser import chrome, needs_browser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chrome()


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[tuple[str, list[str]]]:
    """Another host on this machine that writes down every request it gets (and allows any origin)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Headers", "*")
            self.send_header("Access-Control-Allow-Methods", "*")
            self.end_headers()

        do_POST = do_OPTIONS = do_DELETE = do_GET

    for url in serve(Handler):
        yield url, seen


def wait_for(browser: Any, script: str, timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(script))


def open_page(browser: Any, url: str) -> None:
    browser.get("about:blank")  # a fresh page: the same URL again would only change its fragment
    browser.get(url)
    wait_for(browser, "return document.readyState === 'complete'")


# ------------------------------------------------------------------ over HTTP
def test_the_served_page_has_a_content_security_policy_without_inline_script(stack: LocalStack) -> None:
    page = requests.get(f"{stack.api_url}/", timeout=30).text

    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"', page)

    assert policy, "no Content-Security-Policy meta"
    directives = {d.split()[0]: d.split()[1:] for d in policy.group(1).split("; ")}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"] and "<script>" not in page
    assert stack.endpoints.get("s3", stack.endpoint) in directives["connect-src"]
    assert requests.get(f"{stack.api_url}/app.js", timeout=30).headers["Content-Type"].startswith("text/javascript")


# ------------------------------------------------------------------ in the browser
@needs_browser
def test_an_api_in_the_links_fragment_on_another_host_is_ignored(browser, stack, elsewhere, tmp_path) -> None:
    other, seen = elsewhere
    path = tmp_path / "hello.txt"
    path.write_text("hello from the page\n")

    open_page(browser, f"{stack.api_url}/#api={other}&token={stack.token_for('alice')}")
    browser.find_element("id", "files").send_keys(str(path))
    browser.find_element("id", "send").click()

    assert browser.execute_script("return document.getElementById('api').value") == stack.api_url
    assert wait_for(browser, "return document.querySelector('.job .state')?.textContent === 'ready'")
    assert seen == []


@needs_browser
def test_the_token_from_the_link_lives_in_session_storage_and_leaves_the_address_bar(browser, stack) -> None:
    open_page(browser, f"{stack.api_url}/#token={stack.token_for('alice')}")
    browser.find_element("id", "send").click()  # no files: the page only remembers its settings

    stored = browser.execute_script(
        "return [sessionStorage.getItem('docpipe.token'), localStorage.getItem('docpipe.token'), location.href]"
    )
    assert stored == [stack.token_for("alice"), None, f"{stack.api_url}/"]


@needs_browser
def test_the_page_forgets_a_token_an_older_page_left_in_local_storage(browser, stack) -> None:
    open_page(browser, f"{stack.api_url}/")
    browser.execute_script("sessionStorage.clear(); localStorage.setItem('docpipe.token', 'tok-alice')")

    open_page(browser, f"{stack.api_url}/")

    assert browser.execute_script("return [localStorage.getItem('docpipe.token'), token.value]") == [None, ""]


@needs_browser
def test_the_content_security_policy_keeps_the_page_from_other_hosts(browser, stack, elsewhere) -> None:
    other, seen = elsewhere
    open_page(browser, f"{stack.api_url}/")

    outcome = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {mode: 'no-cors'}).then(() => done('sent'), () => done('blocked'));",
        f"{other}/steal",
    )

    assert outcome == "blocked" and seen == []


@pytest.fixture
def hosted_page(stack: LocalStack, tmp_path: Path) -> Iterator[str]:
    """The page hosted apart from the API (as on AWS), with the stack's API listed in its meta."""
    for name in ("index.html", "connection.js", "app.js", "parts.js", "app.css"):
        (tmp_path / name).write_bytes((ROOT / "web" / name).read_bytes())
    page = tmp_path / "index.html"
    page.write_text(
        page.read_text().replace(
            '<meta name="docpipe-api-origins" content="">',
            f'<meta name="docpipe-api-origins" content="{stack.api_url}/">',
        )
    )

    class Static(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    yield from serve(functools.partial(Static, directory=str(tmp_path)))  # type: ignore[arg-type]


@needs_browser
def test_a_page_hosted_elsewhere_talks_to_the_api_its_meta_lists(browser, stack, hosted_page, elsewhere) -> None:
    other, _ = elsewhere

    open_page(browser, f"{hosted_page}/#api={other}")

    options = browser.execute_script("return [...document.querySelectorAll('#api option')].map((o) => o.value)")
    assert options == [stack.api_url, hosted_page]
    assert browser.execute_script("return document.getElementById('api').value") == stack.api_url

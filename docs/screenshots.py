"""Screenshots of the upload page and the operators' console for the README: ``make screenshots``.

Starts a local stack (``ops`` an operator), drops the bundled samples and a cut photo on the page in
headless Chromium, waits for them to end, runs a small batch so the console has something to show, and
saves ``docs/page.png`` and ``docs/console.png``. Needs Chromium and ChromeDriver (``make browser``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from docpipe_local.client import DocpipeClient  # noqa: E402
from docpipe_local.stack import LocalStack  # noqa: E402
from tests.fixtures.browser import chrome  # noqa: E402
from tests.fixtures.files import image_bytes  # noqa: E402
from tests.fixtures.page import drop_files, open_page, wait_for  # noqa: E402
from tests.fixtures.samples import text_pdf  # noqa: E402

TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".pdf": "application/pdf", ".txt": "text/plain"}


def main() -> None:
    photo = image_bytes("JPEG", (1600, 1066), seed=11)
    files = [
        ("beach.jpg", TYPES[".jpg"], photo),
        ("diagram.png", TYPES[".png"], image_bytes("PNG", (400, 300), seed=3)),
        ("report.pdf", TYPES[".pdf"], text_pdf(["docpipe sample report", "Quarterly numbers went up."])),
        ("broken.jpg", TYPES[".jpg"], photo[: len(photo) // 2]),
    ]
    tokens = {"tok-alice": "alice", "tok-ops": "ops"}
    with (
        tempfile.TemporaryDirectory() as state,
        LocalStack(state_dir=state, tokens=tokens, admins={"ops"}, parameters={"UploadsPerMinute": "600"}) as stack,
    ):
        for browser in chrome():
            browser.set_window_size(1100, 900)
            open_page(browser, f"{stack.api_url}/#token=tok-alice")
            drop_files(browser, files)
            wait_for(
                browser,
                "return [...document.querySelectorAll('.job')].length === 4 &&"
                " [...document.querySelectorAll('.job')].every((c) => ['ready', 'failed'].includes(c.dataset.state))",
                180,
            )
            wait_for(
                browser, "return [...document.querySelectorAll('.job img:not([hidden])')].every((i) => i.complete)"
            )
            time.sleep(1)
            browser.save_screenshot(str(ROOT / "docs" / "page.png"))

            alice = DocpipeClient(stack.api_url, "tok-alice")
            with tempfile.TemporaryDirectory() as folder:
                for i in range(6):
                    path = Path(folder) / f"batch-{i}.png"
                    path.write_bytes(image_bytes("PNG", (1200, 900), seed=100 + i))
                    alice.upload_file(path, priority="low")
            open_page(browser, f"{stack.api_url}/console.html#token=tok-ops&every=1000")
            wait_for(browser, "return !document.getElementById('console').hidden", 60)
            time.sleep(15)  # a few live points, and the functions' first published minute
            browser.execute_script("document.querySelector('#filters').requestSubmit()")
            time.sleep(2)
            browser.set_window_size(1300, 1500)
            browser.save_screenshot(str(ROOT / "docs" / "console.png"))
    print("wrote docs/page.png and docs/console.png")


if __name__ == "__main__":
    main()

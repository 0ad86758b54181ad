"""Screenshots of the upload page and the operators' console for the README: ``make screenshots``.

Starts a local stack (``ops`` an operator), drops a photo, a diagram, a PDF and a cut photo on the page in
headless Chromium with its push channel live, waits for them to end, then sends a 40 MiB file in parts over a
throttled link and pauses it halfway; then opens the console and runs a mixed batch for a few minutes so its
lanes and functions have something to show, and saves ``docs/page.png`` and ``docs/console.png``. Needs Chromium and ChromeDriver (``make browser``).
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


MIB = 1024 * 1024
PAGE = """const cards = [...document.querySelectorAll('.job')];
return cards.length === 4 && cards.every((c) => ['ready', 'failed'].includes(c.dataset.state))"""
PARTS_SENT = """const c = document.querySelector('.job'); const p = c && window.docpipe.parts[c.dataset.jobId];
return p && p.runs.length && p.runs[0].sent.length >= 2"""


def big_text(path: Path, size: int) -> None:
    """A text file of ``size`` bytes (a survey's scanned notes, say), no two MiB alike."""
    line = b"station 14, north transect: lichen cover 35 %, soil moist, two samples bagged\n"
    block = (line * (MIB // len(line) + 1))[:MIB]
    with path.open("wb") as fh:
        for i in range(size // MIB):
            fh.write(f"{i:08d}".encode() + block[8:])


def workload(stack: LocalStack, token: str, folder: Path, seconds: float) -> None:
    """A few minutes of a small mixed batch: photos and diagrams on every lane, a PDF, now and then a cut
    photo (file.corrupt), so the console's lanes and functions have something to show."""
    client = DocpipeClient(stack.api_url, token)
    started, i = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        kinds = [
            (f"photo-{i}.jpg", image_bytes("JPEG", (1600, 1200), seed=200 + i), "normal"),
            (f"plan-{i}.png", image_bytes("PNG", (1200, 900), seed=400 + i), "low"),
            (f"icon-{i}.png", image_bytes("PNG", (200, 150), seed=600 + i), "high"),
            (f"memo-{i}.pdf", text_pdf([f"memo {i}", "Numbers went up again."]), "normal"),
        ]
        if i % 3 == 2:
            photo = image_bytes("JPEG", (1600, 1200), seed=800 + i)
            kinds.append((f"torn-{i}.jpg", photo[: len(photo) // 2], "normal"))
        for name, data, priority in kinds:
            path = folder / name
            path.write_bytes(data)
            client.upload_file(path, priority=priority)
        i += 1
        time.sleep(6)


def main() -> None:
    photo = image_bytes("JPEG", (1600, 1066), seed=11)
    files = [
        ("beach.jpg", TYPES[".jpg"], photo),
        ("diagram.png", TYPES[".png"], image_bytes("PNG", (400, 300), seed=3)),
        ("report.pdf", TYPES[".pdf"], text_pdf(["docpipe sample report", "Quarterly numbers went up."])),
        ("broken.jpg", TYPES[".jpg"], photo[: len(photo) // 2]),
    ]
    tokens = {"tok-alice": "alice", "tok-ops": "ops"}
    # A small threshold, so that a 40 MiB file goes in parts (paused halfway through in the page's picture).
    parameters = {"UploadsPerMinute": "600", "MultipartThresholdBytes": str(8 * MIB)}
    with (
        tempfile.TemporaryDirectory() as state,
        tempfile.TemporaryDirectory() as folder,
        LocalStack(state_dir=state, tokens=tokens, admins={"ops"}, parameters=parameters) as stack,
    ):
        user, operator = stack.token_for("alice"), stack.token_for("ops")  # JWTs: the push channel takes them
        for browser in chrome():
            browser.set_window_size(1100, 1500)
            open_page(browser, f"{stack.api_url}/#token={user}")
            wait_for(browser, "return window.docpipe.push === 'push'", 30)
            drop_files(browser, files)
            wait_for(browser, PAGE, 180)
            wait_for(
                browser, "return [...document.querySelectorAll('.job img:not([hidden])')].every((i) => i.complete)"
            )
            big = Path(folder) / "survey-notes.txt"
            big_text(big, 40 * MIB)
            browser.execute_cdp_cmd("Network.enable", {})
            conditions = {"offline": False, "latency": 0, "downloadThroughput": -1}
            browser.execute_cdp_cmd("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": 6 * MIB})
            browser.find_element("id", "files").send_keys(str(big))
            browser.find_element("id", "send").click()
            wait_for(browser, PARTS_SENT, 60)
            browser.execute_script("document.querySelector('.job .pause').click()")
            browser.execute_cdp_cmd("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": -1})
            wait_for(browser, "return window.docpipe.push === 'push'", 30)
            time.sleep(1)
            browser.save_screenshot(str(ROOT / "docs" / "page.png"))

            open_page(browser, f"{stack.api_url}/console.html#token={operator}&every=1000")
            wait_for(browser, "return !document.getElementById('console').hidden", 60)
            workload(stack, user, Path(folder), 150)
            time.sleep(20)  # the batch's tail, and the functions' last published minute
            browser.execute_script("document.querySelector('#filters').requestSubmit()")
            time.sleep(2)
            browser.set_window_size(1300, 1600)
            browser.save_screenshot(str(ROOT / "docs" / "console.png"))
    print("wrote docs/page.png and docs/console.png")


if __name__ == "__main__":
    main()

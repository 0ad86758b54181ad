"""OCR admission against an emulated Textract that throttles above N calls a second (issue 21).

    .venv/bin/python bench/textract_admission.py [--tps 5] [--workers 16] [--seconds 15]

W workers (threads, as many OCR invocations) read pages through the real :class:`ocr.engines.TextractEngine`
for S seconds. The Textract behind it is a fake for this bench only: a token bucket of N calls a second
(burst N), as AWS throttles, answering ``ThrottlingException`` past it, each call taking 60 ms. Two runs:

- **with admission**: the engine takes a token of the shared bucket (:mod:`docpipe.admission`, in a
  UsageTable created from template.yaml in moto) before each call; ``ocr.busy`` hands the page back
  (here: the worker waits the message's delay, 1 s, and takes the next page).
- **without**: the engine as it was, retrying each throttle with exponential backoff and jitter.

Printed: calls made, the share throttled, pages read a second against N.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/docpipe"), str(ROOT / "functions/ocr"), str(ROOT / "local")]


class ThrottlingTextract:
    """``DetectDocumentText`` behind a token bucket of ``tps`` a second with a burst of ``tps``."""

    def __init__(self, tps: float, latency: float = 0.06) -> None:
        self.tps, self.latency = tps, latency
        self.tokens, self.at = tps, time.monotonic()
        self.lock = threading.Lock()
        self.calls = self.throttled = 0

    def detect_document_text(self, **_: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.tps, self.tokens + (now - self.at) * self.tps)
            self.at = now
            self.calls += 1
            if self.tokens < 1:
                self.throttled += 1
                raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "Detect")
            self.tokens -= 1
        time.sleep(self.latency)
        return {"Blocks": [{"BlockType": "LINE", "Page": 1, "Text": "a page", "Confidence": 99.0}]}


def run(tps: float, workers: int, seconds: float, admitted: bool) -> dict[str, float]:
    from docpipe.adapters.tokens import TokenStore
    from docpipe.admission import Admission
    from docpipe.errors import OcrBusy, OcrUnavailable
    from ocr.engines import TextractEngine

    fake = ThrottlingTextract(tps)
    table = _usage_table()
    pages = [0]
    lock = threading.Lock()
    image = _png()
    TokenStore(table).rate()  # the client made and the table warm before the clock starts
    stop = time.monotonic() + seconds

    def worker() -> None:
        admission = Admission(TokenStore(table), tps, wait_seconds=2.0) if admitted else None
        engine = TextractEngine(fake, admission=admission)
        while time.monotonic() < stop:
            try:
                engine.image(image)
            except OcrBusy:
                time.sleep(1.0)  # the message's delay before it is received again
                continue
            except OcrUnavailable:  # retries spent: the message comes back after its backoff
                time.sleep(1.0)
                continue
            if time.monotonic() < stop:  # pages read within the run's time
                with lock:
                    pages[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "calls": fake.calls,
        "throttled": fake.throttled,
        "share": fake.throttled / max(1, fake.calls),
        "pages_per_s": pages[0] / seconds,
    }


def _usage_table() -> str:
    import os

    from docpipe_local.template import Template

    template = Template.load(ROOT / "template.yaml")
    for spec in template.functions().values():
        os.environ.update(spec.environment(template))
    return os.environ["USAGE_TABLE"]


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (60, 40), 255).save(out, "PNG")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tps", type=float, default=5.0, help="the emulated Textract's quota (N)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent OCR invocations")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each run")
    args = parser.parse_args()

    import os

    import boto3
    from moto import mock_aws

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    from docpipe import aws
    from docpipe_local.emulator import serialize_dynamodb_writes
    from docpipe_local.provision import provision
    from docpipe_local.template import Template

    serialize_dynamodb_writes()
    print(
        f"emulated Textract: {args.tps:g} calls/s (token bucket, burst {args.tps:g}); "
        f"{args.workers} workers; {args.seconds:g} s a run"
    )
    print(f"{'run':<20}{'calls':>8}{'throttled':>11}{'share':>9}{'pages/s':>10}{'of N':>8}")
    for admitted in (True, False):
        with mock_aws():
            aws.reset()
            provision(Template.load(ROOT / "template.yaml"), {n: boto3.client(n) for n in ("s3", "sqs", "dynamodb")})
            r = run(args.tps, args.workers, args.seconds, admitted)
        name = "with admission" if admitted else "without admission"
        print(
            f"{name:<20}{r['calls']:>8.0f}{r['throttled']:>11.0f}{r['share']:>9.1%}"
            f"{r['pages_per_s']:>10.2f}{r['pages_per_s'] / args.tps:>8.0%}"
        )


if __name__ == "__main__":
    main()

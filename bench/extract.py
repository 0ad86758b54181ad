"""Text extraction against pdftotext, and OCR seconds per page with accuracy, in one run.

    python bench/extract.py [--pages 200] [--runs 3] [--ocr-pages 3]

1. A generated PDF of ``--pages`` pages (40 lines of text each, Helvetica) through docpipe's
   extractor (``extract.formats.extract``: pypdfium2) and through ``pdftotext`` (poppler; ``apt
   install poppler-utils``) on the same file; pypdf is timed too, as the design card's first choice.
   Best of ``--runs``; pdftotext's time includes starting its process (a few ms), ours runs in-process,
   once on every CPU this process may use (the default) and once in one process. Target: ours ≤ 2x
   pdftotext. On Lambda a function gets about one vCPU per 1769 MB, so the one-process row is what
   an ExtractFunction of 1024 MB does per invocation; longer PDFs spread over invocations in ranges.
2. OCR: ``--ocr-pages`` scanned letter pages (30 lines of 12 pt text, scanned at 300 dpi) through the
   local OCR engine (Tesseract, tessdata-fast), seconds per page and character accuracy against the
   text that was drawn.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers/docpipe"), str(ROOT / "functions/extract"), str(ROOT / "functions/ocr")]

from extract.formats import extract  # noqa: E402
from ocr.engines import PdfSource, TesseractEngine  # noqa: E402
from tests.fixtures.documents import accuracy, pdf  # noqa: E402

WORDS = [
    "invoice",
    "payment",
    "quarter",
    "design",
    "pipeline",
    "document",
    "thirty",
    "billing",
    "support",
    "service",
    "choose",
    "date",
]


def line(page: int, n: int) -> str:
    words = [WORDS[(page * 7 + n * 3 + i) % len(WORDS)] for i in range(9)]
    return f"{page}.{n} " + " ".join(words).capitalize() + "."


def best(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ocr-pages", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("pdftotext"):
        sys.exit("pdftotext is not installed (apt install poppler-utils)")
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    pages = [[line(p, n) for n in range(40)] for p in range(1, args.pages + 1)]
    data = pdf(pages, title="bench")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "bench.pdf"
        source.write_bytes(data)
        ours = best(args.runs, lambda: extract(data, "pdf"))  # pages over the CPUs this process may use
        single = best(args.runs, lambda: extract(data, "pdf", workers=1))
        poppler = best(
            args.runs,
            lambda: subprocess.run(["pdftotext", "-layout", str(source), str(Path(tmp) / "out.txt")], check=True),
        )
        from io import BytesIO

        from pypdf import PdfReader

        pypdf_time = best(1, lambda: [p.extract_text() for p in PdfReader(BytesIO(data)).pages])
    result = extract(data, "pdf")
    assert len(result.pages) == args.pages and result.pages[-1].text.splitlines()[0] == pages[-1][0]

    print(f"text extraction: {args.pages}-page PDF ({len(data) / 1e6:.1f} MB), best of {args.runs}")
    print(f"{'engine':28}{'seconds':>9}{'pages/s':>9}{'vs pdftotext':>14}")
    cpus = len(os.sched_getaffinity(0))
    for name, seconds in (
        (f"docpipe, {cpus} CPUs", ours),
        ("docpipe, 1 process", single),
        ("pdftotext (poppler)", poppler),
        ("pypdf (1 run)", pypdf_time),
    ):
        print(f"{name:28}{seconds:9.3f}{args.pages / seconds:9.0f}{seconds / poppler:13.2f}x")
    print(
        f"ours/pdftotext = {ours / poppler:.2f} (target ≤ 2.0: {'ok' if ours / poppler <= 2 else 'missed'});"
        f" one process {single / poppler:.2f}"
    )

    truth = [[line(900 + p, n) for n in range(30)] for p in range(args.ocr_pages)]
    scanned = pdf(truth, scanned=frozenset(range(1, args.ocr_pages + 1)), dpi=300)
    engine = TesseractEngine()
    engine.pdf_pages(PdfSource(data=pdf([truth[0]], scanned=frozenset({1}))), [1])  # load the models first
    started = time.perf_counter()
    read = engine.pdf_pages(PdfSource(data=scanned), list(range(1, args.ocr_pages + 1)))
    per_page = (time.perf_counter() - started) / args.ocr_pages
    scores = [accuracy(page.text, "\n".join(lines)) for page, lines in zip(read, truth, strict=True)]
    print(f"\nOCR (Tesseract, tessdata-fast, 300 dpi, 1 thread): {args.ocr_pages} letter pages of 30 lines")
    print(
        f"seconds per page {per_page:.2f}; character accuracy min {min(scores):.4f}, mean {sum(scores) / len(scores):.4f}"
    )


if __name__ == "__main__":
    main()

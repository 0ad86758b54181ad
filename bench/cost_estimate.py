"""ESTIMATE, NOT MEASURED: the hand-entered cost model, kept as a fallback of ``bench/cost.py`` (which
measures the same items on the local stack). What 1,000 files cost on AWS, itemised, against the
original design's baseline (issue 21), from per-task inputs typed in below.

    .venv/bin/python bench/cost_estimate.py [--dedupe 0.3] [--measured inputs.json]

The model multiplies, per task of the bench mix (bench/simulate.py's ``MIX``), the billed duration at the
function's MemorySize and the requests each task makes to S3, SQS and DynamoDB by the prices in
``prices.PRICES`` (us-east-1, dated, with their source pages). ``--measured`` replaces the inputs with a JSON of
the same shape as ``TASKS`` (seconds, memory_mb, s3_put, s3_get, sqs, ddb_read, ddb_write, log_kb).

What is measured and what is not: the durations are this machine's (DESIGN.md section 9 and the
bench's per-task times, at the template's MemorySize); the request counts are counted from each task's
code path (one call per adapter method it runs), not yet recorded per invocation on the local stack.
Tesseract's accuracy on the bench's scans is not measured here (the bench's scans are exact text
rendered by the corpus, which Tesseract reads exactly: tests/unit/test_ocr_engines.py); Textract's is
not measurable offline.

The baseline is what the original design pays: every file processed (no dedupe), every image and scan
OCR'd by Textract, on x86_64.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from prices import PRICES, PRICES_DATE


@dataclass
class Task:
    seconds: float  # billed duration of one invocation
    memory_mb: int  # the template's MemorySize
    s3_put: float = 0
    s3_get: float = 0
    sqs: float = 0  # send + receive + delete
    ddb_read: float = 0
    ddb_write: float = 0
    log_kb: float = 2


# One invocation of each task (per file; OCR per page).
TASKS = {
    "api": Task(0.05, 512, ddb_read=2, ddb_write=4, log_kb=1),  # POST /uploads + a few GET /jobs polls
    "ingest": Task(0.12, 1024, s3_put=1, s3_get=2, sqs=3, ddb_read=3, ddb_write=6),  # copy + delete upload
    "scan": Task(0.25, 2048, s3_get=1, sqs=3, ddb_read=2, ddb_write=3),
    "presets": Task(0.45, 1769, s3_put=4, s3_get=1, sqs=3, ddb_read=3, ddb_write=4),
    "extract": Task(0.30, 1024, s3_put=1, s3_get=1, sqs=3, ddb_read=3, ddb_write=4),
    "ocr": Task(3.0, 2048, s3_put=1, s3_get=1, sqs=3, ddb_read=3, ddb_write=4),
}
# The bench mix: (share, tasks after scan, OCR pages, stored MB, derived MB).
MIX = [
    (0.55, ("presets",), 0, 0.6, 0.4),
    (0.20, ("presets",), 0, 4.0, 0.8),
    (0.15, ("extract",), 0, 0.5, 0.05),
    (0.05, ("extract", "ocr"), 2, 1.5, 0.05),
    (0.05, ("presets",), 0, 20.0, 0.9),
]
ORIGINAL_MONTHS = 1.0  # originals kept while referenced (jobs live 30 days)
DERIVED_MONTHS = 7 / 30  # presets expire after 7 days
TEXTRACT_SECONDS = 1.2  # an OCR invocation waiting on Textract instead of computing


def cost(files: int, dedupe: float, ocr: str, arch: str, baseline: bool = False) -> dict[str, float]:
    """Dollars for ``files`` uploads, by item."""
    p = PRICES
    items: dict[str, float] = dict.fromkeys(
        ("lambda GB-s", "lambda requests", "SQS", "S3 requests", "S3 storage", "DynamoDB", "Textract", "logs"), 0.0
    )

    def run(name: str, count: float, seconds: float | None = None) -> None:
        t = TASKS[name]
        items["lambda GB-s"] += count * (seconds or t.seconds) * t.memory_mb / 1024 * p[f"lambda_gb_s_{arch}"]
        items["lambda requests"] += count * p["lambda_request"]
        items["SQS"] += count * t.sqs * p["sqs_request"]
        items["S3 requests"] += count * (t.s3_put * p["s3_put"] + t.s3_get * p["s3_get"])
        items["DynamoDB"] += count * (t.ddb_read * p["ddb_read"] + t.ddb_write * p["ddb_write"])
        items["logs"] += count * t.log_kb / 1024 / 1024 * p["logs_gb"]

    fresh = files * (1 if baseline else 1 - dedupe)
    run("api", files)
    items["lambda requests"] += files * p["api_request"]
    run("ingest", files)
    run("scan", fresh)
    for share, tasks, pages, stored_mb, derived_mb in MIX:
        n = fresh * share
        items["S3 storage"] += n * (stored_mb * ORIGINAL_MONTHS + derived_mb * DERIVED_MONTHS) / 1024 * p["s3_gb_month"]
        for task in tasks:
            if task == "ocr":
                continue
            run(task, n)
        ocr_pages = pages if pages else (1 if baseline and "presets" in tasks else 0)  # baseline OCRs images too
        if ocr_pages:
            if ocr == "textract" or baseline:
                run("ocr", n * ocr_pages, TEXTRACT_SECONDS)
                items["Textract"] += n * ocr_pages * p["textract_page"]
            else:
                run("ocr", n * ocr_pages)
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dedupe", type=float, default=0.30, help="share of uploads whose bytes exist already")
    parser.add_argument("--measured", help="JSON of per-task inputs, as TASKS")
    args = parser.parse_args()
    if args.measured:
        with open(args.measured) as fh:
            for name, values in json.load(fh).items():
                TASKS[name] = Task(**{**TASKS[name].__dict__, **values})
    files = 1000
    print(f"ESTIMATE from hand-entered inputs (bench/cost.py measures them); prices: us-east-1, {PRICES_DATE}")
    print(f"dedupe {args.dedupe:.0%}; dollars per {files:,} files")
    runs = {
        "tesseract arm64": cost(files, args.dedupe, "tesseract", "arm64"),
        "tesseract x86_64": cost(files, args.dedupe, "tesseract", "x86_64"),
        "textract arm64": cost(files, args.dedupe, "textract", "arm64"),
        "baseline": cost(files, 0.0, "textract", "x86_64", baseline=True),
    }
    names = list(next(iter(runs.values())))
    print(f"{'item':<18}" + "".join(f"{k:>18}" for k in runs))
    for item in names:
        print(f"{item:<18}" + "".join(f"{r[item]:>18.4f}" for r in runs.values()))
    totals = {k: sum(r.values()) for k, r in runs.items()}
    print(f"{'total':<18}" + "".join(f"{v:>18.4f}" for v in totals.values()))
    base = totals["baseline"]
    print(f"{'baseline / this':<18}" + "".join(f"{base / v:>17.1f}x" for v in totals.values()))


if __name__ == "__main__":
    main()

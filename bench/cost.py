"""What 1,000 files cost on AWS, measured on the local stack, itemised, against the original design's baseline.

    .venv/bin/python bench/cost.py [--files 40] [--dedupe 0.3] [--users 4] [--no-ocr-run] [--seed 1] [--keep]
                                   [--json out.json]

It runs the bench mix (``loadbench.metering``: photos, 3 MB photos, DOCX and 20 MB scans, a share
``--dedupe`` of the uploads the same bytes as another user's) on a fresh local stack, with OCR (the mix's
scans, read by Tesseract) and again without it (no scans), and meters each run: every invocation's
billed duration (rounded up to 1 ms) and peak memory, the requests each function made to S3, SQS,
DynamoDB and Textract (counted by the emulator), the bytes logged, the metric series and the bytes
stored. Then it prices them with the dated table in ``bench/prices.py`` (us-east-1), per 1,000 files:

- Lambda GB-s at each function's MemorySize and architecture (as deployed, and all arm64 / all x86_64:
  the durations are this machine's x86_64 CPU's for both; arm64's own speed is not measured);
- Lambda and HTTP API requests; SQS requests (every counted request but the event source pollers'
  ReceiveMessage, whose idle polls do not grow with files, and for which one receive per delivered
  message is counted, plus the S3 notification that queues each upload); S3 requests by tier;
- S3 storage: the store bucket's originals for a month (jobs live 30 days), derived files and text for
  7 days; DynamoDB on-demand request units (one per item read or written, two in a transaction: items
  under 1 KB, reads counted as strongly consistent; DynamoDB Streams' reads are free to Lambda);
- Textract pages (none when Tesseract reads); CloudWatch log ingestion, the metric series (amortised
  over 10 million uploads a day) and CloudWatch API requests.

The Textract variant replaces the OCR function's measured compute by an invocation waiting on Textract
(``TEXTRACT_SECONDS`` a page: an assumption, Textract cannot run offline) and adds its pages. The
baseline is what the original design pays: every upload processed (the task functions' measured cost
scaled by uploads / distinct files), every image and scan page through Textract, all on x86_64.
Tesseract's word accuracy is measured on the bench's scans, whose text is known; Textract's is not
measurable offline. ``bench/cost_estimate.py`` is the earlier hand-entered model (an estimate).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadbench.corpus import Item, describe
from loadbench.metering import Metered, Workload, build_workload, run
from loadbench.stats import pct
from prices import PRICES, PRICES_DATE, REGION

from docpipe_local.cpu_share import share

TEXTRACT_SECONDS = 1.2  # ASSUMED: an OCR invocation's billed time per page while Textract reads it
REQUEST_SECONDS = 0.015  # ASSUMED: an AWS request's round trip from Lambda in its region (the CPU basis)
ORIGINAL_MONTHS = 1.0  # originals kept while referenced (jobs live 30 days)
DERIVED_MONTHS = 7 / 30  # presets and text expire after 7 days
UPLOADS_PER_MONTH = 10e6 * 30  # for amortising the metric series
TASKS = ("ScanFunction", "PresetsFunction", "ExtractFunction", "OcrFunction")
S3_TIER1 = {"PutObject", "CopyObject", "ListObjects", "PostObject", "CreateMultipartUpload", "UploadPart"}
S3_TIER1 |= {"CompleteMultipartUpload", "DeleteObjects"}
S3_TIER2 = {"GetObject", "HeadObject", "HeadBucket"}
DDB_WRITE = {"PutItem": 1, "UpdateItem": 1, "DeleteItem": 1, "BatchWriteItem": 1, "TransactWriteItems": 2}
DDB_READ = {"GetItem": 1, "Query": 1, "Scan": 1, "BatchGetItem": 1, "TransactGetItems": 2}
SQS_FED = ("IngestFunction", *TASKS)  # functions an SQS event source invokes
ITEMS: tuple[str, ...] = ("Lambda GB-s", "Lambda requests", "API requests", "SQS", "S3 requests", "S3 storage")
ITEMS += ("DynamoDB", "Textract", "CloudWatch")


def requests_of(m: Metered, callers: tuple[str, ...] | None = None) -> dict[str, dict[str, int]]:
    """``{service: {operation: units}}`` summed over ``callers`` (all when None); units are requests,
    or the items a DynamoDB batch or transaction names."""
    out: dict[str, dict[str, int]] = {}
    for caller, services in m.requests.items():
        if callers is not None and caller not in callers:
            continue
        for service, ops in services.items():
            for op, (n, items, *_) in ops.items():
                into = out.setdefault(service, {})
                into[op] = into.get(op, 0) + (items if service == "dynamodb" else n)
    return out


def request_dollars(req: dict[str, dict[str, int]]) -> dict[str, float]:
    p = PRICES
    s3, sqs, ddb = req.get("s3", {}), req.get("sqs", {}), req.get("dynamodb", {})
    return {
        "S3 requests": sum(n for op, n in s3.items() if op in S3_TIER1) * p["s3_put"]
        + sum(n for op, n in s3.items() if op in S3_TIER2) * p["s3_get"],
        "SQS": sum(n for op, n in sqs.items() if op != "ReceiveMessage") * p["sqs_request"],
        "DynamoDB": sum(n * DDB_WRITE.get(op, 0) for op, n in ddb.items()) * p["ddb_write"]
        + sum(n * DDB_READ.get(op, 0) for op, n in ddb.items()) * p["ddb_read"],
        "Textract": sum(req.get("textract", {}).values()) * p["textract_page"],
        "CloudWatch": sum(req.get("monitoring", {}).values()) * p["cloudwatch_request"],
    }


def gb_s(m: Metered, fn: str, basis: str = "billed") -> float:
    """GB-s of ``fn``'s invocations: their billed durations here (``billed``), or (``cpu``) their CPU
    stretched to the function's share of a vCPU plus a round trip per AWS request it made: what the same
    work bills on Lambda where neither a loaded laptop nor the emulator's latency slows it."""
    memory = m.memory_mb.get(fn, 128)
    if basis == "cpu":
        requests = sum(n for ops in requests_of(m, (fn,)).values() for n in ops.values())
        seconds = m.cpu.get(fn, 0.0) / min(1.0, share(memory)) + requests * REQUEST_SECONDS
        return seconds * memory / 1024
    return sum(ms / 1000 * memory / 1024 for ms, _, _ in m.invocations.get(fn, []))


def price(
    m: Metered, arch: str | None = None, ocr: str = "tesseract", baseline: bool = False, basis: str = "billed"
) -> dict[str, float]:
    """Dollars per 1,000 uploads of the metered run, by item. ``arch``: every function on it (None: as the
    template declares); ``baseline``: the original design (see the module's text)."""
    p = PRICES
    uploads = len(m.workload.uploads)
    scale = 1000 / max(1, uploads - m.counts.get("upload errors", 0))  # per file that reached the pipeline
    again = uploads / len(m.workload.distinct) if baseline else 1.0  # every upload processed
    factor = {fn: (again if fn in TASKS else 1.0) for fn in m.invocations}
    items = dict.fromkeys(ITEMS, 0.0)
    ocr_pages = sum(i.pages for i in m.workload.distinct if i.kind == "scan")
    for fn, calls in m.invocations.items():
        f = factor[fn]
        rate = p[f"lambda_gb_s_{arch or ('x86_64' if baseline else m.architecture.get(fn, 'arm64'))}"]
        seconds = gb_s(m, fn, basis)
        if fn == "OcrFunction" and (ocr == "textract" or baseline):
            seconds = ocr_pages * TEXTRACT_SECONDS * m.memory_mb[fn] / 1024
        items["Lambda GB-s"] += f * seconds * rate
        items["Lambda requests"] += f * len(calls) * p["lambda_request"]
        for item, dollars in request_dollars(requests_of(m, (fn,))).items():
            items[item] += f * dollars
        items["CloudWatch"] += f * m.log_bytes.get(fn, 0) / 1024**3 * p["logs_gb"]
    items["API requests"] += len(m.invocations.get("ApiFunction", [])) * p["api_request"]
    # the event source pollers' deletes and visibility changes, one receive per delivered message, and
    # the S3 notification that queues each upload
    fed = sum(len(m.invocations.get(fn, [])) for fn in SQS_FED)
    fed_then = sum(factor.get(fn, 1.0) * len(m.invocations.get(fn, [])) for fn in SQS_FED)
    pollers = request_dollars(requests_of(m, ("-",)))
    items["SQS"] += (pollers["SQS"] * fed_then / max(1, fed)) + (fed_then + uploads) * p["sqs_request"]
    items["DynamoDB"] += pollers["DynamoDB"]
    items["S3 requests"] += pollers["S3 requests"]
    stored = {prefix: size for prefix, (_, size) in m.store.items()}
    months = stored.get("files", 0) * ORIGINAL_MONTHS + sum(
        v * DERIVED_MONTHS for k, v in stored.items() if k != "files"
    )
    items["S3 storage"] = again * months / 1024**3 * p["s3_gb_month"]
    if ocr == "textract" or baseline:
        pages = ocr_pages * again
        if baseline:  # the original design OCR'd every image too, a page each, with an OCR invocation each
            images = sum(1 for _, i in m.workload.uploads if i.kind.startswith("photo"))
            ocr_calls = m.invocations.get("OcrFunction", [])
            per_call = request_dollars(requests_of(m, ("OcrFunction",)))
            items["Lambda GB-s"] += (
                images * TEXTRACT_SECONDS * m.memory_mb["OcrFunction"] / 1024 * p["lambda_gb_s_x86_64"]
            )
            items["Lambda requests"] += images * p["lambda_request"]
            for item, dollars in per_call.items():
                if item != "Textract":
                    items[item] += images * dollars / max(1, len(ocr_calls))
            items["SQS"] += 3 * images * p["sqs_request"]  # sent, received, deleted
            pages += images
        items["Textract"] += pages * p["textract_page"]
    items["CloudWatch"] += m.metric_series * p["metric_month"] / UPLOADS_PER_MONTH * uploads
    return {k: v * scale for k, v in items.items()}


def print_run(label: str, m: Metered) -> dict[str, float]:
    uploads, distinct = len(m.workload.uploads), len(m.workload.distinct)
    print(f"\n== {label}: {uploads} uploads of {distinct} distinct files ({describe(m.workload.distinct)})")
    print(f"   {m.counts}; all ended {m.seconds:.0f} s after the first upload; machine load average {m.load:.1f}")
    for error in m.errors:
        print(f"   upload error: {error} (dollars are per upload that reached the pipeline; the mix is skewed)")
    print(f"   {'function':<18}{'calls':>6}{'billed p50':>11}{'p95':>9}{'mean':>9}{'CPU s':>8}{'peak MB p95':>12}")
    print(f"   {'':<18}{'':>6}{'ms':>11}{'ms':>9}{'ms':>9}{'':>8}{'(max)':>12}")
    for fn, calls in sorted(m.invocations.items()):
        ms = [c[0] for c in calls]
        peaks = [c[1] for c in calls]
        print(
            f"   {fn.removesuffix('Function'):<18}{len(calls):>6}{pct(ms, 0.5):>11.0f}{pct(ms, 0.95):>9.0f}"
            f"{sum(ms) / len(ms):>9.0f}{m.cpu.get(fn, 0):>8.1f}{pct(peaks, 0.95):>7.0f} ({max(peaks):.0f})"
            f"  of {m.memory_mb.get(fn)} MB {m.architecture.get(fn, '')}"
        )
    print(f"   {'requests a call':<18}" + "  ".join(f"{s}" for s in ("s3", "sqs", "dynamodb")))
    for fn, calls in sorted(m.invocations.items()):
        own = requests_of(m, (fn,))
        print(
            f"   {fn.removesuffix('Function'):<18}"
            + "  ".join(f"{sum(own.get(s, {}).values()) / len(calls):.1f}" for s in ("s3", "sqs", "dynamodb"))
        )
    req = requests_of(m)
    for service in ("s3", "sqs", "dynamodb", "textract"):
        ops = req.get(service, {})
        total = sum(ops.values())
        shown = ", ".join(f"{op} {n}" for op, n in sorted(ops.items(), key=lambda kv: -kv[1]))
        print(f"   {service:<9} {total:>6} ({total / uploads:.1f} a file): {shown or 'none'}")
    runs = {
        "as deployed": price(m),
        "all arm64": price(m, "arm64"),
        "all x86_64": price(m, "x86_64"),
        "Textract": price(m, ocr="textract"),
        "baseline": price(m, baseline=True),
        "CPU basis": price(m, basis="cpu"),
        "CPU baseline": price(m, baseline=True, basis="cpu"),
    }
    print(f"\n   dollars per 1,000 files ({REGION}, prices of {PRICES_DATE}; Tesseract unless named)")
    print(f"   {'item':<16}" + "".join(f"{k:>13}" for k in runs))
    for item in ITEMS:
        print(f"   {item:<16}" + "".join(f"{r[item]:>13.4f}" for r in runs.values()))
    totals = {k: sum(r.values()) for k, r in runs.items()}
    print(f"   {'total':<16}" + "".join(f"{v:>13.4f}" for v in totals.values()))
    ratios = [totals["CPU baseline" if k.startswith("CPU") else "baseline"] / v for k, v in totals.items()]
    print(f"   {'baseline / this':<16}" + "".join(f"{r:>12.1f}x" for r in ratios))
    print(
        "   (CPU basis: each function's CPU here at its share of a vCPU plus "
        f"{REQUEST_SECONDS * 1000:.0f} ms a request, instead of its billed time on this machine)"
    )
    return totals


def print_ocr(m: Metered) -> None:
    pages = sum(i.pages for i in m.workload.distinct if i.kind == "scan")
    if not pages:
        return
    ocr = m.invocations.get("OcrFunction", [])
    per_page = gb_s(m, "OcrFunction") / pages
    arch = m.architecture.get("OcrFunction", "arm64")
    tess = per_page * PRICES[f"lambda_gb_s_{arch}"] * 1000
    wait = TEXTRACT_SECONDS * m.memory_mb["OcrFunction"] / 1024 * PRICES[f"lambda_gb_s_{arch}"] * 1000
    text = PRICES["textract_page"] * 1000
    print(f"\n   OCR, per 1,000 pages ({pages} pages in {len(ocr)} invocations, {arch}):")
    print(f"     Tesseract on Lambda: ${tess:.3f} (measured: {per_page:.1f} GB-s a page)")
    print(
        f"     Textract: ${text + wait:.3f} (${text:.2f} of pages, ${wait:.3f} of Lambda waiting {TEXTRACT_SECONDS} s a page)"
    )
    for name, words, accuracy in m.ocr_accuracy:
        print(f"     Tesseract word accuracy on {name}: {accuracy:.1%} of {words} words (known text, in order)")
    print("     Textract's accuracy is not measurable offline.")


def from_json(saved: dict[str, Any]) -> Metered:
    """A run as ``--json`` wrote it."""

    def item(d: dict[str, Any]) -> Item:
        return Item(Path(d["path"]), d["kind"], d["size"], d["sha256"], d["pages"])

    w = saved["workload"]
    workload = Workload([(u, item(i)) for u, i in w["uploads"]], [item(i) for i in w["distinct"]])
    fields = {k: v for k, v in saved.items() if k in Metered.__dataclass_fields__ and k != "workload"}
    m = Metered(workload, **fields)
    m.invocations = {fn: [tuple(c) for c in calls] for fn, calls in m.invocations.items()}
    m.store = {k: tuple(v) for k, v in m.store.items()}
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--files", type=int, default=40, help="uploads per run (default 40)")
    parser.add_argument("--dedupe", type=float, default=0.30, help="share of uploads whose bytes exist already (0.3)")
    parser.add_argument("--users", type=int, default=4, help="users uploading (default 4)")
    parser.add_argument("--no-ocr-run", action="store_true", help="skip the run without OCR (no scans)")
    parser.add_argument("--threads", type=int, default=4, help="client upload threads (default 4)")
    parser.add_argument("--timeout", type=float, default=900, help="per run, seconds (default 900)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (files, stack logs)")
    parser.add_argument("--json", help="write the measurements of each run to this file")
    parser.add_argument("--reprice", help="print the runs a --json file holds again (prices, no run)")
    args = parser.parse_args()
    if args.reprice:
        for label, saved in json.loads(Path(args.reprice).read_text()).items():
            m = from_json(saved)
            print_run(label, m)
            print_ocr(m)
        return
    if not 0 <= args.dedupe < 1 or args.files < 2 or args.users < 2:
        parser.error("needs 0 <= --dedupe < 1, --files >= 2 and --users >= 2")
    work = Path(tempfile.mkdtemp(prefix="docpipe-cost-"))
    measured: dict[str, Any] = {}
    try:
        for ocr in (True,) if args.no_ocr_run else (True, False):
            label = "with OCR (scans in the mix)" if ocr else "without OCR (no scans)"
            folder = work / ("ocr" if ocr else "plain")
            (folder / "files").mkdir(parents=True)
            workload = build_workload(args.files, args.dedupe, ocr, args.users, args.seed, folder / "files")
            started = time.time()
            m = run(workload, folder / "stack", threads=args.threads, timeout=args.timeout)
            print(f"\n(run {time.time() - started:.0f} s; dedupe {args.dedupe:.0%}, {args.users} users)", end="")
            totals = print_run(label, m)
            if ocr:
                print_ocr(m)
            measured[label] = {"totals": totals, **asdict(m)}
        if args.json:
            Path(args.json).write_text(json.dumps(measured, indent=1, default=str))
    finally:
        if args.keep:
            print(f"\nkept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

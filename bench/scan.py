"""What the malware scan costs (issue 20): scan time per MB, and the time-to-ready it adds to a small photo.

    .venv/bin/python bench/scan.py [--photos 12] [--rounds 3]

1. Scan time per MB of clean photos (JPEG) and PDFs, through a warm clamd (its INSTREAM over the socket,
   as ScanFunction does) and through clamscan (which loads its database on every run), with the project's
   test database (local/docpipe_local/signatures) and, where freshclam has one, the full database.
2. The time-to-ready of a sub-1 MB photo on two local stacks in the same run, one with ScanEngine clamav
   (clamd warm) and one with ScanEngine none: the difference is what the scan adds (the scan task's own
   hop through its queue and worker, and the scan). Target: under 300 ms.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions" / "scan")]

from docpipe_local import clamav  # noqa: E402
from docpipe_local.client import DocpipeClient  # noqa: E402
from docpipe_local.stack import LocalStack  # noqa: E402
from scan.engines import ClamdEngine, ClamscanEngine  # noqa: E402
from tests.fixtures.documents import pdf  # noqa: E402


def corpus() -> dict[str, list[bytes]]:
    photos = [photo(i, size) for i, size in enumerate([(1024, 768), (1600, 1200), (3000, 2000)])]
    pdfs = [
        pdf(
            [[f"Page {p} line {n} of the bench document" for n in range(40)] for p in range(pages)],
            scanned=frozenset(range(1, pages + 1, 3)),
        )
        for pages in (5, 20)
    ]
    return {"photos": photos, "pdfs": pdfs}


def per_mb(scan, files: list[bytes], rounds: int) -> tuple[float, float]:
    """Median ms per MB over ``rounds`` passes, and the total MB of one pass."""
    size = sum(len(f) for f in files) / 1e6
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for data in files:
            assert not scan(io.BytesIO(data)).infected
        times.append((time.perf_counter() - started) * 1000 / size)
    return statistics.median(times), size


def scan_rates(rounds: int) -> None:
    files = corpus()
    databases = {"test database": clamav.TEST_DATABASE}
    if clamav.database() != clamav.TEST_DATABASE:
        databases["full database (freshclam)"] = clamav.database()
    else:
        print("freshclam has no database here (/var/lib/clamav): the full database is not measured")
    for label, db in databases.items():
        with tempfile.TemporaryDirectory() as state:
            daemon = clamav.Clamd(Path(state), db).start()
            try:
                engines = {
                    "clamd (warm)": ClamdEngine(str(daemon.socket)).scan,
                    "clamscan": ClamscanEngine(str(db)).scan,
                }
                for name, scan in engines.items():
                    for kind, data in files.items():
                        ms, mb = per_mb(scan, data, rounds)
                        print(f"{label:26} {name:13} {kind:7} {mb:6.1f} MB: {ms:8.1f} ms/MB")
            finally:
                daemon.stop()


def photo(seed: int, size: tuple[int, int] = (1024, 768)) -> bytes:
    """A camera-like JPEG under 1 MB: a gradient with sensor noise (noise is what makes photos big)."""
    from PIL import Image, ImageChops

    base = Image.linear_gradient("L").resize(size).convert("RGB")
    noise = Image.effect_noise(size, 24 + seed % 5).convert("RGB")
    out = io.BytesIO()
    ImageChops.add(base, noise, scale=2.0).save(out, "JPEG", quality=90)
    return out.getvalue()


def _at(job: dict, state: str) -> float:
    from datetime import datetime

    stamp = next(h["at"] for h in job["history"] if h["state"] == state)
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def time_to_ready(photos: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Both stacks up at once, photos sent to each in turn, so the machine's load drifts alike for both.
    Returns the times to ready and the times each job spent ``scanning`` (from its history), in ms."""
    times: dict[str, list[float]] = {"none": [], "clamav": []}
    scanning: dict[str, list[float]] = {"none": [], "clamav": []}
    with tempfile.TemporaryDirectory() as state:
        stacks = {
            engine: LocalStack(
                state_dir=Path(state) / engine,
                tokens={"tok-bench": "bench"},
                parameters={"ScanEngine": engine, "UploadsPerMinute": "0"},
            ).start()
            for engine in times
        }
        try:
            for i in range(photos + 2):  # the first two of each warm the workers up and are not counted
                for engine, stack in stacks.items():
                    client = DocpipeClient(stack.api_url, "tok-bench")
                    path = Path(state) / f"photo-{engine}-{i}.jpg"
                    path.write_bytes(photo(i))
                    started = time.perf_counter()
                    job = client.wait(client.upload_file(path)["jobId"], timeout=60, interval=0.02)
                    assert job["state"] == "ready", job
                    if i >= 2:
                        times[engine].append((time.perf_counter() - started) * 1000)
                        scanning[engine].append((_at(job, "queued") - _at(job, "scanning")) * 1000)
        finally:
            for stack in stacks.values():
                stack.stop()
    return times, scanning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scan_rates(args.rounds)
    size = len(photo(0)) / 1024
    results, scanning = time_to_ready(args.photos)
    for engine, times in results.items():
        print(
            f"time-to-ready of a {size:.0f} KB photo, ScanEngine {engine:6}: median {statistics.median(times):6.0f} ms"
            f"  p90 {sorted(times)[int(0.9 * (len(times) - 1))]:6.0f} ms  ({len(times)} photos)"
        )
    for engine, spans in scanning.items():
        print(
            f"time in scanning (upload stored -> clean verdict), ScanEngine {engine:6}: median "
            f"{statistics.median(spans):5.0f} ms  p90 {sorted(spans)[int(0.9 * (len(spans) - 1))]:5.0f} ms"
        )
    added = statistics.median(results["clamav"]) - statistics.median(results["none"])
    print(f"time-to-ready added by ClamAV over ScanEngine none (medians): {added:.0f} ms (target < 300 ms)")
    print(
        f"time in scanning with ClamAV (the scan step's whole cost: its queue hop and the scan): "
        f"{statistics.median(scanning['clamav']):.0f} ms median (target < 300 ms)"
    )


if __name__ == "__main__":
    main()

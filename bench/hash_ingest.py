"""Hash a 1 GiB object through the ingest path and compare with ``openssl dgst -sha256`` on the same bytes.

The ingest path is the one IngestFunction runs: a GET of the object from the S3 emulator (moto's
server, in its own process, over loopback HTTP), read in ``HASH_CHUNK_BYTES`` chunks by
``ObjectStore.iter_chunks`` and hashed by ``ingest.content.scan``. It runs in a fresh process so its
peak RSS is its own. openssl hashes the same bytes from a file in the page cache, in the same run.

    python bench/hash_ingest.py [--size-mib 1024] [--chunk-mib 8]

Prints throughput, peak RSS, and the ratios against openssl (targets: ≥ 0.8× openssl's throughput,
peak RSS under 64 MiB).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/docpipe"), str(ROOT / "functions/ingest"), str(ROOT / "local")]

BUCKET, KEY = "bench-uploads", "uploads/bench/00000000-0000-4000-8000-000000000000/big.bin"


def child(endpoint: str, chunk_bytes: int) -> None:
    """The measured side: import what ingest imports, then stream and hash."""
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    from docpipe.adapters.s3 import ObjectStore
    from ingest import content

    store = ObjectStore()
    info = store.head(BUCKET, KEY)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    chunks = store.iter_chunks(BUCKET, KEY, info.etag, chunk_bytes)
    first = next(chunks)
    first_byte = time.perf_counter() - started
    scanned = content.scan(itertools.chain([first], chunks), info.size)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "sha256": scanned.sha256,
                "seconds": seconds,
                "first_byte": first_byte,
                "peak_mib": peak,
                "baseline_mib": baseline,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=float, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    chunk = int(args.chunk_mib * 1024 * 1024)
    if args.child:
        return child(args.child, chunk)

    import boto3
    from boto3.s3.transfer import TransferConfig

    from docpipe_local.stack import MotoServer

    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "big.bin"
        with data.open("wb") as fh:
            for _ in range(args.size_mib):
                fh.write(os.urandom(1024 * 1024))
        moto = MotoServer(Path(tmp) / "moto.log")
        try:
            moto.wait_ready()
            s3 = boto3.client(
                "s3",
                endpoint_url=moto.url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            s3.create_bucket(Bucket=BUCKET)
            s3.upload_file(str(data), BUCKET, KEY, Config=TransferConfig(multipart_threshold=5 * 1024**3))

            runs = []
            for _ in range(3):
                subprocess.run(["openssl", "dgst", "-sha256", str(data)], check=True, capture_output=True)  # warm cache
                started = time.perf_counter()
                openssl = subprocess.run(
                    ["openssl", "dgst", "-sha256", str(data)], check=True, capture_output=True, text=True
                )
                openssl_s = time.perf_counter() - started
                ours = json.loads(
                    subprocess.run(
                        [sys.executable, __file__, "--child", moto.url, "--chunk-mib", str(args.chunk_mib)],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                )
                assert ours["sha256"] == openssl.stdout.split()[-1], "digests differ"
                runs.append((openssl_s, ours))
        finally:
            moto.stop()

    openssl_s = min(r[0] for r in runs)
    ours = min((r[1] for r in runs), key=lambda o: o["seconds"])
    gib = size / 1024**3
    print(f"object: {args.size_mib} MiB, chunk {args.chunk_mib} MiB, best of {len(runs)} runs, same bytes, same run")
    print(f"{'':32}{'seconds':>9}{'GiB/s':>9}{'peak RSS MiB':>14}")
    print(f"{'openssl dgst -sha256 (file)':32}{openssl_s:9.2f}{gib / openssl_s:9.2f}{'-':>14}")
    print(
        f"{'ingest path (S3 GET + scan)':32}{ours['seconds']:9.2f}{gib / ours['seconds']:9.2f}{ours['peak_mib']:14.1f}"
    )
    streaming = ours["seconds"] - ours["first_byte"]
    print(
        f"{'  of which: to the first byte':32}{ours['first_byte']:9.2f}{'':9}{'':>14}   (the emulator reads the whole object before it answers)"
    )
    print(f"{'  of which: streaming + hashing':32}{streaming:9.2f}{gib / streaming:9.2f}{'':>14}")
    print(f"throughput ratio ours/openssl, end to end:         {openssl_s / ours['seconds']:.2f}x (target >= 0.80)")
    print(f"throughput ratio ours/openssl, from the first byte: {openssl_s / streaming:.2f}x")
    print(
        f"peak RSS: {ours['peak_mib']:.1f} MiB, of which {ours['baseline_mib']:.1f} MiB before the first byte (target < 64 MiB)"
    )


if __name__ == "__main__":
    main()

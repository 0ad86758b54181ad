"""Big uploads over loopback against the local stack: a file in parts beside a single presigned POST.

In one run, on one fresh local stack (quotas off: the bench measures uploads, not admission):

1. a single presigned POST of the largest size it allows (100 MiB), through the CLI's client;
2. each ``--parts-mib`` size (default 1 GiB) in parts, through the CLI's multipart client
   (``docpipe_local.multipart``: 8 MiB parts, ``--parallel`` at once, each with its SHA-256).

Each upload runs in a process of its own, whose peak RSS is read from ``wait4``. For each it prints the
upload's time and throughput, the client's peak RSS, the ingest time (from the completion's answer to the
job leaving ``uploading``: for an upload over ``MultipartCompleteInlineBytes`` CompleteFunction's
``CompleteMultipartUpload``, shown apart to the second; then the S3 event, the ingest queue, the
streaming SHA-256 and the server-side copy) and the job's end, and the emulator's peak RSS (moto builds a completed multipart object in memory).

    python bench/upload.py [--parts-mib 1024 2048] [--post-mib 100] [--parallel 4] [--localstack]

A size whose upload the machine's memory cannot hold is skipped with the reason: moto's peak RSS is
about 3.5x the object (its parts, the joined object and its copy), and ``--reserve-gib`` (8) stays free
for the machine's other users (there is no swap). ``--localstack`` runs S3 and SQS on LocalStack
(host mode, from ``.tools/localstack``, started and stopped by the bench; DynamoDB stays embedded), whose
S3 spools objects to temporary files on disk: there the check is free disk (the file, its parts and
the joined object: 3x) and LocalStack's peak RSS is reported as the emulator's. The files are
generated in a temporary directory, deleted after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "local")]

MIB = 1024 * 1024
QUOTAS = ("UploadsPerMinute", "UploadBytesPerDay", "StoredBytesPerUser", "OpenJobsPerUser", "HighLaneBytesPerMinute")
MOTO_PEAK_FACTOR = 3.5  # the emulator's peak RSS per byte of the object in parts (measured: 3.4 at 1 GiB)
DISK_FACTOR = 3  # LocalStack: the generated file, its parts and the joined object, on disk


def generate(path: Path, size: int) -> str:
    """``size`` bytes of text (hex lines), no two MiB alike (so nothing dedupes), in 1 MiB blocks; their SHA-256."""
    digest = hashlib.sha256()
    block = bytearray(b"".join(os.urandom(31).hex().encode() + b"\n" for _ in range(MIB // 63 + 1))[:MIB])
    with path.open("wb") as fh:
        for i in range(size // MIB):
            block[:8] = f"{i:08d}".encode()
            fh.write(block)
            digest.update(block)
    return digest.hexdigest()


def child(kind: str, path: Path, api: str, token: str, parallel: int, state: Path) -> None:
    """The measured side: one upload with the CLI's own client, timed; JSON on stdout."""
    from docpipe_local import multipart
    from docpipe_local.client import DocpipeClient

    client = DocpipeClient(api, token)
    started_wall, started = time.time(), time.perf_counter()
    if kind == "post":
        created = client.upload_file(path)
        parts = 1
    else:
        upload = multipart.MultipartUpload(client, path, parallel=parallel, folder=state)
        created = upload.run()
        parts = len(upload.sent)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "jobId": created["jobId"],
                "started": started_wall,
                "uploaded": time.time(),
                "seconds": seconds,
                "parts": parts,
            }
        )
    )


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakRss:
    """The peak RSS of a process (the emulator), sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_mib(self.pid))

    def reset(self) -> float:
        peak, self.peak = self.peak, _rss_mib(self.pid)
        return peak

    def stop(self) -> None:
        self._stop.set()


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["at"].replace("Z", "+00:00")).timestamp()


def measure(kind: str, path: Path, stack: Any, token: str, args: argparse.Namespace, state: Path) -> dict[str, Any]:
    from docpipe_local.client import DocpipeClient

    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        str(path),
        stack.api_url,
        token,
        str(args.parallel),
        str(state),
    ]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, cwd=ROOT)
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # reaped here, for the child's own peak RSS
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            errors.seek(0)
            raise RuntimeError(f"the {kind} upload failed: {errors.read().decode()[-2000:]}")
    peak_mib = usage.ru_maxrss / 1024
    run = json.loads(out)
    client = DocpipeClient(stack.api_url, token)
    deadline = time.monotonic() + args.timeout
    job = client.job(run["jobId"])
    while job["state"] == "uploading" and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.job(run["jobId"])
    # the first state after the upload: past ``completing`` (a completion handed to CompleteFunction)
    left = next((e for e in job["history"][1:] if e["state"] not in ("uploading", "completing")), None)
    ingest = _at(left) - run["uploaded"] if left else float("nan")
    completion = float("nan")
    if any(e["state"] == "completing" for e in job["history"]):  # when CompleteFunction joined the parts (1 s)
        item = stack.client("dynamodb").get_item(
            TableName=stack.template.physical_name("JobsTable"), Key={"jobId": {"S": run["jobId"]}}
        )
        completion = float(item["Item"]["partsAt"]["N"]) - run["uploaded"]
    job = client.wait(run["jobId"], timeout=max(1.0, deadline - time.monotonic()))  # as it stands at --timeout
    size = path.stat().st_size
    return {
        "kind": kind,
        "mib": size // MIB,
        "parts": run["parts"],
        "seconds": run["seconds"],
        "mib_per_s": size / MIB / run["seconds"],
        "client_peak_mib": peak_mib,
        "ingest_seconds": ingest,
        "completion_seconds": completion,
        "state": job["state"],
        "error": (job.get("error") or {}).get("code"),
        "job": job,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts-mib", type=int, nargs="+", default=[1024])
    parser.add_argument("--post-mib", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each job")
    parser.add_argument("--reserve-gib", type=float, default=8, help="memory left free for others (GiB)")
    parser.add_argument("--localstack", action="store_true", help="S3 and SQS on LocalStack (host mode)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, api, token, parallel, state = args.child
        return child(kind, Path(path), api, token, int(parallel), Path(state))

    from docpipe_local.stack import LocalStack
    from docpipe_local.template import Template

    declared = Template.load(ROOT / "template.yaml").doc.get("Parameters") or {}
    parameters = {name: "0" for name in QUOTAS if name in declared}
    results, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="docpipe-bench-upload-") as tmp:
        folder = Path(tmp)
        server = _localstack(folder) if args.localstack else None
        try:
            if server is not None:
                stack = LocalStack(
                    endpoint=server.url,
                    embedded_services=("dynamodb",),
                    state_dir=folder / "stack",
                    parameters=parameters,
                    stack_name="docpipe-bench",
                ).start()
                emulator = PeakRss(server.pid)
            else:
                stack = LocalStack(state_dir=folder / "stack", parameters=parameters).start()
                assert stack.moto is not None
                emulator = PeakRss(stack.moto.process.pid)
        except BaseException:
            if server is not None:
                server.stop()
            raise
        token = stack.token_for("bench")
        try:
            plan = [("post", args.post_mib)] + [("parts", mib) for mib in args.parts_mib]
            for kind, mib in plan:
                if server is not None:
                    free = shutil.disk_usage(tmp).free
                    if free < mib * MIB * DISK_FACTOR + 10 * 1024 * MIB:
                        skipped.append(
                            f"{mib} MiB in parts: {free // MIB} MiB of disk free, about {DISK_FACTOR}x needed"
                        )
                        continue
                need = int(mib * MIB * MOTO_PEAK_FACTOR + args.reserve_gib * 1024 * MIB)
                if server is None and _available_bytes() < need:
                    skipped.append(
                        f"{mib} MiB in parts: {need // MIB} MiB of memory needed (the emulator peaks at about "
                        f"{MOTO_PEAK_FACTOR}x the object, plus {args.reserve_gib:g} GiB left to others), "
                        f"{_available_bytes() // MIB} MiB available"
                    )
                    continue
                path = folder / f"bench-{kind}-{mib}.txt"
                sha256 = generate(path, mib * MIB)
                emulator.reset()
                result = measure(kind, path, stack, token, args, folder / "state")
                result["sha256_ok"] = result["job"].get("hash") == sha256
                result["emulator_peak_mib"] = emulator.reset()
                results.append(result)
                path.unlink()
                print(_line(result), flush=True)
        finally:
            emulator.stop()
            stack.stop()
            if server is not None:
                server.stop()
    print()
    emulator_name = "LocalStack (S3, SQS) + embedded DynamoDB" if args.localstack else "moto"
    print(
        f"machine: {os.cpu_count()} CPUs; {emulator_name}; single POST vs parts (--parallel {args.parallel}) "
        "over loopback, one run"
    )
    post = next((r for r in results if r["kind"] == "post"), None)
    for r in results:
        ratio = f", {r['mib_per_s'] / post['mib_per_s']:.2f}x the POST's throughput" if post and r is not post else ""
        print(_line(r) + ratio)
    for reason in skipped:
        print(f"skipped: {reason}")


def _localstack(folder: Path) -> Any:
    """LocalStack in host mode on a free port, from ``.tools/localstack`` (``make localstack``)."""
    import socket

    from docpipe_local.localstack import LocalStackServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = LocalStackServer(ROOT / ".tools" / "localstack" / "bin" / "python", port, folder / "localstack.log")
    server.start(timeout=180)
    return server


def _line(r: dict[str, Any]) -> str:
    end = r["state"] + (f" ({r['error']})" if r["error"] else "")
    return (
        f"{r['kind']:5} {r['mib']:5d} MiB in {r['parts']:3d} part(s): {r['seconds']:6.1f} s, {r['mib_per_s']:6.1f} MiB/s, "
        f"client peak RSS {r['client_peak_mib']:5.0f} MiB; ingest {r['ingest_seconds']:5.1f} s"
        + (
            f" (of which completion {r['completion_seconds']:.0f} s)"
            if r["completion_seconds"] == r["completion_seconds"]
            else ""
        )
        + "; "
        f"emulator peak RSS {r.get('emulator_peak_mib', 0):6.0f} MiB; job {end}, SHA-256 "
        f"{'matches' if r['sha256_ok'] else 'DIFFERS'}"
    )


if __name__ == "__main__":
    main()

"""AWS requests per photo, by function and operation: what each photo costs the emulator (and AWS).

    .venv/bin/python bench/requests_per_photo.py [--photos 10] [--every 1.0]

Starts a fresh local stack (state in a temporary folder), sends two photos to warm the workers, then
``--photos`` photos (0.1-0.5 MB JPEGs, the load bench's) one every ``--every`` seconds as one user with
no page open, waits until each is terminal, and prints the requests the emulator counted meanwhile
(``docpipe_local.emulator.count_requests``), per photo, with the emulator's CPU time answering them. Callers are the functions (their SDK's
``app/<id>``) and ``-`` for the stack's own (event source pollers, the gateway) and this script's. The
DynamoDB total beside the others is the ratio that bounds the local stack's throughput: the emulator's
DynamoDB process serves every function's calls on one core. Last, each emulator process's CPU a photo
(user and system time over the same photos): what a photo costs the machine's cores besides the
functions' own work.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from loadbench.corpus import Item, make_corpus
from loadbench.measure import emulator_operations

from docpipe_local.client import DocpipeClient
from docpipe_local.emulator import request_counts
from docpipe_local.stack import LocalStack


def send(client: DocpipeClient, photos: list[Item], every: float) -> list[str]:
    """Upload each photo, one every ``every`` s; the state each job ends in (or is in after 300 s)."""
    ids = []
    for photo in photos:
        ids.append(client.upload_file(photo.path)["jobId"])
        time.sleep(every)
    return [client.wait(job_id, timeout=300)["state"] for job_id in ids]


def cpu_seconds(stack: LocalStack) -> dict[str, float]:
    """CPU seconds (user and system) each emulator process has used so far, by the services it serves."""
    servers = {"DynamoDB": stack.moto_dynamodb, "S3, SQS and the rest": stack.moto}
    used = {}
    for name, server in servers.items():
        if server is not None:
            fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--every", type=float, default=1.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="docpipe-requests-"))
    (folder / "files").mkdir()
    photos = make_corpus([("photo", seed) for seed in range(args.photos + 2)], folder / "files")
    stack = LocalStack(state_dir=folder / "state", tokens={"tok-u": "u"}).start()
    try:
        client = DocpipeClient(stack.api_url, stack.token_for("u"))
        send(client, photos[:2], args.every)
        time.sleep(3)
        urls = [m.url for m in (stack.moto, stack.moto_dynamodb) if m is not None]
        for url in urls:
            request_counts(url, reset=True)
        before = cpu_seconds(stack)
        states = send(client, photos[2:], args.every)
        time.sleep(3)
        spent = {name: seconds - before[name] for name, seconds in cpu_seconds(stack).items()}
        counts, cpu = emulator_operations(urls)
    finally:
        stack.stop()
    print(f"{len(states)} photos, one every {args.every} s: {Counter(states)}")
    for (service, caller, operation), requests in sorted(counts.items()):
        ms = cpu[(service, caller, operation)] / args.photos * 1000
        print(f"  {service:16} {caller:18} {operation:30} {requests / args.photos:6.1f} a photo {ms:6.1f} ms of CPU")
    dynamodb = sum(n for (service, _, _), n in counts.items() if service.startswith("dynamodb"))
    print(
        f"DynamoDB {dynamodb / args.photos:.1f} requests a photo; "
        f"everything else {(sum(counts.values()) - dynamodb) / args.photos:.1f}"
    )
    for name, seconds in spent.items():
        print(f"{name} emulator: {seconds / args.photos * 1000:.0f} ms of CPU a photo")


if __name__ == "__main__":
    main()

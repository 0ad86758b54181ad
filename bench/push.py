"""Latency of live progress on the local stack: from a job's DynamoDB write to a WebSocket client holding
the pushed update.

An embedded stack is started; one user connects to the WebSocket API (``GET /config``'s ``push.url``)
and creates a job (``POST /uploads``). Then, ``--updates`` times, the bench writes the job's record in
JobsTable (an ``UpdateItem`` of its ``updatedAt``, as every state change does) and waits for the frame
carrying that ``updatedAt``. The path measured is the whole one: the table's stream (moto's DynamoDB
Streams, read at most every 250 ms by the stack's stream poller, as Lambda reads a shard), the
NotifierFunction in its worker process (the job's view, the owner's connections, ``PostToConnection`` to
the gateway's management API) and the WebSocket frame. Printed beside it, measured in the same run: a plain ``GET /jobs/{id}`` round trip
(what one poll of the job costs) and the stream poll interval.

    python bench/push.py [--updates 200]

Target: p95 under 500 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/docpipe"), str(ROOT / "local")]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    import requests
    import websocket

    from docpipe_local.stack import LocalStack
    from docpipe_local.streams import POLL_SECONDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as state,
        LocalStack(state_dir=state, parameters={"ScanEngine": "none"}) as stack,
    ):
        token = stack.token_for("dev")
        headers = {"Authorization": f"Bearer {token}"}
        url = requests.get(f"{stack.api_url}/config", headers=headers, timeout=30).json()["push"]["url"]
        socket = websocket.create_connection(f"{url}?token={token}", timeout=30)
        job_id = requests.post(
            f"{stack.api_url}/uploads",
            headers=headers,
            json={"name": "bench.txt", "size": 10, "contentType": "text/plain"},
            timeout=30,
        ).json()["jobId"]
        while json.loads(socket.recv())["job"]["jobId"] != job_id:  # the job's creation, pushed
            pass
        dynamodb, table = stack.client("dynamodb"), stack.template.physical_name("JobsTable")  # type: ignore[union-attr]

        gets = []
        for _ in range(args.updates // 4):
            started = time.perf_counter()
            requests.get(f"{stack.api_url}/jobs/{job_id}", headers=headers, timeout=30).raise_for_status()
            gets.append((time.perf_counter() - started) * 1000)

        latencies, server = [], []
        for _ in range(args.updates):
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            started = time.perf_counter()
            dynamodb.update_item(
                TableName=table,
                Key={"jobId": {"S": job_id}},
                UpdateExpression="SET updatedAt = :u",
                ExpressionAttributeValues={":u": {"S": stamp}},
            )
            while True:
                frame = json.loads(socket.recv())
                if frame["job"]["updatedAt"] == stamp:
                    break
            latencies.append((time.perf_counter() - started) * 1000)
            server.append(frame["sentAt"] - frame["changedAt"])
            time.sleep(0.02)
        socket.close()

    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    get50 = statistics.median(gets)
    print(
        f"push latency, write -> client, {len(latencies)} updates: p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"max {max(latencies):.0f} ms  (target p95 < 500 ms: {'met' if p95 < 500 else 'MISSED'})"
    )
    print(
        f"  of which write -> notifier's post (changedAt -> sentAt): p50 {percentile(server, 50):.0f} ms, "
        f"p95 {percentile(server, 95):.0f} ms"
    )
    print(
        f"reference, same run: GET /jobs/{{id}} round trip p50 {get50:.0f} ms, p95 {percentile(gets, 95):.0f} ms; "
        f"stream poll interval {POLL_SECONDS * 1000:.0f} ms"
    )
    print(f"ratios: push p50 = {p50 / get50:.1f}x one GET, {p50 / (POLL_SECONDS * 1000):.1f}x the poll interval")
    return 0 if p95 < 500 else 1


if __name__ == "__main__":
    sys.exit(main())

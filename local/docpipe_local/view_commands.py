"""``docpipe queues`` and ``docpipe get``: what the pipeline's lanes hold, and a job's files.

Registered by :func:`docpipe_local.cli.parser`; they share its way of finding a stack and printing.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from pathlib import Path

import requests
from rich.table import Table

from docpipe_local.cli import UsageError, _target, err, out


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def cmd_queues(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        client, _ = _target(args, stack, allow_embedded=False)
        body = client.queues()
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    if body.get("scope") == "own":  # not an operator: only the caller's own open jobs, per lane
        mine = Table(title="your open jobs per lane (every queue's totals are for operators: `docpipe up --admin`)")
        for column in ("lane", "uploading", "scanning", "queued", "processing", "open"):
            mine.add_column(column, justify="left" if column == "lane" else "right")
        for row in body["lanes"]:
            mine.add_row(
                row["lane"], *(str(row.get(c, 0)) for c in ("uploading", "scanning", "queued", "processing", "open"))
            )
        out.print(mine)
        return 0
    table = Table(title="queues: waiting, being processed, dead-lettered")
    for column in ("concern", "lane", "waiting", "in flight", "delayed", "oldest", "DLQ"):
        table.add_column(column, justify="left" if column in ("concern", "lane") else "right")
    for row in body["queues"]:
        dlq = row.get("dlqDepth")
        table.add_row(
            row["concern"],
            row["lane"],
            str(row["depth"]),
            str(row["inFlight"]),
            str(row["delayed"]),
            _age(row.get("oldestAgeSeconds")),
            "-" if dlq is None else f"[red]{dlq}[/red]" if dlq else "0",
        )
    out.print(table)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    """Download a job's variant (``original``, ``text`` or a preset); one being (re)made is waited for."""
    with ExitStack() as stack:
        client, _ = _target(args, stack, allow_embedded=False)
        job = client.job(args.job)
        if not job.get("hash"):
            raise UsageError(f"job {args.job} is {job['state']}: it has no stored file yet")
        url = client.variant_url(job["hash"], args.variant, timeout=args.timeout)
        response = requests.get(url, timeout=60)
    if response.status_code != 200:
        code = _xml_field(response.text, "Code") or "http.error"
        detail = _xml_field(response.text, "Message") or response.text[:200]
        err.print(f"[red]docpipe: the storage refused the download: {response.status_code} {code}: {detail}[/red]")
        return 1
    content_type = response.headers.get("Content-Type", "").split(";")[0]
    ext = {"image/jpeg": ".jpg", "image/webp": ".webp", "application/json": ".json"}.get(content_type, "")
    name = Path(job["name"]).stem if args.variant != "original" else job["name"]
    target = Path(args.output or (f"{name}.{args.variant}{ext}" if args.variant != "original" else name))
    target.write_bytes(response.content)
    out.print(f"{args.variant} of {job['name']}: {len(response.content)} bytes → {target}")
    return 0


def _xml_field(text: str, name: str) -> str | None:
    """One field of S3's XML error body (``<Code>``, ``<Message>``)."""
    start, end = text.find(f"<{name}>"), text.find(f"</{name}>")
    return text[start + len(name) + 2 : end] if 0 <= start < end else None

"""``docpipe process FILE…``: upload files (big ones in parts, resumable), follow their jobs with progress
bars, print the results.

Registered by :func:`docpipe_local.cli.parser`; it shares its way of finding a stack and printing.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from docpipe_local import multipart
from docpipe_local.cli import UsageError, _human, _target, err, out
from docpipe_local.client import ApiError, DocpipeClient, UploadError
from docpipe_local.live import JobFeed


def cmd_process(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    with ExitStack() as stack:
        client, _ = _target(args, stack, allow_embedded=True)
        # Ctrl-C stops the uploads in parts after the parts in flight; running the command again resumes them.
        signal.signal(signal.SIGINT, lambda signum, frame: multipart.STOP.set())
        results = _process(client, paths, args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_results(results)
    if any(r["state"] == "interrupted" for r in results):
        return 130
    return 0 if all(r["state"] == "ready" for r in results) else 1


def _process(client: DocpipeClient, paths: list[Path], args: argparse.Namespace) -> list[dict[str, Any]]:
    show = not args.json and err.is_terminal
    progress = Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not show,
    )

    limit = (
        multipart.threshold(client) if any(p.stat().st_size > multipart.DEFAULT_THRESHOLD // 2 for p in paths) else 0
    )

    def one(path: Path, task: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            created, sent = multipart.send(
                client,
                path,
                limit=limit or multipart.DEFAULT_THRESHOLD,
                priority=args.priority,
                ocr=args.ocr,
                parallel=args.parallel,
                progress=lambda done, total: progress.update(
                    task, completed=50 * done / max(total, 1), status=f"{_human(done)} of {_human(total)}"
                ),
            )
            uploaded = time.monotonic()
            job = feed.wait(
                created["jobId"],
                timeout=args.timeout,
                on_update=lambda j: progress.update(  # "completing": a large upload's parts being joined
                    task, completed=50 + j["progress"] / 2, status=j.get("step") or j["state"]
                ),
            )
        except ApiError as exc:
            progress.update(task, completed=100, status="refused")
            return {"file": str(path), "state": "failed", "error": {"code": exc.code, "message": exc.message}}
        except multipart.Interrupted as exc:  # Ctrl-C: the parts sent stay, the same command resumes
            progress.update(task, status="interrupted")
            error = {"code": "upload.interrupted", "message": str(exc)}
            return {"file": str(path), "state": "interrupted", "error": error, **getattr(exc, "report", {})}
        except (UploadError, requests.RequestException) as exc:
            progress.update(task, completed=100, status="error")
            return {"file": str(path), "state": "failed", "error": {"code": "upload.failed", "message": str(exc)}}
        progress.update(task, completed=100, status=job["state"])
        return {
            "file": str(path),
            **job,
            **sent,
            "uploadSeconds": round(uploaded - started, 3),
            "seconds": round(time.monotonic() - started, 3),
        }

    # progress is pushed while the socket is up (no polling then); polled while it is not
    with JobFeed.open(client) as feed, progress, ThreadPoolExecutor(max_workers=min(4, len(paths))) as pool:
        tasks = [progress.add_task(p.name, total=100, status="waiting") for p in paths]
        return list(pool.map(one, paths, tasks))


def _print_results(results: list[dict[str, Any]]) -> None:
    table = Table(title="docpipe results")
    for column in ("file", "state", "size", "type", "sha-256", "seconds", "error"):
        table.add_column(column, overflow="ellipsis" if column == "sha-256" else "fold", no_wrap=column != "file")
    for r in results:
        state = r["state"]
        style = "green" if state == "ready" else "red"
        error = r.get("error")
        table.add_row(
            Path(r["file"]).name,
            f"[{style}]{state}[/{style}]",
            _human(r.get("size")),
            r.get("type", "-"),
            (r.get("hash") or "-")[:12],
            f"{r['seconds']:.2f}" if "seconds" in r else "-",
            error["code"] if error else "",
        )
    out.print(table)
    for r in results:
        if r.get("error"):
            out.print(
                f"[red]{Path(r['file']).name}[/red]: {r['error']['code']}: {r['error']['message']}", soft_wrap=True
            )
    ready = sum(r["state"] == "ready" for r in results)
    out.print(f"{ready} of {len(results)} ready")

"""``docpipe``: run the local stack and push files through it.

Exit codes: 0 when every job is ``ready`` (or the command succeeded), 1 when some job failed or an
operation failed, 2 for usage errors (bad arguments, missing files, no stack to talk to).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from docpipe_local.client import ApiError, DocpipeClient

STATE_FILE = Path(".docpipe") / "stack.json"
err = Console(stderr=True)
out = Console()


class UsageError(Exception):
    pass


# ---------------------------------------------------------------- finding a stack
def _read_state() -> dict[str, Any] | None:
    try:
        return dict(json.loads(STATE_FILE.read_text()))
    except (OSError, ValueError):
        return None


def _healthy(api: str) -> bool:
    try:
        return requests.get(f"{api}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _target(args: argparse.Namespace, stack: ExitStack, allow_embedded: bool) -> tuple[DocpipeClient, dict[str, Any]]:
    """The API to talk to: ``--api``/``DOCPIPE_API``, else a running ``docpipe up``, else (if allowed) a fresh embedded stack."""
    api = args.api or os.environ.get("DOCPIPE_API")
    token = args.token or os.environ.get("DOCPIPE_TOKEN")
    if api:
        return DocpipeClient(api, token), {"api": api}
    state = _read_state()
    if state and _healthy(state["api"]):
        return DocpipeClient(state["api"], token or state["token"]), state
    if not allow_embedded:
        raise UsageError("no stack is running: start one with `docpipe up`, or pass --api and --token")
    from docpipe_local.stack import LocalStack

    err.print("[dim]No stack running: starting an embedded one for this run (state is kept in memory only).[/dim]")
    started = time.monotonic()
    local = stack.enter_context(LocalStack())
    err.print(f"[dim]Embedded stack up in {time.monotonic() - started:.1f} s.[/dim]")
    assert local.template is not None
    return DocpipeClient(local.api_url, token or local.token_for(local.tokens[local.token])), {
        "api": local.api_url,
        "endpoint": local.endpoint,
        "region": local.region,
        "dynamodb": local.endpoints.get("dynamodb", local.endpoint),
        "jobsTable": local.template.physical_name("JobsTable"),
        "invokeToken": local.invoke_token,
        "stackName": local.template.stack_name,
        "accountId": local.template.account_id,
    }


# ---------------------------------------------------------------- commands
def cmd_up(args: argparse.Namespace) -> int:
    from docpipe_local.endpoints import EndpointUnavailable
    from docpipe_local.long_lived import freeze_survivors
    from docpipe_local.stack import LocalStack

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parameters = dict(p.split("=", 1) for p in args.parameter)
    endpoint, embedded = args.endpoint, tuple(s for s in args.embedded.split(",") if s)
    if args.localstack and args.endpoint:
        raise UsageError("--localstack finds LocalStack itself: pass it or --endpoint, not both")
    if args.localstack:
        from docpipe_local.emulator_commands import localstack_target

        endpoint, embedded = localstack_target(args)
    elif endpoint:
        err.print(f"[dim]checking the services at {endpoint}…[/dim]")
    # The developer's token is also the stack's own token (Lambda's Invoke API, `docpipe replay`): whoever
    # started the stack owns it. Each --admin user gets a token of their own (the developer's token, when
    # the developer is one of them), which carries the template's admin group claim.
    token = os.environ.get("DOCPIPE_TOKEN") or f"dev-{secrets.token_urlsafe(16)}"
    admins = {user: token if user == args.user else f"admin-{secrets.token_urlsafe(16)}" for user in args.admin}
    stack = LocalStack(
        endpoint=endpoint,
        embedded_services=embedded,
        api_port=args.port,
        parameters=parameters,
        tokens={token: args.user, **{t: user for user, t in admins.items()}},
        admins=set(admins),
        invoke_token=token,
    )
    try:
        stack.start()
    except EndpointUnavailable as exc:
        raise UsageError(f"{exc}; use --embedded {','.join([*embedded, *exc.services])}") from exc
    freeze_survivors()  # this process is the stack's from now on: its full collections stay short
    assert stack.template is not None
    # The tokens to use are JWTs the stack signed: the HTTP routes and the WebSocket API take them both.
    admins = {user: stack.token_for(user) for user in admins}
    state = {
        "api": stack.api_url,
        "endpoint": stack.endpoint,
        "token": stack.token_for(args.user),
        "user": args.user,
        "invokeToken": stack.invoke_token,
        "admins": admins,  # user → token
        "pid": os.getpid(),
        # `docpipe quota set` writes overrides straight into the stack's UsageTable
        "region": stack.region,
        "dynamodb": stack.endpoints.get("dynamodb", stack.endpoint),
        "usageTable": stack.template.physical_name("UsageTable"),
        "jobsTable": stack.template.physical_name("JobsTable"),  # `docpipe replay` seeds its fixtures' jobs
        # `docpipe replay` names this stack's buckets in its fixtures' events
        "stackName": stack.template.stack_name,
        "accountId": stack.template.account_id,
    }
    STATE_FILE.parent.mkdir(exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2))
    STATE_FILE.chmod(0o600)
    beside = f" (embedded: {', '.join(embedded)})" if endpoint and embedded else ""
    out.print(f"[bold green]docpipe is up[/bold green]  API {stack.api_url}   emulator {stack.endpoint}{beside}")
    out.print(
        f"  user [bold]{args.user}[/bold], token in {STATE_FILE} (export DOCPIPE_TOKEN={state['token']})",
        soft_wrap=True,
    )
    for user, admin_token in admins.items():
        out.print(
            f"  admin [bold]{user}[/bold], token {admin_token} (DOCPIPE_TOKEN={admin_token} docpipe queues)",
            soft_wrap=True,
        )
    out.print(f"  upload page {stack.api_url}/#token={state['token']}", soft_wrap=True)
    out.print("  logs in .docpipe/logs/   —   Ctrl-C to stop")

    def shutdown(signum: int, frame: Any) -> None:
        stack._stop.set()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        stack.wait()
    finally:
        out.print("stopping…")
        stack.stop()
        STATE_FILE.unlink(missing_ok=True)
    return 0


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


def cmd_jobs(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        client, _ = _target(args, stack, allow_embedded=False)
        page = client.jobs(limit=args.limit)
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    table = Table(title="jobs, newest first")
    for column in ("job", "name", "state", "progress", "size", "created", "error"):
        table.add_column(column, overflow="fold")
    for job in page["jobs"]:
        error = job.get("error")
        table.add_row(
            job["jobId"],
            job["name"],
            job["state"],
            f"{job['progress']}%",
            _human(job.get("size")),
            job["createdAt"],
            error["code"] if error else "",
        )
    out.print(table)
    return 0


def _each_job(job_ids: list[str], operation: Any, describe: Any) -> tuple[list[str], int]:
    """Apply an API operation to each job, printing what became of it; the jobs it succeeded for and the
    number of refusals (an ended job, an unknown id)."""
    done, refused = [], 0
    for job_id in job_ids:
        try:
            job = operation(job_id)
        except ApiError as exc:
            refused += 1
            out.print(f"[red]{job_id}[/red]: {exc.code}: {exc.message}", soft_wrap=True)
            continue
        named = f" ({job['name']})" if "name" in job else ""
        out.print(f"{job_id}{named}: {describe(job)}")
        done.append(job_id)
    return done, refused


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel jobs; exit 1 when one could not be (it had ended already, or does not exist)."""
    with ExitStack() as stack:
        client, _ = _target(args, stack, allow_embedded=False)
        _, refused = _each_job(args.jobs, client.cancel, lambda job: job["state"])
    return 1 if refused else 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Retry failed or cancelled jobs; with ``--wait``, wait for them like ``process`` does."""

    def describe(job: dict[str, Any]) -> str:
        tasks = ", ".join(job.get("requeued") or []) or "none (already on their way)"
        return f"{job['state']}; tasks queued again: {tasks}"

    with ExitStack() as stack:
        client, _ = _target(args, stack, allow_embedded=False)
        retried, failed = _each_job(args.jobs, client.retry, describe)
        for job_id in retried if args.wait else []:
            job = client.wait(job_id, timeout=args.timeout)
            error = job.get("error")
            out.print(f"{job_id} ({job['name']}): {job['state']}" + (f" ({error['code']})" if error else ""))
            failed += job["state"] != "ready"
    return 1 if failed else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from docpipe_local.replay import replay
    from docpipe_local.stack import project_root
    from docpipe_local.template import Template

    path = Path(args.event)
    if not path.is_file():
        raise UsageError(f"no such event file: {path}")
    with ExitStack() as stack:
        _, state = _target(args, stack, allow_embedded=args.embedded)
        if "endpoint" not in state:
            raise UsageError("replay needs a local stack (`docpipe up`), not just an API URL")
        template = None
        if "accountId" in state:  # a state file from before then: the fixtures' names are used as written
            template = Template.load(
                project_root() / "template.yaml",
                stack_name=state["stackName"],
                account_id=state["accountId"],
                region=state["region"],
            )
        result = replay(
            path,
            state["api"],
            state["endpoint"],
            function=args.function,
            seed_dirs=[Path(d) for d in args.seed or ("samples", "events/seed")],
            jobs=(state["dynamodb"], state["jobsTable"], state["region"]) if "jobsTable" in state else None,
            # the stack's own token: --token, else the running stack's (an older state file's "token" is it)
            token=args.token or state.get("invokeToken") or os.environ.get("DOCPIPE_TOKEN") or state.get("token"),
            template=template,
        )
    print(json.dumps(result.body, indent=2))
    return 0 if result.ok else 1


# ---------------------------------------------------------------- entry point
def parser() -> argparse.ArgumentParser:
    from docpipe_local import account_commands, emulator_commands, process_commands, view_commands, watch_commands

    p = argparse.ArgumentParser(prog="docpipe", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def target(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--api", help="API base URL (default: the running `docpipe up`, env DOCPIPE_API)")
        sp.add_argument("--token", help="bearer token (default: the running stack's, env DOCPIPE_TOKEN)")

    up = sub.add_parser("up", help="run the local stack until Ctrl-C")
    up.add_argument(
        "--port",
        type=int,
        default=8780,
        help="port of the HTTP API and the upload page, whose origin the buckets' CORS rules allow (default 8780)",
    )
    up.add_argument("--endpoint", help="use this AWS endpoint (an emulator) instead of the embedded one")
    up.add_argument(
        "--localstack",
        action="store_true",
        help="use LocalStack, found as localstack-client does (LOCALSTACK_HOST); what it cannot serve stays embedded",
    )
    up.add_argument(
        "--embedded",
        default="",
        help="services to keep on the embedded emulator with --endpoint or --localstack, e.g. dynamodb",
    )
    up.add_argument("--user", default="dev", help="the user the development token stands for (default dev)")
    up.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="USER",
        help="give USER a token of its own that makes it an operator (the template's AdminGroup); repeatable",
    )
    up.add_argument(
        "--parameter", action="append", default=[], metavar="NAME=VALUE", help="template parameter override"
    )
    up.set_defaults(func=cmd_up)

    process = sub.add_parser("process", help="upload files, wait for their jobs, print the results")
    process.add_argument("files", nargs="+", metavar="FILE")
    process.add_argument("--priority", choices=("high", "normal", "low"))
    process.add_argument("--ocr", action="store_true", help="OCR images too (photos or scans of documents)")
    process.add_argument("--json", action="store_true", help="print results as JSON")
    process.add_argument("--timeout", type=float, default=300, help="seconds to wait per job (default 300)")
    process.add_argument(
        "--parallel", type=int, default=4, metavar="N", help="parts of a big file sent at once (default 4)"
    )
    target(process)
    process.set_defaults(func=process_commands.cmd_process)

    jobs = sub.add_parser("jobs", help="list your jobs")
    jobs.add_argument("--limit", type=int, default=25)
    jobs.add_argument("--json", action="store_true")
    target(jobs)
    jobs.set_defaults(func=cmd_jobs)

    cancel = sub.add_parser("cancel", help="cancel jobs that have not ended")
    cancel.add_argument("jobs", nargs="+", metavar="JOB_ID")
    target(cancel)
    cancel.set_defaults(func=cmd_cancel)

    retry = sub.add_parser("retry", help="run failed or cancelled jobs again")
    retry.add_argument("jobs", nargs="+", metavar="JOB_ID")
    retry.add_argument("--wait", action="store_true", help="wait for the retried jobs to end")
    retry.add_argument("--timeout", type=float, default=300, help="seconds to wait per job (default 300)")
    target(retry)
    retry.set_defaults(func=cmd_retry)

    account_commands.add_parsers(sub, target)

    queues = sub.add_parser("queues", help="depth, in-flight, oldest message and DLQ depth of every lane")
    queues.add_argument("--json", action="store_true")
    target(queues)
    queues.set_defaults(func=view_commands.cmd_queues)

    get = sub.add_parser("get", help="download a job's original or one of its presets")
    get.add_argument("job", metavar="JOB_ID")
    get.add_argument(
        "variant",
        nargs="?",
        default="original",
        help="original, text (documents; images uploaded with --ocr), ai-chat, ai-vision, thumbnail or preview",
    )
    get.add_argument("-o", "--output", help="file to write (default: NAME.VARIANT.EXT here)")
    get.add_argument("--timeout", type=float, default=60, help="seconds to wait for a preset being made")
    target(get)
    get.set_defaults(func=view_commands.cmd_get)

    rp = sub.add_parser("replay", help="invoke a function with a fixture event against the running stack")
    rp.add_argument("event", metavar="EVENT.json")
    rp.add_argument("--function", help="logical id (default: the event's folder name, e.g. IngestFunction)")
    rp.add_argument(
        "--seed",
        action="append",
        default=[],
        metavar="DIR",
        help="folder to seed missing S3 objects from, by file name (default: samples/ and events/seed/)",
    )
    rp.add_argument("--embedded", action="store_true", help="start an embedded stack for this one replay")
    target(rp)
    rp.set_defaults(func=cmd_replay)

    emulator_commands.add_parsers(sub)
    watch_commands.add_parser(sub, target)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        err.print(f"[red]docpipe: {exc}[/red]", soft_wrap=True)
        return 2
    except ApiError as exc:
        err.print(f"[red]docpipe: {exc}[/red]", soft_wrap=True)
        return 1


if __name__ == "__main__":
    # Through the imported module: the command modules raise its UsageError, not this __main__'s copy of it.
    from docpipe_local.cli import main as imported_main

    sys.exit(imported_main())

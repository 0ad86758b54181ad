"""``docpipe delete``, ``docpipe usage`` and ``docpipe quota set``: what a user holds and may use.

Registered by :func:`docpipe_local.cli.parser`; they share its way of finding a stack and printing.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from typing import Any

from rich.table import Table

from docpipe_local.cli import UsageError, _each_job, _healthy, _human, _read_state, _target, out


def cmd_delete(args: argparse.Namespace) -> int:
    """Purge jobs for good; exit 1 when one could not be (it does not exist)."""
    with ExitStack() as stack:
        client, _ = _target(args, stack, allow_embedded=False)
        _, refused = _each_job(args.jobs, client.purge, lambda job: "deleted")
    return 1 if refused else 0


def cmd_usage(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        client, _ = _target(args, stack, allow_embedded=False)
        body = client.usage()
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    table = Table(title="your limits")
    for column in ("limit", "used", "of", "resets"):
        table.add_column(column, justify="left" if column == "limit" else "right")
    for row in body["limits"]:
        bytes_ = "Bytes" in row["name"]
        shown = _human if bytes_ else str
        table.add_row(
            row["name"],
            shown(row["used"]) if "used" in row else row.get("scope", "-"),
            shown(row["limit"]) if row.get("limit") else "unlimited",
            row.get("resetsAt", "-"),
        )
    out.print(table)
    return 0


def cmd_quota(args: argparse.Namespace) -> int:
    """Set one user's override of one limit on the running local stack (``default`` removes it)."""
    import boto3

    from docpipe.quotas import LIMIT_NAMES
    from docpipe_local.quotas import usage_repository
    from docpipe_local.stack import CREDENTIALS

    if args.name not in LIMIT_NAMES:
        raise UsageError(f"unknown limit {args.name!r}; one of {', '.join(LIMIT_NAMES)}")
    value = None if args.value == "default" else args.value
    if value is not None and not (value.isdigit() and len(value) <= 18):
        raise UsageError("VALUE is a whole number (0 for unlimited) or 'default'")
    state = _read_state()
    if not state or "usageTable" not in state or not _healthy(state["api"]):
        raise UsageError("no stack is running: quotas are set on the stack `docpipe up` runs")
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=state["dynamodb"],
        region_name=state["region"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
    )
    overrides = usage_repository(state["usageTable"], dynamodb).set_override(
        args.user, args.name, None if value is None else int(value)
    )
    out.print(f"{args.user}: {json.dumps(overrides) if overrides else 'no overrides (the defaults hold)'}")
    return 0


def add_parsers(sub: Any, target: Any) -> None:
    delete = sub.add_parser("delete", help="delete jobs for good, and their files when nothing else uses them")
    delete.add_argument("jobs", nargs="+", metavar="JOB_ID")
    target(delete)
    delete.set_defaults(func=cmd_delete)

    usage = sub.add_parser("usage", help="your limits, what is used of them, and when they reset")
    usage.add_argument("--json", action="store_true")
    target(usage)
    usage.set_defaults(func=cmd_usage)

    quota = sub.add_parser("quota", help="per-user limits on the running local stack")
    quota_sub = quota.add_subparsers(dest="quota_command", required=True)
    quota_set = quota_sub.add_parser("set", help="raise or lower one limit for one user (0: unlimited)")
    quota_set.add_argument("user", metavar="USER")
    quota_set.add_argument("name", metavar="NAME", help="UploadsPerMinute, StoredBytesPerUser, ...")
    quota_set.add_argument("value", metavar="VALUE", help="a whole number, 0 for unlimited, or 'default'")
    quota_set.set_defaults(func=cmd_quota)

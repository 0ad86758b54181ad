"""``docpipe localstack start|stop``, ``docpipe up --localstack``'s services, and ``docpipe event``: the
stack's AWS elsewhere than on the embedded emulator (LocalStack, or a deployed stack's buckets).

Registered by :func:`docpipe_local.cli.parser`; they share its state folder and its way of printing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from docpipe_local.cli import STATE_FILE, UsageError, err, out


def localstack_target(args: argparse.Namespace) -> tuple[str, tuple[str, ...]]:
    """``--localstack``: LocalStack's endpoint (localstack-client's configuration), and the services to
    embed beside it: those its health check reports unavailable, or that do not answer."""
    from docpipe_local.endpoints import SERVICE_NAMES
    from docpipe_local.localstack import edge_url, services_to_embed
    from docpipe_local.stack import CREDENTIALS, SERVICES

    url = edge_url()
    err.print(f"[dim]LocalStack at {url} (localstack-client: LOCALSTACK_HOST, AWS_ENDPOINT_URL): checking…[/dim]")
    asked = tuple(s for s in args.embedded.split(",") if s)
    try:
        reasons = services_to_embed(url, [s for s in SERVICES if s not in asked], CREDENTIALS)
    except LookupError as exc:
        raise UsageError(f"{exc}: start it with `docpipe localstack start`, or set LOCALSTACK_HOST") from exc
    for service, reason in reasons.items():
        err.print(f"  LocalStack's {SERVICE_NAMES.get(service, service)}: {reason}; embedded")
    return url, (*asked, *reasons)


def cmd_event(args: argparse.Namespace) -> int:
    """Print a fixture event with the buckets of a given stack, account and region (``sam local invoke -e``)."""
    from docpipe_local.replay import for_stack
    from docpipe_local.stack import project_root
    from docpipe_local.template import Template

    path = Path(args.event)
    if not path.is_file():
        raise UsageError(f"no such event file: {path}")
    account = args.account
    if account is None:  # the account of the caller's own AWS credentials
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            account = boto3.client("sts", region_name=args.region).get_caller_identity()["Account"]
        except (BotoCoreError, ClientError) as exc:
            raise UsageError(f"pass --account: your AWS credentials did not name one ({exc})") from exc
    template = Template.load(
        Path(args.template) if args.template else project_root() / "template.yaml",
        stack_name=args.stack_name,
        account_id=account,
        region=args.region,
    )
    print(json.dumps(for_stack(json.loads(path.read_text()), template), indent=2))
    return 0


def cmd_localstack(args: argparse.Namespace) -> int:
    """Start LocalStack (host mode, from .tools/localstack) in the background, or stop the one started here."""
    from docpipe_local.localstack import LocalStackServer, read_state, stop_process_group
    from docpipe_local.stack import project_root

    state_file = STATE_FILE.parent / "localstack.json"
    if args.action == "stop":
        state = read_state(state_file)
        if state is None:
            raise UsageError(f"no LocalStack was started from here ({state_file} is missing)")
        stopped = stop_process_group(int(state["pid"]))
        state_file.unlink(missing_ok=True)
        out.print(f"LocalStack at {state['url']} " + ("stopped" if stopped else "had already stopped"))
        return 0
    python = Path(args.python) if args.python else project_root() / ".tools" / "localstack" / "bin" / "python"
    if not python.exists():
        raise UsageError(f"LocalStack is not installed at {python}: run `make localstack` (needs Python 3.13)")
    (STATE_FILE.parent / "logs").mkdir(parents=True, exist_ok=True)
    log_path = STATE_FILE.parent / "logs" / "localstack.log"
    server = LocalStackServer(python, port=args.port, log_path=log_path)
    err.print(f"[dim]starting LocalStack on {server.url} (about 20 s; log in {log_path})…[/dim]")
    started = time.monotonic()
    try:
        url = server.start(timeout=args.timeout)
    except (RuntimeError, TimeoutError) as exc:
        raise UsageError(str(exc)) from exc
    state_file.write_text(json.dumps({"pid": server.pid, "url": url, "log": str(log_path)}, indent=2))
    out.print(f"LocalStack is up at {url} in {time.monotonic() - started:.1f} s (pid {server.pid})")
    out.print(f"  LOCALSTACK_HOST=127.0.0.1:{args.port} docpipe up --localstack   —   docpipe localstack stop")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("event", help="print a fixture event with a deployed stack's bucket names (sam local invoke)")
    ev.add_argument("event", metavar="EVENT.json")
    ev.add_argument("--stack-name", required=True, help="the deployed stack's name (samconfig.toml's stack_name)")
    ev.add_argument("--region", required=True)
    ev.add_argument("--account", help="its AWS account id (default: the account of your AWS credentials)")
    ev.add_argument("--template", help="the template (default: template.yaml of this project)")
    ev.set_defaults(func=cmd_event)

    ls = sub.add_parser(
        "localstack", help="start LocalStack (installed by `make localstack`) in the background, or stop it"
    )
    ls.add_argument("action", choices=("start", "stop"))
    ls.add_argument("--port", type=int, default=4566, help="its port on 127.0.0.1 (default 4566)")
    ls.add_argument("--python", help="the Python of LocalStack's venv (default .tools/localstack/bin/python)")
    ls.add_argument("--timeout", type=float, default=120, help="seconds to wait for it to answer (default 120)")
    ls.set_defaults(func=cmd_localstack)

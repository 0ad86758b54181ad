"""LocalStack as the local stack's AWS: finding it, asking it what it serves, and running it without Docker.

- :func:`edge_url` is where LocalStack is, as ``localstack-client`` says: its endpoint configuration,
  which reads ``AWS_ENDPOINT_URL``, else ``LOCALSTACK_HOST`` (``host:port``, default
  ``localhost:4566``) and ``USE_SSL``. (localstack-client 2.x no longer reads ``EDGE_PORT``; LocalStack
  itself retired it for ``GATEWAY_LISTEN``/``LOCALSTACK_HOST``.)
- :func:`services_to_embed` reads ``/_localstack/health``: a service it reports as anything but
  ``available`` or ``running`` is embedded, and so is one that it lists but that does not answer
  (:mod:`docpipe_local.endpoints`): without Java, LocalStack's DynamoDB is listed ``available`` and
  answers 500. S3 and SQS go together, since S3's notifications must reach the queues.
- :class:`LocalStackServer` runs LocalStack's runtime in host mode from its own venv
  (``.tools/localstack``, Python 3.13, made by ``make localstack``) in the background, the way
  ``docpipe localstack start`` and the LocalStack test suite do. It validates S3 signatures
  (``S3_SKIP_SIGNATURE_VALIDATION=0``), so a URL signed with the wrong secret fails there as on AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

from docpipe_local.endpoints import unavailable

HEALTH_PATH = "/_localstack/health"
SERVING = ("available", "running")
TOGETHER = ("s3", "sqs")  # S3's event notifications go to SQS inside the emulator


def edge_url() -> str:
    """LocalStack's endpoint as localstack-client configures it."""
    from localstack_client.config import get_service_endpoint

    return str(get_service_endpoint("edge")).rstrip("/")


def health(url: str, timeout: float = 3) -> dict[str, Any] | None:
    """LocalStack's health document, or None when nothing at ``url`` answers as LocalStack does."""
    try:
        response = requests.get(f"{url.rstrip('/')}{HEALTH_PATH}", timeout=timeout)
        body = response.json()
    except (requests.RequestException, ValueError):
        return None
    return body if response.status_code == 200 and isinstance(body.get("services"), dict) else None


def is_localstack(url: str) -> bool:
    return health(url) is not None


def services_to_embed(
    url: str, needed: Iterable[str], credentials: dict[str, str], region: str = "us-east-1"
) -> dict[str, str]:
    """The services of ``needed`` to run on the embedded emulator beside LocalStack at ``url``, each with
    the reason: what the health check reports, or how the service failed to answer."""
    report = health(url)
    if report is None:
        raise LookupError(f"LocalStack does not answer at {url} ({HEALTH_PATH})")
    needed = list(needed)
    states = report["services"]
    reasons = {s: f"reported {states.get(s, 'missing')}" for s in needed if states.get(s) not in SERVING}
    reasons.update(unavailable(url, [s for s in needed if s not in reasons], credentials, region))
    for service in TOGETHER:
        partner = next((s for s in TOGETHER if s != service and s in reasons), None)
        if partner and service in needed and service not in reasons:
            reasons[service] = f"goes with {partner}"
    return {s: reasons[s] for s in needed if s in reasons}


class LocalStackServer:
    """LocalStack's runtime in host mode, in a process group of its own that outlives the command that started it."""

    def __init__(self, python: Path, port: int = 4566, log_path: Path | None = None) -> None:
        self.python, self.port = Path(python), port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        listen = f"127.0.0.1:{self.port}"
        return {
            **os.environ,
            "OVERRIDE_IN_DOCKER": "0",  # host mode: no container
            "DNS_ADDRESS": "0",  # no DNS server of its own
            "GATEWAY_SERVER": "hypercorn",
            "GATEWAY_LISTEN": listen,
            "LOCALSTACK_HOST": listen,
            "S3_SKIP_SIGNATURE_VALIDATION": "0",  # check signatures, as S3 does
            "SKIP_SSL_CERT_DOWNLOAD": "1",  # its self-signed certificate will do: the stack speaks plain HTTP to it
            "DISABLE_EVENTS": "1",  # no usage analytics sent out
        }

    def start(self, timeout: float = 120) -> str:
        """Start LocalStack and wait until its health check answers; its URL."""
        if not self.python.exists():
            raise FileNotFoundError(f"no LocalStack runtime at {self.python} (make localstack installs it)")
        if health(self.url, timeout=1) is not None:
            raise RuntimeError(f"LocalStack (or something else) already answers at {self.url}")
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [str(self.python), "-m", "localstack.runtime.main"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                start_new_session=True,  # Ctrl-C in the terminal that started it does not stop it
            )
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"LocalStack exited with code {self.process.returncode}; see {self.log_path}")
            if health(self.url, timeout=1) is not None:
                return self.url
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"LocalStack did not answer at {self.url} within {timeout:.0f} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=1)


def stop_process_group(pid: int, timeout: float = 20) -> bool:
    """SIGTERM the process group LocalStack leads (it was started in a session of its own), then SIGKILL
    whatever is left after ``timeout``. False when there was no such process."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None

"""moto's server in a child process of its own, patched as docpipe needs (:mod:`docpipe_local.emulator`),
and the credentials every AWS call of the local stack and of its functions is signed with."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

# What every AWS call of the stack and of its functions is signed with: LocalStack validates S3 signatures
# of an access key it does not know against the secret `test` (moto validates none).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_SESSION_TOKEN": "test"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """moto's server in a child process, so the emulator has its own core and dies with a kill."""

    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("ab")
        env = {**os.environ, **CREDENTIALS}
        # moto's server with werkzeug's line per request turned off: under load the logging alone cost it
        # a tenth of its CPU, and its CPU is every AWS call's latency.
        # DynamoDB's writes made atomic under moto's threads, S3's response overrides of a presigned
        # GET honoured, its requests counted by service and operation, and two of its costs that grow with a
        # busy stack cut (docpipe_local.emulator).
        quiet = (
            "import logging, sys; logging.getLogger('werkzeug').setLevel(logging.WARNING); "
            "from docpipe_local import emulator; "
            "emulator.serialize_dynamodb_writes(); emulator.honour_s3_response_overrides(); emulator.count_requests(); "
            "emulator.speed_up_moto(); "
            "from moto.server import main; main(sys.argv[1:])"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", quiet, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto's server exited with code {self.process.returncode}; see its log")
            try:
                requests.get(f"{self.url}/moto-api/data.json", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"moto's server did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()

"""`docpipe up --admin USER`: the admin gets a token of its own, and the developer's token stays the
stack's own token, the one `docpipe replay` sends to Lambda's Invoke API."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_up_gives_each_admin_a_token_and_replay_the_stacks_token(tmp_path) -> None:
    # given a stack started with an admin
    up = subprocess.Popen(
        [sys.executable, "-m", "docpipe_local.cli", "up", "--port", "0", "--user", "erin", "--admin", "root"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = tmp_path / ".docpipe" / "stack.json"
    try:
        started = time.monotonic()
        while not state_file.exists() and time.monotonic() - started < 60:
            time.sleep(0.1)
        state = json.loads(state_file.read_text())

        # then root has a token of its own, which the API takes, and erin's token is the stack's
        admin_token = state["admins"]["root"]
        assert admin_token not in (state["token"], state["invokeToken"])
        assert state["invokeToken"] == state["token"]
        jobs = requests.get(f"{state['api']}/jobs", headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
        assert jobs.status_code == 200, jobs.text

        # and replay from the same folder reaches the Invoke API with the stack's token
        run = subprocess.run(
            [sys.executable, "-m", "docpipe_local.cli", "replay", str(ROOT / "events/ApiFunction/health.json")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["statusCode"] == 200

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=15) == 0
        assert f"admin root, token {admin_token}" in up.stdout.read()  # type: ignore[union-attr]
    finally:
        if up.poll() is None:
            up.kill()

"""`docpipe up` as a user runs it: starts in seconds, serves other commands, stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_up_serves_process_and_stops_cleanly_on_ctrl_c(tmp_path) -> None:
    # given a stack started by `docpipe up` in an empty folder
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "docpipe_local.cli", "up", "--port", "0", "--user", "erin", "--admin", "root"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = tmp_path / ".docpipe" / "stack.json"
    try:
        while not state_file.exists() and time.monotonic() - started < 30:
            time.sleep(0.1)
        startup = time.monotonic() - started
        state = json.loads(state_file.read_text())
        assert requests.get(f"{state['api']}/health", timeout=5).json()["ok"] is True
        assert startup < 15

        # when a file is processed from the same folder
        run = subprocess.run(
            [sys.executable, "-m", "docpipe_local.cli", "process", str(ROOT / "samples/hello.txt"), "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)[0]["state"] == "ready"
        assert "embedded" not in run.stderr  # it used the running stack

        # and the admin has a token of its own, which the API takes; erin's is a JWT the stack signed (the HTTP
        # API and the WebSocket API take it), the stack's own token another
        admin_token = state["admins"]["root"]
        assert admin_token not in (state["token"], state["invokeToken"])
        assert state["token"].count(".") == 2 and state["invokeToken"] != state["token"]
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

        # then Ctrl-C stops everything and removes the state file
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=15) == 0
        assert not state_file.exists()
        printed = up.stdout.read()  # type: ignore[union-attr]
        assert "docpipe is up" in printed
        assert f"admin root, token {admin_token}" in printed
    finally:
        if up.poll() is None:
            up.kill()

"""Live progress over the local stack's WebSocket API, with real WebSocket clients: what an upload pushes,
to whom, what a client that reconnects gets back, and `docpipe watch`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import websocket

from docpipe_local import live
from docpipe_local.client import DocpipeClient, post_file
from docpipe_local.live import JobFeed
from docpipe_local.stack import LocalStack
from tests.fixtures.cli import ROOT

pytestmark = pytest.mark.timeout(180)


def push_url(client: DocpipeClient) -> str:
    url = client.config()["push"]["url"]
    assert url.startswith("ws://127.0.0.1:") and url.endswith("/push")
    return str(url)


def connect(client: DocpipeClient, token: str) -> websocket.WebSocket:
    return websocket.create_connection(f"{push_url(client)}?token={token}", timeout=30)


def a_text_file(tmp_path: Path, words: str) -> Path:
    path = tmp_path / f"{words.split()[0]}.txt"
    path.write_text(f"{words}\n" * 20)
    return path


def frames_until_ended(socket: websocket.WebSocket, job_id: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = json.loads(socket.recv())
        frames.append(frame)
        if frame["type"] == "job" and frame["job"]["jobId"] == job_id and frame["job"]["state"] in live.TERMINAL:
            return frames


def test_an_uploads_updates_arrive_by_push_to_ready_and_another_users_socket_gets_none(
    stack: LocalStack, alice: DocpipeClient, tmp_path: Path
) -> None:
    # given: two users of their own (the session's alice may still have jobs of other tests settling), each
    # connected; nobody polls
    owner, other = (f"{who}-{uuid.uuid4().hex[:8]}" for who in ("pusher", "watcher"))
    alice = DocpipeClient(stack.api_url, stack.token_for(owner))
    mine = connect(alice, stack.token_for(owner))
    theirs = connect(alice, stack.token_for(other))
    path = a_text_file(tmp_path, "pushed progress of a text file")

    # when
    created = alice.create_upload(path.name, path.stat().st_size, "text/plain")
    waiting = json.loads(mine.recv())  # the new job is pushed before any byte arrives
    post_file(created["upload"], path)
    frames = [waiting, *frames_until_ended(mine, created["jobId"])]

    # then: the job's updates through to ready, the last as GET /jobs/{id} shows it
    jobs = [f["job"] for f in frames]
    assert {j["jobId"] for j in jobs} == {created["jobId"]}
    assert jobs[-1]["state"] == "ready" and jobs[-1]["progress"] == 100
    assert jobs[-1] == alice.job(created["jobId"])
    # progress was pushed as it changed: the waiting job's 0 before the upload, then on to 100. Not asserted: how
    # many frames came between, or their order. A batch of the stream's records pushes only the latest of each
    # job, so on a loaded machine the steps between (10, 55) can arrive as one frame with ready or as none; and
    # the job's record and its bytes' are pushed by invocations of their own, so two frames can cross (clients
    # keep the frame with more progress for the same updatedAt, test below)
    assert waiting["job"]["state"] == "uploading" and waiting["job"]["progress"] == 0
    progress = [f["job"]["progress"] for f in frames]
    assert progress[0] == 0 and max(progress) == 100 and all(0 <= p <= 100 for p in progress)
    assert all(f["changedAt"] <= f["sentAt"] for f in frames)
    # the other user's socket: the first thing on it is the answer to its ping, so nothing of the owner's came first
    theirs.send(json.dumps({"action": "ping"}))
    assert json.loads(theirs.recv()) == {"type": "pong"}
    mine.close()
    theirs.close()


def test_a_client_that_reconnects_receives_the_terminal_state_it_missed(
    stack: LocalStack, alice: DocpipeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = JobFeed.open(alice)
    assert feed.up.is_set()
    path = a_text_file(tmp_path, "missed while offline")
    created = alice.create_upload(path.name, path.stat().st_size, "text/plain")
    feed.follow([created["jobId"]])
    # the connection drops, and no reconnect succeeds until the job has ended
    online = threading.Event()
    connect_now = websocket.create_connection

    def held(*args: Any, **kwargs: Any) -> websocket.WebSocket:
        online.wait(60)
        return connect_now(*args, **kwargs)

    monkeypatch.setattr(live.websocket, "create_connection", held)
    assert feed._socket is not None
    feed._socket.abort()
    deadline = time.monotonic() + 5
    while feed.up.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not feed.up.is_set()

    post_file(created["upload"], path)
    deadline = time.monotonic() + 60
    while alice.job(created["jobId"])["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert feed.jobs[created["jobId"]]["state"] == "uploading"  # what it knew when the socket dropped

    online.set()  # it reconnects, and resumes: what ended meanwhile is read once
    deadline = time.monotonic() + 15
    while feed.jobs[created["jobId"]]["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.05)

    assert feed.up.is_set()
    assert feed.jobs[created["jobId"]]["state"] == "ready"
    feed.close()


def test_an_opaque_development_token_is_refused_by_the_websocket_api(stack: LocalStack, alice: DocpipeClient) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{push_url(alice)}?token=tok-alice", timeout=30)

    assert refused.value.status_code == 401
    assert json.loads(refused.value.resp_body)["code"] == "auth.required"


def test_docpipe_watch_follows_a_job_live_until_it_ends(
    stack: LocalStack, alice: DocpipeClient, tmp_path: Path
) -> None:
    path = a_text_file(tmp_path, "watched from the command line")
    created = alice.create_upload(path.name, path.stat().st_size, "text/plain")
    env = {**os.environ, "DOCPIPE_API": stack.api_url, "DOCPIPE_TOKEN": stack.token_for("alice")}
    watch = subprocess.Popen(
        [sys.executable, "-m", "docpipe_local.cli", "watch", created["jobId"], "--timeout", "90"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # it is following the job before the bytes arrive
    post_file(created["upload"], path)

    out, err = watch.communicate(timeout=120)

    assert watch.returncode == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith(created["jobId"][:8]) and "uploading" in lines[0]
    assert "ready 100%" in lines[-1] and "extract:done" in lines[-1]
    # not asserted: how many lines came between. The stream's records of one job in one batch push only its
    # latest view, so a quick text file can go from uploading to ready in one frame
    assert "polling" not in err


def test_the_gateway_takes_only_the_stacks_own_jwts_and_publishes_their_key(stack: LocalStack) -> None:
    import requests

    from docpipe_local.tokens import LocalIssuer

    assert stack.issuer is not None
    forged = LocalIssuer(stack.issuer.issuer, stack.issuer.audience).mint("alice")
    jwks = requests.get(f"{stack.api_url}/.well-known/jwks.json", timeout=30).json()
    mine = requests.get(
        f"{stack.api_url}/jobs", headers={"Authorization": f"Bearer {stack.token_for('alice')}"}, timeout=30
    )
    theirs = requests.get(f"{stack.api_url}/jobs", headers={"Authorization": f"Bearer {forged}"}, timeout=30)
    invoke = requests.post(
        f"{stack.api_url}/2015-03-31/functions/ApiFunction/invocations",
        headers={"Authorization": f"Bearer {stack.token_for('alice')}", "Content-Type": "application/json"},
        json={},
        timeout=30,
    )

    assert [key["alg"] for key in jwks["keys"]] == ["RS256"] and "d" not in jwks["keys"][0]  # public only
    assert mine.status_code == 200
    assert theirs.status_code == 401
    assert (invoke.status_code, invoke.json()["code"]) == (403, "auth.forbidden")  # a user's, not the stack's


def test_while_the_socket_is_up_a_waiting_client_reads_the_job_once_and_then_only_by_push(
    stack: LocalStack, alice: DocpipeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = JobFeed.open(alice)
    assert feed.up.is_set()
    reads: list[str] = []
    read = alice.job
    monkeypatch.setattr(alice, "job", lambda job_id: reads.append(job_id) or read(job_id))
    path = a_text_file(tmp_path, "no polling while pushed")
    created = alice.create_upload(path.name, path.stat().st_size, "text/plain")
    seen: list[str] = []

    waiting = threading.Thread(
        target=lambda: seen.append(
            feed.wait(created["jobId"], timeout=60, on_update=lambda j: seen.append(j["state"]))["state"]
        )
    )
    waiting.start()
    time.sleep(0.5)
    post_file(created["upload"], path)
    waiting.join(70)

    assert seen[-1] == "ready" and len(seen) >= 3
    # at most the first read when it started following (none when a pushed frame was there first); the rest by push
    assert reads in ([], [created["jobId"]])
    assert feed.frames >= 2
    feed.close()


def test_a_client_keeps_the_view_with_more_progress_when_two_frames_cross() -> None:
    known = {"jobId": "j", "updatedAt": "2026-12-02T10:00:00.000Z", "progress": 99}

    assert not live._newer_or_same({**known, "progress": 77}, known)  # read earlier, arrived later
    assert live._newer_or_same({**known, "progress": 99}, known)
    assert live._newer_or_same({**known, "updatedAt": "2026-12-02T10:00:01.000Z", "progress": 0}, known)  # a retry
    assert not live._newer_or_same({**known, "updatedAt": "2026-12-02T09:59:59.000Z", "progress": 100}, known)

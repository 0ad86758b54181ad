"""Faults survived through the local stack: a worker killed mid-task, a task killed twice on the same
bytes, duplicated S3 events and task messages, cancel and retry round trips.

The OCR lanes' visibility timeout is cut to seconds for this stack (``overrides``), so a message whose
worker was killed comes back in seconds rather than the template's 30 minutes; everything else is
the template as deployed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docpipe_local.client import ApiError, DocpipeClient, post_file
from docpipe_local.stack import LANE_NICE, LocalStack
from tests.fixtures.documents import SENTENCES, page_image
from tests.fixtures.files import image_bytes

pytestmark = pytest.mark.reliability

VISIBILITY = 6  # seconds, for the OCR lanes of this stack
# How long the cancel test waits for low-lane OCR to get through (s): the lane runs at a lower CPU priority,
# and under `make test` beside another pytest process's suite a 300-dpi page took past 90 s. The waits
# return as soon as their condition holds; this is only how long before a stuck lane counts as a failure.
LOW_LANE_WAIT = 240


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    overrides = {f"Ocr{lane}Queue": {"VisibilityTimeout": VISIBILITY} for lane in ("High", "Normal", "Low")}
    with LocalStack(
        state_dir=tmp_path_factory.mktemp("faults-stack"),
        tokens={"tok-carol": "carol", "tok-ops": "ops"},
        admins={"ops"},
        overrides=overrides,
    ) as local:
        yield local


@pytest.fixture
def carol(faults: LocalStack) -> DocpipeClient:
    return DocpipeClient(faults.api_url, faults.token_for("carol"))


def document_photo(tmp_path: Path, name: str, lines: int = 12, dpi: int = 200, salt: str = "") -> Path:
    """A photo of a printed page: OCR takes a second or more on it."""
    text = [f"{salt} {SENTENCES[i % len(SENTENCES)]}" for i in range(lines)]
    buffer = io.BytesIO()
    page_image(text, dpi=dpi).save(buffer, "PNG")
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


def upload(client: DocpipeClient, path: Path, **kwargs: Any) -> str:
    return str(client.upload_file(path, **kwargs)["jobId"])


def wait_for(what: Any, timeout: float = 60, every: float = 0.02) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def file_record(stack: LocalStack, digest: str) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    item = stack.client("dynamodb").get_item(
        TableName=stack.template.physical_name("FilesTable"), Key={"hash": {"S": digest}}, ConsistentRead=True
    )["Item"]
    return {k: TypeDeserializer().deserialize(v) for k, v in item.items()}


def dlq_depths(stack: LocalStack) -> dict[str, int]:
    sqs = stack.client("sqs")
    depths = {}
    for logical in stack.template.of_type("AWS::SQS::Queue"):
        if logical.endswith("DLQ"):
            url = stack.template.attributes[logical]["QueueUrl"]
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            depths[logical] = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
    return depths


def test_a_worker_killed_mid_task_loses_nothing(faults, carol, tmp_path) -> None:
    ocr = faults.runtimes["OcrFunction"]
    crashed_before = ocr.failures
    job_id = upload(carol, document_photo(tmp_path, "page.png", salt="killed"), ocr=True)

    digest = wait_for(lambda: carol.job(job_id).get("hash"))
    wait_for(lambda: file_record(faults, digest).get("ocrState") == "running")  # claimed: the OCR has begun
    pid = wait_for(lambda: next(iter(ocr.busy_pids()), None))
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    job = carol.wait(job_id, timeout=VISIBILITY * 3 + 60)

    record = file_record(faults, job["hash"])
    assert job["state"] == "ready", job
    assert ocr.failures > crashed_before  # the killed invocation was seen as a crash
    assert time.time() - killed_at >= VISIBILITY - 1  # it came back after its visibility timeout, not before
    assert (record["ocrState"], int(record["ocrAttempts"])) == ("done", 2)
    assert "killed" in carol.session.get(carol.variant_url(job["hash"], "text")).text
    assert sum(dlq_depths(faults).values()) == 0


def test_a_task_killed_twice_on_the_same_bytes_fails_with_its_code_and_never_reaches_the_dlq(
    faults, carol, tmp_path
) -> None:
    # given a slow OCR on the low lane (its one worker runs at the low lane's CPU priority)
    ocr = faults.runtimes["OcrFunction"]
    path = document_photo(tmp_path, "twice.png", lines=30, dpi=300, salt="twice")
    target = upload(carol, path, ocr=True, priority="low")
    digest = wait_for(lambda: carol.job(target).get("hash"))
    bystander = None

    # when its run is killed mid-task, and the run of its redelivered message too
    for attempt in (1, 2):
        wait_for(lambda a=attempt: _running(faults, digest, a), timeout=90)
        os.kill(wait_for(lambda: _low_lane_worker(ocr)), signal.SIGKILL)
        if bystander is None:  # another job's OCR, on the high lane, while the killed one comes back
            bystander = upload(carol, document_photo(tmp_path, "bystander.png", salt="bystander"), ocr=True)
    second_kill = time.time()
    job = carol.wait(target, timeout=VISIBILITY * 2 + 60)
    verdict = time.time() - second_kill
    other = carol.wait(bystander, timeout=90)
    wait_for(lambda: _ocr_lanes_idle(faults), timeout=30)

    # then the second kill fails the task with the image's code: no third run, no dead letter
    record = file_record(faults, digest)
    assert (job["state"], job["error"]["code"]) == ("failed", "image.too_many_pixels"), job
    assert (job["tasks"]["ocr"]["state"], job["tasks"]["presets"]["state"]) == ("failed", "done")
    assert (record["ocrState"], int(record["ocrKills"]), int(record["ocrAttempts"])) == ("failed", 2, 2)
    assert verdict < VISIBILITY + 30  # at the message's third receive, one visibility timeout after the kill
    assert sum(dlq_depths(faults).values()) == 0
    assert other["state"] == "ready", other
    assert "bystander" in carol.session.get(carol.variant_url(other["hash"], "text")).text


def _running(stack: LocalStack, digest: str, attempt: int) -> bool:
    record = file_record(stack, digest)
    return record.get("ocrState") == "running" and int(record.get("ocrAttempts") or 0) == attempt


def _low_lane_worker(runtime: Any) -> int | None:
    """The busy worker of the low lane: the one at its CPU priority (LANE_NICE), not the high lane's."""
    low = min(19, os.getpriority(os.PRIO_PROCESS, 0) + LANE_NICE["low"])
    for pid in runtime.busy_pids():
        try:
            if os.getpriority(os.PRIO_PROCESS, pid) == low:
                return int(pid)
        except OSError:  # it ended meanwhile
            continue
    return None


def s3_event(stack: LocalStack, key: str) -> str:
    bucket = stack.template.physical_name("UploadsBucket")
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Post",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }
    return json.dumps({"Records": [record]})


def test_triplicated_s3_events_and_task_messages_make_one_artifact_and_one_transition(faults, carol, tmp_path) -> None:
    path = tmp_path / "triplicate.jpg"
    path.write_bytes(image_bytes("JPEG", (1600, 1200), seed=77))
    created = carol.create_upload(path.name, path.stat().st_size, "image/jpeg")
    post_file(created["upload"], path)
    sqs = faults.client("sqs")
    ingest = faults.template.attributes[f"Ingest{created['lane'].title()}Queue"]["QueueUrl"]
    key = created["upload"]["fields"]["key"]
    for _ in range(3):  # S3 delivers at least once: the real event plus three copies, racing
        sqs.send_message(QueueUrl=ingest, MessageBody=s3_event(faults, key))
    job = carol.wait(created["jobId"], timeout=60)
    presets = faults.template.attributes["PresetsHighQueue"]["QueueUrl"]
    for _ in range(3):  # and a task message redelivered three times after the work is done
        sqs.send_message(
            QueueUrl=presets, MessageBody=json.dumps({"task": "presets", "hash": job["hash"], "lane": "high"})
        )
    wait_for(lambda: _drained(sqs, [ingest, presets]), timeout=30)

    record = file_record(faults, job["hash"])
    derived = faults.client("s3").list_objects_v2(
        Bucket=faults.template.physical_name("StoreBucket"), Prefix=f"derived/{job['hash']}/"
    )
    final = carol.job(created["jobId"])
    states = [entry["state"] for entry in final["history"]]
    assert final["state"] == "ready"
    assert len(states) == len(set(states)), states  # every transition once
    assert states[0] == "uploading" and states[-1] == "ready"
    assert int(record["presetsAttempts"]) == 1  # rendered once
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in derived["Contents"]) == [
        "ai-chat.jpg",
        "ai-vision.jpg",
        "preview.jpg",
        "thumbnail.webp",
    ]


def _drained(sqs: Any, urls: list[str]) -> bool:
    for url in urls:
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        if attrs["ApproximateNumberOfMessages"] != "0" or attrs["ApproximateNumberOfMessagesNotVisible"] != "0":
            return False
    return True


def test_cancel_skips_queued_work_and_retry_brings_it_back(faults, carol, tmp_path) -> None:
    # The OCR low lane runs one task at a time: a slow page holds it while the next job waits behind it.
    blocker = upload(
        carol, document_photo(tmp_path, "blocker.png", lines=30, dpi=300, salt="blocker"), ocr=True, priority="low"
    )
    blocker_digest = wait_for(lambda: carol.job(blocker).get("hash"))
    wait_for(lambda: file_record(faults, blocker_digest).get("ocrState") == "running", timeout=60)  # claimed
    target = upload(carol, document_photo(tmp_path, "target.png", salt="target"), ocr=True, priority="low")
    wait_for(lambda: carol.job(target)["state"] in ("queued", "processing"), timeout=30)

    cancelled = carol.cancel(target)
    blocked = carol.cancel(blocker)  # its OCR is running: it finishes, but the job stays cancelled
    digest = carol.job(target)["hash"]
    wait_for(
        lambda: file_record(faults, digest).get("ocrState") == "cancelled" and _ocr_lanes_idle(faults),
        timeout=LOW_LANE_WAIT,
    )
    after = carol.job(target)
    wait_for(lambda: file_record(faults, blocker_digest).get("ocrState") == "done", timeout=LOW_LANE_WAIT)

    assert (cancelled["state"], blocked["state"]) == ("cancelled", "cancelled")
    assert (after["state"], after["tasks"]["ocr"]["state"]) == ("cancelled", "skipped")
    assert "ocrAttempts" not in file_record(faults, digest)  # the skipped task never ran
    assert carol.job(blocker)["state"] == "cancelled"

    retried = carol.retry(target)
    done = carol.wait(target, timeout=LOW_LANE_WAIT)

    # the OCR skipped; the presets too when the cancel came before they had started
    assert retried["state"] in ("queued", "processing") and retried["requeued"][-1:] == ["ocr"]
    assert done["state"] == "ready", done
    assert [h["state"] for h in done["history"]][-2:] in (["queued", "ready"], ["processing", "ready"])
    assert "target" in carol.session.get(carol.variant_url(digest, "text")).text
    with pytest.raises(ApiError) as ended:
        carol.cancel(target)
    assert (ended.value.status, ended.value.code) == (409, "job.finished")


def _ocr_lanes_idle(stack: LocalStack) -> bool:
    sqs = stack.client("sqs")
    urls = [stack.template.attributes[f"Ocr{lane}Queue"]["QueueUrl"] for lane in ("High", "Normal", "Low")]
    return _drained(sqs, urls)


def test_queues_show_every_lane_through_the_cli_to_an_operator(faults, carol, capsys) -> None:
    from docpipe_local.cli import main

    code = main(["queues", "--json", "--api", faults.api_url, "--token", faults.token_for("ops")])

    rows = json.loads(capsys.readouterr().out)["queues"]
    assert code == 0
    concerns = ("ingest", "scan", "presets", "extract", "ocr")
    assert sorted((row["concern"], row["lane"]) for row in rows) == sorted(
        (concern, lane) for concern in concerns for lane in ("high", "normal", "low")
    )
    assert all(row["dlqDepth"] == 0 for row in rows)
    assert all(row["oldestAgeSeconds"] is not None for row in rows)  # the stack publishes queue ages

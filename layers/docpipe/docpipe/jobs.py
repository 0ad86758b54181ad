"""Jobs: one upload by one owner. Work is per content (hash); status is per job.

States: ``uploading → scanning → queued → processing → ready | failed | cancelled``: every plan
starts with the malware ``scan`` (:mod:`docpipe.scanning`), and nothing else of it runs before a clean verdict. A job's progress is
derived from its state and its plan of tasks, never stored separately.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from docpipe.errors import ArchiveUnsafe, ImageTooManyPixels, ScanUnsupported


class JobState(StrEnum):
    UPLOADING = "uploading"
    SCANNING = "scanning"
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobState.READY, JobState.FAILED, JobState.CANCELLED})
# The path every job with work to do takes, whether its bytes were known or not (so a dedupe hit's
# history has the same shape as a fresh upload's; see :func:`history_steps`).
PATH = (JobState.UPLOADING, JobState.SCANNING, JobState.QUEUED, JobState.PROCESSING)
SCAN = "scan"  # the first task of every plan
# How long a job that never receives its upload is kept, past the upload URL's expiry (the sweeper
# ends it as ``upload.expired`` long before: ``Settings.upload_grace_seconds`` after the URL expired).
UNCLAIMED_JOB_SECONDS = 24 * 3600


def new_job_id() -> str:
    return str(uuid.uuid4())


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def expires_in(seconds: int) -> int:
    """An epoch-seconds TTL value for DynamoDB."""
    return int(time.time()) + seconds


def history_steps(previous: str, new: str, planned: bool = True) -> list[str]:
    """The states a job with a plan passes on its way from ``previous`` to ``new`` without stopping.

    Work is shared per content, so a job whose bytes were processed already moves from ``uploading``
    straight to ``ready``; its history still shows ``queued`` and ``processing`` (at the same instant),
    as a fresh upload's does. An upload refused before it had a plan (``planned`` false), a cancel and
    a retry record only what happened.
    """
    if not planned or new not in (*PATH[1:], JobState.READY, JobState.FAILED) or previous not in PATH:
        return []
    after = PATH.index(JobState(previous)) + 1
    until = PATH.index(JobState(new)) if new in PATH else len(PATH)
    return [str(state) for state in PATH[after:until]]


def plan_for(content_type: str, family: str, ocr: bool = False) -> list[str]:
    """The tasks a stored file needs, by name: images get ``presets`` (and ``ocr`` when the upload asks
    for it: a photo of a document), documents and text files get ``extract``, whose scanned PDF pages
    go through OCR inside the same task.

    This is the seam where the processing stages plug in; ingest routes every task of a plan to that
    concern's lane. Every plan starts with ``scan``: ingest queues it alone, and the scan queues the rest
    once the bytes are clean (:mod:`docpipe.scanning`).
    """
    if family == "image":
        return [SCAN, "presets", "ocr"] if ocr else [SCAN, "presets"]
    if family in ("document", "text"):
        return [SCAN, "extract"]
    return [SCAN]


DEAD_LETTERED = {
    "code": "task.dead_lettered",
    "message": "The task's final attempt ended without finishing (killed, timed out or crashed), and it will not run "
    "again: its message goes to the dead-letter queue when that attempt's visibility timeout ends. "
    "POST /jobs/{id}/retry runs it again.",
}
OPEN_TASK_STATES = frozenset({"queued", "running", "ocr"})
# The runs of one task on the same bytes killed (out of memory, past their time limit) before the task is
# failed rather than run again: one kill may be the platform's; two are the bytes'.
KILLS_TO_FAIL = 2


def killed_error(task: str) -> dict[str, str]:
    """The error of a task whose runs were killed :data:`KILLS_TO_FAIL` times on the same bytes.

    Lambda does not tell the next invocation why the last one ended (``Runtime.OutOfMemory`` and a
    timeout are in the logs only): both kills mean the bytes need more memory or time than the function
    has, and give the same code, by what the task does: ``image.too_many_pixels`` for the work on an
    image (its presets and its OCR), ``archive.unsafe`` for reading a document, ``scan.unsupported`` for a
    scan (a file too big to scan in the scan function's time is not clean: it is refused).
    """
    if task == SCAN:
        return ScanUnsupported(
            "Scanning the file needs more memory or time than the scan function has: it was stopped twice."
        ).to_dict()
    if task == "extract":
        return ArchiveUnsafe(
            "Reading the document needs more memory or time than the function has: it was stopped twice."
        ).to_dict()
    return ImageTooManyPixels(
        "Processing the image needs more memory or time than the function has: it was stopped twice."
    ).to_dict()


def task_state(file: dict[str, Any], task: str, now: float | None = None) -> tuple[Any, dict[str, str] | None]:
    """A task's state and error. A run that is killed cannot say so; what it leaves behind on the file
    record does, once the end of its time limit has passed:

    - a task ``running`` after a kill (``{task}Kills``, counted by the claim that took it over) whose
      claim's lease (``{task}LeaseUntil``) has passed was killed again: ``failed`` with
      :func:`killed_error`. The worker records the same when the message comes back, and deletes it.
    - a task whose final attempt (the last receive before the dead-letter queue) passed its time limit
      (``{task}FinalAttemptEnds``) without ending is ``failed`` with ``task.dead_lettered``. Nothing will
      run it again, so the job says so at once; SQS moves the message to the dead-letter queue only
      when that receive's visibility timeout ends (6 times the function's timeout after the receive:
      minutes later), and the error's message says that it goes there, not that it is there.
    """
    state = file.get(f"{task}State")
    if state == "failed":
        return state, file.get(f"{task}Error") or {"code": "internal", "message": f"{task} failed"}
    now = time.time() if now is None else now
    lease = file.get(f"{task}LeaseUntil")
    killed_before = int(file.get(f"{task}Kills") or 0) >= KILLS_TO_FAIL - 1
    if state == "running" and killed_before and lease is not None and float(lease) < now:
        return "failed", killed_error(task)
    ends = file.get(f"{task}FinalAttemptEnds")
    if state in OPEN_TASK_STATES and ends is not None and float(ends) < now:
        return "failed", DEAD_LETTERED
    return state, None


def settle(plan: list[str], file: dict[str, Any], now: float | None = None) -> tuple[JobState, dict[str, str] | None]:
    """A job's state from its plan and its file's task states: the first failed task fails it (with
    that task's error), a scan not yet done keeps it scanning, all done makes it ready, anything
    running makes it processing."""
    states = []
    for task in plan:
        state, error = task_state(file, task, now)
        if state == "failed":
            return JobState.FAILED, error
        if task == SCAN and state != "done":
            return JobState.SCANNING, None
        if task != SCAN:
            states.append(state)
    if all(state == "done" for state in states):
        return JobState.READY, None
    if any(state in ("running", "ocr", "done") for state in states):
        return JobState.PROCESSING, None
    return JobState.QUEUED, None


_TASK_PROGRESS = {"done": 1.0, "failed": 1.0, "running": 0.5, "ocr": 0.6}


def progress(job: dict[str, Any], file: dict[str, Any] | None = None) -> int:
    """0 while uploading, 10 once stored, then up to 100 as the plan's tasks end."""
    state = job.get("state")
    if state in TERMINAL:
        return 100
    if state == JobState.UPLOADING:
        return 0
    plan = job.get("plan") or []
    if not plan or file is None:
        return 10
    done = sum(_TASK_PROGRESS.get(str(file.get(f"{task}State")), 0.0) for task in plan)
    return min(99, 10 + int(90 * done / len(plan)))


def _visible_state(state: Any) -> str:
    """Internal sub-states read as what they mean to a user: ``ocr`` (a document waiting on its
    scanned pages) as ``running``, ``cancelled`` work (skipped) as ``skipped``."""
    if state is None:
        return "queued"
    return {"ocr": "running", "cancelled": "skipped"}.get(str(state), str(state))


def attempts_base(file: dict[str, Any], plan: list[str], frozen: dict[str, Any] | None = None) -> dict[str, int]:
    """What a job counts its attempts from, per task, as it joins (or rejoins, on retry) its bytes' work:
    the attempts made before it joined are not its own (``frozen``: the ones it had counted already)."""
    frozen = frozen or {}
    return {task: int(file.get(f"{task}Attempts") or 0) - int(frozen.get(task) or 0) for task in plan}


def job_attempts(job: dict[str, Any], file: dict[str, Any], task: str) -> int:
    """How many times ``task`` ran for this job: per job, not per content, so another user's runs and
    retries of the same bytes never show. A job that ended keeps the count it had then (``attempts``);
    a task that ran or ended counts at least once, as it would have for a fresh upload."""
    frozen = (job.get("attempts") or {}).get(task)
    if frozen is not None and job.get("state") in TERMINAL:
        return int(frozen)
    counted = int(file.get(f"{task}Attempts") or 0) - int((job.get("attemptsFrom") or {}).get(task) or 0)
    ran = file.get(f"{task}State") in ("running", "ocr", "done", "failed")
    return max(1 if ran else 0, counted)


def freeze_attempts(job: dict[str, Any], file: dict[str, Any]) -> dict[str, int]:
    """The per-task counts a job keeps as it ends (see :func:`job_attempts`)."""
    return {task: job_attempts({**job, "state": None}, file, task) for task in job.get("plan") or []}


def public_hash(job: dict[str, Any]) -> str | None:
    """The SHA-256 of the job's bytes, as its owner knows them; ``hash`` is the content key work is shared
    under (the same digest with ``DedupeScope`` global, one scoped to the owner with ``owner``)."""
    value = job.get("sha256") or job.get("hash")
    return str(value) if value else None


def task_views(job: dict[str, Any], file: dict[str, Any] | None) -> dict[str, Any]:
    """Each planned task's state, error and outputs (``variants``: API paths and facts, never bucket keys).
    Only the job's own plan shows: another job's work on the same bytes (OCR it asked for) is not this one's."""
    views: dict[str, Any] = {}
    for task in job.get("plan") or []:
        record = file or {}
        state, error = task_state(record, task)
        view: dict[str, Any] = {"state": _visible_state(state)}
        if error:
            view["error"] = error
        attempts = job_attempts(job, record, task)
        if attempts:
            view["attempts"] = attempts
        artifacts = record.get(f"{task}Artifacts") or {}
        if artifacts:
            view["variants"] = {
                name: {"url": f"/files/{public_hash(job)}/{name}", **{k: v for k, v in facts.items() if k != "key"}}
                for name, facts in artifacts.items()
            }
        views[task] = view
    return views


def public_view(job: dict[str, Any], file: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a job's owner sees: no internal keys, no other owner's facts. ``file`` adds task results."""
    view: dict[str, Any] = {
        "jobId": job["jobId"],
        "name": job["name"],
        "state": job["state"],
        "progress": progress(job, file),
        "lane": job.get("lane"),
        "createdAt": job["createdAt"],
        "updatedAt": job.get("updatedAt", job["createdAt"]),
        "plan": list(job.get("plan") or []),
        "tasks": task_views(job, file) if job.get("hash") else {},
    }
    if public_hash(job):
        view["hash"] = public_hash(job)
    for key in ("size", "type", "contentType", "width", "height", "error", "history", "parts"):
        if job.get(key) is not None:
            view[key] = job[key]
    if job.get("step") and job["state"] == JobState.UPLOADING:  # ``completing``: a large upload's parts being joined
        view["step"] = job["step"]
    if file and file.get("scanFlags") and job.get("hash"):  # found at scan time: a PDF's JavaScript, macros allowed
        view["flags"] = list(file["scanFlags"])
    return view

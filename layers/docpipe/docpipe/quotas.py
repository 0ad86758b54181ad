"""Per-user quotas and rate limits: what is checked when a user asks to upload, and how usage is shown.

Every limit is a template parameter (``0`` means unlimited), and a user's own override, an item in
UsageTable, raises or lowers it (``docpipe quota set USER NAME VALUE`` locally). Admission happens at
``POST /uploads``, before any work: every count is taken by one conditional update of the user's one
counts item (see :mod:`docpipe.adapters.usage`), all or none, so nothing is given back. (A transaction
over one item per count cost seven round trips and is not exact under moto, whose
``TransactWriteItems`` copies and restores whole tables.) A store that cannot be reached refuses the
request (503 ``quota.unavailable``): nothing is admitted unchecked.

- ``UploadsPerMinute``: uploads asked for in the current minute (a fixed window of the clock's minutes),
  and at most a sixth of it in any 10-second slot, so the minute's allowance is spread over the minute.
- ``UploadBytesPerDay``: declared bytes of the uploads asked for today (UTC).
- ``StoredBytesPerUser``: the distinct originals the user's jobs reference, plus the declared size of
  uploads not ingested yet; ingest settles a reservation at the stored size (or at nothing, when the
  user already had those bytes), a refused or cancelled upload releases it, a purge frees the bytes.
- ``OpenJobsPerUser``: jobs not yet ``ready``, ``failed`` or ``cancelled`` (uploading ones included).
- ``HighLaneBytesPerMinute``: declared bytes put on the high lane this minute; past it an upload goes to
  the normal lane instead of being refused.
- ``RetriesPerJob``: ``POST /jobs/{id}/retry`` calls on one job (counted on the job).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from docpipe.adapters.usage import Take, UsageRepository, newer, used_of, window_held
from docpipe.adapters.usage import current as usage_current
from docpipe.errors import QuotaExceeded, QuotaUnavailable

LIMIT_NAMES = (
    "UploadsPerMinute",
    "UploadBytesPerDay",
    "StoredBytesPerUser",
    "OpenJobsPerUser",
    "HighLaneBytesPerMinute",
    "RetriesPerJob",
)
OPEN, STORED = "open", "stored"
# UploadsPerMinute is also spread over the minute: at most a sixth of it (rounded up) in any 10-second
# slot, so a client that waits out a Retry-After does not come back with a whole minute at once.
BURST_SECONDS = 10
BURST_SLOTS = 60 // BURST_SECONDS
# How long a full OpenJobsPerUser asks a client to wait: jobs end in seconds to minutes.
OPEN_JOBS_RETRY_AFTER = 10
# Conditional updates one admission may make: a window started, the limits changed, the high lane full,
# and a race lost to the user's own concurrent requests each cost one more.
ADMISSION_ROUNDS = 6


@dataclass(frozen=True)
class Window:
    item: str
    resets_at: int  # epoch seconds; 0 for a count that never resets

    def retry_after(self, now: float) -> int | None:
        return max(1, int(self.resets_at - now) + 1) if self.resets_at else None


def _minute(prefix: str, now: float) -> Window:
    minute = int(now // 60)
    return Window(f"{prefix}#m#{minute}", (minute + 1) * 60)


def _day(now: float) -> Window:
    day = datetime.fromtimestamp(now, UTC).date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return Window(f"bytes#d#{day:%Y%m%d}", int(midnight.timestamp()))


def _burst(now: float) -> Window:
    """The 10-second slot that spreads a minute's uploads: at most 1/:data:`BURST_SLOTS` of the limit in it."""
    slot = int(now // BURST_SECONDS)
    return Window(f"uploads#s{BURST_SECONDS}#{slot}", (slot + 1) * BURST_SECONDS)


def windows(now: float) -> dict[str, Window]:
    """The item each counted limit uses at ``now``, and when it resets."""
    return {
        "UploadsPerMinute": _minute("uploads", now),
        "UploadBytesPerDay": _day(now),
        "StoredBytesPerUser": Window(STORED, 0),
        "OpenJobsPerUser": Window(OPEN, 0),
        "HighLaneBytesPerMinute": _minute("high", now),
    }


def _limits(overrides: Mapping[str, int], defaults: Mapping[str, int]) -> dict[str, int]:
    return {name: int(overrides.get(name, defaults.get(name, 0))) for name in LIMIT_NAMES}


def limits_for(usage: UsageRepository, owner: str, defaults: Mapping[str, int]) -> dict[str, int]:
    """The stack's limits with the user's overrides applied."""
    return _limits(usage.overrides(owner), defaults)


def _describe(name: str, limit: int) -> str:
    unit = "bytes" if "Bytes" in name else "uploads" if name == "UploadsPerMinute" else "jobs"
    return f"{name} ({limit} {unit})"


def _start(item: str) -> float:
    """When the window ``item`` (one of :func:`windows`' or :func:`_burst`'s) begins, in epoch seconds."""
    kind, number = item.rsplit("#", 1)
    if kind.endswith("#d"):
        return datetime.strptime(number, "%Y%m%d").replace(tzinfo=UTC).timestamp()
    return int(number) * (BURST_SECONDS if kind.endswith(f"#s{BURST_SECONDS}") else 60)


def _refusal(name: str, limit: int, window: Window, now: float, spread: bool) -> QuotaExceeded:
    retry_after = OPEN_JOBS_RETRY_AFTER if name == "OpenJobsPerUser" else window.retry_after(now)
    message = f"The limit {_describe(name, limit)} is reached."
    if spread:
        message = f"The limit {_describe(name, limit)} allows a sixth of it in any 10 seconds."
    if name == "StoredBytesPerUser":
        message += " Delete files you no longer need (DELETE /jobs/{id}?purge=true) to make room."
    return QuotaExceeded(message, retry_after=retry_after)


def admit(
    usage: UsageRepository,
    owner: str,
    size: int,
    lane: str,
    defaults: Mapping[str, int],
    now: float | None = None,
) -> str:
    """Count one upload of ``size`` declared bytes against ``owner``'s limits; the lane it goes to.

    One conditional update counts every limit at once (:meth:`UsageRepository.take_all`); when it is
    refused, the user's counts in the answer say why: a window to start (then it asks again), limits
    changed since this worker read them (again, with the new ones), the high lane's bytes (again, on the
    normal lane), or a limit it would pass. Raises :class:`QuotaExceeded` naming the first such limit
    (with ``retry_after`` when a window's reset or ending jobs will make room); nothing is counted then.
    Raises :class:`QuotaUnavailable` when :data:`ADMISSION_ROUNDS` requests were not enough (the
    user's own requests racing), which a client retries.
    """
    now = time.time() if now is None else now
    current = windows(now)
    burst = _burst(now)
    verified = False  # whether the limits were read now, not as this worker last saw them
    for _ in range(ADMISSION_ROUNDS):
        known = usage.limits(owner)
        limits = _limits(known.overrides, defaults)
        checks = [
            ("UploadsPerMinute", burst, 1, math.ceil(limits["UploadsPerMinute"] / BURST_SLOTS)),
            ("UploadsPerMinute", current["UploadsPerMinute"], 1, limits["UploadsPerMinute"]),
            ("OpenJobsPerUser", current["OpenJobsPerUser"], 1, limits["OpenJobsPerUser"]),
            ("UploadBytesPerDay", current["UploadBytesPerDay"], size, limits["UploadBytesPerDay"]),
            ("StoredBytesPerUser", current["StoredBytesPerUser"], size, limits["StoredBytesPerUser"]),
        ]
        if lane == "high":
            checks.append(
                ("HighLaneBytesPerMinute", current["HighLaneBytesPerMinute"], size, limits["HighLaneBytesPerMinute"])
            )
        too_big = next((check for check in checks if check[3] and check[2] > check[3]), None)  # never fits
        if too_big is not None and not verified:
            usage.overrides(owner)  # refuse only on the limits as they are
            verified = True
            continue
        if too_big is not None and too_big[0] == "HighLaneBytesPerMinute":
            lane = "normal"
            continue
        if too_big is not None:
            raise _refusal(too_big[0], limits[too_big[0]], too_big[1], now, too_big[1] is burst)
        counts = usage.take_all(owner, [Take(w.item, n, limit - n if limit else None) for _, w, n, limit in checks])
        if counts is None:
            return lane
        if usage.limits(owner).version != known.version:
            continue  # the limits changed: check against the new ones
        ahead = [
            _start(held)
            for _, w, _, _ in checks
            if (held := window_held(counts, w.item)) is not None and newer(held, w.item)
        ]
        if ahead:  # another worker's clock is in a later window: count there
            now = max(now, *ahead)
            current, burst = windows(now), _burst(now)
            continue
        stale = [w.item for _, w, _, _ in checks if not usage_current(counts, w.item)]
        if stale:
            usage.start_windows(owner, stale, counts)
            continue
        over = next(((n, w, a, lim) for n, w, a, lim in checks if lim and used_of(counts, w.item) + a > lim), None)
        if over is None:
            continue  # counts moved since the refusal: ask again
        name, window, _, _ = over
        if name == "HighLaneBytesPerMinute":
            lane = "normal"  # past the high lane's bytes: the normal lane instead of a refusal
            continue
        raise _refusal(name, limits[name], window, now, window is burst)
    raise QuotaUnavailable("Usage limits cannot be checked right now (too many of your requests at once).")


def release_upload(usage: UsageRepository, owner: str, declared: int) -> None:
    """An upload that will never be stored (refused, cancelled, expired): its reservation goes."""
    usage.add(owner, STORED, -declared)


def resize_upload(usage: UsageRepository, owner: str, reserved: int, actual: int, admitted_at: float) -> None:
    """An upload admitted at ``admitted_at`` for ``reserved`` bytes turned out to have ``actual`` bytes (a
    multipart upload through Uppy's Companion routes declares no size and reserves the largest upload):
    that day's bytes and the storage reservation follow."""
    if actual != reserved:
        usage.add(owner, _day(admitted_at).item, actual - reserved)
        usage.add(owner, STORED, actual - reserved)


def settle_upload(usage: UsageRepository, owner: str, digest: str, declared: int, size: int) -> None:
    """An upload stored as ``digest``: its reservation becomes the stored size, or nothing when the
    user's jobs already referenced those bytes."""
    first = usage.add_ref(owner, digest)
    usage.add(owner, STORED, (size if first else 0) - declared)


def release_reference(usage: UsageRepository, owner: str, digest: str, size: int) -> None:
    """A purged job's reference: the bytes leave the user's storage with the last one."""
    if usage.drop_ref(owner, digest):
        usage.add(owner, STORED, -size)


def report(usage: UsageRepository, owner: str, defaults: Mapping[str, int], now: float | None = None) -> list[dict]:
    """``GET /usage``: each limit, what is used of it, and when it resets."""
    now = time.time() if now is None else now
    limits = limits_for(usage, owner, defaults)
    current = windows(now)
    used = usage.used(owner, [w.item for w in current.values()])
    rows = []
    for name in LIMIT_NAMES:
        row: dict[str, object] = {"name": name, "limit": limits[name] or None}
        window = current.get(name)
        if window is None:
            row["scope"] = "per job"
        else:
            row["used"] = max(0, used[window.item])
            if window.resets_at:
                row["resetsAt"] = datetime.fromtimestamp(window.resets_at, UTC).isoformat().replace("+00:00", "Z")
        rows.append(row)
    return rows

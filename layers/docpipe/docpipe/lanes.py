"""Priority lanes: which lane a file's work goes to.

``high`` for files under 1 MB or uploads that ask for it (AI-chat images), ``normal`` for 1–10 MB,
``low`` over 10 MB. An upload may always ask for a lower lane; it may ask for ``high`` only up to
10 MB, so a big batch file cannot jump the queue of chat photos by asking.
"""

from __future__ import annotations

LANES = ("high", "normal", "low")
HIGH_MAX_BYTES = 1024 * 1024
NORMAL_MAX_BYTES = 10 * 1024 * 1024


def lane_for(size: int, requested: str | None = None) -> str:
    by_size = "high" if size < HIGH_MAX_BYTES else "normal" if size <= NORMAL_MAX_BYTES else "low"
    if requested not in LANES or requested == by_size:
        return by_size
    if LANES.index(requested) > LANES.index(by_size):  # asking for a slower lane is always allowed
        return requested
    return requested if size <= NORMAL_MAX_BYTES else by_size


def ceiling(lane: str) -> int | None:
    """The most bytes an upload on ``lane`` can have (``None``: just the upload limit). Ingest checks the
    stored size against it as well as against the declared size, since not every emulator enforces the
    presigned POST's ``content-length-range``."""
    return None if lane == "low" else NORMAL_MAX_BYTES

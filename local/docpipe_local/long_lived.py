"""Short full garbage collections for the local stack's long-lived processes, whose state grows with a run.

Python's full collection walks every object the process holds, and holds the interpreter lock while it
does: every thread of the process waits for it. In a tenants run of 200 uploads:

- the DynamoDB emulator's full collections took 46 ms at its start and 418 ms at its end (700,000
  objects), eleven of them, each a stall of every worker's calls; the S3/SQS emulator's six took 46-446 ms;
- the process of the stack itself (its pollers, dispatchers, gateway and settler, with the bench's
  clients) made five, of 94-574 ms, each a stall of every delivery and every API request.

:func:`freeze_survivors` makes each full collection end by moving its survivors out of the collector's
sight (``gc.freeze``), so the next walks only what came since: in the same run the DynamoDB emulator's
took 4-22 ms (26 of the first 29 logged; the other three 84-156 ms of wall time). An object that survived
a full collection is state; reference counting still frees every frozen object nothing refers to, and
only a cycle among frozen objects is never collected. The emulator's servers and ``docpipe up`` (and the
load bench, which stands for it) call it; a test session does not, whose cycles would then stay for it.
"""

from __future__ import annotations

import gc
from typing import Any

_installed = False


def freeze_survivors() -> None:
    """Freeze what the process holds now, and the survivors of each full collection from now on
    (idempotent)."""
    global _installed
    gc.collect()
    gc.freeze()
    if not _installed:
        gc.callbacks.append(_frozen_after_full)
        _installed = True


def _frozen_after_full(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()

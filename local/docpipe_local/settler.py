"""A queue's visibility changes and deletes, sent off the pollers' path, ten at a time, visibility changes first.

Lambda's event source mapping receives, changes visibility and deletes on its own fleet: a function's
concurrency counts only its invocations. The local stack's pollers each hold a function slot, and each
of their calls to the emulator's SQS held it too: under the tenants bench, a third of a busy lane's
poller time went to setting the visibility of the messages it took and deleting the ones it ran, each
call a round trip to an emulator busy with the uploads' bytes, while the lane's workers stood idle. A
:class:`Settler` per queue now sends them, ten to a call, visibility changes first: a poller hands
its messages over and goes on to its next batch or invocation.

What it changes, locally only: a taken message's visibility is the queue's ``VisibilityTimeout`` from
a moment after its invocation started rather than just before (a failure still comes back after at
least that long), and a message is deleted a moment after its invocation succeeded. A visibility
change or delete that SQS refuses (the receipt is stale: the message was received again after its
hold lapsed, or is gone) is logged and dropped; SQS delivers at least once, and the functions are
idempotent. On stop, what is queued is sent before the thread ends (:meth:`Settler.stop`), while the
emulator still answers.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from docpipe_local.queue_metrics import QueueAges

log = logging.getLogger("docpipe.local")

BATCH = 10  # SQS's batch calls take at most ten entries


class Settler(threading.Thread):
    def __init__(self, sqs: Any, queue_url: str, ages: QueueAges | None = None) -> None:
        super().__init__(name=f"settle-{queue_url.rsplit('/', 1)[-1]}", daemon=True)
        self.sqs, self.queue_url, self.ages = sqs, queue_url, ages
        self._hides: deque[tuple[str, int]] = deque()  # (receipt handle, visibility timeout)
        self._deletes: deque[str] = deque()
        self._deleting: set[str] = set()  # receipts waiting in _deletes: their hide is moot
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False

    def hide(self, receipts: list[str], seconds: int) -> None:
        """Make these messages invisible for ``seconds`` from when the change is sent."""
        with self._cond:
            self._hides.extend((receipt, seconds) for receipt in receipts)
            self._cond.notify_all()

    def delete(self, receipts: list[str]) -> None:
        with self._cond:
            self._deletes.extend(receipts)
            self._deleting.update(receipts)
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything handed over so far has been sent (or ``timeout`` passes)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._hides and not self._deletes and not self._busy, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.join(timeout)

    def run(self) -> None:
        """Hides first, ten at a time: a taken message's hold runs out while its hide waits, and then SQS
        would deliver it again; a delete that waits costs nothing (the message is hidden for the queue's
        visibility timeout). A hide of a message whose delete is already queued is not sent."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._hides or self._deletes or self._stopping)
                hides: list[tuple[str, int]] = []
                while self._hides and len(hides) < BATCH:
                    hide = self._hides.popleft()
                    if hide[0] not in self._deleting:
                        hides.append(hide)
                deletes: list[str] = []
                while not hides and self._deletes and len(deletes) < BATCH:
                    deletes.append(self._deletes.popleft())
                self._deleting.difference_update(deletes)
                if not hides and not deletes:
                    if self._stopping and not self._hides and not self._deletes:
                        return  # stopping, and nothing left
                    continue
                self._busy = True
            try:
                if hides:
                    self._send_hides(hides)
                else:
                    self._send_deletes(deletes)
            except (BotoCoreError, ClientError) as exc:
                log.warning("settling messages of %s failed: %s", self.queue_url, exc)
            except Exception:  # the settler must outlive any one bad answer
                log.exception("settling messages of %s failed unexpectedly", self.queue_url)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send_hides(self, hides: list[tuple[str, int]]) -> None:
        entries = [
            {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": seconds}
            for n, (receipt, seconds) in enumerate(hides)
        ]
        self._refused("hide", self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries))

    def _send_deletes(self, receipts: list[str]) -> None:
        entries = [{"Id": str(n), "ReceiptHandle": receipt} for n, receipt in enumerate(receipts)]
        refused = self._refused("delete", self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries))
        if self.ages is not None:
            self.ages.deleted(self.queue_url, len(receipts) - refused)

    def _refused(self, what: str, answer: dict[str, Any]) -> int:
        """Log each entry of a batch call SQS refused; how many it refused."""
        failed = answer.get("Failed", [])
        for failure in failed:
            log.warning("%s of a message of %s refused: %s", what, self.queue_url, failure.get("Code"))
        return len(failed)

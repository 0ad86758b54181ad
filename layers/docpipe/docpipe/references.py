"""References from jobs to stored bytes, and deleting bytes that nothing references any more.

A purged job gives its reference back (:func:`release`). The purge that takes a file's count to 0
moves the file to ``deleting`` with a lease (a conditional update that fails if a new upload took a
reference first), deletes everything stored under the hash — the original, the presets, the text —
and then the file's record. An upload of the same bytes that arrives meanwhile waits for the record
to go and stores the bytes again (:meth:`IngestService._store_once`): it never takes a reference to
bytes being deleted, and a purge never deletes bytes a job has a reference to.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from docpipe.adapters.dynamo import FilesRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.observability import MetricUnit, logger, metrics
from docpipe.storage import stored_prefixes

# How long a purge may take to delete one hash's objects before an upload of the same bytes takes over.
DELETE_LEASE_SECONDS = 300


def release(
    files: FilesRepository, store: ObjectStore, bucket: str, digest: str, clock: Callable[[], float] = time.time
) -> bool:
    """Give one job's reference to ``digest`` back; True when that was the last and the bytes were deleted."""
    left = files.drop_ref(digest)
    if left is None or left > 0:
        return False
    lease = int(clock()) + DELETE_LEASE_SECONDS
    if not files.begin_delete(digest, lease):
        return False  # a new reference came in first, or the file predates reference counting
    deleted = sum(store.delete_prefix(bucket, prefix) for prefix in stored_prefixes(digest))
    if clock() >= lease:  # too slow: an upload may have taken over and stored the bytes again
        logger.warning("purge outlived its lease; the file record is left to the upload that took over")
        return True
    files.finish_delete(digest, lease)
    metrics.add_metric(name="FilesPurged", unit=MetricUnit.Count, value=1)
    logger.info("stored bytes deleted: no job references them", extra={"hash": digest, "objects": deleted})
    return True

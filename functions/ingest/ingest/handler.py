"""IngestFunction: SQS batches of S3 ObjectCreated notifications → :class:`IngestService`.

The records of a batch are ingested side by side, each on a thread of its own: a record mostly waits
on S3 and DynamoDB, and one after another a small photo at the end of a batch of ten would wait for
the nine before it (measured in bench/load.py's tenants phase). Partial batch failures are reported,
so one bad record never makes SQS redeliver its neighbours.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from docpipe import aws
from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.adapters.sqs import TaskQueues
from docpipe.config import Settings
from docpipe.errors import Transient
from docpipe.observability import logger, metrics, tracer
from docpipe.worker import hand_back
from ingest.service import IngestService

settings = Settings.from_env()
processor = AsyncBatchProcessor(event_type=EventType.SQS)


@functools.cache
def service() -> IngestService:
    return IngestService(
        settings,
        ObjectStore(),
        JobsRepository.for_settings(settings),
        FilesRepository(settings.files_table),
        tasks=TaskQueues(settings.task_queues),
    )


def s3_objects(body: str) -> Iterator[tuple[str, str]]:
    """``(bucket, key)`` for each object-created record of an S3 notification; test events yield nothing.

    S3 URL-encodes keys in its events (a space as ``+``); the key is decoded here, once, and never again."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError:
        logger.error("message is not an S3 notification; dropped", extra={"body": body[:200]})
        return
    if not isinstance(message, dict) or message.get("Event") == "s3:TestEvent":
        return
    for record in message.get("Records", []):
        if record.get("eventSource") == "aws:s3" and str(record.get("eventName", "")).startswith("ObjectCreated"):
            yield record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"])


# A record is started only with this much of the invocation left: a batch of large uploads on a busy
# stack must not be killed at the timeout with every message of it then waiting out the visibility.
RECORD_BUDGET_MS = 15_000


class OutOfTime(Transient):
    code = "internal.out_of_time"
    message = "The invocation's time ran short; the message was handed back to the queue."


@tracer.capture_method(capture_response=False)
def handle_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    logger.thread_safe_clear_keys()  # this thread's keys are this record's alone
    if lambda_context.get_remaining_time_in_millis() < RECORD_BUDGET_MS:
        hand_back(aws.client("sqs"), record)  # visible again at once, for another invocation
        raise OutOfTime()
    for bucket, key in s3_objects(record.body):
        try:
            outcome = service().ingest(bucket, key)
        except Exception as exc:  # the batch hands the record back to SQS: say why, once
            logger.warning(
                "ingest handed the record back", extra={"code": getattr(exc, "code", type(exc).__name__), "key": key}
            )
            raise
        logger.info("ingest outcome", extra={"outcome": outcome.result, "reason": outcome.reason})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    async def on_a_thread(record: SQSRecord) -> None:
        await asyncio.to_thread(handle_record, record, context)

    return async_process_partial_response(event=event, record_handler=on_a_thread, processor=processor, context=context)

"""IngestFunction: SQS batches of S3 ObjectCreated notifications → :class:`IngestService`.

Partial batch failures are reported, so one bad record never makes SQS redeliver its neighbours.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.adapters.sqs import TaskQueues
from docpipe.config import Settings
from docpipe.observability import logger, metrics, tracer
from ingest.service import IngestService

settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def service() -> IngestService:
    return IngestService(
        settings,
        ObjectStore(),
        JobsRepository(settings.jobs_table),
        FilesRepository(settings.files_table),
        tasks=TaskQueues(settings.task_queues),
    )


def s3_objects(body: str) -> Iterator[tuple[str, str]]:
    """``(bucket, key)`` for each object-created record of an S3 notification; test events yield nothing."""
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


@tracer.capture_method(capture_response=False)
def handle_record(record: SQSRecord) -> None:
    for bucket, key in s3_objects(record.body):
        outcome = service().ingest(bucket, key)
        logger.info("ingest outcome", extra={"outcome": outcome.result, "reason": outcome.reason})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)

"""ExtractFunction: ``{"task": "extract", "hash": …, "lane": …, "range"?: [first, last]}`` from the extract lanes."""

from __future__ import annotations

import functools
import time
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from docpipe.config import Settings
from docpipe.observability import logger, metrics, tracer
from docpipe.worker import TaskRunner, task_message
from extract.service import TASK, ExtractService

settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.SQS)
RESULT_SECONDS = 10.0


@functools.cache
def service() -> ExtractService:
    return ExtractService.for_settings(settings)


@functools.cache
def runner() -> TaskRunner:
    return TaskRunner.for_settings(settings)


@tracer.capture_method(capture_response=False)
def handle_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    message = task_message(record)
    if message is None:
        return
    page_range = message.get("range")
    valid_range = isinstance(page_range, list) and len(page_range) == 2 and all(isinstance(n, int) for n in page_range)
    page_range = page_range if valid_range else None
    runner().handle(
        record,
        lambda_context,
        message,
        TASK,
        page_range is None,
        lambda: service().run(
            message["hash"], message.get("lane") or "normal", page_range, until=_reading_until(lambda_context)
        ),
    )


def _reading_until(lambda_context: LambdaContext) -> float:
    """When (``time.monotonic()``) reading must stop: :data:`RESULT_SECONDS` before the invocation ends,
    to store the result or the failure. A PDF is given :data:`~extract.formats.PDF_SECONDS` or this,
    whichever comes first; stopped by this one, it is retried rather than failed."""
    return time.monotonic() + lambda_context.get_remaining_time_in_millis() / 1000 - RESULT_SECONDS


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)

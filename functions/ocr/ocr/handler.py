"""OcrFunction: ``{"task": "ocr", "hash": …, "for"?: "extract", "pages"?: [...]}`` from the OCR lanes."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from docpipe.config import Settings
from docpipe.observability import logger, metrics, tracer
from docpipe.worker import TaskRunner, task_message
from ocr.engines import OcrEngine, engine_from_env
from ocr.service import TASK, OcrService

settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def engine() -> OcrEngine:
    return engine_from_env()


@functools.cache
def service() -> OcrService:
    return OcrService.for_settings(settings, engine)


@functools.cache
def runner() -> TaskRunner:
    return TaskRunner.for_settings(settings)


@tracer.capture_method(capture_response=False)
def handle_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    message = task_message(record)
    if message is None:
        return
    pages = message.get("pages")
    pages = [int(p) for p in pages] if isinstance(pages, list) and all(isinstance(p, int) for p in pages) else None
    for_task = message.get("for")
    chunk = for_task == "extract" and bool(pages)  # scanned pages of a document: they advance its extract task
    runner().handle(
        record,
        lambda_context,
        message,
        "extract" if chunk else TASK,
        not chunk,
        lambda: service().run(message["hash"], pages, for_task),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)

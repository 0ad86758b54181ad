"""PresetsFunction: task messages ``{"task": "presets", "hash": …, "presets"?: [...]}`` from the presets lanes."""

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
from presets.service import TASK, PresetsService

settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def service() -> PresetsService:
    return PresetsService.for_settings(settings)


@functools.cache
def runner() -> TaskRunner:
    return TaskRunner.for_settings(settings)


@tracer.capture_method(capture_response=False)
def handle_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    message = task_message(record)
    if message is None:
        return
    only = message.get("presets")  # a regeneration of some presets, asked for through the API
    runner().handle(record, lambda_context, message, TASK, not only, lambda: service().run(message["hash"], only))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)

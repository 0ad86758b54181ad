"""ScanFunction: ``scan`` task messages from the scan lanes, and GuardDuty's scan-result events (delivered
by an EventBridge rule to the normal scan lane) → :class:`ScanService`."""

from __future__ import annotations

import functools
import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from docpipe.config import Settings
from docpipe.jobs import SCAN
from docpipe.observability import logger, metrics, tracer
from docpipe.worker import TaskRunner, task_message
from scan import guardduty
from scan.service import ScanService

settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.SQS)
if settings.scan_engine == "none":
    logger.warning("ScanEngine is none: uploads are processed and served without a malware scan")


@functools.cache
def service() -> ScanService:
    return ScanService.for_settings(settings)


@functools.cache
def runner() -> TaskRunner:
    return TaskRunner.for_settings(settings)


def _event(body: str) -> dict[str, Any] | None:
    try:
        message = json.loads(body)
    except json.JSONDecodeError:
        return None
    return message if guardduty.is_scan_result(message) else None


@tracer.capture_method(capture_response=False)
def handle_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    event = _event(record.body)
    if event is not None:
        outcome = service().apply_guardduty(event)
        logger.info("GuardDuty verdict applied", extra={"outcome": outcome})
        return
    message = task_message(record)
    if message is None:
        return
    runner().handle(record, lambda_context, message, SCAN, True, lambda: service().run(message["hash"]))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)

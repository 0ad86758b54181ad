"""NotifierFunction: DynamoDB stream records (JobsTable, FilesTable) → :class:`Notifier` → PostToConnection.

Records are handled one by one under Powertools' batch processor: a record whose push fails with a
fault (the table or the management API answering an error) is reported as a batch item failure, so
Lambda retries from it (and bisects the batch) and sends it to the on-failure queue once retries are
spent, while the records before it count as delivered.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from docpipe.adapters.dynamo import FilesRepository, JobsRepository
from docpipe.adapters.push import ConnectionsRepository, PushChannel
from docpipe.config import PushSettings, Settings
from docpipe.job_views import JobViews, LaneThroughput
from docpipe.observability import logger, metrics, tracer
from notifier.service import Notifier

settings = Settings.from_env()
push_settings = PushSettings.from_env(required=("PUSH_URL", "CONNECTIONS_TABLE"))
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
throughput = LaneThroughput()


@functools.cache
def notifier() -> Notifier:
    jobs_repo = JobsRepository(settings.jobs_table)
    views = JobViews(jobs_repo, FilesRepository(settings.files_table), settings.task_queues, throughput)
    return Notifier(
        views,
        jobs_repo,
        ConnectionsRepository(str(push_settings.connections_table)),
        PushChannel(str(push_settings.url)),
    )


def handle_record(record: DynamoDBRecord) -> None:
    notifier().handle(record.raw_event)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    notifier().begin(event.get("Records") or [])
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)

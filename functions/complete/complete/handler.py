"""CompleteFunction: ``CompleteQueue`` messages (``{jobId}``) → :meth:`docpipe.completion.Completion.complete_queued`.

A large multipart upload's parts are joined here rather than in the API's request (S3's
``CompleteMultipartUpload`` of a big object outlasts API Gateway's 30 s): one message per invocation,
with this function's long timeout. A fault worth retrying returns the message to the queue; on its last
receive the job fails ``upload.incomplete`` instead, so nothing waits a day for the sweeper. Partial
batch failures are reported.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from docpipe.adapters.dynamo import JobsRepository
from docpipe.adapters.multipart import MultipartUploads
from docpipe.completion import Completion
from docpipe.config import Settings
from docpipe.errors import BadRequest
from docpipe.observability import MetricUnit, logger, metrics, tracer
from docpipe.worker import MAX_RECEIVES

settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def completion() -> Completion:
    jobs_repo = JobsRepository.for_settings(settings)
    return Completion(settings, MultipartUploads(), jobs_repo, jobs_repo.usage)


def handle_record(record: SQSRecord) -> None:
    try:
        job_id = str(json.loads(record.body)["jobId"])
    except (ValueError, KeyError, TypeError):
        logger.error("not a completion message", extra={"message_id": record.message_id})
        raise BadRequest("not a completion message") from None
    receives = int(record.attributes.approximate_receive_count or 1)
    logger.append_keys(job_id=job_id)
    outcome = completion().complete_queued(job_id, last_attempt=receives >= MAX_RECEIVES)
    metrics.add_metric(name=f"MultipartCompletions{outcome.capitalize()}", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)

"""SweeperFunction: an EventBridge schedule → :class:`Sweeper` (abandoned uploads end as ``upload.expired``)."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from docpipe.adapters.dynamo import JobsRepository
from docpipe.adapters.s3 import ObjectStore
from docpipe.config import Settings
from docpipe.observability import logger, metrics, tracer
from sweeper.service import Sweeper

settings = Settings.from_env()


@functools.cache
def sweeper() -> Sweeper:
    return Sweeper(settings, JobsRepository.for_settings(settings), ObjectStore())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return sweeper().sweep()

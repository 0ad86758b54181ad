"""One local stack for the reliability suite, apart from the integration suite's, so that worker counts,
queues and dead-letter queues seen here are this suite's alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docpipe_local.stack import LocalStack

# These suites upload far faster than a person; quotas have their own tests (test_quotas, test_fair_share).
BUSY_TESTER = {"UploadsPerMinute": "600"}
TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        state_dir=tmp_path_factory.mktemp("reliability-stack"), tokens=dict(TOKENS), parameters=BUSY_TESTER
    ) as local:
        yield local

"""One local stack for the reliability suite, apart from the integration suite's, so that worker counts,
queues and dead-letter queues seen here are this suite's alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docpipe_local.stack import LocalStack

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(state_dir=tmp_path_factory.mktemp("reliability-stack"), tokens=dict(TOKENS)) as local:
        yield local

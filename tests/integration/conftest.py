from __future__ import annotations

from collections.abc import Iterator

import pytest

from docpipe_local.client import DocpipeClient
from docpipe_local.stack import LocalStack

# These suites upload far faster than a person; quotas have their own tests (test_quotas, test_fair_share).
BUSY_TESTER = {"UploadsPerMinute": "600"}
TOKENS = {"tok-alice": "alice", "tok-bob": "bob", "tok-dev": "dev"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(state_dir=tmp_path_factory.mktemp("stack"), tokens=dict(TOKENS), parameters=BUSY_TESTER) as local:
        yield local


@pytest.fixture
def alice(stack: LocalStack) -> DocpipeClient:
    return DocpipeClient(stack.api_url, stack.token_for("alice"))


@pytest.fixture
def bob(stack: LocalStack) -> DocpipeClient:
    return DocpipeClient(stack.api_url, stack.token_for("bob"))

"""The security suite's stack: three users and an operator over real HTTP, with links short enough
that an upload never sent is ended by the stack's own sweeper within the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docpipe_local.client import DocpipeClient
from docpipe_local.stack import LocalStack

TOKENS = {
    "tok-alice": "alice",
    "tok-bob": "bob",
    "tok-carol": "carol",
    "tok-root": "root",
    # user ids that change if a key is URL-decoded twice, or that are not ASCII
    "tok-plus": "pat+1",
    "tok-percent": "q%41",
    "tok-accent": "zoë",
}
ADMINS = frozenset({"root"})
PARAMETERS = {"UploadsPerMinute": "600", "UploadUrlTtlSeconds": "20", "UploadGraceSeconds": "0"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        state_dir=tmp_path_factory.mktemp("security"),
        tokens=dict(TOKENS),
        admins=set(ADMINS),
        parameters=dict(PARAMETERS),
        schedule_every={"SweeperFunction": 1.0},
    ) as local:
        yield local


def client(stack: LocalStack, user: str) -> DocpipeClient:
    return DocpipeClient(stack.api_url, stack.token_for(user))


@pytest.fixture
def alice(stack: LocalStack) -> DocpipeClient:
    return client(stack, "alice")


@pytest.fixture
def bob(stack: LocalStack) -> DocpipeClient:
    return client(stack, "bob")


@pytest.fixture
def carol(stack: LocalStack) -> DocpipeClient:
    return client(stack, "carol")


@pytest.fixture
def root(stack: LocalStack) -> DocpipeClient:
    return client(stack, "root")

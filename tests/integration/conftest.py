from __future__ import annotations

import copy
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


@pytest.fixture(scope="session")
def held_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack whose presets high lane is paused (its event source ``Enabled: false``): a small image's job
    stays ``queued`` there, and the lane's depth grows with each one, until the stack stops. ``ops`` is an
    operator. Made only for the tests that ask for it (the page's cancel, the console)."""
    from docpipe_local.stack import project_root
    from docpipe_local.template import Template

    declared = Template.load(project_root() / "template.yaml").doc["Resources"]["PresetsFunction"]["Properties"]
    events = copy.deepcopy(declared["Events"])
    events["High"]["Properties"]["Enabled"] = False
    with LocalStack(
        state_dir=tmp_path_factory.mktemp("held-stack"),
        tokens={"tok-alice": "alice", "tok-carol": "carol", "tok-ops": "ops"},
        admins={"ops"},
        parameters=BUSY_TESTER,
        overrides={"PresetsFunction": {"Events": events}},
    ) as local:
        yield local

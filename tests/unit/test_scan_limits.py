"""A file past clamd's stream limit is the file's doing: ``scan.unsupported`` at once, never a retried
``scan.unavailable`` (clamd closes the socket mid-stream, which reads as a broken pipe) and never clean."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from docpipe.errors import ScanUnsupported
from docpipe_local.clamav import Clamd
from scan.engines import ClamdEngine

pytestmark = pytest.mark.skipif(shutil.which("clamd") is None, reason="clamd is not installed (make clamav)")

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    # a short socket path: Unix socket paths are limited to about 100 bytes
    daemon = Clamd(Path(tmp_path_factory.mktemp("c")), stream_max="2M").start()
    yield daemon
    daemon.stop()


def test_a_stream_within_the_limit_is_scanned_clean(clamd: Clamd) -> None:
    result = ClamdEngine(str(clamd.socket)).scan(io.BytesIO(b"plain text\n" * (MIB // 11)))
    assert (result.infected, result.engine) == (False, "clamav")


def test_a_stream_past_the_limit_is_refused_as_unsupported(clamd: Clamd) -> None:
    with pytest.raises(ScanUnsupported) as refused:
        ClamdEngine(str(clamd.socket)).scan(io.BytesIO(b"plain text\n" * (8 * MIB // 11)))
    assert refused.value.code == "scan.unsupported"
    assert not refused.value.retryable
    assert "size limit exceeded" in refused.value.message

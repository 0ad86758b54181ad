"""Mutation fuzzing of what the functions run on an upload's bytes (issue 16).

Each run makes :data:`COUNT` mutations of the seed corpus (:mod:`tests.fuzz.seeds`, :mod:`tests.fuzz.mutate`)
from a new seed, printed at the end of the run, and runs every mutation through ingest, presets, OCR's page reading,
extraction and PDF page rendering (:mod:`tests.fuzz.pipeline`) under each function's memory size from
``template.yaml``, on a pool of watched workers (:mod:`tests.fuzz.runner`). Every mutation must end as a
result or a coded :class:`~docpipe.errors.DocpipeError`: another exception, a stage past its function's
memory, a mutation still running after :data:`SECONDS`, or a worker killed, fails the run. The failing mutations are
written out with their seed and index, to be replayed and kept as crash fixtures (``test_crashes.py``).

``DOCPIPE_FUZZ_SEED`` replays a run, ``DOCPIPE_FUZZ_INDEX`` (comma-separated) only some of its mutations;
``DOCPIPE_FUZZ_COUNT``, ``DOCPIPE_FUZZ_WORKERS``, ``DOCPIPE_FUZZ_SECONDS`` and ``DOCPIPE_FUZZ_TESSERACT_EVERY``
change its size::

    DOCPIPE_FUZZ_SEED=1733100000000 DOCPIPE_FUZZ_INDEX=4064 .venv/bin/python -m pytest tests/fuzz/test_fuzz.py
"""

from __future__ import annotations

import os
import time

import pytest

from docpipe.config import Settings
from tests.fixtures import suite_report
from tests.fuzz import pipeline, runner

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]

COUNT = int(os.environ.get("DOCPIPE_FUZZ_COUNT", "5000"))
WORKERS = int(os.environ.get("DOCPIPE_FUZZ_WORKERS", "2"))
# A mutation still running after this long is stopped, a finding: the shortest Timeout of the functions
# (IngestFunction's and PresetsFunction's; a file of a few KB has no business near any of them). PDFs are
# read and rendered within PDF_SECONDS below, as the sandbox does within the functions' 90 s and 30 s:
# past it they are refused as archive.unsafe, a coded error.
SECONDS = float(os.environ.get("DOCPIPE_FUZZ_SECONDS", "60"))
PDF_SECONDS = 5.0
# Tesseract reads the OCR pages of every this-many-th mutation (where it is installed); the others' pages
# are decoded, prepared or rendered as for the engines, and not read: reading them all would take minutes.
TESSERACT_EVERY = int(os.environ.get("DOCPIPE_FUZZ_TESSERACT_EVERY", "25"))


def _seed() -> int:
    given = os.environ.get("DOCPIPE_FUZZ_SEED")
    return int(given) if given else time.time_ns() // 1_000_000


def _indices() -> list[int]:
    given = os.environ.get("DOCPIPE_FUZZ_INDEX")
    return [int(i) for i in given.split(",")] if given else list(range(COUNT))


@pytest.mark.timeout(900)
def test_every_mutation_ends_as_a_result_or_a_coded_error_within_its_functions_budget(
    template, tmp_path_factory: pytest.TempPathFactory
) -> None:
    seed = _seed()
    limits = pipeline.Limits.from_template(template, Settings.from_env(), PDF_SECONDS)
    run = runner.Run(seed, limits, SECONDS, TESSERACT_EVERY)
    indices = _indices()
    replay = f"DOCPIPE_FUZZ_SEED={seed} .venv/bin/python -m pytest tests/fuzz/test_fuzz.py"
    suite_report.note("fuzz", f"fuzz seed {seed}: {len(indices)} mutations on {WORKERS} workers (replay: {replay})")

    started = time.monotonic()
    records = runner.run(run, indices, WORKERS)
    wall = time.monotonic() - started

    suite_report.note("fuzz", runner.summary(records, seed, wall, WORKERS))
    findings = [r for r in records if r.finding]
    assert len(records) == len(indices)
    if findings:
        saved = runner.save(findings, seed, tmp_path_factory.mktemp(f"fuzz-{seed}"))
        lines = [f"{len(findings)} of {len(records)} mutations of fuzz seed {seed} are findings:"]
        for record, path in zip(findings, saved, strict=True):
            lines.append(
                f"- index {record.index} ({record.status}, {record.seconds:.1f} s): {record.seed_name}: "
                f"{'; '.join(record.ops)}\n  bytes: {path}\n  replay: DOCPIPE_FUZZ_INDEX={record.index} {replay}\n"
                + "\n".join("    " + line for line in (record.error or "").splitlines()[-12:])
            )
        pytest.fail("\n".join(lines), pytrace=False)

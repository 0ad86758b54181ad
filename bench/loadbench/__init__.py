"""The load bench behind ``python bench/load.py``: one module per phase, plus a shared harness.

- ``corpus``: the file kinds, the generated files (distinct bytes) and their twins;
- ``harness``: clients, the uploader, what the watchers observed, the watchers, waiting for jobs;
- ``probes``: the sampler (queue depths, emulator round trip, CPU by process) and the recorder (every
  invocation the local stack makes), with the tables made from them;
- ``stats``: percentiles and plain-text tables;
- ``stack``: the local stack with the probes attached, its users and their quotas;
- ``burst``, ``priority``, ``tenants``: the phases, each with its report;
- ``__main__``: the options and the run (``bench/load.py`` calls it).

Importing the package puts the repository's ``local/`` folder (``docpipe_local``) and its root (the
test fixtures that make the files) on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _folder in (str(ROOT), str(ROOT / "local")):
    if _folder not in sys.path:
        sys.path.insert(0, _folder)

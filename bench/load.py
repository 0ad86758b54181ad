"""Load: a burst of mixed uploads, chat-photo latency while big files fill the low lanes, and fair share among users.

    python bench/load.py [--uploads 500] [--scans N] [--docx N] [--mid N] [--threads 16]
                         [--large 40] [--small 50] [--small-every 1.0] [--baseline 30] [--timeout 1800] [--keep]
                         [--tenant-uploads 500] [--tenant-small 30] [--tenant-every 1.0] [--only PHASE]
    python bench/load.py --uploads 60 --large 8 --small 10 --tenant-uploads 60 --tenant-small 10   # a quick check
    python bench/load.py --only tenants                                                              # one phase

The script starts its own embedded LocalStack (state in a temporary folder; ``--keep`` keeps it, with
the function logs under ``logs/``), and makes every file before the stack starts, each with distinct
bytes, so no upload is a dedupe shortcut (checked: the hashes are counted).

1. **Burst** (``bench/loadbench/burst.py``): ``--uploads`` files in a shuffled mix (photos, 3 MB
   photos, DOCX, 20 MB scanned PDFs) posted over real HTTP by ``--threads`` threads as fast as they go;
   every job followed until it ends (lost = not terminal by ``--timeout``); throughput, time-to-ready
   by lane and by kind.
2. **Priority** (``priority.py``): on the drained stack, ``--baseline`` small photos alone, then
   ``--large`` low-lane files and right after them ``--small`` photos one every ``--small-every`` s;
   their time-to-ready (target: p95 < 3 s) beside the baseline's, and where their time went.
3. **Tenants** (``tenants.py``), on a stack of its own with users A, B and C: A posts
   ``--tenant-uploads`` files (the burst's mix) while B and C each send a photo every
   ``--tenant-every`` s; B's and C's time-to-ready beside their idle baseline, A's losses and
   throughput, A's sub-1 MB files beside the same files posted alone, the share ready within 10 s, and
   PASS/FAIL against the targets.

Time-to-ready runs from just before ``POST /uploads`` to the first API answer that shows the job
``ready``, with the server's own time (the job's ``updatedAt``) beside it. The harness
(``bench/loadbench/harness.py``, ``probes.py``) also times every invocation the local stack makes and
samples queue depths, the emulator's round trip and CPU by process, to say where time goes. The
package's modules each describe their part.
"""

from loadbench.__main__ import main

if __name__ == "__main__":
    main()

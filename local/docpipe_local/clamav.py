"""ClamAV for the local stack: which scan engine a laptop gets, the signature database, and a warm clamd.

``ScanEngine`` defaults to ``clamav`` where ClamAV is installed (``make clamav`` installs it from apt), else
to ``none``, with a warning. The database is freshclam's (``/var/lib/clamav``) when it holds one, else the
project's own small test database (:data:`TEST_DATABASE`: the EICAR test file and docpipe's test marker),
which loads in milliseconds. With ``clamd`` installed the stack runs one of its own on a socket under its
state directory, so every scan finds it warm; without it, each scan runs ``clamscan``.

With the test database the stack runs a second clamd, :data:`BEHIND` levels of CPU priority below the stack,
for the scan's workers that far behind it: a heavy tenant's normal and low lanes, whose files are over 1 MB.
On AWS every scan runs on compute of its own; with one clamd, a heavy tenant's 20 MB scans took its threads
and the CPU at the stack's priority, ahead of every other tenant's photo. freshclam's database keeps one
clamd: a second would load its gigabyte again.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger("docpipe.local")

TEST_DATABASE = Path(__file__).resolve().parent / "signatures"
FRESHCLAM_DATABASE = Path("/var/lib/clamav")
# clamd scans files of up to 2 GiB - 3 bytes whatever MaxFileSize says (it logs "File size limit set to
# 2147483645 bytes"), and a larger file would be skipped and answered OK: the stream limit stays below that,
# so clamd refuses a larger stream ("INSTREAM size limit exceeded") and the scan fails scan.unsupported.
STREAM_MAX = "2047M"
# The second clamd's CPU priority, in levels below the stack's, and which workers it serves: those as far
# behind, a heavy tenant's normal lane (5 + 10) and low lane (19). Not its high lane (10): a second clamd for
# every heavy tenant's scan (request_priority.BEHIND) put a heavy tenant's photos in its four threads behind
# its 20 MB scans, at 10 levels down, and in the tenants bench its high-lane scans waited p95 26 s, their
# slots held all along (B's scans waited p95 1.7 s for one).
BEHIND = 15


def installed() -> bool:
    return shutil.which("clamscan") is not None or shutil.which("clamd") is not None


def default_engine() -> str:
    if installed():
        return "clamav"
    log.warning(
        "ClamAV is not installed (make clamav installs it where apt is available): ScanEngine is none, "
        "so uploads are processed and served without a malware scan"
    )
    return "none"


def database() -> Path:
    """freshclam's full database when it has one, else the project's test database."""
    if any(FRESHCLAM_DATABASE.glob("*.c[lv]d")):
        return FRESHCLAM_DATABASE
    return TEST_DATABASE


# With the test database, clamd computes no image fuzzy hashes: they serve only ``fuzzy_img`` signatures, which
# that database has none of, and they were most of a scan's time (measured first scans, clamd caching clean
# bytes after: a 0.25 MB photo 142 ms against 6 ms, a 3.4 MB photo 1.06 s against 0.05 s, a 20 MB scanned
# PDF 5.3 s against 0.65 s). freshclam's database keeps ClamAV's defaults.


class Clamd:
    """A clamd of the stack's own, on a Unix socket, loaded with :func:`database`; ``nice`` levels of CPU
    priority below the caller's (``name``: its folder under the state directory)."""

    def __init__(
        self, state_dir: Path, db: Path | None = None, stream_max: str = STREAM_MAX, name: str = "clamd", nice: int = 0
    ) -> None:
        self.dir = (state_dir / name).resolve()  # clamd takes absolute paths only
        self.db = db or database()
        self.stream_max = stream_max
        self.nice = nice
        self.socket = self.dir / "clamd.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> Clamd:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        config = self.dir / "clamd.conf"
        config.write_text(
            f"LocalSocket {self.socket}\nDatabaseDirectory {self.db}\nForeground yes\n"
            f"LogFile {self.dir / 'clamd.log'}\nStreamMaxLength {self.stream_max}\nMaxFileSize {self.stream_max}\n"
            f"MaxScanSize {self.stream_max}\nMaxThreads 4\nSelfCheck 0\n"
            + ("ScanImageFuzzyHash no\n" if self.db == TEST_DATABASE else "")
        )
        binary = shutil.which("clamd")
        assert binary is not None, "clamd is not installed"
        argv = [binary, "-c", str(config)]
        if self.nice:  # nice execs clamd: the process, and every thread it starts, runs at that priority
            argv = [shutil.which("nice") or "nice", "-n", str(self.nice), *argv]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout  # the full database takes a while to load
        while not self.socket.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"clamd exited at start ({self.process.returncode}); see {self.dir / 'clamd.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("clamd did not open its socket in time")
            time.sleep(0.02)
        log.info("clamd up with %s", self.db)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def start_clamds(state_dir: Path, db: Path) -> tuple[Clamd, Clamd | None]:
    """The stack's clamd, and with the test database the one :data:`BEHIND` it (a few megabytes; freshclam's
    database would load its gigabyte again)."""
    front = Clamd(state_dir, db).start()
    return front, Clamd(state_dir, db, name="clamd-behind", nice=BEHIND).start() if db == TEST_DATABASE else None


def behind(clamd: Clamd | None, env: dict[str, str]) -> tuple[int, dict[str, str]] | None:
    """What changes for a function's workers :data:`BEHIND` the stack (``FunctionRuntime``'s ``behind``): a
    scan's (``env`` names a clamd) scan with the clamd behind, if there is one."""
    if clamd and env.get("CLAMD_ADDRESS"):
        return BEHIND, {"CLAMD_ADDRESS": str(clamd.socket)}
    return None

"""Malware scan engines behind one interface (:class:`ScanEngine`), chosen by the ``ScanEngine`` parameter.

- :class:`ClamdEngine`: a running ``clamd``, over its socket (a path, or ``tcp://host:port``), with the
  ``INSTREAM`` command: the bytes are sent in chunks, nothing is written to disk. A warm clamd answers
  a small file in milliseconds.
- :class:`ClamscanEngine`: ``clamscan`` reading the bytes on its stdin, loading its database each time
  (with the project's small test database that is a few milliseconds; with the full one, seconds).
- :class:`NoneEngine`: no scan at all; the stack logs a warning at start and every verdict says so.

GuardDuty is not an engine of this kind: it scans the raw upload on its own and its verdict arrives as an
EventBridge event (:mod:`scan.guardduty`).

An engine that cannot answer raises :class:`ScanUnavailable` (retryable): a file is never taken as clean
because its scanner was down.
"""

from __future__ import annotations

import functools
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from typing import IO, Protocol

from docpipe.errors import ScanUnavailable, ScanUnsupported

CHUNK_BYTES = 1024 * 1024
CLAMD_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Result:
    infected: bool
    signature: str | None
    engine: str
    version: str


class ScanEngine(Protocol):
    name: str

    def scan(self, file: IO[bytes]) -> Result: ...


class NoneEngine:
    name = "none"

    def scan(self, file: IO[bytes]) -> Result:
        return Result(False, None, self.name, "unscanned")


def _parse_reply(reply: str, engine: str, version: str) -> Result:
    """``stream: OK``, ``stream: NAME FOUND``, ``stdin: NAME FOUND`` or an error line."""
    _, _, verdict = reply.strip().rpartition(": ")
    if verdict == "OK":
        return Result(False, None, engine, version)
    if verdict.endswith(" FOUND"):
        return Result(True, verdict[: -len(" FOUND")], engine, version)
    if "size limit exceeded" in reply:
        raise ScanUnsupported("The file is larger than the scanner's stream limit (StreamMaxLength).")
    raise ScanUnavailable(f"The scanner could not scan the file: {reply.strip()[:200]}")


def _last_words(sock: socket.socket) -> str:
    """What clamd wrote before it closed a stream it refused (its reply is sent, then the socket closed)."""
    said = b""
    try:
        sock.settimeout(2.0)
        while part := sock.recv(4096):
            said += part
    except OSError:
        pass
    return said.rstrip(b"\0").decode("utf-8", "replace")


class ClamdEngine:
    name = "clamav"

    def __init__(self, address: str, timeout: float = CLAMD_TIMEOUT_SECONDS) -> None:
        self.address, self.timeout = address, timeout

    def _connect(self) -> socket.socket:
        try:
            if self.address.startswith("tcp://"):
                host, _, port = self.address[len("tcp://") :].rpartition(":")
                return socket.create_connection((host, int(port)), timeout=self.timeout)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(self.address)
            return sock
        except OSError as exc:
            raise ScanUnavailable(f"clamd does not answer at {self.address}: {exc.strerror or exc}") from exc

    def _command(self, command: bytes, payload: IO[bytes] | None = None) -> str:
        with self._connect() as sock:
            try:
                sock.sendall(b"z" + command + b"\0")
                if payload is not None:
                    while chunk := payload.read(CHUNK_BYTES):
                        sock.sendall(struct.pack(">I", len(chunk)) + chunk)
                    sock.sendall(struct.pack(">I", 0))
                reply = b""
                while not reply.endswith(b"\0"):
                    part = sock.recv(4096)
                    if not part:
                        break
                    reply += part
            except OSError as exc:  # clamd closes the stream when it is past its StreamMaxLength
                said = _last_words(sock)
                if "size limit exceeded" in said:  # "INSTREAM size limit exceeded. ERROR": the file's doing
                    raise ScanUnsupported(
                        f"The file is larger than the scanner takes (clamd's StreamMaxLength): {said.strip()[:200]}"
                    ) from exc
                raise ScanUnavailable(f"clamd dropped the connection: {exc.strerror or exc}") from exc
        return reply.rstrip(b"\0").decode("utf-8", "replace")

    def version(self) -> str:
        """``ClamAV 1.4.6/27000/...``: the engine's and, with freshclam's database, the signatures' version."""
        return self._command(b"VERSION").strip()

    def scan(self, file: IO[bytes]) -> Result:
        version = self.version()
        return _parse_reply(self._command(b"INSTREAM", file), self.name, version)


class ClamscanEngine:
    name = "clamav"

    def __init__(self, database: str | None = None, binary: str = "clamscan") -> None:
        self.database, self.binary = database, binary

    def _argv(self) -> list[str]:
        path = shutil.which(self.binary)
        if path is None:
            raise ScanUnavailable("clamscan is not installed (ScanEngine clamav without a ClamdAddress).")
        return [path, "--no-summary", "--stdout", *(["-d", self.database] if self.database else [])]

    @functools.cached_property
    def _version(self) -> str:
        try:
            out = subprocess.run([*self._argv()[:1], "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ScanUnavailable(f"clamscan cannot run: {exc}") from exc
        base = out.stdout.strip()
        return f"{base} (database {self.database})" if self.database else base

    def scan(self, file: IO[bytes]) -> Result:
        argv = self._argv()
        version = self._version
        data = file.read()  # a spooled file may have no descriptor to hand to the child as its stdin
        try:
            done = subprocess.run([*argv, "-"], input=data, capture_output=True, timeout=CLAMD_TIMEOUT_SECONDS)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ScanUnavailable(f"clamscan cannot run: {exc}") from exc
        reply = done.stdout.decode("utf-8", "replace").strip().splitlines()
        if done.returncode in (0, 1) and reply:
            return _parse_reply(reply[-1], self.name, version)
        raise ScanUnavailable(f"clamscan failed ({done.returncode}): {done.stderr.decode('utf-8', 'replace')[:200]}")


def engine_for(name: str, clamd_address: str | None = None, database: str | None = None) -> ScanEngine:
    """The engine of a stack: ``clamav`` is clamd when the stack names its address, else clamscan."""
    if name == "none":
        return NoneEngine()
    if name == "clamav":
        return ClamdEngine(clamd_address) if clamd_address else ClamscanEngine(database)
    raise ValueError(f"{name!r} is not an engine that scans bytes itself")

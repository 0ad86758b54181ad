"""The local stack the bench runs on: the probes attached, its users, and their quotas.

Per-user quotas (429 ``quota.exceeded`` at ``POST /uploads``) protect a shared stack; the bench
measures the pipeline, not admission. A stack for one user is started with the quota parameters at 0
(unlimited) when the template declares them; in the tenants phase only user A's limits are lifted,
through ``docpipe_local.quotas.set_quota``, and the other users keep the defaults. Both are skipped,
with a note, where the template or the local stack does not have them yet.
"""

from __future__ import annotations

from pathlib import Path

from docpipe_local.long_lived import freeze_survivors
from docpipe_local.stack import LocalStack, project_root
from docpipe_local.template import Template

from .probes import Recorder, Sampler

QUOTAS = ("UploadsPerMinute", "UploadBytesPerDay", "StoredBytesPerUser", "OpenJobsPerUser", "HighLaneBytesPerMinute")


class Stack:
    """A LocalStack with the harness's recorder and sampler attached."""

    def __init__(self, state: Path, tokens: dict[str, str], parameters: dict[str, str] | None = None) -> None:
        self.local = LocalStack(state_dir=state, tokens=dict(tokens), parameters=parameters).start()
        freeze_survivors()  # as `docpipe up` does for its process
        self.recorder = Recorder()
        self.recorder.attach(self.local)
        self.sampler = Sampler(self.local)
        self.sampler.start()

    def stop(self) -> None:
        self.sampler.stop()
        self.local.stop()


def unlimited_parameters() -> dict[str, str]:
    """Every quota parameter the template declares, at 0 (unlimited); none if it declares none. Only
    declared names are passed: an undeclared one is at best ignored, at worst refused."""
    declared = Template.load(project_root() / "template.yaml").doc.get("Parameters") or {}
    return {name: "0" for name in QUOTAS if name in declared}


def lift_quotas(stack: LocalStack, user: str) -> tuple[list[str], str]:
    """Set every quota of ``user`` to 0 (unlimited). Returns the names set, and a note on what could not be."""
    try:
        from docpipe_local.quotas import set_quota
    except ImportError as exc:
        return [], f"docpipe_local.quotas is not there ({exc}); {user} keeps whatever limits the stack has"
    done, failed = [], []
    for name in QUOTAS:
        try:
            set_quota(stack, user, name, 0)
            done.append(name)
        except Exception as exc:  # a quota the product does not have (yet): noted, not fatal
            failed.append(f"{name} ({type(exc).__name__}: {exc})"[:160])
    return done, ("could not set: " + "; ".join(failed)) if failed else ""


def describe_runtimes(stack: LocalStack) -> str:
    return ", ".join(
        f"{name.removesuffix('Function')} {r.invocations} invocations ({r.failures} failed, {r.spawned} workers)"
        for name, r in sorted(stack.runtimes.items())
    )

"""`sam build` of template.yaml succeeds and packs what Lambda needs (slow: downloads wheels)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAM = ROOT / ".tools/sam/bin/sam"
PY312 = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin"))) or (
    [str(Path(p).parent)] if (p := shutil.which("python3.12")) else []
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SAM.exists(), reason="SAM CLI not installed (make installs it into .tools/sam)"),
    pytest.mark.skipif(not PY312, reason="sam build for python3.12 needs a python3.12"),
]


def test_sam_build_packs_the_layer_and_the_functions(tmp_path) -> None:
    env = {**os.environ, "PATH": f"{PY312[-1]}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}
    build = tmp_path / "build"

    run = subprocess.run(
        [str(SAM), "build", "--build-dir", str(build), "--parallel"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    layer = build / "DocpipeLayer" / "python"
    assert (layer / "docpipe" / "adapters" / "s3.py").is_file()
    assert (layer / "aws_lambda_powertools").is_dir()
    assert glob.glob(str(layer / "pydantic_core" / "*aarch64*.so")), "arm64 wheels for the arm64 functions"
    assert (build / "IngestFunction" / "ingest" / "handler.py").is_file()
    presets, x86_layer = build / "PresetsFunction", build / "DocpipeLayerX86" / "python"
    # the presets function runs on x86_64 (its SIMD resizer's wheels), with the layer built for it
    assert glob.glob(str(presets / "cykooz_resizer" / "*x86_64*.so")), "the SIMD resizer's x86_64 wheel"
    assert glob.glob(str(presets / "simplejpeg" / "*x86_64*.so")), "the JPEG decoder's x86_64 wheel"
    assert glob.glob(str(x86_layer / "pydantic_core" / "*x86_64*.so")), "x86_64 wheels in its layer"
    assert (x86_layer / "docpipe" / "adapters" / "s3.py").is_file()
    # what Lambda unpacks for the largest function stays well under its 250 MB limit
    unpacked = sum(f.stat().st_size for root in (presets, x86_layer) for f in root.rglob("*") if f.is_file())
    assert unpacked < 200 * 1024 * 1024
    assert (build / "ApiFunction" / "api" / "handler.py").is_file()
    assert not (build / "IngestFunction" / "tests").exists()

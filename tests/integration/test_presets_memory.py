"""One invocation's memory for a 100 MP image stays within PresetsFunction's MemorySize (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = """
import sys
from PIL import Image
size = (10000, 10000)
ramp = Image.linear_gradient("L").resize(size)
image = ramp.convert("RGB")
if "rgba" in sys.argv[1]:  # transparency: the flattened JPEG presets and the alpha-keeping WebP one
    image = image.convert("RGBA")
    image.putalpha(ramp.transpose(Image.Transpose.ROTATE_90))
image.save(sys.argv[1], "JPEG" if sys.argv[1].endswith(".jpg") else "PNG", **({"quality": 90} if sys.argv[1].endswith(".jpg") else {"compress_level": 1}))
"""
MEASURE = """
import json, resource, sys, time
sys.path[:0] = [sys.argv[2] + "/layers/docpipe", sys.argv[2] + "/functions/presets"]
from presets.render import render
with open(sys.argv[1], "rb") as fh:
    started = time.perf_counter()
    results = render(fh, max_pixels=100_000_000)
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": time.perf_counter() - started,
                  "sizes": {r.preset: [r.width, r.height] for r in results}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jpg", ".png", "-rgba.png"])
def test_a_100_megapixel_image_renders_within_the_function_memory(template, tmp_path, suffix) -> None:
    memory_mb = template.function("PresetsFunction").memory_mb
    source = tmp_path / f"big{suffix}"
    subprocess.run([sys.executable, "-c", MAKE, str(source)], check=True, timeout=300)

    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(source), str(ROOT)], capture_output=True, text=True, timeout=300
    )

    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)
    assert measured["sizes"]["preview"] == [800, 800]
    assert measured["peak_mb"] < memory_mb, measured

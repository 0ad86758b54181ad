"""The four presets with docpipe's renderer and with sharp (libvips), on the same inputs, in one run.

    python bench/presets.py [--runs 3]

Corpus (generated, deterministic): a 24 MP JPEG, a 12 MP JPEG with EXIF orientation 6, a 2000 x 1500
RGBA PNG, an animated GIF. sharp is installed into ``bench/.sharp`` on first use (``npm install
sharp``; it ships libvips) and does the same presets with its presets in parallel (``Promise.all``),
as the service docpipe replaces did. Each engine runs in its own fresh process per input; times are
the best of ``--runs``, measured inside the process after start-up, with the input already in memory.
Prints per-input time, peak RSS and the ratio ours/sharp (target: ≤ 0.8 on every input).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SHARP_DIR = ROOT / "bench" / ".sharp"

OURS = """
import json, resource, sys, time
sys.path[:0] = [sys.argv[3] + "/layers/docpipe", sys.argv[3] + "/functions/presets"]
from presets.render import render
data = open(sys.argv[1], "rb").read()
best = float("inf")
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    results = render(data)
    best = min(best, time.perf_counter() - started)
print(json.dumps({"best_ms": best * 1000, "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "sizes": [[r.width, r.height] for r in results]}))
"""


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """Photo-like content: gradients, shapes, mild noise."""
    w, h = size
    ramp = Image.linear_gradient("L").resize(size)
    image = Image.merge(
        "RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT), Image.effect_noise(size, 12 + seed))
    )
    draw = ImageDraw.Draw(image)
    for i in range(30):
        x, y = (i * 197 * (seed + 1)) % w, (i * 131 * (seed + 2)) % h
        draw.ellipse((x, y, x + w // 6, y + h // 5), fill=((i * 37) % 256, (i * 71) % 256, (i * 13) % 256))
    return image


def corpus(folder: Path) -> dict[str, Path]:
    files = {}
    out = folder / "24mp.jpg"
    photo((6000, 4000), 1).save(out, "JPEG", quality=90)
    files["24 MP JPEG"] = out
    exif = Image.Exif()
    exif[0x0112] = 6
    out = folder / "12mp-orientation6.jpg"
    photo((4000, 3000), 2).save(out, "JPEG", quality=90, exif=exif.tobytes())
    files["12 MP JPEG, EXIF 6"] = out
    rgba = photo((2000, 1500), 3).convert("RGBA")
    mask = Image.new("L", rgba.size, 0)
    ImageDraw.Draw(mask).ellipse((200, 150, 1800, 1350), fill=255)
    rgba.putalpha(mask)
    out = folder / "rgba.png"
    rgba.save(out, "PNG")
    files["2000x1500 RGBA PNG"] = out
    frames = []
    for i in range(20):
        frame = photo((480, 360), i % 5).quantize(64)
        ImageDraw.Draw(frame).rectangle((i * 20, 100, i * 20 + 60, 200), fill=i)
        frames.append(frame)
    out = folder / "animated.gif"
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    files["animated GIF (20 frames)"] = out
    return files


def ensure_sharp() -> None:
    if (SHARP_DIR / "node_modules" / "sharp").is_dir():
        return
    SHARP_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "sharp@0.35.5"], cwd=SHARP_DIR, check=True)


def run_json(command: list[str], cwd: Path | None = None) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=cwd)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ensure_sharp()
    script = SHARP_DIR / "sharp_presets.mjs"
    shutil.copy(ROOT / "bench" / "sharp_presets.mjs", script)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, path in corpus(folder).items():
            outdir = folder / f"sharp-{path.stem}"
            outdir.mkdir()
            sharp = run_json(["node", str(script), str(path), str(outdir), str(args.runs)], cwd=SHARP_DIR)
            ours = run_json([sys.executable, "-c", OURS, str(path), str(args.runs), str(ROOT)])
            assert len(ours["sizes"]) == len(sharp["sizes"]) == 4
            rows.append((label, ours, sharp))
    print(f"four presets, best of {args.runs}, each engine in its own process, same inputs, same run")
    print(f"{'input':28}{'ours s':>9}{'sharp s':>9}{'ours/sharp':>12}{'ours MiB':>10}{'sharp MiB':>11}")
    for label, ours, sharp in rows:
        ratio = ours["best_ms"] / sharp["best_ms"]
        print(
            f"{label:28}{ours['best_ms'] / 1000:9.3f}{sharp['best_ms'] / 1000:9.3f}{ratio:12.2f}"
            f"{ours['max_rss_kb'] / 1024:10.0f}{sharp['max_rss_kb'] / 1024:11.0f}"
            f"  {'ok' if ratio <= 0.8 else 'above target 0.8'}"
        )
    print("sizes (ours):", {label: ours["sizes"] for label, ours, _ in rows})


if __name__ == "__main__":
    main()

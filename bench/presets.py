"""The four presets with docpipe's renderer and with sharp (libvips), on the same inputs, in one run.

    python bench/presets.py [--runs 5] [--rounds 3] [--pyvips] [--pillow-resize]

Corpus (generated, deterministic): a 24 MP JPEG, a 12 MP JPEG with EXIF orientation 6, a 2000 x 1500
RGBA PNG, an animated GIF. sharp is installed into ``bench/.sharp`` on first use (``npm install
sharp``; it ships libvips) and does the same presets with its presets in parallel (``Promise.all``),
as the service docpipe replaces did. Each engine runs in its own fresh process per input and round,
the engines taking turns (this machine's speed drifts by 10-20% within a minute); times are the best of
``--runs`` renders in each of ``--rounds`` processes, measured inside the process after start-up with
the input already in memory, with the CPU time (all threads) of that render. Prints per-input time,
CPU time, peak RSS and the ratio ours/sharp (target: ≤ 0.8 on every input).

``--pillow-resize`` adds our renderer with Pillow resizing instead of the SIMD resizer (what runs
where cykooz.resizer has no wheel, as on Linux arm64).

``--pyvips`` adds a reference: libvips itself (sharp's engine) called from Python through pyvips,
installed into ``bench/.pyvips`` (a venv with ``pyvips`` and the ``pyvips-binary`` wheel), decoding
each image once into memory and making the four presets from it on four threads. It shows what the
same engine as sharp gives when driven from Python, next to what Pillow gives.
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
PYVIPS_DIR = ROOT / "bench" / ".pyvips"

OURS = """
import json, resource, sys, time
sys.path[:0] = [sys.argv[3] + "/layers/docpipe", sys.argv[3] + "/functions/presets"]
import presets.schedule as module  # the resizer the presets use
from presets.render import render
if sys.argv[4] == "pillow":
    module.Resizer = None
data = open(sys.argv[1], "rb").read()
best, cpu = float("inf"), 0.0
for _ in range(int(sys.argv[2])):
    started, used = time.perf_counter(), time.process_time()
    results = render(data)
    elapsed = time.perf_counter() - started
    if elapsed < best:
        best, cpu = elapsed, time.process_time() - used
print(json.dumps({"best_ms": best * 1000, "cpu_ms": cpu * 1000,
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "sizes": [[r.width, r.height] for r in results],
                  "resizer": "cykooz.resizer (SIMD)" if module.Resizer else "Pillow"}))
"""

# libvips through pyvips: one decode into memory (upright), the four presets from it on four threads;
# an animated input's preview and thumbnail keep every frame (libvips' thumbnail of all pages).
PYVIPS = """
import json, resource, sys, time
from concurrent.futures import ThreadPoolExecutor
import pyvips
PRESETS = [(2048, 4096, ".jpg", 90, False), (1920, 3840, ".jpg", 85, False), (800, 1600, ".jpg", 85, True),
           (200, 200, ".webp", 80, True)]
data = open(sys.argv[1], "rb").read()

def once():
    image = pyvips.Image.new_from_buffer(data, "", access="random").autorot().copy_memory()
    animated = image.get_n_pages() > 1
    def preset(p):
        if animated and p[4]:
            out = pyvips.Image.thumbnail_buffer(data, p[0], height=p[1], size="down", option_string="n=-1")
            out.write_to_buffer(".webp", Q=p[3])
            return [out.width, out.get_page_height()]
        scale = min(1.0, p[0] / image.width, p[1] / image.height)
        out = image.resize(scale, kernel="lanczos3") if scale < 1 else image
        if out.hasalpha() and p[2] == ".jpg":
            out = out.flatten(background=255)
        out.write_to_buffer(p[2], Q=p[3])
        return [out.width, out.height]
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(preset, PRESETS))

best, cpu = float("inf"), 0.0
for _ in range(int(sys.argv[2])):
    started, used = time.perf_counter(), time.process_time()
    sizes = once()
    elapsed = time.perf_counter() - started
    if elapsed < best:
        best, cpu = elapsed, time.process_time() - used
print(json.dumps({"best_ms": best * 1000, "cpu_ms": cpu * 1000,
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "sizes": sizes}))
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


def ensure_pyvips() -> Path:
    python = PYVIPS_DIR / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PYVIPS_DIR)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "pyvips==3.2.0", "pyvips-binary==8.18.7"], check=True
        )
    return python


def run_json(command: list[str], cwd: Path | None = None) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=cwd)
    return json.loads(done.stdout.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["best_ms"]) | {"max_rss_kb": max(r["max_rss_kb"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="renders per process (the best counts)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per engine and input, taking turns")
    parser.add_argument("--pyvips", action="store_true", help="add libvips through pyvips as a reference")
    parser.add_argument("--pillow-resize", action="store_true", help="add our renderer with Pillow's resizes")
    args = parser.parse_args()
    ensure_sharp()
    vips = ensure_pyvips() if args.pyvips else None
    script = SHARP_DIR / "sharp_presets.mjs"
    shutil.copy(ROOT / "bench" / "sharp_presets.mjs", script)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, path in corpus(folder).items():
            outdir = folder / f"sharp-{path.stem}"
            outdir.mkdir()
            engines: dict[str, list[str]] = {
                "sharp": ["node", str(script), str(path), str(outdir), str(args.runs)],
                "ours": [sys.executable, "-c", OURS, str(path), str(args.runs), str(ROOT), "auto"],
            }
            if args.pillow_resize:
                engines["pillow"] = [sys.executable, "-c", OURS, str(path), str(args.runs), str(ROOT), "pillow"]
            if vips:
                engines["pyvips"] = [str(vips), "-c", PYVIPS, str(path), str(args.runs)]
            runs: dict[str, list[dict]] = {name: [] for name in engines}
            for round_ in range(args.rounds):
                order = list(engines) if round_ % 2 == 0 else list(reversed(engines))
                for name in order:
                    runs[name].append(run_json(engines[name], cwd=SHARP_DIR))
            measured = {name: best(r) for name, r in runs.items()}
            assert len(measured["ours"]["sizes"]) == len(measured["sharp"]["sizes"]) == 4
            rows.append((label, measured))
    print(
        f"four presets, best of {args.runs} renders x {args.rounds} processes per engine, engines taking turns,"
        " same inputs, same run; CPU = all threads of the best render"
    )
    names = ["ours", "sharp"] + (["pillow"] if args.pillow_resize else []) + (["pyvips"] if vips else [])
    extras = names[2:]
    header = "".join(f"{n + ' s':>10}{'CPU s':>7}{'MiB':>6}" for n in names)
    print(f"{'input':28}{header}{'ours/sharp':>12}" + "".join(f"{n + '/sharp':>14}" for n in extras))
    for label, measured in rows:
        cells = "".join(
            f"{measured[n]['best_ms'] / 1000:10.3f}{measured[n]['cpu_ms'] / 1000:7.3f}{measured[n]['max_rss_kb'] / 1024:6.0f}"
            for n in names
        )
        ratio = measured["ours"]["best_ms"] / measured["sharp"]["best_ms"]
        extra = "".join(f"{measured[n]['best_ms'] / measured['sharp']['best_ms']:14.2f}" for n in extras)
        print(f"{label:28}{cells}{ratio:12.2f}{extra}  {'ok' if ratio <= 0.8 else 'above target 0.8'}")
    print("ours resizes with:", rows[0][1]["ours"]["resizer"])
    print("sizes (ours):", {label: measured["ours"]["sizes"] for label, measured in rows})


if __name__ == "__main__":
    main()

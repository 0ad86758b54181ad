// The four docpipe presets with sharp (libvips), its presets in parallel, as the service docpipe replaces did.
// usage: node sharp_presets.mjs INPUT OUTDIR RUNS  → prints JSON {best_ms, cpu_ms, max_rss_kb, sizes}
import sharp from "sharp";
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";

const [input, outdir, runs] = process.argv.slice(2);
const data = readFileSync(input);
const presets = [
  { name: "ai-vision", width: 2048, height: 4096, format: "jpeg", quality: 90, animated: false },
  { name: "ai-chat", width: 1920, height: 3840, format: "jpeg", quality: 85, animated: false },
  { name: "preview", width: 800, height: 1600, format: "jpeg", quality: 85, animated: true },
  { name: "thumbnail", width: 200, height: 200, format: "webp", quality: 80, animated: true },
];

async function once() {
  const meta = await sharp(data).metadata();
  const animatedInput = (meta.pages || 1) > 1;
  return Promise.all(presets.map((p) => {
    const animated = animatedInput && p.animated;
    let pipeline = sharp(data, animated ? { animated: true } : { page: 0 }).rotate()
      .resize({ width: p.width, height: p.height, fit: "inside", withoutEnlargement: true });
    if (animated) pipeline = pipeline.webp({ quality: p.quality });
    else if (p.format === "jpeg") pipeline = pipeline.flatten({ background: "#ffffff" }).jpeg({ quality: p.quality });
    else pipeline = pipeline.webp({ quality: p.quality });
    return pipeline.toFile(`${outdir}/${p.name}.${animated ? "webp" : p.format === "jpeg" ? "jpg" : "webp"}`);
  }));
}

let best = Infinity;
let cpu = 0;
let outputs = [];
for (let i = 0; i < Number(runs); i++) {
  const started = performance.now();
  const used = process.cpuUsage();
  outputs = await once();
  const elapsed = performance.now() - started;
  if (elapsed < best) {
    const spent = process.cpuUsage(used);
    best = elapsed;
    cpu = (spent.user + spent.system) / 1000;
  }
}
console.log(JSON.stringify({ best_ms: best, cpu_ms: cpu, max_rss_kb: process.resourceUsage().maxRSS,
  sizes: outputs.map((o) => [o.width, o.height]) }));

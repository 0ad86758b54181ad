"use strict";
// Big files in parts (loaded after app.js, whose api(), stats, cards, follow() and base() it uses).
//
// A file above the API's multipartThresholdBytes (GET /health) goes to storage in parts, PARTS_AT_ONCE at a
// time: each part is read, hashed (SHA-256 with SubtleCrypto, which S3 then checks), signed
// (POST /uploads/{jobId}/parts) and PUT to its presigned URL by an XMLHttpRequest, whose progress feeds the
// card's byte bar. Pause aborts the parts in flight and keeps the parts done; Resume lists the parts storage
// holds (GET /uploads/{jobId}/parts) and sends only the missing ones. So does choosing the same file again
// after a reload: localStorage keeps {jobId, partSize, partCount, checksum} under the API, the file's name,
// size and lastModified (never the token). An upload whose job is gone or over starts afresh.
const PARTS_AT_ONCE = 4;
const PART_TRIES = 3;  // a part whose connection breaks is sent again, then the upload pauses
const RESUME_PREFIX = "docpipe.upload:";

let limits = null;
// The API's upload limits: {multipartThresholdBytes, maxPostBytes, maxUploadBytes}.
async function uploadLimits() {
  if (limits) return limits;
  const r = await api("GET", "/health").catch(() => ({ status: 0, data: {} }));
  const known = r.data?.uploads;
  if (known?.multipartThresholdBytes) limits = known;  // else ask again next time
  return known || { multipartThresholdBytes: 64 * 1024 * 1024, maxPostBytes: 100 * 1024 * 1024 };
}

const resumeKey = (file) => RESUME_PREFIX + JSON.stringify([base(), file.name, file.size, file.lastModified]);

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// One PUT of one part: resolves {ok, status, aborted}.
function putPart(upload, run, number, signed, body) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", signed.url);
    for (const [name, value] of Object.entries(signed.headers || {})) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (e) => upload.run === run && upload.progress(number, e.loaded));
    const done = (result) => {
      upload.xhrs.delete(xhr);
      resolve(result);
    };
    xhr.addEventListener("load", () => done({ ok: xhr.status >= 200 && xhr.status < 300, status: xhr.status }));
    xhr.addEventListener("error", () => done({ ok: false, status: 0 }));
    xhr.addEventListener("abort", () => done({ ok: false, status: 0, aborted: true }));
    upload.xhrs.add(xhr);
    run.puts++;
    xhr.send(body);
  });
}

class PartUpload {
  constructor(card, file) {
    this.card = card;
    this.file = file;
    this.key = resumeKey(file);
    this.xhrs = new Set();
    this.loading = new Map();  // part number -> bytes sent so far of a part in flight
    this.held = new Map();  // part number -> size, of the parts storage holds
    this.paused = false;
    this.ended = false;
    card.parts = this;
    card.q(".pause").addEventListener("click", () => this.pause());
    card.q(".resume").addEventListener("click", () => this.resume());
  }

  // Resume the upload this file was in (if its job still waits for parts), else start one.
  async start() {
    const saved = JSON.parse(localStorage.getItem(this.key) || "null");
    if (saved?.jobId) {
      const listed = await api("GET", `/uploads/${encodeURIComponent(saved.jobId)}/parts`);
      if (listed.status === 200 && listed.data.partSize === saved.partSize) {
        this.begin(listed.data);
        return this.send(listed.data.parts);
      }
      localStorage.removeItem(this.key);  // gone, over, or another user's: start afresh
    }
    const subtle = window.crypto?.subtle;  // only in a secure context (https, localhost)
    const request = {
      name: this.file.name,
      size: this.file.size,
      contentType: this.file.type || undefined,
      ocr: $("ocr").checked,
      ...(subtle ? { checksum: "sha256" } : {}),
    };
    this.card.state("waiting");
    const created = await api("POST", "/uploads/multipart", request);
    if (created.status !== 201) {
      this.card.state("failed");
      this.card.error(created.data.code, created.data.message);
      return;
    }
    const { jobId, partSize, partCount, checksum } = created.data;
    localStorage.setItem(this.key, JSON.stringify({ jobId, partSize, partCount, checksum }));
    this.begin(created.data);
    return this.send([]);
  }

  begin(upload) {
    this.upload = upload;
    const card = this.card;
    card.job = { jobId: upload.jobId, state: "uploading", name: this.file.name };
    cards.set(upload.jobId, card);
    card.el.dataset.jobId = upload.jobId;
    card.el.dataset.parts = String(upload.partCount);
    card.abort = () => this.stop();
    card.state("uploading");
    stats.parts[upload.jobId] = { count: upload.partCount, partSize: upload.partSize, runs: [] };
  }

  // Send the parts not in `held` (what storage listed), PARTS_AT_ONCE at a time; complete when all are there.
  async send(held) {
    this.held = new Map(held.map((p) => [p.number, p.size]));
    this.loading.clear();
    this.paused = false;
    const run = (this.run = { held: [...this.held.keys()].sort((a, b) => a - b), sent: [], puts: 0 });
    stats.parts[this.upload.jobId].runs.push(run);
    this.buttons();
    this.progress();
    const missing = [];
    for (let n = 1; n <= this.upload.partCount; n++) if (!this.held.has(n)) missing.push(n);
    const worker = async () => {
      while (missing.length && this.going(run)) await this.sendPart(missing.shift(), run);
    };
    await Promise.all(Array.from({ length: Math.min(PARTS_AT_ONCE, missing.length) }, worker));
    if (!this.going(run)) return;
    await this.complete();
  }

  // Whether `run` (one start or resume) is still the one to carry on: not paused, cancelled or superseded.
  going(run) {
    return this.run === run && !this.paused && !this.ended;
  }

  async sendPart(number, run) {
    const size = this.upload.partSize;
    const body = await this.file.slice((number - 1) * size, Math.min(number * size, this.file.size)).arrayBuffer();
    const sha256 = this.upload.checksum === "sha256" ? base64(await crypto.subtle.digest("SHA-256", body)) : undefined;
    for (let tries = 1; this.going(run); tries++) {
      const signing = await api("POST", `/uploads/${this.upload.jobId}/parts`, { parts: [{ number, ...(sha256 ? { sha256 } : {}) }] });
      if (signing.status !== 200) return this.refused(signing);
      if (!this.going(run)) return;
      const put = await putPart(this, run, number, signing.data.parts[0], body);
      if (this.run === run) this.loading.delete(number);
      if (put.ok) {
        this.held.set(number, body.byteLength);
        run.sent.push(number);
        this.progress();
        return;
      }
      if (put.aborted) return;
      if (tries >= PART_TRIES) {
        this.pause();
        this.card.error("upload.interrupted", `Part ${number} could not be sent (HTTP ${put.status}): press Resume to go on.`);
        return;
      }
      await sleep(1000 * tries);
    }
  }

  // The API refused to sign: the job ended meanwhile (cancelled elsewhere, expired), or a bad request.
  refused(r) {
    if (this.ended) return;
    this.stop();
    localStorage.removeItem(this.key);
    this.card.error(r.data.code, r.data.message);
    api("GET", `/jobs/${this.upload.jobId}`).then((j) => j.status === 200 && this.card.show(j.data, "poll"));
  }

  async complete() {
    const done = await api("POST", `/uploads/${this.upload.jobId}/complete`, {});
    this.ended = true;
    this.buttons();
    localStorage.removeItem(this.key);
    if (done.status === 202) {
      this.card.bar("upload", 1);
      this.card.show(done.data, "poll");
      return;
    }
    const job = await api("GET", `/jobs/${this.upload.jobId}`);
    if (job.status === 200) this.card.show(job.data, "poll");
    this.card.error(done.data.code, done.data.message);
  }

  progress(number, loaded) {
    if (number !== undefined) this.loading.set(number, loaded);
    let bytes = 0;
    for (const size of this.held.values()) bytes += size;
    for (const sent of this.loading.values()) bytes += sent;
    this.card.bar("upload", this.file.size ? bytes / this.file.size : 1);
    this.card.q(".progress").textContent = `${this.held.size}/${this.upload.partCount} parts${this.paused ? ", paused" : ""}`;
  }

  // Pause: stop the parts in flight (their bytes are sent again on resume), keep the parts done.
  pause() {
    if (this.ended) return;
    this.paused = true;
    for (const xhr of [...this.xhrs]) xhr.abort();
    this.loading.clear();
    this.card.state("paused");
    this.buttons();
    this.progress();
  }

  async resume() {
    if (this.ended || !this.paused) return;
    this.card.error("", "");
    this.card.q(".resume").disabled = true;
    const listed = await api("GET", `/uploads/${this.upload.jobId}/parts`);
    this.card.q(".resume").disabled = false;
    if (listed.status !== 200) return this.refused(listed);
    this.card.state("uploading");
    await this.send(listed.data.parts);
  }

  // Cancel (the card's Cancel button deletes the job afterwards, which drops the parts).
  stop() {
    this.ended = true;
    this.paused = false;
    for (const xhr of [...this.xhrs]) xhr.abort();
    localStorage.removeItem(this.key);
    this.buttons();
  }

  buttons() {
    this.card.q(".pause").hidden = this.ended || this.paused;
    this.card.q(".resume").hidden = this.ended || !this.paused;
  }
}

// Upload `file` in parts on `card`, if the API wants parts for its size; false when one POST will do.
async function uploadInParts(card, file) {
  const known = await uploadLimits();
  const threshold = Math.min(known.multipartThresholdBytes || Infinity, known.maxPostBytes || Infinity);
  if (!(file.size > threshold)) return false;
  await new PartUpload(card, file).start();
  return true;
}

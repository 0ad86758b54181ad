"use strict";
// The upload page: drop or pick files, upload each one straight to storage (presigned POST, with its bytes
// sent shown), then follow its job: pushed over the WebSocket that GET /config names, polled while there is
// none (or it is closed). No build step and no third-party code: with connection.js (the API and the token)
// and parts.js (uploads in parts), this is the whole client.
const TERMINAL = ["ready", "failed", "cancelled"];
const isOpen = (state) => !TERMINAL.includes(state);  // uploading, scanning, queued, processing, …

// The API, the token and the link's fragment come from connection.js. #poll= : milliseconds between two reads
// of an open job while no push channel is up (1 s by default).
const POLL_MS = Math.min(600000, Math.max(250, Number(fragment.get("poll")) || 1000));

// What the tests (and a curious user, in the console) can read: how updates arrived.
// parts: per multipart job, its part count and each start or resume (parts held then, parts sent, PUTs made).
const stats = (window.docpipe = { polls: 0, pushes: 0, push: "off", pollMs: POLL_MS, parts: {} });

// Plain-language words for the stable error codes (the API's own message is shown beside them).
const PLAIN = {
  "file.corrupt": "The file is damaged or incomplete, so it could not be read.",
  "file.empty": "The file is empty.",
  "file.too_large": "The file is larger than this service accepts.",
  "file.unsupported_type": "This kind of file is not supported.",
  "file.type_mismatch": "The file's content does not match its name or type.",
  "file.infected": "The file looks like malware and was refused.",
  "file.macro": "Office files with macros are not accepted.",
  "pdf.encrypted": "The PDF is password-protected; upload an unprotected copy.",
  "image.too_many_pixels": "The image has too many pixels to process safely.",
  "archive.unsafe": "The archive inside this file looks unsafe (too many or too large entries).",
  "ocr.unavailable": "Text recognition is not available right now; retry later.",
  "upload.expired": "The upload did not arrive in time; upload the file again.",
  "upload.interrupted": "The connection broke off; the parts already sent are kept.",
  "upload.finished": "This upload is over: its job has ended.",
  "quota.exceeded": "You reached a usage limit; wait a little and try again.",
  "job.finished": "This job has already ended.",
  "auth.required": "The token is missing or not valid: paste the token `docpipe up` printed.",
  "internal": "Something went wrong on our side; retry in a moment.",
};
const plain = (code) => PLAIN[code] || "The file could not be processed.";

async function api(method, path, body, accept = "application/json") {
  for (let tries = 0; ; tries++) {
    const response = await fetch(base() + path, {
      method,
      headers: { Authorization: "Bearer " + $("token").value, "Content-Type": "application/json", Accept: accept },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await response.json().catch(() => ({}));
    const retryAfter = Number(response.headers.get("Retry-After") || 1);
    // A rate limit (429 quota.exceeded with Retry-After): come back when it says, a few times.
    if (response.status === 429 && data.retryAfter && tries < 30 && method !== "GET") {
      await sleep(retryAfter * 1000);
      continue;
    }
    return { status: response.status, data, retryAfter };
  }
}

// A variant's signed URL: 200 {url}; 202 while it is being made (wait Retry-After, ask again); else an error.
async function variantUrl(hash, variant, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await api("GET", `/files/${hash}/${variant}`);
    if (r.status === 200) return r.data.url;
    if (r.status !== 202 || Date.now() > deadline) throw new Error(r.data.message || `HTTP ${r.status}`);
    await sleep(r.retryAfter * 1000);
  }
}

// ------------------------------------------------------------------ one card per file
const cards = new Map();  // jobId -> Card

class Card {
  constructor(file) {
    this.file = file;
    this.job = null;
    this.el = document.createElement("article");
    this.el.className = "job";
    this.el.innerHTML = `<img class="thumb" alt="" hidden>
      <div class="body">
        <div class="head"><span class="name"></span><span class="state">asking</span><span class="progress"></span></div>
        <div class="bar upload"><span>upload</span><progress max="100" value="0"></progress><span class="pct">0 %</span></div>
        <div class="bar processing" hidden><span>processing</span><progress max="100" value="0"></progress><span class="pct">0 %</span></div>
        <div class="queue" hidden></div>
        <div class="error failed" hidden></div>
        <div class="actions"><button class="pause" hidden>Pause</button><button class="resume" hidden>Resume</button><button class="cancel" hidden>Cancel</button><button class="retry" hidden>Retry</button></div>
        <div class="variants"></div><pre hidden></pre>
      </div>`;
    this.q(".name").textContent = file.name;
    this.q(".cancel").addEventListener("click", () => this.cancel());
    this.q(".retry").addEventListener("click", () => this.retry());
    $("jobs").prepend(this.el);
  }

  q(selector) {
    return this.el.querySelector(selector);
  }

  bar(which, fraction) {
    const pct = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    const bar = this.q(`.bar.${which}`);
    bar.hidden = false;
    bar.querySelector("progress").value = pct;
    bar.querySelector(".pct").textContent = `${pct} %`;
  }

  state(state) {
    const el = this.q(".state");
    el.textContent = state;
    el.className = "state " + state;
    this.el.dataset.state = state;
    this.q(".cancel").hidden = !this.job || !isOpen(state);
    this.q(".retry").hidden = !["failed", "cancelled"].includes(state) || !this.job;
  }

  error(code, message) {
    const el = this.q(".error");
    el.hidden = !code && !message;
    el.innerHTML = "<code></code> <span class='plain'></span> <span class='detail'></span>";
    el.querySelector("code").textContent = code || "";
    el.querySelector(".plain").textContent = code ? plain(code) : "";
    el.querySelector(".detail").textContent = message && message !== plain(code) ? `(${message})` : "";
  }

  // A job as GET /jobs/{id} shows it, whether read or pushed. Older news than what is shown is dropped: an
  // earlier updatedAt, or the same one with less progress (two pushes can arrive out of the order their
  // views were read in; progress only grows between two changes of the job itself).
  show(job, via) {
    if (!job || (this.job && job.updatedAt && this.job.updatedAt > job.updatedAt)) return;
    if (this.job && job.updatedAt === this.job.updatedAt && (job.progress || 0) < (this.job.progress || 0)) return;
    if (this.parts && !this.parts.ended && job.state === "uploading") return;  // its parts' sender shows it
    const first = !this.job;
    this.job = job;
    this.el.dataset.jobId = job.jobId;
    this.el.dataset.via = via;
    cards.set(job.jobId, this);
    this.state(job.state === "uploading" && job.step ? job.step : job.state);  // "completing": parts being joined
    if (job.state !== "uploading") this.bar("upload", 1);
    if (job.state === "processing" || (job.state !== "uploading" && typeof job.progress === "number")) {
      this.bar("processing", (job.progress || 0) / 100);
    }
    this.q(".progress").textContent = typeof job.progress === "number" ? `${job.progress}%` : "";
    const queue = this.q(".queue");
    queue.hidden = !(job.state === "queued" && job.queue);
    if (!queue.hidden) {
      const q = job.queue;
      const ahead = q.ahead === 0 ? "next in line" : `${q.ahead} of your jobs ahead`;
      const starts = q.startsInSeconds ? `, starts in about ${q.startsInSeconds} s` : "";
      queue.textContent = `Queued in the ${q.lane} lane: ${ahead}${starts} (approximate)`;
    }
    this.error(job.error?.code, job.error?.message);
    this.thumbnail(job);
    if (job.state === "ready" && !this.rendered) {
      this.rendered = true;
      this.variants(job).catch((e) => this.error("internal", e.message));
    }
    if (first || isOpen(job.state)) follow(this);
  }

  thumbnail(job) {
    const thumb = job.tasks?.presets?.variants?.thumbnail;
    if (!thumb || this.thumbAsked) return;
    this.thumbAsked = true;
    variantUrl(job.hash, "thumbnail")
      .then((url) => {
        const img = this.q(".thumb");
        img.src = url;
        img.alt = `thumbnail of ${job.name}`;
        img.hidden = false;
      })
      .catch(() => (this.thumbAsked = false));
  }

  async variants(job) {
    const variants = this.q(".variants");
    for (const [, view] of Object.entries(job.tasks || {})) {
      for (const [name, facts] of Object.entries(view.variants || {})) {
        const figure = document.createElement("figure");
        const caption = document.createElement("figcaption");
        variants.append(figure);
        try {
          const url = await variantUrl(job.hash, name);
          if (name === "text") {
            const link = document.createElement("a");
            link.href = url;
            link.textContent = "text.json";
            figure.append(link);
            const pre = this.q("pre");
            pre.hidden = false;
            pre.textContent = facts.excerpt || "";
            caption.textContent = `${facts.pages} page(s), ${facts.chars} characters, ${(facts.methods || []).join(", ")}`;
          } else {
            const img = document.createElement("img");
            img.src = url;
            img.alt = name;
            figure.append(img);
            caption.textContent = `${name} ${facts.width}×${facts.height} ${facts.format}, ${facts.size} bytes`;
          }
        } catch (error) {
          caption.textContent = `${name}: ${error.message}`;
        }
        figure.append(caption);
      }
    }
  }

  async cancel() {
    if (this.abort) this.abort();  // still uploading: stop sending
    if (!this.job) return;
    const r = await api("DELETE", `/jobs/${this.job.jobId}`);
    if (r.status === 200) this.show(r.data, "cancel");
    else this.error(r.data.code, r.data.message);
  }

  async retry() {
    const r = await api("POST", `/jobs/${this.job.jobId}/retry`);
    if (r.status !== 202) return this.error(r.data.code, r.data.message);
    this.rendered = false;
    this.q(".variants").replaceChildren();
    this.show(r.data, "retry");
  }
}

// ------------------------------------------------------------------ upload
function post(card, url, form) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.upload.addEventListener("progress", (e) => e.lengthComputable && card.bar("upload", e.loaded / e.total));
    xhr.upload.addEventListener("load", () => card.bar("upload", 1));  // every byte sent
    xhr.addEventListener("load", () => resolve({ ok: xhr.status >= 200 && xhr.status < 300, status: xhr.status }));
    xhr.addEventListener("error", () => resolve({ ok: false, status: 0 }));
    xhr.addEventListener("abort", () => resolve({ ok: false, status: 0, aborted: true }));
    card.abort = () => xhr.abort();
    xhr.send(form);
  });
}

async function upload(file) {
  const card = new Card(file);
  if (await uploadInParts(card, file)) return;  // a big file: in parts, resumable (parts.js)
  const request = { name: file.name, size: file.size, contentType: file.type || undefined, ocr: $("ocr").checked };
  card.state("waiting");
  const created = await api("POST", "/uploads", request);
  if (created.status !== 201) {
    card.state("failed");
    card.error(created.data.code, created.data.message);
    return;
  }
  card.job = { jobId: created.data.jobId, state: "uploading", name: file.name };
  cards.set(created.data.jobId, card);
  card.el.dataset.jobId = created.data.jobId;
  card.state("uploading");
  card.bar("upload", 0);
  const form = new FormData();
  for (const [k, v] of Object.entries(created.data.upload.fields)) form.append(k, v);
  form.append("file", file);
  const put = await post(card, created.data.upload.url, form);
  card.abort = null;
  if (!put.ok) {
    // The job would wait for an upload that never comes: end it now instead of leaving it to the sweeper.
    await api("DELETE", `/jobs/${created.data.jobId}`).catch(() => undefined);
    card.state("cancelled");
    card.error(
      put.aborted ? "" : "upload.refused",
      put.aborted ? "You cancelled the upload." : `Storage refused the upload (HTTP ${put.status}); the job is cancelled.`,
    );
    return;
  }
  const read = await api("GET", `/jobs/${created.data.jobId}`);
  stats.polls++;
  if (read.status === 200) card.show(read.data, "poll");
}

// ------------------------------------------------------------------ following jobs: push, else poll
const following = new Set();

// One loop per open job: read GET /jobs/{id} every POLL_MS while the push channel is not up; stop at the end.
async function follow(card) {
  if (following.has(card)) return;
  following.add(card);
  try {
    while (card.job && isOpen(card.job.state)) {
      await sleep(push.open ? 1000 : POLL_MS);
      if (push.open || !isOpen(card.job.state)) continue;
      const r = await api("GET", `/jobs/${card.job.jobId}`);
      stats.polls++;
      if (r.status === 200) card.show(r.data, "poll");
      else if (r.status === 404) break;
    }
  } finally {
    following.delete(card);
  }
}

const push = {
  open: false,
  socket: null,
  url: null,
  retryMs: 1000,
  live(text, state) {
    stats.push = state;
    $("live").textContent = text;
    $("live").className = "live " + state;
  },
  async start() {
    if (!$("token").value) return this.live("no token", "off");
    const config = await api("GET", "/config").catch(() => ({ status: 0 }));
    this.url = config.status === 200 ? config.data?.push?.url : null;
    if (!this.url) return this.live(`polling every ${POLL_MS / 1000} s`, "poll");
    this.connect();
  },
  connect() {
    const socket = new WebSocket(`${this.url}${this.url.includes("?") ? "&" : "?"}token=${encodeURIComponent($("token").value)}`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.open = true;
      this.retryMs = 1000;
      this.live("live", "push");
      // After every (re)connect, read each open job again: an update sent while the socket was down
      // (a terminal state above all) is never missed.
      for (const card of new Set(cards.values())) {
        if (card.job && isOpen(card.job.state)) {
          api("GET", `/jobs/${card.job.jobId}`).then((r) => r.status === 200 && card.show(r.data, "poll"));
        }
      }
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type !== "job" || !message.job) return;
      const card = cards.get(message.job.jobId);
      if (!card) return;
      stats.pushes++;
      card.show(message.job, "push");
    });
    socket.addEventListener("close", () => {
      this.open = false;
      this.live(`reconnecting; polling every ${POLL_MS / 1000} s`, "poll");
      for (const card of new Set(cards.values())) if (card.job && isOpen(card.job.state)) follow(card);
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 30000);
    });
  },
};
setInterval(() => push.open && push.socket.send(JSON.stringify({ action: "ping" })), 60000);  // keep it warm

// ------------------------------------------------------------------ input: drop, pick
function remember() {
  const changed = sessionStorage.getItem("docpipe.token") !== $("token").value;
  sessionStorage.setItem("docpipe.api", $("api").value);
  sessionStorage.setItem("docpipe.token", $("token").value);
  if (changed || !push.socket) push.start();
}

function send(files) {
  remember();
  for (const file of files) upload(file).catch((e) => new Card(file).error("internal", e.message));
}

$("send").addEventListener("click", () => {
  send([...$("files").files]);
  $("files").value = "";
});
const drop = $("drop");
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
}
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  send([...(e.dataTransfer?.files || [])]);
});
// A file dropped beside the zone must not make the browser leave the page to open it.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
push.start();

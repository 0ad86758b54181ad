"use strict";
const $ = (id) => document.getElementById(id);
const trim = (url) => url.replace(/\/+$/, "");
const fragment = new URLSearchParams(location.hash.slice(1));

// The page sends its token only to its own origin or to an API listed in <meta name="docpipe-api-origins">:
// a link's #api= can pick one of those, never another host.
const listed = (document.querySelector('meta[name="docpipe-api-origins"]')?.content || "").split(/\s+/);
const apis = [...new Set([...listed.filter(Boolean).map(trim), location.origin])];
for (const url of apis) $("api").append(new Option(url, url));
const wanted = trim(fragment.get("api") || sessionStorage.getItem("docpipe.api") || "");
$("api").value = apis.includes(wanted) ? wanted : apis[0];
const base = () => $("api").value;

// The token lives in this tab's sessionStorage. One in the link (#token=, as `docpipe up` prints it) is read
// once, then taken out of the address bar (the history entry is replaced).
if (fragment.has("token")) sessionStorage.setItem("docpipe.token", fragment.get("token"));
if (location.hash) history.replaceState(null, "", location.pathname + location.search);
for (const key of ["docpipe.api", "docpipe.token"]) localStorage.removeItem(key);  // where older pages kept them
$("token").value = sessionStorage.getItem("docpipe.token") || "";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function api(method, path, body, accept = "application/json") {
  const response = await fetch(base() + path, {
    method,
    headers: { Authorization: "Bearer " + $("token").value, "Content-Type": "application/json", Accept: accept },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  return { status: response.status, data, retryAfter: Number(response.headers.get("Retry-After") || 1) };
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

function row(name) {
  const div = document.createElement("div");
  div.className = "job";
  div.innerHTML = `<div><span class="name"></span> — <span class="state">asking</span> <span class="progress"></span></div>
    <div class="error failed"></div><div class="variants"></div><pre hidden></pre>`;
  div.querySelector(".name").textContent = name;
  $("jobs").prepend(div);
  return div;
}

async function upload(file) {
  const div = row(file.name);
  const show = (state, progress) => {
    const el = div.querySelector(".state");
    el.textContent = state;
    el.className = "state " + state;
    div.querySelector(".progress").textContent = progress === undefined ? "" : `${progress}%`;
  };
  const request = { name: file.name, size: file.size, contentType: file.type || undefined, ocr: $("ocr").checked };
  let created = await api("POST", "/uploads", request);
  for (let tries = 0; created.status === 429 && created.data.retryAfter && tries < 30; tries++) {
    show("waiting", undefined);  // a rate limit: come back when it says
    await sleep(created.retryAfter * 1000);
    created = await api("POST", "/uploads", request);
  }
  if (created.status !== 201) {
    show("failed");
    div.querySelector(".error").textContent = `${created.data.code}: ${created.data.message}`;
    return;
  }
  show("uploading", 0);
  const form = new FormData();
  for (const [k, v] of Object.entries(created.data.upload.fields)) form.append(k, v);
  form.append("file", file);
  const put = await fetch(created.data.upload.url, { method: "POST", body: form }).catch(() => ({ ok: false, status: 0 }));
  if (!put.ok) {
    // The job would wait for an upload that never comes: end it now instead of leaving it to the sweeper.
    await api("DELETE", `/jobs/${created.data.jobId}`).catch(() => undefined);
    show("cancelled");
    div.querySelector(".error").textContent = `the upload was refused by storage (HTTP ${put.status}); the job is cancelled`;
    return;
  }
  let job;
  for (let wait = 100; ; wait = Math.min(wait * 1.5, 1000)) {
    job = (await api("GET", `/jobs/${created.data.jobId}`)).data;
    show(job.state, job.progress);
    if (["ready", "failed", "cancelled"].includes(job.state)) break;
    await sleep(wait);
  }
  if (job.error) div.querySelector(".error").textContent = `${job.error.code}: ${job.error.message}`;
  const variants = div.querySelector(".variants");
  for (const [task, view] of Object.entries(job.tasks || {})) {
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
          const pre = div.querySelector("pre");
          pre.hidden = false;
          pre.textContent = facts.excerpt || "";
          caption.textContent = `${facts.pages} page(s), ${facts.chars} characters, ${facts.methods.join(", ")}`;
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

$("send").addEventListener("click", () => {
  sessionStorage.setItem("docpipe.api", $("api").value);
  sessionStorage.setItem("docpipe.token", $("token").value);
  for (const file of $("files").files) upload(file).catch((e) => row(file.name).querySelector(".error").textContent = e.message);
});

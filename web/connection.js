"use strict";
// What the upload page and the operators' console share: which API they talk to and the token they send it.
// A page sends its token only to its own origin or to an API listed in <meta name="docpipe-api-origins">: a
// link's #api= can pick one of those, never another host. The token lives in this tab's sessionStorage; one
// in the link (#token=, as `docpipe up` prints it) is read once, then the fragment is taken out of the address
// bar (the history entry is replaced). A page reads its own fragment settings from `fragment`, kept here.
const $ = (id) => document.getElementById(id);
const trim = (url) => url.replace(/\/+$/, "");
const fragment = new URLSearchParams(location.hash.slice(1));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const listed = (document.querySelector('meta[name="docpipe-api-origins"]')?.content || "").split(/\s+/);
const apis = [...new Set([...listed.filter(Boolean).map(trim), location.origin])];
for (const url of apis) $("api").append(new Option(url, url));
const wanted = trim(fragment.get("api") || sessionStorage.getItem("docpipe.api") || "");
$("api").value = apis.includes(wanted) ? wanted : apis[0];
const base = () => $("api").value;

if (fragment.has("token")) sessionStorage.setItem("docpipe.token", fragment.get("token"));
if (location.hash) history.replaceState(null, "", location.pathname + location.search);
for (const key of ["docpipe.api", "docpipe.token"]) localStorage.removeItem(key);  // where older pages kept them
$("token").value = sessionStorage.getItem("docpipe.token") || "";
$("settings").open = !$("token").value;

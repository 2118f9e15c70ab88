// maillage console: polls the console's JSON and renders it, without reloading the page.
// Every name from the mesh goes through esc() (or textContent) before it reaches the DOM.
"use strict";

const PERIOD_MS = 2000;
const OPEN_ALL_UP_TO = 60;          // sites shown: at most this many, every group starts open
const ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"};
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);
const $ = (id) => document.getElementById(id);

let fleet = null;                   // the last /api/fleet answer
let view = "fleet";
let siteName = "";
let firstRender = true;
const opened = new Set();           // group keys the operator opened
const closed = new Set();           // ... or closed (small fleets start open)

function size(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function badge(state) {
  return `<span class="badge st-${esc(state)}">${esc(state)}</span>`;
}

function stateCounts(counts) {
  return ["up", "suspect", "unreachable", "down"]
    .filter((s) => counts[s])
    .map((s) => `<span class="count st-${s}">${counts[s]} ${s}</span>`).join(" ");
}

async function getJSON(url) {
  const r = await fetch(url, {credentials: "same-origin", cache: "no-store"});
  if (r.status === 401) {
    location.href = "/login?ended=1";
    throw new Error("login required");
  }
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

// ----- fleet ----------------------------------------------------------------------------------

function renderSummary() {
  const c = fleet.counts;
  if (!c) return;
  $("summary").innerHTML =
    `<b>${c.sites}</b> sites: ${stateCounts(c.site_states)} · <b>${c.nodes}</b> nodes: ` +
    `${stateCounts(c.node_states)} · ${c.policies} policies · ` +
    `${c.buckets === null ? "?" : c.buckets} buckets · layout v${fleet.layout_version}`;
}

function matches(site, q, state) {
  if (state && site.state !== state) return false;
  if (!q) return true;
  return site.name.toLowerCase().includes(q) || site.region.toLowerCase().includes(q);
}

function siteRow(s) {
  const href = "#site/" + encodeURIComponent(s.name);
  return `<tr class="site st-${esc(s.state)}" data-site="${esc(s.name)}">` +
    `<td class="name"><a href="${esc(href)}">${esc(s.name)}</a></td><td>${badge(s.state)}</td>` +
    `<td>${s.states.up}/${s.nodes} up</td><td>${size(s.stored)} / ${size(s.capacity)}</td>` +
    `<td>${s.behind ? s.behind + " behind" : ""}${s.repairing ? " repairing" : ""}</td></tr>`;
}

function isOpen(key, all) {
  if (opened.has(key)) return true;
  if (closed.has(key)) return false;
  return all;
}

function renderFleet() {
  if (!fleet || !fleet.sites) return;
  const q = $("search").value.trim().toLowerCase();
  const state = $("state").value;
  const shown = fleet.sites.filter((s) => matches(s, q, state));
  const openAll = shown.length <= OPEN_ALL_UP_TO;
  // one pass: sites come sorted by country, region, name
  const countries = new Map();
  for (const s of shown) {
    let regions = countries.get(s.country);
    if (!regions) countries.set(s.country, regions = new Map());
    let list = regions.get(s.region);
    if (!list) regions.set(s.region, list = []);
    list.push(s);
  }
  const out = [];
  for (const [country, regions] of countries) {
    const cc = {up: 0, suspect: 0, unreachable: 0, down: 0};
    let n = 0;
    for (const list of regions.values()) for (const s of list) { cc[s.state]++; n++; }
    const ck = "c:" + country;
    out.push(`<details class="country" data-key="${esc(ck)}"${isOpen(ck, openAll) ? " open" : ""}>` +
      `<summary><b>${esc(country)}</b> ${plural(n, "site")} ${stateCounts(cc)}</summary>`);
    for (const [region, list] of regions) {
      const rc = {up: 0, suspect: 0, unreachable: 0, down: 0};
      for (const s of list) rc[s.state]++;
      const rk = "r:" + region;
      out.push(`<details class="region" data-key="${esc(rk)}"${isOpen(rk, openAll) ? " open" : ""}>` +
        `<summary>${esc(region)} · ${plural(list.length, "site")} ${stateCounts(rc)}</summary><table class="sites">`);
      for (const s of list) out.push(siteRow(s));
      out.push("</table></details>");
    }
    out.push("</details>");
  }
  $("fleet").innerHTML = out.join("");
  $("shown").textContent = `${shown.length} of ${fleet.sites.length} sites`;
  $("recent").innerHTML = (fleet.events || []).slice(0, 5).map((e) =>
    `<li>${esc(new Date(e.t).toLocaleTimeString())} <a href="#site/${esc(encodeURIComponent(e.site))}">` +
    `${esc(e.node)}</a>: ${badge(e.was)} → ${badge(e.now)}</li>`).join("");
  if (firstRender) {
    firstRender = false;
    void document.body.offsetHeight;              // lay it out before marking
    performance.mark("fleet-rendered");
  }
  document.body.dataset.generation = String(fleet.generation);
}

function setAll(open) {
  for (const d of document.querySelectorAll("#fleet details")) {
    const key = d.dataset.key;
    (open ? opened : closed).add(key);
    (open ? closed : opened).delete(key);
  }
  renderFleet();
}

// ----- one site -------------------------------------------------------------------------------

function repairText(r) {
  if (!r || r.rounds === undefined) return "-";
  const progress = r.running ? `round ${r.groups_done}/${r.groups_total}` : `idle, ${r.rounds} rounds`;
  const eta = r.running && r.eta_seconds ? `, ${size(Math.round(r.rate_bytes_per_s))}/s, ETA ${Math.round(r.eta_seconds)} s` : "";
  return `${progress}${eta}, ${r.behind} behind, ${r.handoff_items} hinted, ${size(r.bytes_copied)} copied`;
}

function scrubText(s) {
  if (!s || s.frames_checked === undefined) return "-";
  return `${s.frames_checked} frames checked, ${s.corrupt_found} corrupt, ${s.passes} passes`;
}

async function renderSite() {
  let d;
  try {
    d = await getJSON("/api/site?name=" + encodeURIComponent(siteName));
  } catch (e) {
    $("site").textContent = `no site ${siteName}`;
    return;
  }
  const rows = d.nodes.map((n) => {
    const used = n.disk_total ? Math.round(100 * (n.disk_total - n.disk_free) / n.disk_total) + " %" : "-";
    const peers = n.peers && n.peers.up !== undefined ? `${n.peers.up}/${n.peers.suspect}/${n.peers.down}` : "-";
    return `<tr class="node st-${esc(n.state)}" data-node="${esc(n.id)}"><td>${esc(n.id)}</td>` +
      `<td>${esc(n.address)}</td><td>${badge(n.state)}${n.error ? " " + esc(n.error) : ""}</td>` +
      `<td>${esc(n.layout_state)}</td><td>${size(n.stored)} / ${size(n.capacity)}</td><td>${used}</td>` +
      `<td>${n.chunks}</td><td>${peers}</td><td>${esc(repairText(n.repair))}</td>` +
      `<td>${esc(scrubText(n.scrub))}</td></tr>`;
  }).join("");
  const events = d.events.map((e) =>
    `<li>${esc(new Date(e.t).toLocaleTimeString())} ${esc(e.node)}: ${badge(e.was)} → ${badge(e.now)}</li>`).join("");
  $("site").innerHTML =
    `<h2>${esc(d.name)} ${badge(d.state)}</h2><p>${esc(d.location)} · policies that may rest here: ` +
    `${esc(d.policies.join(", ") || "none")} · <a href="#fleet">back to the fleet</a></p>` +
    `<table class="nodes"><tr><th>node</th><th>address</th><th>state</th><th>layout</th><th>stored / capacity</th>` +
    `<th>disk used</th><th>chunks</th><th>peers u/s/d</th><th>repair</th><th>scrub</th></tr>${rows}</table>` +
    `<h3>Recent events (seen by this console)</h3><ul class="events">${events || "<li>none</li>"}</ul>`;
}

// ----- policies and buckets -------------------------------------------------------------------

const rendered = {policies: -1, buckets: -1};     // the generation each tab shows (kept while unchanged)

async function renderPolicies() {
  const d = await getJSON("/api/policies");
  if (!d.policies || rendered.policies === d.generation) return;
  rendered.policies = d.generation;
  const rows = d.policies.map((p) =>
    `<tr class="policy v-${esc(p.verdict)}" data-policy="${esc(p.name)}"><td>${esc(p.name)}</td>` +
    `<td>${esc(p.allow.join(", "))}</td><td>${p.replicas}</td><td>${p.live_sites}/${p.eligible_sites}</td>` +
    `<td>${p.nodes} ${stateCounts(p.node_states)}</td><td>${p.behind}</td>` +
    `<td>${p.buckets === null ? "?" : p.buckets}</td><td>${esc(p.verdict)}</td>` +
    `<td class="sites"><details><summary>${plural(p.sites.length, "site")}</summary>` +
    `${esc(p.sites.join(", "))}</details></td></tr>`).join("");
  $("policies").innerHTML =
    `<table><tr><th>policy</th><th>may rest in</th><th>R</th><th>sites up / eligible</th><th>nodes</th>` +
    `<th>repair groups behind</th><th>buckets</th><th>verdict</th><th>sites</th></tr>${rows}</table>`;
}

async function renderBuckets() {
  const d = await getJSON("/api/buckets");
  if (rendered.buckets === d.generation) return;
  rendered.buckets = d.generation;
  if (d.available === false || !d.tenants) {
    $("buckets").textContent = "the bucket list could not be read this time";
    return;
  }
  $("buckets").innerHTML = d.tenants.map((t) =>
    `<h3>${esc(t.tenant)} · ${t.buckets.length} buckets</h3><ul class="buckets">` +
    t.buckets.map((b) => `<li>${esc(b.name)} <span class="policy">${esc(b.policy)}</span></li>`).join("") +
    "</ul>").join("") || "no buckets";
}

// ----- polling and routing --------------------------------------------------------------------

async function tick() {
  try {
    const since = fleet && fleet.generation ? fleet.generation : "";
    const d = await getJSON("/api/fleet?since=" + since);
    $("problem").hidden = !d.problem;
    $("problem").textContent = d.problem || "";
    if (d.pending && performance.now() < 10000) setTimeout(tick, 200);   // the first look is under way
    if (!d.unchanged && !d.pending) {
      fleet = d;
      renderSummary();
      if (view === "fleet") renderFleet();
    }
    if (fleet && fleet.taken_ms) {
      $("age").textContent = `last look at the mesh ${Math.round((Date.now() - fleet.taken_ms) / 1000)} s ago ` +
        `(took ${fleet.took_ms} ms)`;
    }
    if (view === "site") await renderSite();
    else if (view === "policies") await renderPolicies();
    else if (view === "buckets") await renderBuckets();
  } catch (e) {
    $("age").textContent = "console unreachable: " + e.message;
  }
}

function route() {
  const h = decodeURIComponent(location.hash || "#fleet");
  if (h.startsWith("#site/")) { view = "site"; siteName = h.slice(6); }
  else if (h === "#policies" || h === "#buckets") view = h.slice(1);
  else view = "fleet";
  for (const v of ["fleet", "site", "policies", "buckets"]) $("view-" + v).hidden = v !== view;
  for (const t of ["fleet", "policies", "buckets"]) $("tab-" + t).classList.toggle("active", t === view);
  if (view === "fleet") renderFleet();
  else if (view === "site") renderSite();
  else if (view === "policies") renderPolicies();
  else renderBuckets();
}

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("input", renderFleet);
  $("state").addEventListener("change", renderFleet);
  $("expand").addEventListener("click", () => setAll(true));
  $("collapse").addEventListener("click", () => setAll(false));
  $("fleet").addEventListener("click", (e) => {    // the operator opens or closes a group
    const summary = e.target.closest("summary");
    const details = summary && summary.parentElement;
    if (!details || !details.dataset.key) return;
    const opening = !details.open;
    (opening ? opened : closed).add(details.dataset.key);
    (opening ? closed : opened).delete(details.dataset.key);
  });
  window.addEventListener("hashchange", route);
  route();
  tick();
  setInterval(tick, PERIOD_MS);
});

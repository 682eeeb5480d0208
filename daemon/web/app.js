// The worklist page (served by triaged at /; docs/operations.md). Vanilla JS, no library, nothing
// fetched from anywhere but this node. All data is put into the DOM as text, never as HTML.
//
// DOM contract (tests/js/worklist_browser.js relies on it):
//   list:  table#worklist > tbody > tr.study[data-study-uid] in GET /api/v1/worklist order, each with
//          a.open and, when the study has key images, img.thumb; table#worklist[data-loaded="1"]
//          after each render.
//   study: section#study at #/study/<uid>: img#slice (data-loaded="1" after each load),
//          input#overlay, input#slice-range, span#slice-index (0-based), #report, #outputs, #audit,
//          a#back. It opens on the key slice of the first finding.
"use strict";

const POLL_MS = 2000;
const $ = (sel) => document.querySelector(sel);
const enc = encodeURIComponent;

const state = {
  version: null,   // of GET /api/v1/changes when the list was last fetched
  study: null,     // the open study: { uid, detail, series, count, index }
  seq: 0,          // guards against an older study fetch overwriting a newer one
};

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) {  // token gone (node restarted with another token): show the token form
    location.replace("/");
    throw new Error("the token is no longer accepted");
  }
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function when(iso, seconds) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? ":" + pad(d.getSeconds()) : ""}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

function setStatus(text, offline) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("offline", !!offline);
}

// ---- list ----------------------------------------------------------------------------------

function priorityCell(s) {
  const level = s.priority_level || (s.state === "done" ? "normal" : "pending");
  const td = el("td", {}, el("span", { class: `level level-${level}`, text: level }));
  if (s.priority_score !== null && s.priority_score !== undefined)
    td.append(el("span", { class: "score", text: Number(s.priority_score).toFixed(1) }));
  if (s.urgent_at_reception) td.append(el("div", { class: "uid", text: "urgent at reception" }));
  if (s.priority_reasons && s.priority_reasons.length) {
    const ul = el("ul", { class: "reasons" });
    for (const r of s.priority_reasons) ul.append(el("li", { text: r }));
    td.append(ul);
  }
  return td;
}

function studyRow(s) {
  const href = `#/study/${enc(s.study_uid)}`;
  const thumb = s.key_image_count > 0
    ? el("img", { class: "thumb", alt: "key image", src: `/api/v1/studies/${enc(s.study_uid)}/keyimages/0.png` })
    : null;
  const findings = s.findings_summary || (s.state === "done" ? "no findings" : "—");
  const tr = el("tr", { class: "study", "data-study-uid": s.study_uid },
    priorityCell(s),
    el("td", {}, thumb),
    el("td", {}, el("div", { text: s.patient_id || "(no ID)" }), el("div", { class: "uid", text: s.study_description || "" })),
    el("td", { text: s.accession || "" }),
    el("td", { text: (s.modalities || []).join(", ") }),
    el("td", { text: when(s.received_at) }),
    el("td", { text: s.state }),
    el("td", { text: findings }),
    el("td", {}, el("a", { class: "open", href, text: "Open" })));
  tr.addEventListener("click", (e) => {
    if (e.target.closest("a")) return;  // the link navigates by itself
    location.hash = href;
  });
  return tr;
}

function renderList(studies) {
  const table = $("table#worklist");
  const body = table.tBodies[0];
  body.replaceChildren(...studies.map(studyRow));
  $("#empty").hidden = studies.length > 0;
  table.setAttribute("data-loaded", "1");
}

async function refreshList() {
  renderList(await api("/api/v1/worklist"));
}

// ---- study ---------------------------------------------------------------------------------

function sliceUrl() {
  const s = state.study;
  const overlay = $("#overlay").checked ? 1 : 0;
  const series = s.series && s.series !== s.detail.analyzed_series_uid ? `&series=${enc(s.series)}` : "";
  return `/api/v1/studies/${enc(s.uid)}/slices/${s.index}.png?overlay=${overlay}${series}`;
}

function showSlice(n) {
  const s = state.study;
  if (!s || s.count < 1) return;
  s.index = Math.max(0, Math.min(s.count - 1, Math.round(n)));
  $("#slice-range").value = String(s.index);
  $("#slice-index").textContent = String(s.index);
  $("#slice-of").textContent = `slice ${s.index + 1} of ${s.count}`;
  const img = $("#slice");
  const url = sliceUrl();
  if (img.getAttribute("src") === url) return;
  img.removeAttribute("data-loaded");
  img.setAttribute("src", url);
}

function section(id, title, ...children) {
  const box = $(id);
  box.replaceChildren(el("h3", { text: title }), ...children);
}

function renderReport(d) {
  const items = [];
  if (d.model) items.push(el("p", { class: "uid", text: `Model: ${d.model.name} ${d.model.version}` }));
  items.push(el("pre", { text: d.report || "No analysis yet." }));
  if (d.findings && d.findings.length) {
    const ul = el("ul");
    for (const f of d.findings)
      ul.append(el("li", { text: `${f.label}: ${Number(f.diameter_mm).toFixed(0)} mm, ${Number(f.volume_ml).toFixed(1)} mL, ` +
                                 `slices ${f.first_slice + 1}-${f.last_slice + 1}, key slice ${f.key_slice + 1}` }));
    items.push(ul);
  }
  section("#report", "Report", ...items);
}

function renderOutputs(d) {
  const rows = (d.outputs || []).map((o) => {
    const deliveries = (d.deliveries || []).filter((x) => x.sop_instance_uid === o.sop_instance_uid);
    const td = el("td");
    if (!deliveries.length) td.append("not sent (no destination lists it)");
    for (const x of deliveries) {
      const err = x.last_error ? ` — ${x.last_error}` : "";
      td.append(el("div", { class: `state-${x.state}`,
                            text: `${x.destination}: ${x.state} (${x.attempts} attempt${x.attempts === 1 ? "" : "s"})${err}` }));
    }
    return el("tr", {}, el("td", { text: o.kind.toUpperCase() }), el("td", { class: "uid", text: o.sop_instance_uid }), td);
  });
  const errors = (d.output_errors || []).map((e) => el("p", { class: "error", text: e }));
  section("#outputs", "Outputs and delivery",
          rows.length ? el("table", {}, el("tbody", {}, ...rows)) : el("p", { text: "No outputs yet." }), ...errors);
}

function auditDetail(e) {
  const skip = new Set(["id", "time", "event", "study_uid"]);
  return Object.entries(e).filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}

function renderAudit(events) {
  const last = events.slice(-200).reverse();  // newest first
  const rows = last.map((e) => el("tr", {}, el("td", { class: "time", text: when(e.time, true) }), el("td", { text: e.event }),
                                  el("td", { class: "uid", text: auditDetail(e) })));
  section("#audit", `Audit events (${events.length})`,
          rows.length ? el("table", {}, el("tbody", {}, ...rows)) : el("p", { text: "No events." }));
}

function renderFindingLinks(d, series) {
  const box = $("#finding-links");
  box.replaceChildren();
  (d.findings || []).filter((f) => f.series_uid === series).forEach((f) => {
    const b = el("button", { type: "button", text: `${f.label}: key slice ${f.key_slice + 1}` });
    b.addEventListener("click", () => showSlice(f.key_slice));
    box.append(b);
  });
}

// Fetches the study's document and audit events and renders them; `first` also sets up the viewer.
async function loadStudy(uid, first) {
  const seq = ++state.seq;
  const [detail, events] = await Promise.all([api(`/api/v1/studies/${enc(uid)}`),
                                              api(`/api/v1/audit?study=${enc(uid)}`)]);
  if (seq !== state.seq || !state.study || state.study.uid !== uid) return;
  const s = state.study;
  const hadSeries = s.series;
  s.detail = detail;
  s.series = detail.analyzed_series_uid;
  s.count = detail.slice_count || 0;
  $("#study-title").textContent = [detail.patient_id || "(no patient ID)", detail.accession || "(no accession)",
                                   detail.study_description, (detail.modalities || []).join(", "), detail.state]
    .filter(Boolean).join(" · ");
  renderReport(detail);
  renderOutputs(detail);
  renderAudit(events);
  const has = s.count > 0;
  $("#no-slices").hidden = has;
  $("#slice").hidden = !has;
  $("#slice-range").disabled = !has;
  if (has && (first || !hadSeries)) {
    $("#slice-range").max = String(s.count - 1);
    renderFindingLinks(detail, s.series);
    const key = (detail.findings || []).find((f) => f.series_uid === s.series);
    showSlice(key ? key.key_slice : Math.floor(s.count / 2));
  }
}

function openStudy(uid) {
  if (!state.study || state.study.uid !== uid) {
    state.study = { uid, detail: null, series: null, count: 0, index: 0 };
    const img = $("#slice");
    img.removeAttribute("src");
    img.removeAttribute("data-loaded");
    $("#overlay").checked = true;
    for (const id of ["#report", "#outputs", "#audit", "#finding-links"]) $(id).replaceChildren();
    $("#study-title").textContent = "";
  }
  $("#list").hidden = true;
  $("#study").hidden = false;
  loadStudy(uid, true).catch((e) => setStatus(String(e.message || e), true));
}

function showList() {
  state.study = null;
  $("#study").hidden = true;
  $("#list").hidden = false;
}

function route() {
  const m = /^#\/study\/(.+)$/.exec(location.hash);
  if (m) openStudy(decodeURIComponent(m[1]));
  else showList();
}

// ---- live update ---------------------------------------------------------------------------

async function poll() {
  try {
    const { version } = await api("/api/v1/changes");
    if (version !== state.version) {
      state.version = version;
      await refreshList();
      if (state.study) await loadStudy(state.study.uid, false);
    }
    setStatus(`updated ${new Date().toLocaleTimeString()}`, false);
  } catch (e) {
    setStatus(`node not reachable: ${e.message || e}`, true);
  }
}

function wireViewer() {
  const img = $("#slice");
  img.addEventListener("load", () => img.setAttribute("data-loaded", "1"));
  img.addEventListener("error", () => img.setAttribute("data-loaded", "error"));
  $("#overlay").addEventListener("change", () => showSlice(state.study ? state.study.index : 0));
  $("#slice-range").addEventListener("input", (e) => showSlice(Number(e.target.value)));
  $(".viewer").addEventListener("wheel", (e) => {
    if (!state.study || state.study.count < 1) return;
    e.preventDefault();
    showSlice(state.study.index + Math.sign(e.deltaY));
  }, { passive: false });
  document.addEventListener("keydown", (e) => {
    if (!state.study || $("#study").hidden || e.target === $("#slice-range")) return;
    const step = { ArrowUp: -1, ArrowLeft: -1, ArrowDown: 1, ArrowRight: 1, PageUp: -10, PageDown: 10 }[e.key];
    if (step) {
      e.preventDefault();
      showSlice(state.study.index + step);
    } else if (e.key === "Escape") {
      location.hash = "#/";
    }
  });
}

wireViewer();
window.addEventListener("hashchange", route);
route();
poll();
setInterval(poll, POLL_MS);

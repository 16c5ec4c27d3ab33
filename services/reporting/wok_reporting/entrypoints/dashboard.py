"""The federal office's dashboard: one HTML page, charts drawn as inline SVG by a few lines of
JavaScript in the page (no build step, no library, nothing from a CDN: the network may be
closed).

Access: the page itself holds no figures and is served to anyone; the figures come from the
federal API (`GET /v1/aggregates`), which the page calls with the federal key the user enters
in it. The key is kept in the tab's sessionStorage (gone when the tab closes), never in a
cookie or the URL, so the page adds no second way in besides the key. It polls the API every
few seconds and redraws when a snapshot's sequence changed, so it follows the exchange stream
live. Withheld cells (disclosure control) are shown as "withheld", never as 0.
"""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from wok_contracts import LANDS
from wok_reporting.domain import FIELD_NAMES_DE

POLL_INTERVAL_MS = 2000

PAGE = """<!doctype html>
<html lang="de">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Weltoffene Kommune – Dashboard</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2733; background: #f4f6f8; }
  header { background: #1f4e79; color: #fff; padding: 12px 20px; display: flex;
           align-items: center; gap: 16px; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; flex: 1; }
  header form { display: flex; gap: 6px; }
  header input { padding: 4px 6px; width: 18em; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(600px, 1fr));
         gap: 16px; padding: 16px 20px; }
  section { background: #fff; border-radius: 6px; padding: 12px 16px;
            box-shadow: 0 1px 2px rgba(0,0,0,.1); }
  section h2 { font-size: 15px; margin: 0 0 8px; }
  #status { font-size: 12px; }
  .error { color: #ffd2d2; font-weight: bold; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  .scroll { overflow-x: auto; grid-column: 1 / -1; }
  th, td { text-align: right; padding: 3px 6px; border-bottom: 1px solid #e3e7eb; }
  th:first-child, td:first-child { text-align: left; }
  svg text { font-size: 11px; fill: #1d2733; }
  .note { font-size: 12px; color: #5b6875; }
</style>
</head>
<body>
<header>
  <h1>Weltoffene Kommune – Programmübersicht</h1>
  <form id="login">
    <label for="key">Schlüssel der Bundesgeschäftsstelle</label>
    <input id="key" type="password" autocomplete="off" placeholder="WOK_FEDERAL_KEY">
    <button type="submit">Anzeigen</button>
  </form>
  <span id="status">Bitte den Schlüssel eingeben.</span>
</header>
<main>
  <section><h2>Anmeldungen: Trichter</h2><svg id="registration-funnel" width="440" height="110"
    role="img" aria-label="Anmeldungen, bestätigt, teilgenommen"></svg></section>
  <section><h2>Selbstcheck: Trichter</h2><svg id="self-check-funnel" width="440" height="110"
    role="img" aria-label="begonnen, abgegeben, bewertet"></svg></section>
  <section><h2>Punktwerte der Handlungsfelder über die Kommunen</h2>
    <svg id="field-scores" width="560" height="250" role="img"
      aria-label="Verteilung der Punktwerte je Handlungsfeld"></svg>
    <p class="note">Kasten: 1. bis 3. Quartil, Strich: Median, Linie: niedrigster bis höchster
    Wert, Punkte: die einzelnen Kommunen (Punktwerte 0–100).</p></section>
  <section><h2>Anmeldungen pro Tag</h2><svg id="registrations-over-time" width="440"
    height="180" role="img" aria-label="Anmeldungen pro Tag"></svg></section>
  <section class="scroll"><h2>Nach Land</h2><table id="lands"><thead><tr><th>Land</th>
    <th>Kommunen</th><th>Anmeldungen</th><th>bestätigt</th><th>Selbstchecks bewertet</th>
    <th>Maßnahmen</th><th>Index (Median)</th></tr></thead><tbody></tbody></table>
    <p class="note">„–“: zurückgehalten (weniger als 5 Personen, Geheimhaltung).</p></section>
</main>
<script>
"use strict";
const LANDS = __LANDS__;
const FIELDS = __FIELDS__;
const INTERVAL = __INTERVAL__;
const SVG = "http://www.w3.org/2000/svg";
let lastSequences = "";
let timer = null;

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}
function shown(value) { return value === null || value === undefined ? "–" : String(value); }
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function funnel(id, steps) {
  const svg = clear(document.getElementById(id));
  const top = Math.max(1, ...steps.map(s => s[1] || 0));
  steps.forEach(([label, value, key], i) => {
    const y = 6 + i * 34;
    svg.appendChild(el("text", {x: 0, y: y + 17}, label));
    const width = value === null || value === undefined ? 0 : 250 * value / top;
    svg.appendChild(el("rect", {x: 110, y: y, width: Math.max(width, 1), height: 24,
      fill: "#2e75b6", class: "bar"}));
    svg.appendChild(el("text", {x: 116 + width, y: y + 17, "data-step": key,
      class: "value"}, value === null || value === undefined ? "zurückgehalten" : value));
  });
}

function fieldScores(fields) {
  const svg = clear(document.getElementById("field-scores"));
  const x = v => 250 + v * 2.9;
  [0, 25, 50, 75, 100].forEach(v => {
    svg.appendChild(el("line", {x1: x(v), x2: x(v), y1: 0, y2: 232, stroke: "#e3e7eb"}));
    svg.appendChild(el("text", {x: x(v) - 6, y: 246}, v));
  });
  for (let n = 1; n <= 7; n++) {
    const y = 4 + (n - 1) * 32;
    svg.appendChild(el("text", {x: 0, y: y + 16}, n + " " + FIELDS[n].slice(0, 38)));
    const s = (fields[n] || {}).statistics || {};
    if (s.score_median === null || s.score_median === undefined) continue;
    svg.appendChild(el("line", {x1: x(s.score_min), x2: x(s.score_max), y1: y + 12,
      y2: y + 12, stroke: "#1f4e79"}));
    svg.appendChild(el("rect", {x: x(s.score_q1), y: y + 2,
      width: Math.max(1, x(s.score_q3) - x(s.score_q1)), height: 20, fill: "#9dc3e6",
      stroke: "#1f4e79", class: "box", "data-field": n}));
    svg.appendChild(el("line", {x1: x(s.score_median), x2: x(s.score_median), y1: y + 2,
      y2: y + 22, stroke: "#c00000", "stroke-width": 2}));
    for (const [name, value] of Object.entries(s)) {
      if (!name.startsWith("score:") || value === null) continue;
      const dot = el("circle", {cx: x(value), cy: y + 12, r: 2.5, fill: "#1d2733",
        class: "municipality"});
      dot.appendChild(el("title", {}, name.slice(6) + ": " + value));
      svg.appendChild(dot);
    }
  }
}

function overTime(daily) {
  const svg = clear(document.getElementById("registrations-over-time"));
  const days = Object.keys(daily).sort();
  const top = Math.max(1, ...days.map(d => daily[d] || 0));
  const width = days.length ? Math.min(40, 420 / days.length) : 0;
  days.forEach((day, i) => {
    const value = daily[day];
    const height = value === null ? 0 : 140 * value / top;
    const bar = el("rect", {x: 10 + i * width, y: 150 - height, width: Math.max(1, width - 2),
      height: Math.max(height, 1), fill: value === null ? "#c9ced4" : "#2e75b6", class: "bar",
      "data-day": day});
    bar.appendChild(el("title", {}, day + ": " + shown(value)));
    svg.appendChild(bar);
  });
  if (days.length) {
    svg.appendChild(el("text", {x: 10, y: 168}, days[0]));
    const last = Math.max(90, 10 + (days.length - 1) * width);
    if (days.length > 1) svg.appendChild(el("text", {x: last, y: 168}, days[days.length - 1]));
  }
}

function lands(snapshots) {
  const body = clear(document.querySelector("#lands tbody"));
  for (const s of snapshots) {
    const row = document.createElement("tr");
    row.dataset.land = s.scope_key;
    const m = s.metrics, st = s.statistics || {};
    for (const value of [LANDS[s.scope_key] || s.scope_key, m.municipalities,
      m.registrations_total, m.registrations_confirmed, m.self_checks_scored, m.measures,
      st.overall_score_median]) {
      const cell = document.createElement("td");
      cell.textContent = shown(value);
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
}

function render(all) {
  const program = all.find(s => s.scope === "program");
  if (!program) return;
  const m = program.metrics;
  funnel("registration-funnel", [["angemeldet", m.registrations_total, "registered"],
    ["bestätigt", m.registrations_confirmed, "confirmed"],
    ["teilgenommen", m.attended, "attended"]]);
  funnel("self-check-funnel", [["begonnen", m.self_checks_started, "started"],
    ["abgegeben", m.self_checks_submitted, "submitted"],
    ["bewertet", m.self_checks_scored, "scored"]]);
  const fields = {};
  all.filter(s => s.scope === "field").forEach(s => { fields[s.scope_key] = s; });
  fieldScores(fields);
  overTime(program.daily_registrations || {});
  lands(all.filter(s => s.scope === "land"));
}

async function poll() {
  const key = sessionStorage.getItem("wok-federal-key");
  const status = document.getElementById("status");
  if (!key) return;
  try {
    const response = await fetch("/v1/aggregates",
      {headers: {Authorization: "Bearer " + key}, cache: "no-store"});
    if (response.status === 401) {
      status.textContent = "Schlüssel abgelehnt.";
      status.className = "error";
      sessionStorage.removeItem("wok-federal-key");
      return;
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    const all = await response.json();
    const sequences = all.map(s => s.scope + s.scope_key + ":" + s.sequence).join(",");
    if (sequences !== lastSequences) {
      lastSequences = sequences;
      render(all);
      const program = all.find(s => s.scope === "program");
      document.body.dataset.programSequence = program ? program.sequence : "";
    }
    status.className = "";
    status.textContent = "Aktualisiert " + new Date().toLocaleTimeString("de-DE");
  } catch (error) {
    status.textContent = "Keine Verbindung (" + error.message + "), neuer Versuch …";
    status.className = "error";
  }
  timer = setTimeout(poll, INTERVAL);
}

document.getElementById("login").addEventListener("submit", event => {
  event.preventDefault();
  sessionStorage.setItem("wok-federal-key", document.getElementById("key").value);
  lastSequences = "";
  clearTimeout(timer);
  poll();
});
poll();
</script>
</body>
</html>
"""


def dashboard_page(*, interval_ms: int = POLL_INTERVAL_MS) -> str:
    return (
        PAGE.replace("__LANDS__", json.dumps(LANDS, ensure_ascii=False))
        .replace("__FIELDS__", json.dumps(FIELD_NAMES_DE, ensure_ascii=False))
        .replace("__INTERVAL__", str(interval_ms))
    )


def dashboard_router(*, interval_ms: int = POLL_INTERVAL_MS) -> APIRouter:
    router = APIRouter(tags=["dashboard"])
    page = dashboard_page(interval_ms=interval_ms)

    @router.get("/dashboard", response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        """The dashboard page; it reads `GET /v1/aggregates` with the federal key entered in it."""
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return router

"use strict";
// The cluster page: a summary of the fleet (each count a filter), the problem nodes first with
// their detail, every other node as a compact tile, charts of the fleet's bands (or one node's
// lines), the alerts. The filter lives in the URL hash (#f=down&q=pi-a&node=pi-a-07), so a link
// shares it.
const PALETTE = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff7b72", "#e3b341"];
// The fleet's bands, one muted colour per sensor (their hottest lines take PALETTE).
const BAND_COLORS = ["#8b949e", "#6e9fc9", "#a3875c", "#7fa67f", "#a58fc4", "#6fb3b8"];
const FMT = {temperature_celsius: v => v.toFixed(1) + " °C", humidity_ratio: v => (v * 100).toFixed(0) + " %", pressure_pascals: v => (v / 100).toFixed(1) + " hPa"};
// Per chart: the unit on its axis and in its readout (values arrive in base units).
const QUANTITY = {
  temperature: {unit: "°C", scale: v => v, digits: 1},
  humidity: {unit: "%", scale: v => v * 100, digits: 1},
  pressure: {unit: "hPa", scale: v => v / 100, digits: 1},
};
const LED_COLORS = {red: "#ff4d4f", amber: "#ffb020", yellow: "#ffe14d", green: "#3fd16b", blue: "#4da3ff", white: "#f0f0f0"};
// The summary's counts, in order; each is a filter (`nodes`: no filter).
const COUNTS = [
  ["nodes", "nodes", () => true],
  ["up", "up", n => n.up],
  ["down", "down", n => n.problems.includes("down")],
  ["alerting", "alerting", n => n.problems.includes("alerting")],
  ["backfilling", "backfilling", n => n.problems.includes("backfilling")],
  ["stale", "stale sensor", n => n.problems.includes("stale")],
  ["silenced", "silenced", n => n.alerts.some(a => a.silenced)],
];
// A fleet this small shows every node in detail; a larger one shows its healthy nodes as tiles.
const DETAIL_ALL = 8;
// Drawn at first (each list has a "show more"), so a 300-node fleet stays a few thousand elements.
const CARDS_SHOWN = 24, TILES_SHOWN = 300, ALERTS_SHOWN = 20;
let range = "1h";
let cluster = null;
const view = {f: "nodes", q: "", node: "", cards: CARDS_SHOWN, tiles: TILES_SHOWN, alerts: ALERTS_SHOWN};

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

async function getJSON(path) {
  const r = await fetch(path);
  return r.json();
}

function banner(msgs) {
  document.getElementById("banner").replaceChildren(...msgs.map(m => el("div", {class: "banner"}, m)));
}

let problems = {prometheus: null, alertmanager: null};
function showProblems() { banner(Object.values(problems).filter(Boolean)); }

// The view in the URL hash and back.
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  view.f = COUNTS.some(c => c[0] === h.get("f")) ? h.get("f") : "nodes";
  view.q = h.get("q") || "";
  view.node = h.get("node") || "";
  document.getElementById("search").value = view.q;
}
function writeHash() {
  const h = new URLSearchParams();
  if (view.f !== "nodes") h.set("f", view.f);
  if (view.q) h.set("q", view.q);
  if (view.node) h.set("node", view.node);
  const s = h.toString();
  history.replaceState(null, "", s ? "#" + s : location.pathname + location.search);
}

async function refreshNodes() {
  let d;
  try { d = await getJSON("api/cluster"); } catch (e) { problems.prometheus = "dashboard server unreachable"; showProblems(); return; }
  document.getElementById("sources").textContent = "Prometheus " + d.prometheus.url;
  problems.prometheus = d.prometheus.ok ? null : "Prometheus unreachable (" + d.prometheus.error + "): node data is not current.";
  showProblems();
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  for (const n of d.nodes || []) n.text = haystack(n);
  cluster = d;
  renderNodes();
}

// What the search box looks in: the node's name and address, model and version, its sensors
// (names and kinds), its alerts (names and labels) and its problems.
function haystack(n) {
  return [n.node, n.instance, n.model, n.version && "v" + n.version, ...n.problems,
    ...n.sensors.flatMap(s => [s.sensor, s.kind]),
    ...n.alerts.flatMap(a => [a.name, a.severity, a.sensor, a.silenced ? "silenced" : "firing"])]
    .filter(Boolean).join(" ").toLowerCase();
}

function shown(n) {
  const terms = view.q.toLowerCase().split(/\s+/).filter(Boolean);
  return COUNTS.find(c => c[0] === view.f)[2](n) && terms.every(t => n.text.includes(t));
}

function renderNodes() {
  const d = cluster;
  const box = document.getElementById("nodes"), tiles = document.getElementById("tiles");
  if (!d.prometheus.ok) { renderSummary(null); box.replaceChildren(el("div", {class: "dim"}, "no data")); tiles.replaceChildren(); return; }
  renderSummary(d.summary);
  if (!d.nodes.length) { box.replaceChildren(el("div", {class: "dim"}, "no agents discovered yet")); tiles.replaceChildren(); return; }
  const all = d.nodes.length <= DETAIL_ALL;
  const list = d.nodes.filter(shown);
  // Problem nodes (and the one chosen for the charts) in detail, in the server's order: the
  // most urgent first, then by name.
  const detail = list.filter(n => all || n.problems.length || n.node === view.node);
  const compact = list.filter(n => !(all || n.problems.length || n.node === view.node));
  box.replaceChildren(...detail.slice(0, view.cards).map(n => nodeCard(n, d.now_s)),
    ...more(detail.length - view.cards, "problem nodes", () => { view.cards += 100; renderNodes(); }));
  tiles.replaceChildren(...compact.slice(0, view.tiles).map(nodeTile),
    ...more(compact.length - view.tiles, "nodes", () => { view.tiles += 300; renderNodes(); }));
  document.getElementById("showing").textContent = list.length === d.nodes.length ? ""
    : "showing " + list.length + " of " + d.nodes.length + " nodes";
  if (!window.edgesenseDrawn) {
    window.edgesenseDrawn = performance.now();
    performance.mark("edgesense-summary-drawn");
  }
}

function more(n, what, onclick) {
  return n > 0 ? [el("button", {type: "button", class: "more", onclick}, "show " + n + " more " + what)] : [];
}

function renderSummary(s) {
  const box = document.getElementById("summary");
  if (!s) { box.replaceChildren(); return; }
  box.replaceChildren(...COUNTS.map(([key, label]) => {
    const n = s[key];
    const bad = key !== "nodes" && key !== "up" && n > 0;
    return el("button", {type: "button", class: "count" + (bad ? " bad " + key : "") + (view.f === key ? " on" : "") + (n ? "" : " zero"),
      "data-filter": key, "data-count": n, "aria-pressed": String(view.f === key),
      onclick: () => { view.f = view.f === key ? "nodes" : key; view.cards = CARDS_SHOWN; view.tiles = TILES_SHOWN; writeHash(); renderNodes(); }},
      el("b", {}, String(n)), " " + label);
  }), s.cluster_alerts ? el("span", {class: "count bad alerting", "data-filter": "cluster"}, el("b", {}, String(s.cluster_alerts)), " cluster-wide alert" + (s.cluster_alerts > 1 ? "s" : "")) : "");
}

function ago(s) {
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function select(node) {
  view.node = view.node === node ? "" : node;
  writeHash();
  renderNodes();
  refreshChart();
}

function ledDot(l) {
  const dot = el("span", {class: "dot" + (l.lit ? " lit" : "") + (l.lit && (l.mode === "blink" || l.mode === "pulse") ? " " + l.mode : "")});
  dot.style.setProperty("--c", LED_COLORS[l.led] || "#4da3ff");
  return dot;
}

// The temperature a tile shows: the first ambient sensor's (not the SoC's), else any.
function mainTemperature(n) {
  const t = n.sensors.filter(s => s.temperature_celsius != null);
  const s = t.find(s => s.kind !== "thermal") || t[0];
  return s ? FMT.temperature_celsius(s.temperature_celsius) : "–";
}

// A healthy node in a line: its name, up, its main temperature, its LEDs; a click shows it in
// detail and its lines on the charts.
function nodeTile(n) {
  const leds = n.leds || [];
  return el("div", {class: "node tile" + (n.up ? "" : " down"), "data-node": n.node, tabindex: "0", role: "button",
    title: [n.node, n.model, n.version && "v" + n.version, n.instance].filter(Boolean).join(" · ")
      + "\n" + leds.map(l => l.led + ": " + (l.mode || "") + " · " + l.reason).join("\n"),
    onclick: () => select(n.node), onkeydown: e => { if (e.key === "Enter") select(n.node); }},
    el("span", {class: "up " + (n.up ? "ok" : "err")}), el("span", {class: "name"}, n.node),
    el("span", {class: "t"}, mainTemperature(n)), el("span", {class: "tleds"}, ...leds.map(ledDot)));
}

// One node: up or (unmistakably) down, its LEDs as they show and why, its sensors (a failing
// one's last good value marked stale, with its age), its active alerts.
function nodeCard(n, now) {
  const rows = n.sensors.map(s => {
    const keys = ["temperature_celsius", "humidity_ratio", "pressure_pascals"];
    const current = keys.filter(k => s[k] != null).map(k => FMT[k](s[k])).join(" · ");
    if (s.up === 1 && n.up) return el("tr", {"data-sensor": s.sensor}, el("td", {}, s.sensor), el("td", {class: "dim"}, s.kind), el("td", {class: "v"}, current));
    const last = keys.filter(k => s["last_" + k] != null).map(k => FMT[k](s["last_" + k])).join(" · ");
    const since = s.last_success_s > 0 ? ago(now - s.last_success_s) : "never read";
    return el("tr", {class: "stale", "data-sensor": s.sensor, "data-stale": "1"}, el("td", {}, s.sensor), el("td", {class: "dim"}, s.kind),
      el("td", {class: "v"}, last ? "last good " + last : "no reading", " ", el("span", {class: "since"}, "(" + since + ")")));
  });
  const leds = (n.leds || []).map(l => {
    const why = l.reason === "idle" || l.reason === "manual" ? l.reason : "alert " + l.reason;
    return el("span", {class: "ledc", "data-led": l.led, "data-mode": l.mode || "", title: (l.mode || "") + " · " + why}, ledDot(l), l.led, el("span", {class: "dim"}, l.mode + " · " + why));
  });
  const alerts = n.alerts.filter(a => !a.silenced);
  return el("div", {class: "card node" + (n.up ? "" : " down") + (n.node === view.node ? " sel" : ""), "data-node": n.node, "data-problems": n.problems.join(" ")},
    el("div", {}, el("button", {type: "button", class: "name", title: "its lines on the charts", onclick: () => select(n.node)}, n.node),
      el("span", {class: "badge " + (n.up ? "up" : "down")}, n.up ? "up" : "down"),
      ...n.problems.filter(p => p !== "down").map(p => el("span", {class: "tag " + p}, p))),
    n.up ? "" : el("div", {class: "down-note"}, "not scraped: the agent is down or unreachable; its values below are its last"),
    n.backfilling ? el("div", {class: "backfill-note", "data-backfilling": n.backfilling}, "backfilling: " + n.backfilling + " readings it took while Prometheus could not scrape it are on their way") : "",
    el("div", {class: "dim"}, [n.model, n.version && "v" + n.version, n.instance].filter(Boolean).join(" · ")),
    leds.length ? el("div", {class: "leds"}, ...leds) : "",
    el("table", {}, ...rows),
    alerts.length ? el("div", {class: "alerts"}, ...alerts.map(a => el("div", {class: "a " + (a.severity || "")}, a.name + (a.sensor ? " · " + a.sensor : "")))) : "");
}

// Tick labels with as many decimals as their step needs, and never two neighbours alike
// (47.35, 47.40 … rather than 47.4, 47.4).
function ticks(vals, unit) {
  const step = vals.length > 1 ? Math.abs(vals[1] - vals[0]) : 1;
  for (let d = 0; d <= 6; d++) {
    const fits = Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) < 1e-6 * Math.max(1, step * 10 ** d);
    const text = vals.map(v => v == null ? "" : v.toFixed(d));
    if ((fits || d === 6) && text.every((t, i) => i === 0 || t !== text[i - 1])) return text.map(t => t + " " + unit);
  }
  return vals.map(v => v + " " + unit);
}

// One uPlot chart per quantity: time on x (the viewer's time zone, fitted to the data), the
// unit on y; the fleet's min–mean–max band per sensor and its highest lines, or one node's
// lines; a legend that hides a series on click, a readout under the pointer.
const charts = {};
window.edgesenseCharts = charts;   // for the browser test: the plots and their drawn axes
let chartsAt = 0, chartStep = 0;
async function refreshChart() {
  chartsAt = Date.now();
  const mode = document.getElementById("chart-mode");
  mode.replaceChildren(...(view.node
    ? [view.node + "'s own lines · ", el("button", {type: "button", class: "fleet", onclick: () => select(view.node)}, "back to the fleet")]
    : ["the fleet: min · mean · max per sensor, and the 5 lines farthest above their sensor's mean; click a node for its own lines"]));
  await Promise.all(Object.keys(QUANTITY).map(refreshQuantity));
}

function label(s) {
  return s.band ? (s.sensor || "all") + " " + s.band : s.node + " / " + s.sensor;
}

async function refreshQuantity(q) {
  const box = document.getElementById("chart-" + q);
  let d;
  try { d = await getJSON("api/range?metric=" + q + "&range=" + range + (view.node ? "&node=" + encodeURIComponent(view.node) : "")); } catch (e) { return; }
  chartStep = d.step_s || 0;
  const series = (d.series || []).filter(s => s.points.length);
  const meta = QUANTITY[q];
  const key = series.map(label).join("|");
  let empty = box.querySelector(".empty");
  if (!series.length) {
    if (charts[q]) { charts[q].plot.destroy(); delete charts[q]; }
    if (!empty) box.append(el("div", {class: "empty"}, "no " + q + " readings in this range" + (view.node ? " for " + view.node : "")));
    return;
  }
  if (empty) empty.remove();
  // Align every series on one time axis (uPlot's data layout): the union of their timestamps.
  const times = [...new Set(series.flatMap(s => s.points.map(p => p[0] / 1000)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const data = [times, ...series.map(s => {
    const ys = new Array(times.length).fill(null);
    for (const [t, v] of s.points) ys[index.get(t / 1000)] = meta.scale(v);
    return ys;
  })];
  const width = Math.max(280, box.clientWidth - 16);
  // The x axis is the chosen window (ending now), from its first reading when that is later
  // (a fresh fleet's minute is a minute wide, not a dot at the edge of an hour).
  const window_ = [Math.min(Math.max(d.end_s - d.range_s, times[0]), d.end_s - 60), d.end_s];
  if (charts[q] && charts[q].key === key) {
    charts[q].window = window_;
    charts[q].plot.setData(data);
    if (charts[q].plot.width !== width) charts[q].plot.setSize({width, height: 220});
    return;
  }
  if (charts[q]) charts[q].plot.destroy();
  const fmt = v => v == null ? "–" : v.toFixed(meta.digits) + " " + meta.unit;
  const sensors = [...new Set(series.filter(s => s.band).map(s => s.sensor))];
  let top = 0;
  const style = s => {
    if (!s.band) return {stroke: PALETTE[top++ % PALETTE.length], width: 2};
    const c = BAND_COLORS[sensors.indexOf(s.sensor) % BAND_COLORS.length];
    return s.band === "mean" ? {stroke: c, width: 1.5} : {stroke: c, width: 1, dash: [4, 4]};
  };
  // The band between each sensor's min and max, filled (uPlot's indices: data columns).
  const bands = sensors.map((sensor, i) => {
    const at = b => series.findIndex(s => s.band === b && s.sensor === sensor) + 1;
    return {series: [at("max"), at("min")], fill: BAND_COLORS[i % BAND_COLORS.length] + "22"};
  }).filter(b => b.series[0] > 0 && b.series[1] > 0);
  const opts = {
    width, height: 220,
    cursor: {drag: {x: true, y: false}},
    scales: {x: {time: true, range: () => charts[q].window}},
    bands,
    axes: [
      {stroke: "#8b949e", grid: {stroke: "#2d333b"}, ticks: {stroke: "#2d333b"}},
      {stroke: "#8b949e", grid: {stroke: "#2d333b"}, ticks: {stroke: "#2d333b"}, size: 92,
       values: (u, vals) => ticks(vals, meta.unit)},
    ],
    series: [{label: "time"}, ...series.map(s => ({
      label: label(s), ...style(s), spanGaps: false, value: (u, v) => fmt(v),
    }))],
  };
  charts[q] = {key, window: window_};
  charts[q].plot = new uPlot(opts, data, box);
}

async function silence(a) {
  const hours = prompt("Silence " + a.name + (a.node ? " on " + a.node : "") + " for how many hours?", "2");
  if (!hours) return;
  const r = await fetch("api/silence", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({alertname: a.name, node: a.node || "", hours: Number(hours)})});
  if (!r.ok) alert("Silence failed: " + ((await r.json()).error || r.status));
  refreshAlerts();
  refreshNodes();
}

async function refreshAlerts() {
  const box = document.getElementById("alerts");
  let d;
  try { d = await getJSON("api/alerts"); } catch (e) { return; }
  problems.alertmanager = d.ok ? null : d.error;
  showProblems();
  if (!d.alerts.length) { box.className = "dim"; box.replaceChildren(d.ok ? "none" : "unknown"); return; }
  box.className = "";
  // Firing ones first; the first few drawn, the rest behind a button.
  const list = d.alerts.slice().sort((a, b) => a.silenced - b.silenced);
  box.replaceChildren(el("table", {},
    el("tr", {}, ...["alert", "severity", "node", "state", "summary", ""].map(h => el("th", {}, h))),
    ...list.slice(0, view.alerts).map(a => el("tr", {class: a.silenced ? "silenced alert-row" : "alert-row", "data-alert": a.name},
      el("td", {}, a.name), el("td", {}, a.severity || ""), el("td", {}, a.node || "all"),
      el("td", {}, a.silenced ? "silenced" + (a.silenced_by && a.silenced_by.length ? " by " + a.silenced_by.join(", ") : "") + (a.silenced_until ? " until " + new Date(a.silenced_until).toLocaleString() : "") : a.state), el("td", {}, a.summary || ""),
      el("td", {}, a.silenced ? "" : el("button", {type: "button", class: "silence", onclick: () => silence(a)}, "silence"))))),
    ...more(list.length - view.alerts, "alerts", () => { view.alerts = Infinity; refreshAlerts(); }));
}

for (const b of document.querySelectorAll("#range button")) b.addEventListener("click", () => {
  range = b.dataset.r;
  document.querySelectorAll("#range button").forEach(x => x.classList.toggle("on", x === b));
  refreshChart();
});
document.getElementById("search").addEventListener("input", e => {
  view.q = e.target.value;
  view.cards = CARDS_SHOWN; view.tiles = TILES_SHOWN;
  writeHash();
  if (cluster) renderNodes();
});
window.addEventListener("hashchange", () => { readHash(); if (cluster) renderNodes(); refreshChart(); });

// Nodes and alerts every 5 s; the charts as often as they have a new point (at most every 5 s).
function tick() {
  refreshNodes();
  refreshAlerts();
  if (Date.now() - chartsAt >= Math.max(5000, chartStep * 1000)) refreshChart();
}
window.addEventListener("resize", () => {
  for (const [q, c] of Object.entries(charts)) c.plot.setSize({width: Math.max(280, document.getElementById("chart-" + q).clientWidth - 16), height: 220});
});
readHash();
tick();
setInterval(tick, 5000);

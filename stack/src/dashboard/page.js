"use strict";
const PALETTE = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff7b72", "#e3b341"];
const FMT = {temperature_celsius: v => v.toFixed(1) + " °C", humidity_ratio: v => (v * 100).toFixed(0) + " %", pressure_pascals: v => (v / 100).toFixed(1) + " hPa"};
// Per chart: the unit on its axis and in its readout (values arrive in base units).
const QUANTITY = {
  temperature: {unit: "°C", scale: v => v, digits: 1},
  humidity: {unit: "%", scale: v => v * 100, digits: 1},
  pressure: {unit: "hPa", scale: v => v / 100, digits: 1},
};
const LED_COLORS = {red: "#ff4d4f", amber: "#ffb020", yellow: "#ffe14d", green: "#3fd16b", blue: "#4da3ff", white: "#f0f0f0"};
let range = "1h";
let alertsByNode = {};

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

async function refreshNodes() {
  let d;
  try { d = await getJSON("api/cluster"); } catch (e) { problems.prometheus = "dashboard server unreachable"; showProblems(); return; }
  document.getElementById("sources").textContent = "Prometheus " + d.prometheus.url;
  problems.prometheus = d.prometheus.ok ? null : "Prometheus unreachable (" + d.prometheus.error + "): node data is not current.";
  showProblems();
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  const box = document.getElementById("nodes");
  if (!d.prometheus.ok) { box.replaceChildren(el("div", {class: "dim"}, "no data")); return; }
  if (!d.nodes.length) { box.replaceChildren(el("div", {class: "dim"}, "no agents discovered yet")); return; }
  box.replaceChildren(...d.nodes.map(n => nodeCard(n, d.now_s)));
}

function ago(s) {
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
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
    const dot = el("span", {class: "dot" + (l.lit ? " lit" : "") + (l.lit && (l.mode === "blink" || l.mode === "pulse") ? " " + l.mode : "")});
    dot.style.setProperty("--c", LED_COLORS[l.led] || "#4da3ff");
    const why = l.reason === "idle" || l.reason === "manual" ? l.reason : "alert " + l.reason;
    return el("span", {class: "ledc", "data-led": l.led, "data-mode": l.mode || "", title: (l.mode || "") + " · " + why}, dot, l.led, el("span", {class: "dim"}, l.mode + " · " + why));
  });
  const alerts = (alertsByNode[n.node] || []).concat(alertsByNode[""] || []).filter(a => !a.silenced);
  return el("div", {class: "card node" + (n.up ? "" : " down"), "data-node": n.node},
    el("div", {}, el("span", {class: "name"}, n.node), el("span", {class: "badge " + (n.up ? "up" : "down")}, n.up ? "up" : "down")),
    n.up ? "" : el("div", {class: "down-note"}, "not scraped: the agent is down or unreachable; its values below are its last"),
    n.backfilling ? el("div", {class: "backfill-note", "data-backfilling": n.backfilling}, "backfilling: " + n.backfilling + " readings it took while Prometheus could not scrape it are on their way") : "",
    el("div", {class: "dim"}, [n.model, n.version && "v" + n.version, n.instance].filter(Boolean).join(" · ")),
    leds.length ? el("div", {class: "leds"}, ...leds) : "",
    el("table", {}, ...rows),
    alerts.length ? el("div", {class: "alerts"}, ...alerts.map(a => el("div", {class: "a " + (a.severity || "")}, a.name + (a.node ? "" : " (cluster-wide)")))) : "");
}

// One uPlot chart per quantity: time on x (the viewer's time zone), the unit on y, one line per
// node and sensor, a legend that hides a series on click, a readout under the pointer.
const charts = {};
window.edgesenseCharts = charts;   // for the browser test: the plots and their drawn axes
async function refreshChart() {
  for (const q of Object.keys(QUANTITY)) refreshQuantity(q);
}

async function refreshQuantity(q) {
  const box = document.getElementById("chart-" + q);
  let d;
  try { d = await getJSON("api/range?metric=" + q + "&range=" + range); } catch (e) { return; }
  const series = (d.series || []).filter(s => s.points.length);
  const meta = QUANTITY[q];
  const key = series.map(s => s.node + "/" + s.sensor).join("|");
  let empty = box.querySelector(".empty");
  if (!series.length) {
    if (charts[q]) { charts[q].plot.destroy(); delete charts[q]; }
    if (!empty) box.append(el("div", {class: "empty"}, "no " + q + " readings in this range"));
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
  // The x axis is the chosen window (ending now), however few points there are yet.
  const window_ = [d.end_s - d.range_s, d.end_s];
  if (charts[q] && charts[q].key === key) {
    charts[q].window = window_;
    charts[q].plot.setData(data);
    if (charts[q].plot.width !== width) charts[q].plot.setSize({width, height: 220});
    return;
  }
  if (charts[q]) charts[q].plot.destroy();
  const fmt = v => v == null ? "–" : v.toFixed(meta.digits) + " " + meta.unit;
  const opts = {
    width, height: 220,
    cursor: {drag: {x: true, y: false}},
    scales: {x: {time: true, range: () => charts[q].window}},
    axes: [
      {stroke: "#8b949e", grid: {stroke: "#2d333b"}, ticks: {stroke: "#2d333b"}},
      {stroke: "#8b949e", grid: {stroke: "#2d333b"}, ticks: {stroke: "#2d333b"}, size: 92,
       values: (u, vals) => vals.map(v => v.toFixed(meta.digits) + " " + meta.unit)},
    ],
    series: [{label: "time"}, ...series.map((s, i) => ({
      label: s.node + " / " + s.sensor, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false,
      value: (u, v) => fmt(v),
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
}

async function refreshAlerts() {
  const box = document.getElementById("alerts");
  let d;
  try { d = await getJSON("api/alerts"); } catch (e) { return; }
  problems.alertmanager = d.ok ? null : d.error;
  showProblems();
  alertsByNode = {};
  for (const a of d.alerts) (alertsByNode[a.node || ""] = alertsByNode[a.node || ""] || []).push(a);
  if (!d.alerts.length) { box.className = "dim"; box.replaceChildren(d.ok ? "none" : "unknown"); return; }
  box.className = "";
  box.replaceChildren(el("table", {},
    el("tr", {}, ...["alert", "severity", "node", "state", "summary", ""].map(h => el("th", {}, h))),
    ...d.alerts.map(a => el("tr", {class: a.silenced ? "silenced alert-row" : "alert-row", "data-alert": a.name},
      el("td", {}, a.name), el("td", {}, a.severity || ""), el("td", {}, a.node || "all"),
      el("td", {}, a.silenced ? "silenced" + (a.silenced_by && a.silenced_by.length ? " by " + a.silenced_by.join(", ") : "") + (a.silenced_until ? " until " + new Date(a.silenced_until).toLocaleString() : "") : a.state), el("td", {}, a.summary || ""),
      el("td", {}, a.silenced ? "" : el("button", {type: "button", class: "silence", onclick: () => silence(a)}, "silence"))))));
}

for (const b of document.querySelectorAll("#range button")) b.addEventListener("click", () => {
  range = b.dataset.r;
  document.querySelectorAll("#range button").forEach(x => x.classList.toggle("on", x === b));
  refreshChart();
});

async function tick() { await refreshAlerts(); refreshNodes(); refreshChart(); }
window.addEventListener("resize", () => {
  for (const [q, c] of Object.entries(charts)) c.plot.setSize({width: Math.max(280, document.getElementById("chart-" + q).clientWidth - 16), height: 220});
});
tick();
setInterval(tick, 5000);

"use strict";
const COLORS = {red: "#ff4d4f", amber: "#ffb020", yellow: "#ffe14d", green: "#3fd16b", blue: "#4da3ff", white: "#f0f0f0"};
const UNITS = {
  temperature_celsius: v => v.toFixed(1) + " °C",
  humidity_ratio: v => (v * 100).toFixed(1) + " %",
  pressure_pascals: v => (v / 100).toFixed(1) + " hPa",
};
const history = {};   // sensor -> series key -> [[t_ms, v]]
let auth = false, retentionMs = 3600e3;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

// A sparkline of the recent values, with the range it spans (its lowest and highest value) so
// its height means something.
function spark(points, fmt) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 110 30");
  const box = el("span", {class: "sparkbox"}, svg);
  if (points.length > 1) {
    const ts = points.map(p => p[0]), vs = points.map(p => p[1]);
    const t0 = Math.min(...ts), t1 = Math.max(...ts), v0 = Math.min(...vs), v1 = Math.max(...vs);
    const x = t => 1 + 108 * (t - t0) / Math.max(1, t1 - t0), y = v => 28 - 26 * (v - v0) / ((v1 - v0) || 1);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.map(p => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "));
    svg.append(line);
    box.append(el("span", {class: "range"}, fmt(v0) + " – " + fmt(v1)));
  }
  return box;
}

function remember(s) {
  if (!s.at_ms) return;
  const h = history[s.name] || (history[s.name] = {});
  for (const [k, v] of Object.entries(s.values)) {
    const pts = h[k] || (h[k] = []);
    if (!pts.length || pts[pts.length - 1][0] < s.at_ms) pts.push([s.at_ms, v]);
    while (pts.length && pts[0][0] < s.at_ms - retentionMs) pts.shift();
  }
}

function ago(ms) {
  const s = Math.max(0, ms / 1000);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

// A failing sensor keeps showing its last good value, dimmed, with how old it is: never as if
// it were current.
function renderSensors(sensors) {
  const box = document.getElementById("sensors");
  box.replaceChildren(...sensors.map(s => {
    const badge = s.up ? el("span", {class: "badge ok"}, "ok") : el("span", {class: "badge err"}, s.error ? s.error.reason : "no reading yet");
    const stale = !s.up && Object.keys(s.values).length > 0;
    const card = el("div", {class: "card sensor" + (stale ? " stale" : ""), "data-sensor": s.name, "data-stale": stale ? "1" : "0"}, el("div", {}, el("span", {class: "name"}, s.name), " ", el("span", {class: "dim"}, s.kind), badge));
    if (stale) {
      const last = Object.entries(s.values).map(([k, v]) => (UNITS[k] || (x => String(x)))(v)).join(" · ");
      card.append(el("div", {class: "lastgood"}, "last good " + last + ", " + ago(Date.now() - s.at_ms)));
    }
    for (const [k, v] of Object.entries(s.values)) {
      const fmt = UNITS[k] || (x => String(x));
      card.append(el("div", {class: "q"}, el("span", {class: "value", "data-q": k}, fmt(v)), spark((history[s.name] || {})[k] || [], fmt)));
    }
    if (s.error) card.append(el("div", {class: "error"}, s.error.message));
    return card;
  }));
}

function renderLeds(leds) {
  const box = document.getElementById("leds");
  box.replaceChildren(...leds.map(l => {
    const dot = el("div", {class: "led" + (l.lit ? " lit" : "") + (l.mode === "blink" || l.mode === "pulse" ? " " + l.mode : ""), "data-led": l.name, "data-mode": l.mode});
    dot.style.setProperty("--c", COLORS[l.name] || "#4da3ff");
    if (l.period_ms) dot.style.setProperty("--p", l.period_ms + "ms");
    if (l.mode === "on" && l.brightness !== undefined) dot.style.opacity = Math.max(0.2, l.brightness);
    const why = l.source.kind === "alert" ? l.source.name + " (" + l.source.severity + ")" : l.source.kind;
    const buttons = el("div", {class: "buttons"}, ...["on", "off", "blink", "pulse", "auto"].map(m =>
      el("button", {type: "button", "data-led": l.name, "data-set": m, onclick: () => setLed(l.name, m)}, m)));
    return el("div", {class: "card led-card"}, dot, el("div", {class: "name"}, l.name), el("div", {class: "dim"}, l.mode + " · " + why), buttons);
  }));
}

// firing lights its LEDs; silenced (by whom, until when) and inhibited come from Alertmanager;
// acknowledged is an edge rule acknowledged on the node (button or this page) until it clears.
function stateText(a) {
  if (a.state === "silenced") {
    const until = a.until_ms ? " until " + new Date(a.until_ms).toLocaleString() : "";
    return "silenced by " + (a.silenced_by || []).join(", ") + until;
  }
  return a.state || "firing";
}

function renderAlerts(alerts, am) {
  const box = document.getElementById("alerts");
  const firing = alerts.filter(a => (a.state || "firing") === "firing").length;
  document.getElementById("ack").hidden = firing === 0;
  const amBox = document.getElementById("am");
  amBox.textContent = !am ? "" : am.up
    ? "reconciled with Alertmanager " + (am.last_reconcile_ms ? new Date(am.last_reconcile_ms).toLocaleTimeString() : "")
    : "Alertmanager unreachable: LEDs keep their state" + (am.last_reconcile_ms ? " (last reconciled " + new Date(am.last_reconcile_ms).toLocaleTimeString() + ")" : "");
  if (!alerts.length) { box.className = "dim"; box.replaceChildren("none"); return; }
  box.className = "";
  box.replaceChildren(...alerts.map(a => el("div", {class: "alert " + a.severity + " " + (a.state || "firing"), "data-alert": a.name, "data-state": a.state || "firing"},
    el("b", {}, a.name), el("span", {class: "state"}, stateText(a)), " ", el("span", {class: "dim"}, a.severity + " · " + a.origin + (a.leds.length ? " · " + a.leds.join(", ") : "")),
    a.summary ? el("div", {}, a.summary) : "")));
}

function render(d) {
  const r = d.readings;
  auth = r.auth;
  document.getElementById("node").textContent = r.node;
  document.getElementById("model").textContent = r.model + " · v" + r.version;
  document.title = r.node + " · edgesense";
  r.sensors.forEach(remember);
  renderSensors(r.sensors);
  renderAlerts(r.alerts, r.alertmanager);
  renderLeds(d.leds);
  // Readings taken while Prometheus could not scrape, still to be pushed to it.
  const bf = document.getElementById("backfill");
  const waiting = r.backfill ? r.backfill.waiting : 0;
  bf.hidden = waiting === 0;
  bf.textContent = waiting === 1 ? "1 reading waiting for Prometheus" : waiting + " readings waiting for Prometheus";
}

// A write with the node's token (asked once per session, again after a 401).
async function write(method, path, body) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = {"Content-Type": "application/json"};
    let token = sessionStorage.getItem("edgesense-token");
    if (auth && !token) {
      token = prompt("Token for this node (token_file):");
      if (!token) return null;
      sessionStorage.setItem("edgesense-token", token);
    }
    if (token) headers.Authorization = "Bearer " + token;
    const r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    if (r.status === 401) { sessionStorage.removeItem("edgesense-token"); auth = true; continue; }
    return r;
  }
  return null;
}

async function setLed(name, mode) {
  const body = {mode};
  if (mode === "blink") body.period_ms = 500;
  if (mode === "pulse") { body.period_ms = 2000; body.brightness = 1.0; }
  const r = await write("PUT", "api/v1/leds/" + encodeURIComponent(name), body);
  if (!r) return;
  const msg = document.getElementById("msg");
  msg.textContent = r.ok ? "" : "LED " + name + ": " + ((await r.json()).error || r.status);
}

// What the node's button does on a short press: edge rules acknowledged here, Alertmanager's
// alerts silenced there.
async function acknowledge() {
  const r = await write("POST", "api/v1/ack");
  if (!r) return;
  const msg = document.getElementById("msg");
  if (!r.ok) { msg.textContent = "acknowledge: " + ((await r.json()).error || r.status); return; }
  const d = await r.json();
  msg.textContent = "acknowledged: " + [...d.rules, ...d.silences.map(s => s[0] + " (silenced in Alertmanager)")].join(", ");
}

async function loadHistory() {
  try {
    const r = await fetch("api/v1/history");
    const h = await r.json();
    retentionMs = h.retention_s * 1000;
    for (const s of h.sensors) history[s.name] = Object.assign(history[s.name] || {}, s.series);
  } catch (e) { /* sparklines start empty */ }
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("api/v1/events");
  es.addEventListener("snapshot", e => render(JSON.parse(e.data)));
  es.onopen = () => { conn.className = "live"; conn.textContent = "live"; };
  // EventSource reconnects by itself; show it, and start again if the browser gave up.
  es.onerror = () => {
    conn.className = "down"; conn.textContent = "reconnecting…";
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  };
}

document.getElementById("ack").addEventListener("click", acknowledge);
loadHistory().then(connect);

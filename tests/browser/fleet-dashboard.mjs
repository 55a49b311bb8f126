// The cluster dashboard over a fleet:
//   fleet-dashboard.mjs URL NODES SHOT_PREFIX [--expect up=29,down=1,…] [--select NODE]
//                       [--search NAME] [--max-dom 5000] [--max-load-ms 2000]
//                       [--charts temperature,humidity,pressure]
// NODES nodes in the summary (and --expect's counts), the problem nodes first (down, alerting,
// backfilling, stale) and the rest in natural order, a search for one node's name (--search,
// else a name no other contains) leaving its card alone, each summary count a filter, fewer DOM
// elements than --max-dom, the summary drawn within --max-load-ms of navigation, the charts'
// legends without a duplicate (the fleet's bands, then --select's own lines) and y ticks without
// two neighbours alike, a stale reading with its age; screenshots SHOT_PREFIX-1280.png and SHOT_PREFIX-390.png, no sideways
// scrolling on the phone, no console errors. Prints one JSON line of measurements (load_ms,
// dom_elements, js_heap_mb, the slowest /api/cluster and /api/range answers, …) before "ok".
import { main, page, check, checkPhoneWidth } from "./common.mjs";

const argv = process.argv.slice(2);
const [url, nodesArg, prefix] = argv.filter((a, i) => !a.startsWith("--") && !(i > 0 && argv[i - 1].startsWith("--")));
const opt = (name, dflt) => { const i = argv.indexOf("--" + name); return i >= 0 ? argv[i + 1] : dflt; };
const nodes = Number(nodesArg);
const expect = Object.fromEntries((opt("expect", "") || "").split(",").filter(Boolean).map(kv => kv.split("=")).map(([k, v]) => [k, Number(v)]));
expect.nodes = nodes;
const maxDom = Number(opt("max-dom", 5000)), maxLoad = Number(opt("max-load-ms", 2000));
const RANK = { down: 0, alerting: 1, backfilling: 2, stale: 3 };

// The nodes drawn, in page order: name, whether a detailed card, its problems.
const drawn = p => p.$$eval(".node", ns => ns.map(n => ({
  node: n.dataset.node, card: n.classList.contains("card"), problems: (n.dataset.problems || "").split(" ").filter(Boolean),
})));
const counts = p => p.$$eval("#summary [data-filter]", bs => Object.fromEntries(bs.map(b => [b.dataset.filter, Number(b.dataset.count)])));
const legend = (p, q) => p.$$eval(`#chart-${q} .u-legend .u-series .u-label`, ls => ls.map(l => l.textContent).filter(t => t !== "time"));

await main(async b => {
  const p = await page(b);
  await p.setViewportSize({ width: 1280, height: 1000 });
  await p.goto(url);
  await p.waitForFunction(n => Number(document.querySelector('#summary [data-filter="nodes"]')?.dataset.count) === n, nodes, { timeout: 60000 });
  // Measured on a fresh load of a settled page: navigation → summary and problem nodes drawn.
  await p.reload();
  await p.waitForFunction(() => window.edgesenseDrawn, null, { timeout: 30000 });
  const loadMs = Math.round(await p.evaluate(() => window.edgesenseDrawn));
  check(loadMs < maxLoad, `summary drawn in ${loadMs} ms (at most ${maxLoad})`);

  const c = await counts(p);
  for (const [k, v] of Object.entries(expect)) check(c[k] === v, `summary ${k}: ${c[k]}, expected ${v} (${JSON.stringify(c)})`);

  // Problem nodes first, the most urgent first; then the rest by name, naturally (sim2 < sim10).
  const list = await drawn(p);
  const natural = new Intl.Collator("en", { numeric: true, sensitivity: "base" });
  const problemCount = list.filter(n => n.problems.length).length;
  check(list.slice(0, problemCount).every(n => n.problems.length), "problem nodes first: " + list.slice(0, problemCount + 2).map(n => n.node));
  const ranks = list.slice(0, problemCount).map(n => Math.min(...n.problems.map(x => RANK[x])));
  check(ranks.every((r, i) => i === 0 || ranks[i - 1] <= r), "most urgent first: " + list.slice(0, problemCount).map(n => n.node + ":" + n.problems));
  const rest = list.slice(problemCount).map(n => n.node);
  check(rest.every((n, i) => i === 0 || natural.compare(rest[i - 1], n) < 0), "the rest in natural order: " + rest.slice(0, 12));
  for (const k of ["down", "alerting", "backfilling", "stale"]) {
    const had = list.filter(n => n.problems.includes(k)).length;
    check(had === c[k] || list.length < nodes, `${k}: ${had} cards for a count of ${c[k]}`);
  }

  // The charts: bands and the highest lines by default, never one legend entry twice.
  // --charts: the charts the fleet has readings for (a fleet of DS18B20s alone has no humidity);
  // the others must say they have none.
  const kinds = opt("charts", "temperature,humidity,pressure").split(",");
  for (const q of ["temperature", "humidity", "pressure"].filter(q => !kinds.includes(q))) {
    await p.waitForSelector(`#chart-${q} .empty`, { timeout: 30000 });
  }
  await p.waitForFunction(ks => ks.every(q => window.edgesenseCharts[q]), kinds, { timeout: 30000 });
  const fleetLegend = {};
  for (const q of kinds) {
    const l = await legend(p, q);
    fleetLegend[q] = l.length;
    check(l.length > 0 && new Set(l).size === l.length, `${q}: no duplicate in the legend: ${l}`);
    check(l.length <= 3 * 6 + 5, `${q}: bands and the highest few, not a line per node: ${l.length}`);
  }
  // A stale reading (a down node's, a failing sensor's) says how old it is, not "never read".
  const stale = await p.$$eval(".node.card tr.stale", rs => rs.map(r => r.textContent));
  check(stale.every(t => !t.includes("last good") || !t.includes("never read")), "a last good value has its age: " + stale);
  const domElements = await p.evaluate(() => document.getElementsByTagName("*").length);
  // How long the dashboard's answers took (Prometheus's work in them), from the first load.
  const api = await p.evaluate(() => {
    const ms = re => Math.round(Math.max(0, ...performance.getEntriesByType("resource").filter(e => re.test(e.name)).map(e => e.duration)));
    return { cluster_ms: ms(/api\/cluster/), range_ms: ms(/api\/range/) };
  });
  check(domElements < maxDom, `DOM elements: ${domElements} (under ${maxDom})`);
  const cdp = await p.context().newCDPSession(p);
  await cdp.send("Performance.enable");
  const metrics = Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map(m => [m.name, m.value]));
  const heapMb = Math.round(metrics.JSHeapUsedSize / 1048576 * 10) / 10;
  await p.screenshot({ path: prefix + "-1280.png", fullPage: true });

  // Each problem count is a filter: only those nodes, then all again.
  for (const k of ["down", "alerting", "stale"].filter(k => c[k] > 0)) {
    await p.click(`#summary [data-filter="${k}"]`);
    const only = await drawn(p);
    check(only.length === Math.min(c[k], 24) && only.every(n => n.problems.includes(k)), `filter ${k}: ${only.map(n => n.node)}`);
    check(new URL(p.url()).hash.includes("f=" + k), "the filter is in the URL: " + p.url());
    await p.click(`#summary [data-filter="${k}"]`);
  }
  // The search box: one node's name leaves its card alone (the view in the URL for a link).
  const names = list.map(n => n.node);
  const one = opt("search", names.find(n => names.filter(m => m.toLowerCase().includes(n.toLowerCase())).length === 1));
  await p.fill("#search", one);
  await p.waitForFunction(() => document.querySelectorAll(".node").length === 1, null, { timeout: 5000 });
  check((await drawn(p))[0].node === one, "the search shows " + one);
  check(decodeURIComponent(new URL(p.url()).hash).includes("q=" + one), "the search is in the URL: " + p.url());
  await p.fill("#search", "");
  await p.waitForFunction(n => document.querySelectorAll(".node").length === n, list.length, { timeout: 5000 });

  // A node's own lines: a click on it, one line per sensor however often its agent was replaced.
  const sel = opt("select", rest[0] || names[0]);
  await p.click(`.node[data-node="${sel}"] ${list.find(n => n.node === sel).card ? ".name" : ""}`.trim());
  await p.waitForFunction(n => document.querySelector(`.node.card.sel[data-node="${n}"]`), sel, { timeout: 5000 });
  await p.waitForFunction(n => {
    const l = [...document.querySelectorAll("#chart-temperature .u-legend .u-series .u-label")].map(e => e.textContent).filter(t => t !== "time");
    return l.length && l.every(t => t.startsWith(n + " / "));
  }, sel, { timeout: 15000 });
  for (const q of kinds) {
    await p.waitForFunction(([q, n]) => { const u = window.edgesenseCharts[q]; return u && u.plot.series.slice(1).every(s => s.label.startsWith(n + " / ")); }, [q, sel], { timeout: 15000 });
    const l = await legend(p, q);
    check(new Set(l).size === l.length, `${sel}'s ${q}: one line per sensor: ${l}`);
    // y ticks: no two neighbours print alike; x fitted to the data it has.
    const ax = await p.evaluate(q => {
      const u = window.edgesenseCharts[q].plot;
      return { y: (u.axes[1]._values || []).map(String), xmin: u.scales.x.min, first: u.data[0][0], end: u.data[0][u.data[0].length - 1] };
    }, q);
    check(ax.y.every((v, i) => i === 0 || v !== ax.y[i - 1]), `${q} y ticks all differ: ${ax.y}`);
    check(ax.xmin >= Math.min(ax.first, ax.end - 60) - 1, `${q}: x starts at the first reading (${ax.xmin} vs ${ax.first})`);
  }
  check(new URL(p.url()).hash.includes("node=" + sel), "the chosen node is in the URL: " + p.url());

  await checkPhoneWidth(p);
  await p.screenshot({ path: prefix + "-390.png", fullPage: true });
  check(p.errors.length === 0, "no console errors: " + p.errors.join("; "));
  console.log(JSON.stringify({
    nodes, load_ms: loadMs, dom_elements: domElements, js_heap_mb: heapMb, api_cluster_ms: api.cluster_ms, api_range_ms_max: api.range_ms,
    cards: list.filter(n => n.card).length, tiles: list.filter(n => !n.card).length,
    legend: fleetLegend, summary: c,
  }));
});

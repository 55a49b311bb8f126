// The cluster dashboard: cluster-page.mjs URL DOWN_URL SCREENSHOT
// Two agents from a real Prometheus as cards with their sensors, history lines, the firing alert
// from Alertmanager, silencing it from the page, and (DOWN_URL: a dashboard whose Prometheus is
// unreachable) a clear message instead of data. No console errors.
import { main, page, check } from "./common.mjs";

const [url, downUrl, shot] = process.argv.slice(2);

await main(async b => {
  const p = await page(b);
  p.on("dialog", d => d.accept("1"));   // silence for one hour
  await p.goto(url);
  await p.waitForFunction(() => document.querySelectorAll(".node").length === 2, null, { timeout: 20000 });
  const nodes = await p.$$eval(".node", ns => ns.map(n => n.dataset.node));
  check(nodes.join(",") === "pi-a,pi-b", "two agents: " + nodes);
  const up = await p.$$eval(".node .badge", bs => bs.map(b => b.textContent));
  check(up.every(t => t === "up"), "both up: " + up);
  const rows = await p.$$eval('.node[data-node="pi-a"] tr', rs => rs.length);
  check(rows >= 4, "pi-a lists its sensors: " + rows);
  // History lines: at least two series with two or more points each.
  await p.waitForFunction(() => [...document.querySelectorAll("#chart polyline")].filter(l => l.getAttribute("points").split(" ").length >= 2).length >= 2, null, { timeout: 30000 });

  await p.waitForSelector('tr.alert-row[data-alert="EdgesenseTemperatureHigh"] button.silence', { timeout: 30000 });
  await p.click('tr.alert-row[data-alert="EdgesenseTemperatureHigh"] button.silence');
  await p.waitForSelector('tr.silenced[data-alert="EdgesenseTemperatureHigh"]', { timeout: 15000 });
  check(await p.$("#banner .banner") === null, "no error banner while all is reachable");
  await p.screenshot({ path: shot, fullPage: true });
  check(p.errors.length === 0, "no console errors: " + p.errors.join("; "));

  const q = await page(b);
  await q.goto(downUrl);
  await q.waitForSelector("#banner .banner", { timeout: 15000 });
  const text = await q.$eval("#banner", e => e.textContent);
  check(text.includes("Prometheus unreachable"), "says Prometheus is unreachable: " + text);
  check((await q.$$(".node")).length === 0, "no stale node cards");
  await q.screenshot({ path: shot.replace(/\.png$/, "-unreachable.png"), fullPage: true });
  check(q.errors.length === 0, "no console errors: " + q.errors.join("; "));
});

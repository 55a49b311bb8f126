// The cluster dashboard: cluster-page.mjs URL DOWN_URL SCREENSHOT
// Two agents from a real Prometheus as cards: pi-a with a firing critical alert shows its red LED
// blinking and why; pi-b's failing `outside` probe reads as stale (its last good value, dimmed,
// with its age). One uPlot chart per quantity whose drawn axes carry the unit and times, whose
// legend hides a series and whose readout follows the pointer. Silencing the alert from the
// page; screenshots at 1280 and 390 px; (DOWN_URL: a dashboard whose Prometheus is unreachable)
// a clear message instead of data. No console errors.
import { main, page, check, checkPhoneWidth } from "./common.mjs";

const [url, downUrl, shot] = process.argv.slice(2);

await main(async b => {
  const p = await page(b);
  await p.setViewportSize({ width: 1280, height: 1000 });
  p.on("dialog", d => d.accept("1"));   // silence for one hour
  await p.goto(url);
  await p.waitForFunction(() => document.querySelectorAll(".node").length === 2, null, { timeout: 20000 });
  const nodes = await p.$$eval(".node", ns => ns.map(n => n.dataset.node));
  check(nodes.join(",") === "pi-a,pi-b", "two agents: " + nodes);
  const up = await p.$$eval(".node .badge", bs => bs.map(b => b.textContent));
  check(up.every(t => t === "up"), "both up: " + up);
  const rows = await p.$$eval('.node[data-node="pi-a"] tr', rs => rs.length);
  check(rows >= 4, "pi-a lists its sensors: " + rows);

  // The fleet's LEDs: pi-a's red blinks for a critical alert, and the card says which.
  await p.waitForSelector('.node[data-node="pi-a"] .ledc[data-led="red"][data-mode="blink"] .dot.lit.blink', { timeout: 30000 });
  const why = await p.$eval('.node[data-node="pi-a"] .ledc[data-led="red"]', e => e.textContent);
  check(/alert /.test(why), "the LED says why: " + why);
  const ledsB = await p.$$eval('.node[data-node="pi-b"] .ledc', ls => ls.map(l => l.dataset.led).sort().join(","));
  check(ledsB === "amber,green,red", "pi-b's LEDs: " + ledsB);

  // A failing sensor reads as stale, not current.
  await p.waitForSelector('.node[data-node="pi-b"] tr[data-sensor="outside"][data-stale="1"]', { timeout: 30000 });
  const stale = await p.$eval('.node[data-node="pi-b"] tr[data-sensor="outside"]', e => e.textContent);
  check(/last good \d+\.\d °C/.test(stale) && /ago/.test(stale), "stale with its last good value and age: " + stale);

  // One chart per quantity, with axes: units on y, times on x (as uPlot drew them).
  await p.waitForFunction(() => window.edgesenseCharts && window.edgesenseCharts.temperature
    && window.edgesenseCharts.temperature.plot.series.length >= 3, null, { timeout: 30000 });
  const axes = await p.evaluate(() => {
    const u = window.edgesenseCharts.temperature.plot;
    return { x: (u.axes[0]._values || []).map(String), y: (u.axes[1]._values || []).map(String) };
  });
  check(axes.y.length >= 2 && axes.y.every(v => v.endsWith(" °C")), "y ticks carry the unit: " + axes.y);
  check(axes.x.some(v => /\d{1,2}:\d{2}/.test(v)), "x ticks are times: " + axes.x);
  for (const q of ["humidity", "pressure"]) {
    const unit = { humidity: " %", pressure: " hPa" }[q];
    await p.waitForFunction(q => window.edgesenseCharts[q], q, { timeout: 30000 });
    const y = await p.evaluate(q => (window.edgesenseCharts[q].plot.axes[1]._values || []).map(String), q);
    check(y.length >= 1 && y.every(v => v.endsWith(unit)), q + " ticks carry" + unit + ": " + y);
  }
  // The readout under the pointer: hovering the plot shows a value with its unit.
  const over = await p.$("#chart-temperature .u-over");
  const box = await over.boundingBox();
  await p.mouse.move(box.x + box.width * 0.97, box.y + box.height / 2);
  await p.waitForFunction(() => [...document.querySelectorAll("#chart-temperature .u-legend .u-series .u-value")]
    .some(e => / °C$/.test(e.textContent)), null, { timeout: 5000 });
  // The legend hides a series.
  await p.click("#chart-temperature .u-legend .u-series:nth-child(2) .u-label");
  const hidden = await p.evaluate(() => window.edgesenseCharts.temperature.plot.series[1].show === false
    && document.querySelector("#chart-temperature .u-legend .u-series:nth-child(2)").classList.contains("u-off"));
  check(hidden, "clicking a legend entry hides its series");

  await p.waitForSelector('tr.alert-row[data-alert="EdgesenseTemperatureHigh"] button.silence', { timeout: 30000 });
  await p.click('tr.alert-row[data-alert="EdgesenseTemperatureHigh"] button.silence');
  await p.waitForSelector('tr.silenced[data-alert="EdgesenseTemperatureHigh"]', { timeout: 15000 });
  const silencedText = await p.$eval('tr.silenced[data-alert="EdgesenseTemperatureHigh"]', e => e.textContent);
  check(/silenced by edgesense dashboard until/.test(silencedText), "says who silenced it until when: " + silencedText);
  check(await p.$("#banner .banner") === null, "no error banner while all is reachable");
  await p.screenshot({ path: shot, fullPage: true });
  await checkPhoneWidth(p);
  await p.screenshot({ path: shot.replace(/\.png$/, "-phone.png"), fullPage: true });
  check(p.errors.length === 0, "no console errors: " + p.errors.join("; "));

  const q = await page(b);
  await q.goto(downUrl);
  await q.waitForFunction(() => document.getElementById("banner").textContent.includes("Prometheus unreachable"), null, { timeout: 15000 });
  const text = await q.$eval("#banner", e => e.textContent);
  check(text.includes("Prometheus unreachable"), "says Prometheus is unreachable: " + text);
  check((await q.$$(".node")).length === 0, "no stale node cards");
  await q.screenshot({ path: shot.replace(/\.png$/, "-unreachable.png"), fullPage: true });
  check(q.errors.length === 0, "no console errors: " + q.errors.join("; "));
});

// The agent's node page: node-page.mjs URL TOKEN SCREENSHOT
// All simulated sensors show values; a value set through the sim API appears without reload; an
// LED button changes the LED (checked in the API); no console errors; a screenshot is saved.
import { main, page, check, checkPhoneWidth } from "./common.mjs";

const [url, token, shot] = process.argv.slice(2);
const api = (path, init = {}) => fetch(new URL(path, url), init).then(async r => ({ status: r.status, body: await r.json() }));

await main(async b => {
  const p = await page(b);
  await p.setViewportSize({ width: 1280, height: 1000 });
  p.on("dialog", d => d.accept(token));   // the token prompt of the first write
  await p.goto(url);
  await p.waitForSelector("#conn.live", { timeout: 15000 });
  await p.waitForFunction(() => document.querySelectorAll(".sensor .value").length >= 6, null, { timeout: 15000 });
  const names = await p.$$eval(".sensor", cs => cs.map(c => c.dataset.sensor));
  check(["room", "outside", "soc", "env"].every(n => names.includes(n)), "all four sensors: " + names);
  const badges = await p.$$eval(".sensor .badge", bs => bs.map(b => b.textContent));
  check(badges.every(t => t === "ok"), "all sensors ok: " + badges);

  // A value set through the sim API appears within a few seconds, without a reload.
  const set = await api("api/v1/sim/sensors/room", { method: "PUT", headers: { Authorization: "Bearer " + token }, body: '{"value":31.5}' });
  check(set.status === 200, "sim PUT: " + JSON.stringify(set));
  await p.waitForFunction(() => document.querySelector('[data-sensor="room"] .value')?.textContent === "31.5 °C", null, { timeout: 10000 });

  // Clicking an LED button changes the LED.
  await p.click('button[data-led="amber"][data-set="blink"]');
  await p.waitForSelector('.led.blink[data-led="amber"]', { timeout: 10000 });
  const leds = await api("api/v1/leds");
  const amber = leds.body.leds.find(l => l.name === "amber");
  check(amber.mode === "blink" && amber.source.kind === "manual", "amber blinks in the API: " + JSON.stringify(amber));
  const sparkPoints = await p.$eval('[data-sensor="room"] polyline', e => e.getAttribute("points").split(" ").length).catch(() => 0);
  check(sparkPoints >= 2, "room has a sparkline");
  const span = await p.$eval('[data-sensor="room"] .sparkbox .range', e => e.textContent).catch(() => "");
  check(/°C – .*°C/.test(span), "the sparkline says the range it spans: " + span);

  // 31.5 °C held for 10 s fires the edge rule room-hot; the page's acknowledge button (the
  // node's button, with the token) acknowledges it: shown so, and red no longer blinks for it.
  await p.waitForSelector('.alert[data-alert="room-hot"][data-state="firing"]', { timeout: 30000 });
  check(await p.isVisible("#ack"), "an acknowledge button while an alert fires");
  await p.click("#ack");
  await p.waitForSelector('.alert[data-alert="room-hot"][data-state="acknowledged"]', { timeout: 10000 });
  const red = (await api("api/v1/leds")).body.leds.find(l => l.name === "red");
  check(red.source.name !== "room-hot", "red released by the acknowledgement: " + JSON.stringify(red));

  // A failing sensor keeps its last good value, dimmed, with its age: not as if current.
  const fault = await api("api/v1/sim/sensors/outside", { method: "PUT", headers: { Authorization: "Bearer " + token }, body: '{"fault":"crc"}' });
  check(fault.status === 200, "fault PUT: " + JSON.stringify(fault));
  await p.waitForSelector('.sensor[data-sensor="outside"][data-stale="1"]', { timeout: 15000 });
  const stale = await p.$eval('.sensor[data-sensor="outside"]', e => e.textContent);
  check(/last good \d+\.\d °C, \d+ s ago/.test(stale) && /crc/.test(stale), "outside reads stale: " + stale);
  const dim = await p.$eval('.sensor[data-sensor="outside"] .value', e => Number(getComputedStyle(e).opacity));
  check(dim < 0.8, "its value is dimmed: " + dim);
  // The BME280's pressure stays on one line at desktop width.
  const lines = await p.$eval('[data-sensor="env"] [data-q="pressure_pascals"]', e => Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)));
  check(lines === 1, "1013.x hPa on one line: " + lines);

  // A phone-sized screen still shows everything.
  await p.screenshot({ path: shot, fullPage: true });
  await checkPhoneWidth(p);
  // The LED cards fill the phone's width (two to a row, no empty third).
  const ledRow = await p.$$eval(".led-card", cs => cs.map(c => c.getBoundingClientRect()).map(r => [Math.round(r.left), Math.round(r.right)]));
  const used = Math.max(...ledRow.map(r => r[1])) - Math.min(...ledRow.map(r => r[0]));
  check(used > 390 * 0.8, "LED cards span the width: " + JSON.stringify(ledRow));
  await p.screenshot({ path: shot.replace(/\.png$/, "-phone.png"), fullPage: true });
  check(p.errors.length === 0, "no console errors: " + p.errors.join("; "));
});

// The cluster dashboard over the multi-node swarm: fleet-page.mjs URL NODES SCREENSHOT
// Every node in NODES (comma-separated) has its card, marked up, with sensor rows, and nothing
// else is shown; no console errors.
import { main, page, check } from "./common.mjs";

const [url, expected, shot] = process.argv.slice(2);
const want = expected.split(",").sort();

await main(async b => {
  const p = await page(b);
  await p.goto(url);
  await p.waitForFunction(n => document.querySelectorAll(".node").length === n, want.length, { timeout: 30000 });
  const nodes = (await p.$$eval(".node", ns => ns.map(n => n.dataset.node))).sort();
  check(nodes.join(",") === want.join(","), "the fleet's nodes: " + nodes);
  const up = await p.$$eval(".node .badge", bs => bs.map(b => b.textContent));
  check(up.length === want.length && up.every(t => t === "up"), "all up: " + up);
  for (const n of want) {
    const rows = await p.$$eval(`.node[data-node="${n}"] tr`, rs => rs.length);
    check(rows >= 4, `${n} lists its sensors: ${rows}`);
  }
  check(await p.$("#banner .banner") === null, "no error banner");
  await p.screenshot({ path: shot, fullPage: true });
  check(p.errors.length === 0, "no console errors: " + p.errors.join("; "));
});

// A page on another origin against the cluster dashboard: cross-site.mjs DASHBOARD_URL
// The operator has the dashboard open (same browser), then visits a page of another site that
// tries to create silences through it, the ways a page can without CORS: a no-cors fetch with a
// text/plain body (no preflight), a JSON fetch (needs a preflight the dashboard never answers),
// and a form submitted with enctype text/plain. Prints what each attempt got back; the Rust side
// checks Alertmanager for silences.
import http from "node:http";
import { main, page, check } from "./common.mjs";

const [dash] = process.argv.slice(2);
const target = new URL("api/silence", dash).href;
const body = JSON.stringify({ alertname: "EdgesenseTemperatureHigh", hours: 720, comment: "all clear" });

const evil = `<!doctype html><meta charset="utf-8"><title>cute cats</title>
<form id="f" method="post" enctype="text/plain" action="${target}" target="sink">
<input name='{"alertname":"EdgesenseTemperatureHigh","hours":720,"x":"' value='"}'></form>
<iframe name="sink"></iframe>
<script>
window.results = {};
(async () => {
  try {
    const r = await fetch(${JSON.stringify(target)}, { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: ${JSON.stringify(body)} });
    results.noCors = "opaque:" + r.type;
  } catch (e) { results.noCors = "error:" + e.message; }
  try {
    const r = await fetch(${JSON.stringify(target)}, { method: "POST", headers: { "Content-Type": "application/json" }, body: ${JSON.stringify(body)} });
    results.json = "status:" + r.status;
  } catch (e) { results.json = "error:" + e.message; }
  document.getElementById("f").submit();
  results.form = "submitted";
})();
</script>`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end(evil);
});
await new Promise(r => server.listen(0, "127.0.0.1", r));
const evilUrl = `http://127.0.0.1:${server.address().port}/`;

try {
  await main(async b => {
    const ctx = await b.newContext();
    const op = await ctx.newPage();
    await op.goto(dash);   // the operator's own tab, same browser
    const p = await ctx.newPage();
    // The form's post lands in the iframe: its navigation there means the answer came back.
    const posted = p.waitForEvent("framenavigated", {
      predicate: f => f.name() === "sink" && f.url().includes("/api/silence"),
      timeout: 20000,
    });
    await p.goto(evilUrl);
    await p.waitForFunction(() => window.results && window.results.form, null, { timeout: 20000 });
    await posted;
    const r = await p.evaluate(() => window.results);
    console.log(JSON.stringify(r));
    check(r.json.startsWith("error:"), "the JSON fetch is blocked by CORS: " + r.json);
  });
} finally {
  server.close();
}

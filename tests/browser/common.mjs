// Shared by the browser tests: Debian's Chromium, headless, with the flags these machines need.
import { chromium } from "playwright-core";

export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
           "--disable-component-update", "--disable-sync", "--disable-quic"],
  });
}

/// A page that records console errors and uncaught exceptions.
export async function page(b) {
  const p = await b.newPage({ viewport: { width: 900, height: 1100 } });
  p.errors = [];
  p.on("console", m => { if (m.type() === "error") p.errors.push("console: " + m.text()); });
  p.on("pageerror", e => p.errors.push("page: " + e.message));
  return p;
}

export function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

export async function main(run) {
  let b;
  try {
    b = await browser();
    await run(b);
    console.log("ok");
  } catch (e) {
    console.error(e && e.stack ? e.stack : String(e));
    process.exitCode = 1;
  } finally {
    if (b) await b.close();
  }
}

// The page on a phone (390 px): it does not scroll sideways itself (a wide alerts table
// scrolls in its own box); the elements that stick out, if any, in the failure.
export async function checkPhoneWidth(p) {
  await p.setViewportSize({ width: 390, height: 844 });
  // Laid out at the new width: the window says 390, and two frames later the page's resize
  // handlers (the charts' setSize) have run and been laid out.
  await p.waitForFunction(() => window.innerWidth === 390, null, { timeout: 10000 });
  await p.evaluate(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))));
  const wide = await p.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1
    ? [...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest("#alerts"))
        .slice(0, 8).map(e => e.tagName.toLowerCase() + "." + e.className + " → " + Math.round(e.getBoundingClientRect().right) + " px")
    : []);
  check(wide.length === 0, "no horizontal scrolling on a phone: " + wide.join("; "));
}

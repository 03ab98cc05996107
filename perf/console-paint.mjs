// How fast the console's home page paints and fills, in a real browser
// (Debian's chromium, playwright-core from console/web) against a real
// `weir run` fed by weir-flowgen (console/web/tests/harness.mjs).
//
//   (cd console/web && npm ci)      # once, for playwright-core
//   cargo build --release -p weir-shards -p weir-perf
//   node perf/console-paint.mjs [--loads 20] [--bin target/release]
//
// Each load opens the home page in a fresh browser context (no cache) and
// records first contentful paint and the time until the flow-rate widget
// shows data. The baseline, measured in the same run and the same browser,
// is a static page with one paragraph served by Node: the floor of a paint
// on this machine. The target: the home page paints
// within 1 s.
import { createRequire } from "node:module";
import { createServer } from "node:http";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startWeir } from "../console/web/tests/harness.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { chromium } = createRequire(resolve(root, "console/web/package.json"))("playwright-core");
const { values } = parseArgs({
  options: {
    loads: { type: "string", default: "20" },
    bin: { type: "string", default: "target/release" },
    chromium: { type: "string", default: process.env.CHROMIUM ?? "/usr/bin/chromium" },
  },
});
const loads = Number(values.loads);
if (!(loads >= 1)) throw new Error("--loads wants a positive number");

const floor = createServer((_, res) => {
  res.writeHead(200, { "Content-Type": "text/html" });
  res.end("<!doctype html><title>floor</title><p>paint</p>");
});
await new Promise((ok) => floor.listen(0, "127.0.0.1", ok));
const floorUrl = `http://127.0.0.1:${floor.address().port}/`;

const weir = await startWeir(resolve(root, values.bin));
const browser = await chromium.launch({ executablePath: values.chromium, args: ["--headless=new", "--no-sandbox"] });

async function load(url, filled) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p = await context.newPage();
  const started = Date.now();
  await p.goto(url);
  if (filled) await p.waitForFunction(filled);
  const ready = Date.now() - started;
  const paint = await p.evaluate(async () => {
    for (let i = 0; i < 100; i++) {
      const e = performance.getEntriesByName("first-contentful-paint")[0];
      if (e) return e.startTime;
      await new Promise((r) => setTimeout(r, 20));
    }
    return NaN;
  });
  await context.close();
  return { paint, ready };
}

const widgetFilled = () => {
  const v = document.querySelector('[data-testid="flow-rate"] .value')?.textContent ?? "…";
  return !v.includes("…") && v.trim() !== "0";
};

const home = [];
const base = [];
// One warm-up of each (the browser's first context pays for its start).
await load(floorUrl);
await load(weir.base + "/", widgetFilled);
for (let i = 0; i < loads; i++) {
  base.push(await load(floorUrl));
  home.push(await load(weir.base + "/", widgetFilled));
}
await browser.close();
weir.stop();
floor.close();

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const ms = (x) => `${Math.round(x)} ms`;
const row = (name, xs) => `| ${name} | ${ms(quantile(xs, 0.5))} | ${ms(quantile(xs, 0.95))} | ${ms(Math.max(...xs))} |`;
const homePaint = home.map((l) => l.paint);
const basePaint = base.map((l) => l.paint);
console.log(`${loads} loads each, chromium headless, 1280×900, no cache\n`);
console.log("| what | median | p95 | max |\n| --- | --- | --- | --- |");
console.log(row("static page, first paint (baseline)", basePaint));
console.log(row("console home, first paint", homePaint));
console.log(row("console home, flow rate shown", home.map((l) => l.ready)));
const ratio = quantile(homePaint, 0.5) / quantile(basePaint, 0.5);
console.log(`\nhome / baseline first paint (medians): ${ratio.toFixed(2)}`);
const met = quantile(homePaint, 0.95) < 1000;
console.log(`target, home page paints within 1 s at p95: ${met ? "met" : "NOT met"}`);

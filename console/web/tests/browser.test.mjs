// The console in a real browser (Debian's chromium driven by playwright-core)
// against a real `weir run` (embedded store) fed by `weir-flowgen`.
//   WEIR_BIN_DIR=target/debug node --test console/web/tests/
// Screenshots of the home and visualize pages land in console/web/screenshots/ (the README's).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { HTTP_REQUESTS, startWeir } from "./harness.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const bin = resolve(root, process.env.WEIR_BIN_DIR ?? "target/debug");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
let weir, base, api, metric, browser;
const errors = [];

before(async () => {
  weir = await startWeir(bin, { http: true });
  ({ base, api, metric } = weir);
  browser = await chromium.launch({ executablePath: chromiumPath, args: ["--headless=new", "--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  weir?.stop();
});

// `setup(context)`, when given, runs before the page is opened (routes).
async function page(path = "/", options = {}, setup = async () => {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  await setup(context);
  const p = await context.newPage();
  p.on("console", (m) => m.type() === "error" && errors.push(`${path}: ${m.text()}`));
  p.on("pageerror", (e) => errors.push(`${path}: ${e.message}`));
  // Nothing but Weir is asked for anything.
  p.on("request", (r) => {
    const url = new URL(r.url());
    if (url.origin !== base && !url.protocol.startsWith("data")) errors.push(`request to ${r.url()}`);
  });
  await p.goto(base + path);
  return { p, context };
}

// How fast it paints is perf/console-paint.mjs's business, not a test's.
test("the home page renders every widget with data", async () => {
  const { p, context } = await page("/");
  await p.waitForFunction(() => {
    const v = document.querySelector('[data-testid="flow-rate"] .value')?.textContent ?? "…";
    return !v.includes("…") && v.trim() !== "0";
  });
  const paint = await p.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? 0);
  assert.ok(paint > 0, "the page painted");
  await p.waitForFunction(() => document.querySelector('[data-testid="exporters"] .value')?.textContent === "3");
  for (const w of ["src-as", "dst-as", "protocol", "etype", "exporter"]) {
    await p.waitForSelector(`[data-testid="top-${w}"] canvas`);
  }
  await p.waitForSelector('[data-testid="last-flow"] td');
  const cells = await p.$$eval('[data-testid="last-flow"] tr', (rows) => rows.length);
  assert.ok(cells > 10, `${cells} columns of the last flow`);
  await p.waitForSelector('[data-testid="home-graph"] canvas');
  mkdirSync(join(root, "console/web/screenshots"), { recursive: true });
  await p.waitForTimeout(800);
  await p.screenshot({ path: join(root, "console/web/screenshots/home.png") });
  await context.close();
});

test("a bidirectional sankey draws both halves", async () => {
  const { p, context } = await page("/visualize");
  await p.waitForSelector('[data-testid="graph-type"]');
  await p.selectOption('[data-testid="graph-type"]', "sankey");
  await p.check("text=Bidirectional");
  await p.click('[data-testid="apply"]');
  await p.waitForFunction(() => document.querySelector('[data-testid="chart"]').dataset.series === "2");
  await context.close();
});

for (const graphType of ["stacked", "stacked100", "lines", "grid", "heatmap", "sankey"]) {
  test(`visualize draws a ${graphType} chart and a table that matches the API`, async () => {
    const { p, context } = await page("/visualize");
    await p.waitForSelector('[data-testid="graph-type"]');
    await p.selectOption('[data-testid="graph-type"]', graphType);
    await p.fill('[data-testid="start"]', "15 minutes ago");
    await p.fill('[data-testid="limit"]', "4");
    await p.click('[data-testid="apply"]');
    await p.waitForURL(/\/visualize\/v1-/);
    await p.waitForSelector('[data-testid="chart"] canvas');
    const body = {
      start: new Date(Date.now() - 15 * 60_000).toISOString(),
      end: new Date().toISOString(),
      dimensions: ["SrcAS"],
      limit: 4,
      units: "l3bps",
      ...(graphType === "sankey" ? {} : { points: graphType === "grid" ? 50 : 200 }),
    };
    const answer = await api(graphType === "sankey" ? "graph/sankey" : "graph/line", body);
    // The table of this request (not of the defaults the page opened with).
    await p.waitForFunction((n) => document.querySelectorAll('[data-testid="table"] tbody tr').length === n, answer.rows.length);
    const rows = await p.$$eval('[data-testid="table"] tbody tr', (r) => r.length);
    assert.equal(rows, answer.rows.length, `${graphType}: table rows`);
    // One series per row, but lines hide Other; a heatmap and a sankey are one series.
    const expected = { stacked: 5, stacked100: 5, lines: 4, grid: 5, heatmap: 1, sankey: 1 }[graphType];
    await p.waitForFunction((n) => document.querySelector('[data-testid="chart"]').dataset.series === String(n), expected);
    if (graphType !== "sankey") {
      // 4 ASes and Other.
      assert.equal(rows, 5);
      const totals = await p.$$eval('[data-testid="table"] tbody tr td:last-child', (c) => c.map((x) => x.textContent));
      const top = answer.total[0];
      const shown = Number(totals[0].split(" ")[0]);
      const scale = { K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15 }[totals[0].split(" ")[1]?.[0]] ?? 1;
      assert.ok(Math.abs(shown * scale - top) / top < 0.05, `${totals[0]} vs ${top}`);
    }
    if (graphType === "stacked") {
      await p.waitForTimeout(800);
      await p.screenshot({ path: join(root, "console/web/screenshots/visualize.png") });
    }
    await context.close();
  });
}

test("the filter editor completes columns and underlines errors", async () => {
  const { p, context } = await page("/visualize");
  await p.waitForSelector(".cm-content");
  await p.click(".cm-content");
  await p.keyboard.type("Src");
  await p.waitForSelector(".cm-tooltip-autocomplete");
  const options = await p.$$eval(".cm-tooltip-autocomplete li", (l) => l.map((x) => x.textContent));
  assert.ok(options.some((o) => o.startsWith("SrcAS")), options.join(", "));
  await p.keyboard.press("Escape");
  await p.keyboard.type("AS = ");
  await p.waitForSelector(".cm-lintRange-error", { timeout: 5000 });
  const text = await p.evaluate(() => document.querySelector(".cm-content").textContent);
  assert.equal(text, "SrcAS = ");
  // The error is where the AS number should be: the end of the filter.
  // A completion list may open again over it, and CodeMirror shows the
  // lint tooltip on a mouse move that rests there: close, move, retry.
  for (let attempt = 1; ; attempt++) {
    await p.keyboard.press("Escape");
    await p.mouse.move(0, 0);
    await p.hover(".cm-lintRange-error");
    try {
      await p.waitForSelector(".cm-tooltip-lint", { timeout: 3000 });
      break;
    } catch (e) {
      if (attempt === 5) throw e;
    }
  }
  const message = await p.textContent(".cm-tooltip-lint");
  assert.match(message, /expecting an AS number/);
  await context.close();
});

test("the HTTP source graphs HAProxy's requests: 5xx by backend, with completion", async () => {
  const { p, context } = await page("/visualize");
  await p.waitForSelector('[data-testid="source"]');
  await p.selectOption('[data-testid="source"]', "http");
  assert.equal(await p.inputValue('[data-testid="units"]'), "rps", "the source's units");
  const units = await p.$$eval('[data-testid="units"] option', (o) => o.map((x) => x.value));
  assert.deepEqual(units, ["rps", "Bps", "latency-p50", "latency-p90", "latency-p99"]);
  await p.fill('[data-testid="start"]', "15 minutes ago");
  await p.fill('[data-testid="dimension-search"]', "backend");
  await p.press('[data-testid="dimension-search"]', "Tab");
  await p.waitForSelector('[data-testid="dimension-backend"]');
  // Completion offers the HTTP columns.
  await p.click(".cm-content");
  await p.keyboard.type("status_c");
  await p.waitForSelector(".cm-tooltip-autocomplete");
  const options = await p.$$eval(".cm-tooltip-autocomplete li", (l) => l.map((x) => x.textContent));
  assert.ok(options.some((o) => o.startsWith("status_class")), options.join(", "));
  await p.keyboard.press("Escape");
  await p.keyboard.type("lass = 5");
  await p.click('[data-testid="apply"]');
  await p.waitForURL(/\/visualize\/v1-/);
  await p.waitForSelector('[data-testid="chart"] canvas');
  await p.waitForFunction(() => document.querySelector('[data-testid="table"] tbody tr td')?.textContent === "down");
  const answer = await api("graph/line", {
    source: "http",
    start: new Date(Date.now() - 15 * 60_000).toISOString(),
    end: new Date().toISOString(),
    dimensions: ["backend"],
    filter: "status_class = 5",
    units: "rps",
    points: 200,
  });
  assert.deepEqual(answer.rows, [["down"]]);
  assert.equal(answer.total[0], HTTP_REQUESTS.down);
  const rows = await p.$$eval('[data-testid="table"] tbody tr', (r) => r.map((x) => x.textContent));
  assert.equal(rows.length, 1, rows.join(" | "));
  assert.match(rows[0], new RegExp(`${HTTP_REQUESTS.down} req$`), "the total: requests over the range");
  await p.waitForFunction(() => document.querySelector('[data-testid="chart"]').dataset.series === "1");
  // A latency quantile, in ms; no sankey for it.
  await p.selectOption('[data-testid="units"]', "latency-p99");
  const types = await p.$$eval('[data-testid="graph-type"] option', (o) => o.map((x) => x.value));
  assert.ok(!types.includes("sankey"), types.join(", "));
  await p.click('[data-testid="apply"]');
  await p.waitForFunction(() => / ms$/.test(document.querySelector('[data-testid="table"] tbody tr td:last-child')?.textContent ?? ""));
  await context.close();
});

test("the home page's HTTP widgets rank hosts and status codes", async () => {
  const { p, context } = await page("/");
  for (const w of ["http-host", "http-status"]) await p.waitForSelector(`[data-testid="top-${w}"] canvas`);
  const codes = (await api("widget/top/http-status")).top.map((t) => t.name);
  assert.deepEqual(codes, ["200", "404", "503"]);
  await context.close();
});

test("a saved filter applies, and a copied URL restores the view", async () => {
  await fetch(`${base}/api/v0/console/filter/saved`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ description: "web", content: "DstPort IN (80, 443)", shared: true }),
  });
  const { p, context } = await page("/visualize");
  await p.waitForSelector('[data-testid="saved-filters"]');
  await p.waitForFunction(() => document.querySelectorAll('[data-testid="table"] tbody tr').length > 0);
  const before = await p.$$eval('[data-testid="table"] tbody tr td:last-child', (c) => c.map((x) => x.textContent).join());
  await p.click('[data-testid="saved-filters"] summary');
  await p.click('[data-testid="saved-web"]');
  await p.waitForURL(/\/visualize\/v1-/);
  await p.waitForFunction(() => document.querySelector('[data-testid="summary"]').textContent.includes("DstPort IN (80, 443)"));
  await p.waitForFunction(() => document.querySelectorAll('[data-testid="table"] tbody tr').length > 0);
  // The graph changed with the filter: web traffic only.
  await p.waitForFunction(
    (b) => [...document.querySelectorAll('[data-testid="table"] tbody tr td:last-child')].map((x) => x.textContent).join() !== b,
    before,
  );
  const url = p.url();
  const summary = await p.textContent('[data-testid="summary"]');
  const again = await page(new URL(url).pathname);
  await again.p.waitForFunction(() => document.querySelectorAll('[data-testid="table"] tbody tr').length > 0);
  assert.equal(await again.p.textContent('[data-testid="summary"]'), summary);
  await again.context.close();
  await context.close();
});

test("the documentation shows the README's sections", async () => {
  // The first page's answer held back until after the click's: it comes
  // last, and must not replace the page clicked.
  const { p, context } = await page("/docs", {}, (c) =>
    c.route(/\/api\/v0\/console\/docs\/(?!the-console-api)/, async (r) => {
      await new Promise((done) => setTimeout(done, 2000));
      await r.continue();
    }),
  );
  const late = p.waitForResponse((r) => /\/docs\/(?!the-console-api)[^/]+$/.test(new URL(r.url()).pathname));
  await p.click("text=The console API");
  await p.waitForURL(/\/docs\/the-console-api$/);
  await p.waitForSelector('[data-testid="doc"] h3:has-text("The filter language")');
  await late;
  await p.waitForLoadState("networkidle");
  assert.equal(await p.textContent('[data-testid="doc"] h1'), "The console API");
  await p.waitForSelector('[data-testid="doc"] h3:has-text("The filter language")');
  await context.close();
});

test("dark mode toggles and is kept", async () => {
  const { p, context } = await page("/", { colorScheme: "light" });
  await p.waitForSelector('[data-testid="dark-toggle"]');
  assert.equal(await p.evaluate(() => document.documentElement.classList.contains("dark")), false);
  await p.click('[data-testid="dark-toggle"]');
  assert.equal(await p.evaluate(() => document.documentElement.classList.contains("dark")), true);
  await p.reload();
  await p.waitForSelector('[data-testid="dark-toggle"]');
  assert.equal(await p.evaluate(() => document.documentElement.classList.contains("dark")), true);
  await context.close();
});

test("an unknown page says so, on a phone too", async () => {
  const { p, context } = await page("/visualize", { viewport: { width: 390, height: 844 } });
  await p.waitForSelector('[data-testid="apply"]');
  await p.evaluate(() => history.pushState({}, "", "/nowhere"));
  await p.goto(base + "/");
  await p.click("text=Visualize");
  await p.waitForSelector('[data-testid="apply"]');
  const width = await p.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 400, `the page is ${width} px wide on a 390 px phone`);
  await context.close();
});

test("the JavaScript stays within 600 KB gzipped", async () => {
  const { readdirSync, readFileSync } = await import("node:fs");
  const { gzipSync } = await import("node:zlib");
  const assets = join(root, "console/web/dist/assets");
  const bytes = readdirSync(assets)
    .filter((f) => f.endsWith(".js"))
    .reduce((sum, f) => sum + gzipSync(readFileSync(join(assets, f)), { level: 9 }).length, 0);
  assert.ok(bytes <= 600 * 1024, `${bytes} bytes of JavaScript, gzipped`);
});

test("no errors in the browser's console", () => {
  assert.deepEqual(errors, []);
});

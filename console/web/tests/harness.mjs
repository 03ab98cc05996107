// A real `weir run` (embedded store) fed by `weir-flowgen` from three
// exporters, for the browser tests and the console's paint benchmark
// (perf/console-paint.mjs). Not a test file itself (`node --test` runs
// *.test.mjs only).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSocket } from "node:dgram";

function freeUdpPort() {
  return new Promise((ok) => {
    const s = createSocket("udp4");
    s.bind(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => ok(port));
    });
  });
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/// Starts `weir run` from `bin`, sends `seconds` of traffic at 10 k flows/s
/// from three exporters and waits until every flow is stored and summed.
/// Returns { base, api, metric, stop }.
export async function startWeir(bin, { seconds = 3 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "weir-browser-"));
  const port = await freeUdpPort();
  const config = join(dir, "weir.toml");
  writeFileSync(
    config,
    `[shards]\ncores = [0]\n[[listeners]]\naddress = "127.0.0.1:${port}"\n[http]\nlisten = "127.0.0.1:0"\n` +
      `[sink]\nkind = "store"\n[store]\nkind = "embedded"\nspool_dir = "${dir}/spool"\nconsolidation_interval_ms = 300\n` +
      `[store.embedded]\npath = "${dir}/chdb"\n[console]\ndatabase = "${dir}/console.sqlite"\n`,
  );
  const weir = spawn(join(bin, "weir"), ["run", "--config", config], { stdio: ["ignore", "ignore", "pipe"] });
  const stop = () => {
    weir.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  };
  let base;
  try {
    base = await new Promise((ok, fail) => {
      let seen = "";
      const timer = setTimeout(() => fail(new Error(`weir run did not start: ${seen}`)), 30_000);
      weir.stderr.on("data", (chunk) => {
        seen += chunk;
        const m = /metrics at (http:\/\/[0-9.:]+)\//.exec(seen);
        if (m && seen.includes("ready")) {
          clearTimeout(timer);
          ok(m[1]);
        }
      });
    });
  } catch (e) {
    stop();
    throw e;
  }

  async function api(path, body) {
    const r = await fetch(`${base}/api/v0/console/${path}`, body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await r.text();
    return text ? JSON.parse(text) : undefined;
  }

  async function metric(name) {
    const text = await (await fetch(`${base}/metrics`)).text();
    return text
      .split("\n")
      .filter((l) => l.startsWith(name))
      .reduce((s, l) => s + Number(l.split(" ").pop()), 0);
  }

  async function query(sql) {
    const r = await fetch(`${base}/query?format=TSV`, { method: "POST", body: sql });
    return { ok: r.ok, text: (await r.text()).trim() };
  }

  // Wait for the store's tables, then the traffic.
  for (let i = 0; i < 100 && !(await query("SELECT count() FROM weir.flows_1h")).ok; i++) await pause(200);
  const sent = spawnSync(join(bin, "weir-flowgen"), [
    "--target", `127.0.0.1:${port}`, "--flows-per-second", "10k", "--seconds", String(seconds),
    "--exporters", "3", "--source", "127.0.0.1",
  ]);
  if (sent.status !== 0) {
    stop();
    throw new Error(`weir-flowgen failed: ${sent.stderr}`);
  }
  const flows = seconds * 10_000;
  for (let i = 0; i < 100 && (await metric("weir_store_rows_inserted_total")) < (flows * 29) / 30; i++) await pause(200);
  // Every flow summed into flows_1h too (the exporters widget reads it).
  for (let i = 0; i < 100 && (await query("SELECT uniqExact(ExporterAddress) FROM weir.flows_1h")).text !== "3"; i++) {
    await pause(200);
  }
  return { base, api, metric, stop };
}

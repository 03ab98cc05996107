// A real `weir run` (embedded store) fed by `weir-flowgen` from three
// exporters, for the browser tests and the console's paint benchmark
// (perf/console-paint.mjs). Not a test file itself (`node --test` runs
// *.test.mjs only).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSocket } from "node:dgram";
import { connect, createServer } from "node:net";

function freeUdpPort() {
  return new Promise((ok) => {
    const s = createSocket("udp4");
    s.bind(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => ok(port));
    });
  });
}

function freeTcpPort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => ok(port));
    });
  });
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

function listening(port) {
  return new Promise((ok) => {
    const c = connect(port, "127.0.0.1", () => {
      c.destroy();
      ok(true);
    });
    c.on("error", () => ok(false));
  });
}

/// HAProxy's requests for the HTTP source: the README's HAProxy setup
/// (log-format-sd to weir's socket) in front of a static backend and of a
/// backend that refuses (503). Kafka is not there; the store does not wait
/// for it.
export const HTTP_REQUESTS = { ok: 30, missing: 6, down: 4 };

async function startHaproxy(dir, socket) {
  const [port, backend, refused] = await Promise.all([freeTcpPort(), freeTcpPort(), freeTcpPort()]);
  mkdirSync(join(dir, "www"), { recursive: true });
  writeFileSync(join(dir, "www", "index.html"), "<html>weir</html>\n");
  const www = spawn("python3", ["-m", "http.server", String(backend), "--bind", "127.0.0.1"], {
    cwd: join(dir, "www"),
    stdio: "ignore",
  });
  const config = join(dir, "haproxy.cfg");
  writeFileSync(
    config,
    `global\n    log ${socket} len 8192 format rfc5424 local0 info\ndefaults\n    mode http\n    log global\n    option dontlognull\n` +
      `    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\nfrontend www\n    bind 127.0.0.1:${port}\n` +
      `    capture request header Host len 64\n` +
      `    log-format-sd "[weir@1 ci=\\"%ci\\" cp=\\"%cp\\" t=\\"%Ts.%ms\\" ft=\\"%ft\\" b=\\"%b\\" s=\\"%s\\" TR=\\"%TR\\" ` +
      `Tw=\\"%Tw\\" Tc=\\"%Tc\\" Tr=\\"%Tr\\" Ta=\\"%Ta\\" ST=\\"%ST\\" B=\\"%B\\" tsc=\\"%tsc\\" rt=\\"%rt\\" hr=\\"%{+E}hr\\"]"\n` +
      `    log-format "%{+Q}r"\n    use_backend down if { path_beg /down }\n    default_backend app\n` +
      `backend app\n    server app1 127.0.0.1:${backend}\nbackend down\n    server down1 127.0.0.1:${refused}\n`,
  );
  const haproxy = spawn("haproxy", ["-db", "-f", config], { stdio: "ignore" });
  const stop = () => {
    haproxy.kill("SIGTERM");
    www.kill("SIGTERM");
  };
  // Both listening; the probe sends no request, which dontlognull leaves out of the log.
  for (const p of [backend, port]) {
    for (let i = 0; i < 100 && !(await listening(p)); i++) await pause(100);
  }
  const send = async () => {
    const paths = [
      ...Array(HTTP_REQUESTS.ok).fill("/"),
      ...Array(HTTP_REQUESTS.missing).fill("/missing"),
      ...Array(HTTP_REQUESTS.down).fill("/down"),
    ];
    for (const path of paths) await (await fetch(`http://127.0.0.1:${port}${path}`)).text();
  };
  return { send, stop };
}

/// Starts `weir run` from `bin`, sends `seconds` of traffic at 10 k flows/s
/// from three exporters and waits until every flow is stored and summed;
/// with `http`, also HAProxy's requests (`HTTP_REQUESTS`) into the store
/// (`[haproxy] store`). Returns { base, api, metric, stop }.
export async function startWeir(bin, { seconds = 3, http = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "weir-browser-"));
  const port = await freeUdpPort();
  const config = join(dir, "weir.toml");
  const socket = join(dir, "haproxy-log.sock");
  writeFileSync(
    config,
    `[shards]\ncores = [0]\n[[listeners]]\naddress = "127.0.0.1:${port}"\n[http]\nlisten = "127.0.0.1:0"\n` +
      `[sink]\nkind = "store"\n[store]\nkind = "embedded"\nspool_dir = "${dir}/spool"\nconsolidation_interval_ms = 300\n` +
      `[store.embedded]\npath = "${dir}/chdb"\n[console]\ndatabase = "${dir}/console.sqlite"\n` +
      (http
        ? `homepage_top_widgets = ["src-as", "dst-as", "protocol", "etype", "exporter", "http-host", "http-status"]\n` +
          `[haproxy]\nenabled = true\nsocket = "${socket}"\nstore = true\nstore_flush_interval_ms = 200\nrequest_counter_wait_s = 1\n` +
          `[haproxy.kafka]\nbrokers = "127.0.0.1:${await freeTcpPort()}"\n`
        : ""),
  );
  const weir = spawn(join(bin, "weir"), ["run", "--config", config], { stdio: ["ignore", "ignore", "pipe"] });
  let haproxy;
  const stop = () => {
    haproxy?.stop();
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
  if (http) {
    try {
      haproxy = await startHaproxy(dir, socket);
      await haproxy.send();
    } catch (e) {
      stop();
      throw e;
    }
    const all = HTTP_REQUESTS.ok + HTTP_REQUESTS.missing + HTTP_REQUESTS.down;
    for (let i = 0; i < 150 && (await query("SELECT sum(requests) FROM weir.http_requests_1h")).text !== String(all); i++) {
      await pause(200);
    }
  }
  // Every flow summed into flows_1h too (the exporters widget reads it).
  for (let i = 0; i < 100 && (await query("SELECT uniqExact(ExporterAddress) FROM weir.flows_1h")).text !== "3"; i++) {
    await pause(200);
  }
  return { base, api, metric, stop };
}

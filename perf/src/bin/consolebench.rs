//! `weir-consolebench`: how fast the console's `graph/line` answers over
//! 24 hours and over 7 days of stored flows, per table.
//!
//! It starts `weir run` with the embedded store (and `console.cache_ttl_s =
//! 0`, so every answer is computed), fills `flows` with `--flows` rows
//! spread evenly over the last 7 days (through `POST /query`: an `INSERT ...
//! SELECT FROM numbers()`: each flow draws one of `--keys` consolidation
//! keys (exporter, interfaces, ASes, protocol, Ethernet type) Zipf-like, as
//! top talkers do, and random addresses and ports), fills `flows_1m`/`5m`/`1h` with the same sums
//! the shards would have written (the schema's consolidation SELECT), then
//! times `graph/line` (top 10 source ASes and `Other`) for each range and
//! each table the console would pick, `--runs` times after one warm-up.
//!
//! ```sh
//! cargo build --release --bin weir --bin weir-consolebench
//! target/release/weir-consolebench --flows 10M --keys 5000 --runs 7
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use weir_core::schema::{Schema, SchemaSettings, ServerVersion};
use weir_perf::collectors::http;
use weir_perf::flowgen::parse_amount;

#[derive(Parser)]
#[command(about = "Times the console's graph/line over 24 h and 7 days of stored flows")]
struct Args {
    /// Flows stored, spread over the last 7 days (k/M suffixes).
    #[arg(long, default_value = "10M")]
    flows: String,
    /// Distinct consolidation keys (exporter, interfaces, ASes, protocol...),
    /// drawn Zipf-like: what decides the consolidated tables' size.
    #[arg(long, default_value_t = 5000)]
    keys: u64,
    /// Timed runs per case, after one warm-up.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// The `weir` binary.
    #[arg(long)]
    weir: Option<PathBuf>,
    /// A directory of its own (removed first).
    #[arg(long, default_value = "/tmp/weir-consolebench")]
    dir: PathBuf,
    /// Extra lines for Weir's `[store]` section (e.g.
    /// "consolidated_wide_part_bytes = 0").
    #[arg(long, default_value = "")]
    weir_store: String,
}

struct Weir {
    child: Child,
    http: String,
}

impl Drop for Weir {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn start(weir: &PathBuf, dir: &std::path::Path, store: &str) -> Result<Weir, String> {
    let config = dir.join("weir.toml");
    let port = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map_err(|e| e.to_string())?.port();
    let text = format!(
        "[shards]\ncores = [0]\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         query_writes = true\n[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\nspool_dir = \"{}\"\n{store}\n\
         [store.embedded]\npath = \"{}\"\n[console]\ncache_ttl_s = 0\ndatabase = \"{}\"\n",
        dir.join("spool").display(),
        dir.join("chdb").display(),
        dir.join("console.sqlite").display()
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let mut child = Command::new(weir)
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", weir.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut http = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.split("http://").nth(1) {
            http = rest.split('/').next().map(str::to_string);
        }
        if line.contains("ready") {
            break;
        }
    }
    // The rest of the log, kept for a look after the run.
    let log = dir.join("weir.log");
    std::thread::spawn(move || {
        let text: Vec<String> = lines.map_while(Result::ok).collect();
        let _ = std::fs::write(log, text.join("\n"));
    });
    let http = http.ok_or("weir run never said where it listens")?;
    let w = Weir { child, http };
    let deadline = Instant::now() + Duration::from_secs(60);
    while query(&w, "SELECT count() FROM weir.flows_1h").is_err() {
        if Instant::now() > deadline {
            return Err("the store did not come up within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(w)
}

fn query(w: &Weir, sql: &str) -> Result<String, String> {
    let (status, body) = http(&w.http, "POST", "/query?format=TSV", sql)?;
    if !status.contains(" 200 ") {
        return Err(format!("{status}: {body}"));
    }
    Ok(body)
}

/// A JSON POST; the status line and the body.
fn post_json(address: &str, path: &str, body: &str) -> Result<(String, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(120))).map_err(|e| e.to_string())?;
    write!(s, "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    Ok((head.lines().next().unwrap_or("").to_string(), body.to_string()))
}

fn rfc3339(t: u64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let flows = parse_amount(&args.flows)? as u64;
    let weir = args.weir.clone().unwrap_or_else(|| {
        std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("weir"))).unwrap_or_else(|| "weir".into())
    });
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir).map_err(|e| e.to_string())?;
    let w = start(&weir, &args.dir, &args.weir_store)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let week = 7 * 86_400u64;

    // Raw flows over the last 7 days, skewed like weir-flowgen's mix.
    let started = Instant::now();
    let chunk = 2_000_000u64;
    let mut first = 0;
    while first < flows {
        let n = chunk.min(flows - first);
        let sql = format!(
            "INSERT INTO weir.flows (TimeReceived, SamplingRate, ExporterAddress, InIfIndex, OutIfIndex, SrcAddr, DstAddr, \
             SrcNetMask, DstNetMask, SrcAS, DstAS, EType, Proto, SrcPort, DstPort, Bytes, Packets, ForwardingStatus) \
             SELECT toDateTime({start} + intDiv(number * ({week} - 3600), {flows})), 1000, \
             toIPv6(concat('::ffff:192.0.2.', toString(1 + key % 4))), 1 + key % 24, 1 + intDiv(key, 24) % 24, \
             toIPv6(IPv4NumToString(toUInt32(167772160 + cityHash64(number, 3) % 65536))), \
             toIPv6(IPv4NumToString(toUInt32(3323068416 + cityHash64(number, 4) % 131072))), 24, 16, \
             64496 + intDiv(key, 576) % 1000, 64496 + cityHash64(key) % 1000, \
             if(key % 5 = 0, 34525, 2048), if(key % 4 = 0, 17, 6), \
             toUInt16(cityHash64(number, 7) % 65536), [443, 80, 53, 22, 25, 993, 8080, 123][1 + number % 8], \
             64 + cityHash64(number, 8) % 1400 * 3, 1 + cityHash64(number, 9) % 3, 0 \
             FROM (SELECT number, toUInt32(pow((cityHash64(number, 1) % 100000) / 100000, 2) * {keys}) AS key \
             FROM numbers({first}, {n}))",
            start = now - week + 3600,
            keys = args.keys,
        );
        query(&w, &sql)?;
        first += n;
    }
    let raw_s = started.elapsed().as_secs_f64();
    // The consolidated tables, as the shards would have summed them.
    let started = Instant::now();
    let settings: SchemaSettings = weir_core::config::StoreConfig::default().schema_settings();
    let schema = Schema::new(&settings, ServerVersion(26, 0));
    for c in &schema.consolidations {
        let dims: Vec<&str> = schema.dimensions().iter().map(|d| d.name).collect();
        let insert = format!("INSERT INTO weir.{} (TimeReceived, {}, Bytes, Packets, Flows)", c.table, dims.join(", "));
        // A day at a time (each statement within `/query`'s 60 s); the
        // bounds are whole hours, so a bucket falls in one day.
        let select = schema.consolidation_select(c);
        let mut day = (now - week) / 86_400 * 86_400;
        while day <= now {
            let sql = format!(
                "{insert} {}",
                select.replacen(
                    " GROUP BY ",
                    &format!(" WHERE TimeReceived >= {day} AND TimeReceived < {} GROUP BY ", day + 86_400),
                    1
                )
            );
            query(&w, &sql)?;
            day += 86_400;
        }
    }
    let consolidated_s = started.elapsed().as_secs_f64();
    let rows = |t: &str| query(&w, &format!("SELECT count() FROM weir.{t}")).map(|s| s.trim().to_string());
    println!(
        "stored: flows {} rows ({raw_s:.1} s), flows_1m {}, flows_5m {}, flows_1h {} ({consolidated_s:.1} s)",
        rows("flows")?,
        rows("flows_1m")?,
        rows("flows_5m")?,
        rows("flows_1h")?
    );
    // Merges settle before timing.
    let _ = query(&w, "OPTIMIZE TABLE weir.flows_1m FINAL");
    std::thread::sleep(Duration::from_secs(5));
    let parts = query(
        &w,
        "SELECT table, part_type, count(), formatReadableSize(sum(bytes_on_disk)) FROM system.parts \
         WHERE database = 'weir' AND active GROUP BY table, part_type ORDER BY table, part_type",
    )?;
    println!("parts (table, type, count, bytes):\n{}", parts.trim_end());

    println!("\n| range | points | table | interval s | median ms | max ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let cases: [(&str, u64, u64, &str); 8] = [
        ("24 h", 86_400, 1440, ""),
        ("24 h", 86_400, 200, ""),
        ("24 h", 86_400, 24, ""),
        ("24 h", 86_400, 200, "SrcPort > 0"),
        // The stored week begins an hour in: the range starts after it.
        ("7 days", week - 7200, 2000, ""),
        ("7 days", week - 7200, 200, ""),
        ("7 days", week - 7200, 168, ""),
        ("7 days", week - 7200, 200, "SrcPort > 0"),
    ];
    for (range, seconds, points, filter) in cases {
        let body = format!(
            "{{\"start\": \"{}\", \"end\": \"{}\", \"points\": {points}, \"units\": \"l3bps\", \
             \"dimensions\": [\"SrcAS\"], \"limit\": 10, \"filter\": \"{filter}\"}}",
            rfc3339(now - seconds),
            rfc3339(now)
        );
        let mut times = Vec::new();
        for run in 0..=args.runs {
            let t = Instant::now();
            let (status, answer) = post_json(&w.http, "/api/v0/console/graph/line", &body)?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !status.contains(" 200 ") {
                return Err(format!("{status}: {answer}"));
            }
            if run > 0 {
                times.push(ms);
            }
        }
        let (table, interval) = {
            let b = format!(
                "{{\"start\": \"{}\", \"end\": \"{}\", \"points\": {points}}}",
                rfc3339(now - seconds),
                rfc3339(now)
            );
            let (_, a) = post_json(&w.http, "/api/v0/console/graph/table-interval", &b)?;
            let v: serde_json::Value = serde_json::from_str(&a).map_err(|e| e.to_string())?;
            let table = if filter.is_empty() {
                v["table"].as_str().unwrap_or("?").to_string()
            } else {
                "flows (filter on SrcPort)".into()
            };
            (table, v["interval"].as_u64().unwrap_or(0))
        };
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let max = times[times.len() - 1];
        let shown_interval = if filter.is_empty() { interval.to_string() } else { (seconds / points).to_string() };
        println!("| {range} | {points} | {table} | {shown_interval} | {median:.0} | {max:.0} |");
    }
    Ok(())
}

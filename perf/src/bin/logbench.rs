//! `weir-logbench`: HAProxy access-log lines per second and per CPU-second,
//! from a unix datagram socket into Kafka, for Weir and for rsyslog with
//! omkafka, in one run against the same broker (tansu).
//!
//! Each collector runs pinned (`taskset`) to `--collector-cpu`; the sender
//! and the counting consumer run on `--sender-cpu`. The sender writes
//! `--lines` RFC 5424 lines (HAProxy's format from the README, distinct
//! values) with blocking sends, so a full socket queue slows it rather than
//! losing lines. A run ends when the topic holds every line; lines per
//! second are counted from the first send to the last message's arrival,
//! CPU from the collector's /proc ticks.
//!
//! rsyslog parses the same lines (RFC 5424 header, structured data with
//! mmpstrucdata) into a JSON template and produces with omkafka. Debian's
//! librdkafka 2.0.2 cannot talk to tansu; `--rsyslog-librdkafka DIR` (or
//! `scripts/setup-logbench`) puts a newer librdkafka.so.1 first.

use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use weir_perf::accesslog::haproxy_lines;
use weir_perf::collectors::{metric_sum, process_cpu_s};
use weir_perf::flowgen::pin;

#[derive(Parser)]
#[command(name = "weir-logbench", about = "HAProxy access logs to Kafka: Weir next to rsyslog + omkafka")]
struct Args {
    /// Lines per collector.
    #[arg(long, default_value_t = 300_000)]
    lines: usize,
    #[arg(long, default_value_t = 1)]
    collector_cpu: usize,
    #[arg(long, default_value_t = 0)]
    sender_cpu: usize,
    /// The weir binary.
    #[arg(long, default_value = "target/release/weir")]
    weir: PathBuf,
    /// A directory holding a librdkafka.so.1 that works with tansu, for rsyslog.
    #[arg(long, default_value = "/usr/local/lib/weir-logbench")]
    rsyslog_librdkafka: PathBuf,
    /// Which collectors: weir, rsyslog.
    #[arg(long, value_delimiter = ',', default_value = "weir,rsyslog")]
    collectors: Vec<String>,
    /// Keep the work directory (configs, logs).
    #[arg(long)]
    keep: bool,
}

struct Result_ {
    name: String,
    lines: usize,
    seconds: f64,
    cpu_s: f64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("weir-logbench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("weir-logbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = free_port();
    let broker = Broker::start(port, &["weir", "weir-dead", "rsyslog"], args.sender_cpu)?;
    let lines = haproxy_lines(args.lines);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    eprintln!("{} lines, {:.0} bytes each on average", lines.len(), bytes as f64 / lines.len() as f64);
    pin(args.sender_cpu);
    let mut results = Vec::new();
    for name in &args.collectors {
        let socket = dir.join(format!("{name}.sock"));
        let (mut child, http) = match name.as_str() {
            "weir" => start_weir(args, &dir, &socket, port)?,
            "rsyslog" => (start_rsyslog(args, &dir, &socket, port)?, None),
            other => return Err(format!("unknown collector {other}")),
        };
        let topic = if name == "weir" { "weir" } else { "rsyslog" };
        let waited = wait_for_socket(&socket);
        let outcome = measure(name, &lines, &socket, &broker, topic, child.id(), http.as_deref(), waited);
        let _ = child.kill();
        let _ = child.wait();
        results.push(outcome?);
    }
    println!("| collector | lines | seconds | lines/s | CPU s | lines per CPU-second |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &results {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.0} |",
            r.name,
            r.lines,
            r.seconds,
            r.lines as f64 / r.seconds,
            r.cpu_s,
            r.lines as f64 / r.cpu_s
        );
    }
    if let [a, b] = &results[..] {
        let rate = (a.lines as f64 / a.seconds) / (b.lines as f64 / b.seconds);
        let per_cpu = (a.lines as f64 / a.cpu_s) / (b.lines as f64 / b.cpu_s);
        println!("\n{} / {}: {rate:.2}× lines/s, {per_cpu:.2}× lines per CPU-second", a.name, b.name);
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept {}", dir.display());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn measure(
    name: &str,
    lines: &[Vec<u8>],
    socket: &Path,
    broker: &Broker,
    topic: &str,
    pid: u32,
    http: Option<&str>,
    ready: bool,
) -> Result<Result_, String> {
    if !ready {
        return Err(format!("{name} never created {}", socket.display()));
    }
    // Counts on the sender's CPU while the lines go out, so the run ends
    // when the last message reaches the topic.
    let consumer = broker.consumer(topic)?;
    let want = lines.len();
    let counter = std::thread::spawn(move || {
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(180);
        while seen < want && Instant::now() < deadline {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                seen += 1;
            }
        }
        (seen, Instant::now())
    });
    let sender = UnixDatagram::unbound().map_err(|e| e.to_string())?;
    let cpu_before = process_cpu_s(pid);
    let start = Instant::now();
    for line in lines {
        sender.send_to(line, socket).map_err(|e| format!("send: {e}"))?;
    }
    let sent = start.elapsed();
    let (seen, end) = counter.join().map_err(|_| "the counting consumer panicked")?;
    let seconds = end.duration_since(start).as_secs_f64();
    let cpu_s = process_cpu_s(pid) - cpu_before;
    eprintln!("{name}: sent in {:.2} s, {seen} messages in {seconds:.2} s, {cpu_s:.2} CPU s", sent.as_secs_f64());
    if let Some(http) = http {
        eprintln!(
            "{name}: delivered {} parse errors {}",
            metric_sum(http, "weir_haproxy_messages_delivered_total"),
            metric_sum(http, "weir_haproxy_parse_errors_total")
        );
    }
    if seen < lines.len() {
        return Err(format!("{name}: only {seen} of {} lines reached the topic", lines.len()));
    }
    Ok(Result_ { name: name.to_string(), lines: lines.len(), seconds, cpu_s })
}

fn wait_for_socket(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if UnixDatagram::unbound().and_then(|s| s.connect(path)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn start_weir(args: &Args, dir: &Path, socket: &Path, port: u16) -> Result<(Child, Option<String>), String> {
    let http = format!("127.0.0.1:{}", free_port());
    let config = dir.join("weir.toml");
    let cpu = args.collector_cpu;
    std::fs::write(
        &config,
        format!(
            "listeners = []\n[shards]\ncontrol_core = {cpu}\n[http]\nlisten = \"{http}\"\n\
             [haproxy]\nenabled = true\nsocket = \"{}\"\ncore = {cpu}\n\
             [haproxy.kafka]\nbrokers = \"127.0.0.1:{port}\"\ntopic = \"weir\"\ndead_letter_topic = \"weir-dead\"\n",
            socket.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("weir.log")).map_err(|e| e.to_string())?;
    let child = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(&args.weir)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", args.weir.display()))?;
    Ok((child, Some(http)))
}

fn start_rsyslog(args: &Args, dir: &Path, socket: &Path, port: u16) -> Result<Child, String> {
    let work = dir.join("rsyslog");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let config = dir.join("rsyslog.conf");
    std::fs::write(
        &config,
        format!(
            r#"global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
module(load="mmpstrucdata")
module(load="omkafka")
input(type="imuxsock" Socket="{socket}" CreatePath="on" RateLimit.Interval="0" UseSpecialParser="off"
      ParseHostname="on" UseSysTimeStamp="off" ParseTrusted="off")
template(name="json" type="list" option.jsonf="on") {{
  property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
  property(outname="program" name="app-name" format="jsonf")
  property(outname="pid" name="procid" format="jsonf")
  property(outname="request" name="msg" format="jsonf")
  property(outname="sd" name="$!rfc5424-sd" format="jsonf")
}}
action(type="mmpstrucdata")
action(type="omkafka" broker=["127.0.0.1:{port}"] topic="rsyslog" template="json"
       confParam=["compression.codec=lz4", "acks=all", "enable.idempotence=true", "linger.ms=5"])
"#,
            work = work.display(),
            socket = socket.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("rsyslog.log")).map_err(|e| e.to_string())?;
    Command::new("taskset")
        .args(["-c", &args.collector_cpu.to_string()])
        .args(["rsyslogd", "-n", "-i"])
        .arg(dir.join("rsyslog.pid"))
        .arg("-f")
        .arg(&config)
        .env("LD_LIBRARY_PATH", &args.rsyslog_librdkafka)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("rsyslogd: {e}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(19092, |a| a.port())
}

struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(port: u16, topics: &[&str], sender_cpu: usize) -> Result<Broker, String> {
        let url = format!("tcp://127.0.0.1:{port}");
        // On the sender's CPU (the first one this process may use), away from the collector's.
        let child = Command::new("taskset")
            .args([
                "-c",
                &sender_cpu.to_string(),
                "tansu",
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("tansu (scripts/setup-tansu): {e}"))?;
        let broker = Broker { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("tansu did not listen".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for topic in topics {
            let out = Command::new("tansu")
                .args(["topic", "create", topic, "--partitions", "1", "--broker", &url])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("tansu topic create {topic}: {}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        Ok(broker)
    }

    fn consumer(&self, topic: &str) -> Result<BaseConsumer, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{}", self.port))
            .set("group.id", "weir-logbench")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| e.to_string())?;
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition_offset(topic, 0, Offset::Beginning).map_err(|e| e.to_string())?;
        consumer.assign(&partitions).map_err(|e| e.to_string())?;
        Ok(consumer)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

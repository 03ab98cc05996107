//! Receive-path benchmark: one sender blasting IPFIX datagrams over
//! loopback (sendmmsg, pinned to one CPU) against one receiver (pinned to
//! another) for a few seconds per mode:
//!
//! - `recvmmsg`: a bare recvmmsg loop with kernel timestamps, counting only
//!   (the ceiling);
//! - `glommio`: glommio's `UdpSocket::recv_from`, one datagram per call;
//! - `uring`: io_uring multishot recvmsg with a provided-buffer ring;
//! - `weir`: `weir run` itself (one shard, counting sink): receive, decode
//!   and count, read back from its /metrics;
//! - `store-embedded`, `store-remote`: `weir run` storing every flow, into
//!   chDB (libchdb.so) or a ClickHouse 18.16 server started by
//!   `scripts/clickhouse-server`. After sending, the run waits for the store
//!   to catch up, then reports rows stored per second, rows per CPU-second
//!   (weir, plus the server's for `store-remote`) and bytes per flow on disk.
//! - `store-cluster`: the same into the four-node 18.16 cluster of
//!   `scripts/clickhouse-cluster` (two shards of two replicas, ZooKeeper;
//!   `store.remote.cluster`), written on node 1; CPU counts weir, the four
//!   servers and ZooKeeper (the replicas fetch what node 1 wrote).
//!
//! Each line gives datagrams/s received, records/s (for `weir`), what the
//! sender managed, and datagrams per receiver CPU-second, the figure that
//! does not depend on how fast one sender can go.
//!
//! `cargo run --release -p weir-perf --bin receive -- [SECONDS] [MODE...]`
//! (run as root so the socket buffer can be forced; `weir` needs
//! `cargo build --release -p weir-shards` first.)

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_core::wire::template::Protocol;
use weir_perf::collectors::{http, metric_sum as scrape, process_cpu_s};
use weir_perf::flowgen::pin;
use weir_perf::traffic::{data_datagrams, template_datagram, FlowMix};

const BATCH: usize = 64;
const BUFFER_BYTES: usize = 2048;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut modes: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    if modes.is_empty() {
        modes = vec!["recvmmsg", "glommio", "uring", "weir"];
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (receiver_cpu, sender_cpu) = (0, if cpus > 1 { 1 } else { 0 });
    let mut mix = FlowMix::new(7);
    let (datagrams, records) = data_datagrams(Protocol::Ipfix, &mut mix, 256);
    let records_per_datagram = records as f64 / datagrams.len() as f64;
    println!(
        "# {cpus} CPUs; receiver on CPU {receiver_cpu}, sender on CPU {sender_cpu}; {seconds} s per mode; \
         IPFIX datagrams of {} bytes, {records_per_datagram:.1} records each",
        datagrams[0].len()
    );
    println!("| mode | received datagrams/s | records/s | sent datagrams/s | lost | datagrams per receiver CPU-s |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let (store_modes, modes): (Vec<&str>, Vec<&str>) = modes.into_iter().partition(|m| m.starts_with("store-"));
    for mode in modes {
        let r = measure(mode, seconds, receiver_cpu, sender_cpu, &datagrams);
        let (secs, cpu) = (r.seconds, r.receiver_cpu_s.max(1e-9));
        println!(
            "| {mode} | {:.0} | {} | {:.0} | {:.2} % | {:.0} |",
            r.received as f64 / secs,
            r.records.map_or("—".to_string(), |n| format!("{:.0}", n as f64 / secs)),
            r.sent as f64 / secs,
            100.0 * r.sent.saturating_sub(r.received) as f64 / r.sent.max(1) as f64,
            r.received as f64 / cpu
        );
    }
    // More distinct flows for the store, so bytes per flow on disk is not
    // flattered by a short repeating cycle (16384 datagrams, 377 k flows).
    if !store_modes.is_empty() {
        let (varied, _) = data_datagrams(Protocol::Ipfix, &mut mix, 16_384);
        store_table(&store_modes, seconds, (receiver_cpu, sender_cpu), &varied);
    }
}

fn store_table(store_modes: &[&str], seconds: u64, (receiver_cpu, sender_cpu): (usize, usize), datagrams: &[Vec<u8>]) {
    if !store_modes.is_empty() {
        println!(
            "\n| mode | decoded records/s | lost datagrams | stored rows/s | not stored | rows per CPU-s | bytes per flow on disk |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
    }
    for mode in store_modes {
        let r = measure_store(mode, seconds, receiver_cpu, sender_cpu, datagrams);
        println!(
            "| {mode} | {:.0} | {:.2} % | {:.0} | {} | {:.0} | {:.1} |",
            r.decoded as f64 / r.seconds,
            100.0 * r.sent.saturating_sub(r.received) as f64 / r.sent.max(1) as f64,
            r.stored as f64 / r.store_seconds,
            r.decoded.saturating_sub(r.stored),
            r.stored as f64 / r.cpu_s.max(1e-9),
            r.bytes_on_disk as f64 / r.stored.max(1) as f64
        );
    }
}

struct StoreOutcome {
    seconds: f64,
    sent: u64,
    received: u64,
    /// From the first datagram to the last row stored.
    store_seconds: f64,
    decoded: u64,
    stored: u64,
    cpu_s: f64,
    bytes_on_disk: u64,
}

/// Sends for `seconds`, then waits for the store to take every decoded flow.
fn measure_store(mode: &str, seconds: u64, rx_cpu: usize, tx_cpu: usize, datagrams: &[Vec<u8>]) -> StoreOutcome {
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("weir-store-bench-{mode}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut server_pids = Vec::new();
    let mut cluster = None;
    let mut raw_table = "flows";
    let store = match mode {
        "store-embedded" => {
            format!("kind = \"embedded\"\n[store.embedded]\npath = \"{}\"\n", dir.join("chdb").display())
        }
        "store-remote" => {
            let http = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/clickhouse-server");
            let out = std::process::Command::new(script)
                .arg(dir.join("clickhouse"))
                .args([http.to_string(), (http + 1).to_string()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            server_pids.extend(String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().ok());
            format!("kind = \"remote\"\n[store.remote]\nurl = \"http://127.0.0.1:{http}\"\n")
        }
        "store-cluster" => {
            let base = weir_perf::collectors::cluster_base_port();
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/clickhouse-cluster");
            let out = std::process::Command::new(script)
                .arg(dir.join("cluster"))
                .args([base.to_string(), "start".into()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            // `zookeeper PID` and `node N PID URL` lines.
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                let pid = if words[0] == "node" { words.get(2) } else { words.get(1) };
                server_pids.extend(pid.and_then(|p| p.parse::<u32>().ok()));
            }
            cluster = Some((script, dir.join("cluster"), base));
            raw_table = "flows_local";
            let node = |n: u16| format!("\"http://127.0.0.1:{}\"", base + 10 * n);
            format!(
                "kind = \"remote\"\n[store.remote]\nurl = {}\ncluster = \"weir\"\nfailover = [{}, {}, {}]\n",
                node(1),
                node(2),
                node(3),
                node(4)
            )
        }
        other => panic!("unknown mode {other}"),
    };
    let sink = format!("[sink]\nkind = \"store\"\n[store]\nspool_dir = \"{}\"\n{store}", dir.join("spool").display());
    let (mut child, metrics, cpu_before) = start_weir(port, rx_cpu, tx_cpu, &sink);
    let servers_cpu = || server_pids.iter().map(|p| process_cpu_s(*p)).sum::<f64>();
    let server_cpu_before = servers_cpu();
    let template = template_datagram(Protocol::Ipfix);
    let start = Instant::now();
    let sent = send_for(port, tx_cpu, Duration::from_secs(seconds), &template, datagrams);
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let decoded = scrape(&metrics, "weir_decode_flows_total");
    let received = scrape(&metrics, "weir_receive_datagrams_total");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stored = scrape(&metrics, "weir_store_rows_inserted_total");
    while stored < decoded && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        stored = scrape(&metrics, "weir_store_rows_inserted_total");
    }
    let store_seconds = start.elapsed().as_secs_f64();
    let cpu = process_cpu_s(child.id()) - cpu_before + servers_cpu() - server_cpu_before;
    let parts = query(
        &metrics,
        &format!(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'weir' AND table = '{raw_table}' AND active"
        ),
    );
    // SAFETY: plain syscalls on our child and the server we started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
        if cluster.is_none() {
            for pid in &server_pids {
                libc::kill(*pid as i32, libc::SIGTERM);
            }
        }
    }
    let _ = child.wait();
    if let Some((script, dir, base)) = cluster {
        let _ = std::process::Command::new(script).arg(dir).args([base.to_string(), "stop".into()]).output();
    }
    StoreOutcome {
        seconds: elapsed,
        sent,
        received,
        store_seconds,
        decoded,
        stored,
        cpu_s: cpu,
        bytes_on_disk: parts.trim().parse().unwrap_or(0),
    }
}

/// A query through the collector's `/query` endpoint (TabSeparated).
fn query(address: &str, sql: &str) -> String {
    http(address, "POST", "/query?format=TabSeparated", sql).map(|(_, body)| body).unwrap_or_default()
}

struct Outcome {
    seconds: f64,
    sent: u64,
    received: u64,
    records: Option<u64>,
    receiver_cpu_s: f64,
}

fn measure(mode: &str, seconds: u64, rx_cpu: usize, tx_cpu: usize, datagrams: &[Vec<u8>]) -> Outcome {
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let cpu_ns = Arc::new(AtomicU64::new(0));
    let mut weir = None;
    let receiver = match mode {
        "weir" => {
            weir = Some(start_weir(port, rx_cpu, tx_cpu, "[sink]\nkind = \"count\"\n"));
            None
        }
        _ => {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (stop, received, cpu_ns) = (stop.clone(), received.clone(), cpu_ns.clone());
            let mode = mode.to_string();
            let handle = std::thread::spawn(move || {
                pin(rx_cpu);
                let socket = weir_socket(port);
                ready_tx.send(()).unwrap();
                match mode.as_str() {
                    "recvmmsg" => recvmmsg_loop(&socket, &stop, &received),
                    "glommio" => glommio_loop(socket, &stop, &received),
                    "uring" => uring_loop(&socket, &stop, &received),
                    other => panic!("unknown mode {other}"),
                }
                cpu_ns.store(thread_cpu_ns(), Relaxed);
            });
            ready_rx.recv().unwrap();
            Some(handle)
        }
    };
    let template = template_datagram(Protocol::Ipfix);
    let start = Instant::now();
    let sent = send_for(port, tx_cpu, Duration::from_secs(seconds), &template, datagrams);
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Relaxed);
    if let Some(h) = receiver {
        // Wake a receiver blocked in its wait.
        let _ = UdpSocket::bind("127.0.0.1:0").unwrap().send_to(&[0], ("127.0.0.1", port));
        h.join().unwrap();
        let got = received.load(Relaxed);
        return Outcome {
            seconds: elapsed,
            sent,
            received: got,
            records: None,
            receiver_cpu_s: cpu_ns.load(Relaxed) as f64 / 1e9,
        };
    }
    let (mut child, metrics, cpu_before) = weir.unwrap();
    let datagrams = scrape(&metrics, "weir_receive_datagrams_total");
    let records = scrape(&metrics, "weir_decode_flows_total");
    let cpu = process_cpu_s(child.id()) - cpu_before;
    // SAFETY: plain syscall on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    Outcome { seconds: elapsed, sent, received: datagrams, records: Some(records), receiver_cpu_s: cpu }
}

/// A receive socket set up like a shard's: reuseport, timestamps, big buffer.
fn weir_socket(port: u16) -> UdpSocket {
    let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let fd = socket.as_raw_fd();
    for (name, value) in [(33, 32 << 20), (64, 1), (40, 1)] {
        // SO_RCVBUFFORCE, SO_TIMESTAMPNS_NEW, SO_RXQ_OVFL (as shards/src/socket.rs).
        // SAFETY: value outlives the call.
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, name, (&raw const value).cast(), 4) };
    }
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    socket
}

fn send_for(port: u16, cpu: usize, duration: Duration, template: &[u8], datagrams: &[Vec<u8>]) -> u64 {
    pin(cpu);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    socket.send(template).unwrap();
    // SAFETY (zeroed): plain C structs.
    let mut iovecs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let start = Instant::now();
    let (mut sent, mut next) = (1u64, 0usize);
    while start.elapsed() < duration {
        for i in 0..BATCH {
            let d = &datagrams[(next + i) % datagrams.len()];
            iovecs[i] = libc::iovec { iov_base: d.as_ptr() as *mut _, iov_len: d.len() };
            headers[i].msg_hdr.msg_iov = &raw mut iovecs[i];
            headers[i].msg_hdr.msg_iovlen = 1;
        }
        next += BATCH;
        // SAFETY: headers point at iovecs over live datagrams.
        let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
        }
    }
    sent
}

fn recvmmsg_loop(socket: &UdpSocket, stop: &AtomicBool, received: &AtomicU64) {
    let mut payloads = vec![0u8; BATCH * BUFFER_BYTES];
    let mut controls = vec![[0u64; 8]; BATCH];
    let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovecs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    for i in 0..BATCH {
        iovecs[i] = libc::iovec { iov_base: payloads[i * BUFFER_BYTES..].as_mut_ptr().cast(), iov_len: BUFFER_BYTES };
    }
    let mut total = 0u64;
    while !stop.load(Relaxed) {
        for i in 0..BATCH {
            let h = &mut headers[i].msg_hdr;
            h.msg_iov = &raw mut iovecs[i];
            h.msg_iovlen = 1;
            h.msg_name = (&raw mut names[i]).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_control = controls[i].as_mut_ptr().cast();
            h.msg_controllen = 64;
        }
        // Blocking until the first datagram (bounded by the read timeout).
        // SAFETY: all pointers are into live buffers of the declared sizes.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            total += n as u64;
        }
    }
    received.store(total, Relaxed);
}

fn glommio_loop(socket: UdpSocket, stop: &AtomicBool, received: &AtomicU64) {
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(512 << 10).make().unwrap();
    let total = ex.run(async move {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the fd moves from the std socket to glommio's whole.
        let socket = unsafe { glommio::net::UdpSocket::from_raw_fd(socket.into_raw_fd()) };
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = vec![0u8; BUFFER_BYTES];
        let mut total = 0u64;
        while !stop.load(Relaxed) {
            if socket.recv_from(&mut buf).await.is_ok() {
                total += 1;
            }
        }
        total
    });
    received.store(total, Relaxed);
}

fn uring_loop(socket: &UdpSocket, stop: &AtomicBool, received: &AtomicU64) {
    use io_uring::{cqueue, opcode, types, IoUring};
    const ENTRIES: u16 = 256;
    const GROUP: u16 = 7;
    let mut ring = IoUring::new(64).unwrap();
    // The provided-buffer ring: ENTRIES descriptors (16 bytes each, page
    // aligned), the tail in the last 2 bytes of the first descriptor.
    let layout = std::alloc::Layout::from_size_align(ENTRIES as usize * 16, 4096).unwrap();
    // SAFETY: non-zero size; freed never (the benchmark process ends).
    let ring_mem = unsafe { std::alloc::alloc_zeroed(layout) };
    let buffers = vec![0u8; ENTRIES as usize * BUFFER_BYTES];
    let entries = ring_mem.cast::<types::BufRingEntry>();
    let provide = |bid: u16, tail: u16| {
        // SAFETY: index masked into the ring; buffers outlive the ring's use.
        unsafe {
            let e = &mut *entries.add((tail & (ENTRIES - 1)) as usize);
            e.set_addr(buffers.as_ptr().add(bid as usize * BUFFER_BYTES) as u64);
            e.set_len(BUFFER_BYTES as u32);
            e.set_bid(bid);
        }
    };
    let mut tail: u16 = 0;
    for bid in 0..ENTRIES {
        provide(bid, tail);
        tail = tail.wrapping_add(1);
    }
    // SAFETY: tail pointer of the ring's first descriptor.
    let tail_ptr = unsafe { types::BufRingEntry::tail(entries) as *const std::sync::atomic::AtomicU16 };
    // SAFETY: as above; the kernel reads it with acquire semantics.
    unsafe { (*tail_ptr).store(tail, std::sync::atomic::Ordering::Release) };
    // SAFETY: ring memory stays allocated and page aligned.
    unsafe { ring.submitter().register_buf_ring_with_flags(ring_mem as u64, ENTRIES, GROUP, 0).unwrap() };
    let mut msghdr: libc::msghdr = unsafe { std::mem::zeroed() };
    msghdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
    msghdr.msg_controllen = 64;
    let arm = |ring: &mut IoUring| {
        let sqe = opcode::RecvMsgMulti::new(types::Fd(socket.as_raw_fd()), &raw const msghdr, GROUP).build();
        // SAFETY: msghdr lives for the whole loop.
        unsafe { ring.submission().push(&sqe).unwrap() };
    };
    arm(&mut ring);
    let mut total = 0u64;
    let timeout = types::Timespec::new().nsec(100_000_000);
    let args = types::SubmitArgs::new().timespec(&timeout);
    while !stop.load(Relaxed) {
        let _ = ring.submitter().submit_with_args(1, &args);
        let mut rearm = false;
        let mut recycled = Vec::new();
        for cqe in ring.completion() {
            if cqe.result() >= 0 {
                if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                    let buf = &buffers[bid as usize * BUFFER_BYTES..][..cqe.result() as usize];
                    if types::RecvMsgOut::parse(buf, &msghdr).is_ok() {
                        total += 1;
                    }
                    recycled.push(bid);
                }
            }
            // ENOBUFS or a finished multishot: arm again after recycling.
            if !cqueue::more(cqe.flags()) {
                rearm = true;
            }
        }
        for bid in recycled {
            provide(bid, tail);
            tail = tail.wrapping_add(1);
        }
        // SAFETY: as above.
        unsafe { (*tail_ptr).store(tail, std::sync::atomic::Ordering::Release) };
        if rearm {
            arm(&mut ring);
        }
    }
    received.store(total, Relaxed);
}

fn start_weir(port: u16, rx_cpu: usize, tx_cpu: usize, sink: &str) -> (std::process::Child, String, f64) {
    let dir = std::env::temp_dir().join(format!("weir-receive-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "[shards]\ncores = [{rx_cpu}]\ncontrol_core = {tx_cpu}\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n{sink}"
        ),
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap().with_file_name("weir");
    let mut child = std::process::Command::new(&exe)
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --release -p weir-shards)", exe.display()));
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut metrics = String::new();
    loop {
        let mut line = String::new();
        use std::io::BufRead;
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("weir run exited");
        }
        if let Some(rest) = line.split("http://").nth(1) {
            metrics = rest.trim().replace("/metrics", "");
        }
        if line.contains("ready") {
            break;
        }
    }
    // The rest of the log, kept for a look after the run.
    let mut log = std::fs::File::create(dir.join("weir.log")).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut log));
    let cpu = process_cpu_s(child.id());
    (child, metrics, cpu)
}

fn thread_cpu_ns() -> u64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: ts is valid for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

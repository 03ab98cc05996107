//! `weir-flowgen`: sends NetFlow v5, v9, IPFIX or sFlow v5 to a collector at
//! a target rate, from one or more exporters, and says what it sent.
//!
//! Each exporter is its own UDP socket (its own source port, and its own
//! source address when `source` is given) with its own sequence numbers and
//! observation domain. It encodes a pool of distinct datagrams from
//! `traffic::FlowMix` at start, then sends them round-robin with sendmmsg,
//! patching the header of each (export time, uptime, sequence number) just
//! before it leaves, so sending costs no encoding. NetFlow v9 / IPFIX
//! exporters send their templates and the sampling-rate options first and
//! again every `template_every`, as routers do.
//!
//! Rate: a pacer keeps the datagrams (or flows) sent at `rate × elapsed`,
//! sleeping when ahead and never bursting more than one batch to catch up.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::traffic::{
    exporter_datagram, exporter_templates, sequence_step, Exporter, FlowMix, Format, Generated, MixConfig,
};

/// What a rate counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Datagrams,
    Flows,
}

/// When to stop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    After(Duration),
    Count(Unit, u64),
}

/// A generator run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub format: Format,
    pub target: SocketAddr,
    /// Per second, in `unit`; `None` sends as fast as the sockets take.
    pub rate: Option<f64>,
    pub unit: Unit,
    pub stop: Stop,
    pub exporters: usize,
    /// First source address; exporter `i` binds `source + i`. `None` binds
    /// the wildcard address (exporters differ by source port only).
    pub source: Option<Ipv4Addr>,
    /// Flow records per datagram; `None` fills ~1400 bytes.
    pub records: Option<usize>,
    pub template_every: Duration,
    /// Distinct datagrams each exporter cycles through.
    pub pool: usize,
    /// Datagrams per sendmmsg.
    pub batch: usize,
    /// One sending thread per entry, pinned to that CPU when `Some`.
    pub threads: Vec<Option<usize>>,
    pub mix: MixConfig,
    pub seed: u64,
}

impl Plan {
    /// A plan with the defaults `weir-flowgen` uses.
    pub fn new(format: Format, target: SocketAddr) -> Self {
        Plan {
            format,
            target,
            rate: None,
            unit: Unit::Flows,
            stop: Stop::After(Duration::from_secs(10)),
            exporters: 1,
            source: None,
            records: None,
            template_every: Duration::from_secs(10),
            pool: 1024,
            batch: 32,
            threads: vec![None],
            mix: MixConfig::default(),
            seed: 1,
        }
    }
}

/// What a run sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    /// Data datagrams, and template datagrams on top.
    pub datagrams: u64,
    pub template_datagrams: u64,
    pub flows: u64,
    /// UDP payload bytes, templates included.
    pub bytes: u64,
    /// Sums of the flows' packet and byte counters (unsampled values).
    pub packets: u64,
    pub octets: u64,
    /// sendmmsg calls that failed (no listener, full buffers).
    pub errors: u64,
    pub seconds: f64,
}

impl Sent {
    fn add(&mut self, o: &Sent) {
        self.datagrams += o.datagrams;
        self.template_datagrams += o.template_datagrams;
        self.flows += o.flows;
        self.bytes += o.bytes;
        self.packets += o.packets;
        self.octets += o.octets;
        self.errors += o.errors;
        self.seconds = self.seconds.max(o.seconds);
    }

    pub fn summary(&self) -> String {
        let s = self.seconds.max(1e-9);
        format!(
            "sent {} datagrams (+{} template), {} flows, {} bytes in {:.2} s: {:.0} datagrams/s, {:.0} flows/s, \
             {:.1} Mbit/s; flows carry {} packets, {} bytes; {} send errors",
            self.datagrams,
            self.template_datagrams,
            self.flows,
            self.bytes,
            self.seconds,
            self.datagrams as f64 / s,
            self.flows as f64 / s,
            self.bytes as f64 * 8.0 / s / 1e6,
            self.packets,
            self.octets,
            self.errors
        )
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"datagrams\":{},\"template_datagrams\":{},\"flows\":{},\"bytes\":{},\"packets\":{},\"octets\":{},\
             \"errors\":{},\"seconds\":{:.6}}}",
            self.datagrams,
            self.template_datagrams,
            self.flows,
            self.bytes,
            self.packets,
            self.octets,
            self.errors,
            self.seconds
        )
    }
}

/// Header offsets patched before each send.
struct Patch {
    uptime: Option<usize>,
    export_time: Option<usize>,
    sequence: usize,
}

impl Patch {
    fn of(format: Format) -> Patch {
        match format {
            Format::NetflowV5 => Patch { uptime: Some(4), export_time: Some(8), sequence: 16 },
            Format::NetflowV9 => Patch { uptime: Some(4), export_time: Some(8), sequence: 12 },
            Format::Ipfix => Patch { uptime: None, export_time: Some(4), sequence: 8 },
            // IPv4 agent address: version, address type, address, sub-agent.
            Format::SflowV5 => Patch { uptime: Some(20), export_time: None, sequence: 16 },
        }
    }
}

/// One exporter: its socket, its pool and its counters.
struct Source {
    socket: UdpSocket,
    exporter: Exporter,
    pool: Vec<Generated>,
    next: usize,
    /// Next header sequence number (datagrams for v9 and sFlow, flows for
    /// v5, data records for IPFIX).
    sequence: u32,
    templates_due: Instant,
    sampling_rate: u64,
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Builds exporter `i`'s socket and pool.
fn source(plan: &Plan, i: usize, started: Instant) -> Result<Source, String> {
    let bind = match plan.source {
        Some(a) => SocketAddr::from((Ipv4Addr::from(u32::from(a).wrapping_add(i as u32)), 0)),
        None if plan.target.is_ipv6() => "[::]:0".parse().expect("literal"),
        None => "0.0.0.0:0".parse().expect("literal"),
    };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("cannot bind {bind}: {e}"))?;
    socket.connect(plan.target).map_err(|e| format!("cannot connect to {}: {e}", plan.target))?;
    let bytes = 8i32 << 20;
    // SAFETY: the value outlives the call. SO_SNDBUFFORCE when root, else
    // the (capped) SO_SNDBUF.
    unsafe {
        let fd = socket.as_raw_fd();
        let v = (&raw const bytes).cast();
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v, 4) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, v, 4);
        }
    }
    let now_s = unix_now().as_secs() as u32;
    let exporter = Exporter {
        format: plan.format,
        domain: i as u32 + 1,
        agent: match plan.source {
            Some(a) => (u32::from(a).wrapping_add(i as u32)).to_be_bytes(),
            None => (0xc000_0201u32 + i as u32).to_be_bytes(), // 192.0.2.1 + i
        },
        export_time_s: now_s,
        uptime_ms: 86_400_000,
        records: plan.records,
    };
    let mut mix = FlowMix::with_config(
        plan.seed.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64),
        MixConfig { now_s, ..plan.mix.clone() },
    );
    let pool: Vec<Generated> =
        (0..plan.pool.max(plan.batch).max(1)).map(|_| exporter_datagram(&exporter, &mut mix, 0)).collect();
    if pool.iter().any(|g| g.bytes.len() > 65_507) {
        return Err("a datagram would exceed 65 507 bytes: fewer records per datagram".into());
    }
    Ok(Source {
        socket,
        exporter,
        pool,
        next: 0,
        sequence: 0,
        templates_due: started,
        sampling_rate: plan.mix.sampling_rate,
    })
}

/// Sends per `plan` and returns what was sent. Stops early when `stop`
/// becomes true.
pub fn run(plan: &Plan, stop: &AtomicBool) -> Result<Sent, String> {
    let threads = plan.threads.len().max(1);
    if plan.exporters < threads {
        return Err(format!("{} exporters cannot feed {threads} threads", plan.exporters));
    }
    let started = Instant::now();
    let mut groups: Vec<Vec<Source>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..plan.exporters {
        groups[i % threads].push(source(plan, i, started)?);
    }
    let share = |n: u64, t: usize| n / threads as u64 + u64::from((t as u64) < n % threads as u64);
    let mut total = Sent::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(t, sources)| {
                let cpu = plan.threads.get(t).copied().flatten();
                let stop_at = match plan.stop {
                    Stop::After(d) => Stop::After(d),
                    Stop::Count(unit, n) => Stop::Count(unit, share(n, t)),
                };
                let rate = plan.rate.map(|r| r / threads as f64);
                scope.spawn(move || {
                    if let Some(cpu) = cpu {
                        pin(cpu);
                    }
                    send_loop(plan, sources, rate, stop_at, stop)
                })
            })
            .collect();
        for h in handles {
            total.add(&h.join().expect("sender thread"));
        }
    });
    Ok(total)
}

fn send_loop(plan: &Plan, mut sources: Vec<Source>, rate: Option<f64>, stop_at: Stop, stop: &AtomicBool) -> Sent {
    let batch = plan.batch.max(1);
    let patch = Patch::of(plan.format);
    let wall0 = unix_now();
    let start = Instant::now();
    let mut sent = Sent::default();
    // SAFETY (zeroed): plain C structs.
    let mut iovecs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; batch];
    let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; batch];
    let mut picked: Vec<usize> = Vec::with_capacity(batch);
    let mut turn = 0usize;
    loop {
        let elapsed = start.elapsed();
        let done = match stop_at {
            Stop::After(d) => elapsed >= d,
            Stop::Count(Unit::Datagrams, n) => sent.datagrams >= n,
            Stop::Count(Unit::Flows, n) => sent.flows >= n,
        };
        if done || stop.load(Relaxed) {
            break;
        }
        let counted = |s: &Sent| match plan.unit {
            Unit::Datagrams => s.datagrams as f64,
            Unit::Flows => s.flows as f64,
        };
        if let Some(rate) = rate {
            let ahead = counted(&sent) / rate - elapsed.as_secs_f64();
            if ahead > 0.0 {
                if ahead > 0.000_2 {
                    std::thread::sleep(Duration::from_secs_f64(ahead.min(0.05)));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
        }
        let count = sources.len();
        let s = &mut sources[turn % count];
        turn += 1;
        let now = Instant::now();
        let clock = wall0 + now.duration_since(start);
        let uptime = s.exporter.uptime_ms.wrapping_add(now.duration_since(start).as_millis() as u32);
        if now >= s.templates_due {
            s.templates_due = now + plan.template_every;
            let mut e = s.exporter;
            e.export_time_s = clock.as_secs() as u32;
            e.uptime_ms = uptime;
            if let Some(t) = exporter_templates(&e, s.sampling_rate, s.sequence) {
                match s.socket.send(&t) {
                    Ok(n) => {
                        sent.template_datagrams += 1;
                        sent.bytes += n as u64;
                        if plan.format == Format::NetflowV9 {
                            s.sequence = s.sequence.wrapping_add(1);
                        }
                    }
                    Err(_) => sent.errors += 1,
                }
            }
        }
        // How many this batch may take without passing a count.
        let room = match stop_at {
            Stop::Count(Unit::Datagrams, n) => n.saturating_sub(sent.datagrams) as usize,
            _ => usize::MAX,
        };
        picked.clear();
        let mut flows_room = match stop_at {
            Stop::Count(Unit::Flows, n) => n.saturating_sub(sent.flows),
            _ => u64::MAX,
        };
        while picked.len() < batch.min(room) && flows_room > 0 {
            let i = s.next;
            s.next = (s.next + 1) % s.pool.len();
            let seq = s.sequence;
            let g = &mut s.pool[i];
            put32(&mut g.bytes, patch.sequence, seq);
            if let Some(at) = patch.uptime {
                put32(&mut g.bytes, at, uptime);
            }
            if let Some(at) = patch.export_time {
                put32(&mut g.bytes, at, clock.as_secs() as u32);
            }
            if plan.format == Format::NetflowV5 {
                put32(&mut g.bytes, 12, clock.subsec_nanos());
            }
            flows_room = flows_room.saturating_sub(g.flows as u64);
            iovecs[picked.len()] = libc::iovec { iov_base: g.bytes.as_ptr() as *mut _, iov_len: g.bytes.len() };
            s.sequence = seq.wrapping_add(sequence_step(plan.format, g.flows));
            picked.push(i);
        }
        for (k, h) in headers.iter_mut().enumerate().take(picked.len()) {
            h.msg_hdr.msg_iov = &raw mut iovecs[k];
            h.msg_hdr.msg_iovlen = 1;
        }
        let fd = s.socket.as_raw_fd();
        let mut off = 0;
        while off < picked.len() {
            // SAFETY: headers point at iovecs over live pool buffers.
            let n = unsafe { libc::sendmmsg(fd, headers[off..].as_mut_ptr(), (picked.len() - off) as u32, 0) };
            if n <= 0 {
                sent.errors += 1;
                break;
            }
            for &i in &picked[off..off + n as usize] {
                let g = &s.pool[i];
                sent.datagrams += 1;
                sent.flows += g.flows as u64;
                sent.bytes += g.bytes.len() as u64;
                sent.packets += g.packets;
                sent.octets += g.octets;
            }
            off += n as usize;
        }
        // Datagrams that did not leave give their sequence numbers back.
        for &i in picked[off..].iter().rev() {
            s.sequence = s.sequence.wrapping_sub(sequence_step(plan.format, s.pool[i].flows));
        }
    }
    sent.seconds = start.elapsed().as_secs_f64();
    sent
}

fn put32(bytes: &mut [u8], at: usize, v: u32) {
    if let Some(b) = bytes.get_mut(at..at + 4) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Parses a count or rate with an optional k/M/G suffix ("500k", "2.5M").
pub fn parse_amount(s: &str) -> Result<f64, String> {
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('M') => (&s[..s.len() - 1], 1e6),
        Some('G') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * mult)
        .ok_or_else(|| format!("{s}: not an amount (e.g. 500k, 2M)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{flow::addr_from_v4, Datagram, Decoder, FlowRecord};

    /// Receives what a plan sends on a local socket and decodes it.
    fn capture(format: Format, tweak: impl FnOnce(&mut Plan)) -> (Sent, Decoder, u64, u64) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut plan = Plan::new(format, rx.local_addr().unwrap());
        plan.pool = 8;
        plan.batch = 4;
        tweak(&mut plan);
        let sent = run(&plan, &AtomicBool::new(false)).unwrap();
        let mut decoder = Decoder::default();
        let (mut buf, mut datagrams, mut packets) = (vec![0u8; 65_536], 0, 0);
        while let Ok(n) = rx.recv(&mut buf) {
            let d = Datagram {
                exporter: addr_from_v4([127, 0, 0, 1]),
                received_ns: 1,
                payload: &buf[..n],
                ..Default::default()
            };
            decoder.decode(&d, &mut |f: &FlowRecord| packets += f.packets).unwrap();
            datagrams += 1;
        }
        (sent, decoder, datagrams, packets)
    }

    #[test]
    fn every_format_arrives_whole_and_decodes() {
        for format in Format::ALL {
            let (sent, decoder, datagrams, packets) = capture(format, |p| p.stop = Stop::Count(Unit::Datagrams, 20));
            assert_eq!(sent.datagrams, 20, "{format:?}");
            assert_eq!(datagrams, sent.datagrams + sent.template_datagrams, "{format:?}");
            assert_eq!(decoder.counters().flows, sent.flows, "{format:?}");
            assert_eq!(decoder.counters().errors_total(), 0, "{format:?}");
            assert_eq!(packets, sent.packets, "{format:?}");
            let expect_templates = u64::from(format.templated().is_some());
            assert_eq!(sent.template_datagrams, expect_templates, "{format:?}: templates first");
        }
    }

    #[test]
    fn counts_and_records_per_datagram_are_honoured() {
        let (sent, decoder, datagrams, _) = capture(Format::Ipfix, |p| {
            p.records = Some(5);
            p.exporters = 3;
            p.stop = Stop::Count(Unit::Flows, 52);
        });
        // 11 datagrams of 5 reach 52 flows; each of 3 exporters announced its templates.
        assert_eq!((sent.flows, sent.datagrams, sent.template_datagrams), (55, 11, 3));
        assert_eq!(datagrams, 14);
        assert_eq!(decoder.counters().flows, 55);
    }

    #[test]
    fn the_rate_is_kept() {
        let (sent, ..) = capture(Format::NetflowV9, |p| {
            p.rate = Some(2_000.0);
            p.unit = Unit::Datagrams;
            p.stop = Stop::After(Duration::from_millis(500));
        });
        assert!((900..=1_100).contains(&sent.datagrams), "{}", sent.summary());
    }

    #[test]
    fn templates_are_refreshed() {
        let (sent, ..) = capture(Format::Ipfix, |p| {
            p.rate = Some(1_000.0);
            p.unit = Unit::Datagrams;
            p.template_every = Duration::from_millis(100);
            p.stop = Stop::After(Duration::from_millis(450));
        });
        assert!((4..=6).contains(&sent.template_datagrams), "{}", sent.summary());
    }

    #[test]
    fn amounts_parse() {
        assert_eq!(parse_amount("500k").unwrap(), 500_000.0);
        assert_eq!(parse_amount("2.5M").unwrap(), 2_500_000.0);
        assert_eq!(parse_amount("12").unwrap(), 12.0);
        assert!(parse_amount("fast").is_err());
        assert!(parse_amount("-1").is_err());
    }
}

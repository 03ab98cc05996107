//! The receive path's counters: each shard owns one `ShardMetrics`, counts
//! in plain integers on its own thread and publishes them with relaxed
//! atomic stores after every receive batch; the scrape sums the shards.
//! Two per-shard families (`weir_shard_datagrams_total`,
//! `weir_shard_flows_total`) show how the load spreads.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use serde_json::{Map, Value};
use weir_core::{DecodeCounters, Reason};

use crate::ops::exposition::{counter, counter_by, gauge_by, Exported};
use crate::ops::health::Probe;

/// Why a received datagram was dropped before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveDrop {
    /// Longer than `shards.datagram_bytes_max` (cut by the kernel).
    TooLong,
}

impl ReceiveDrop {
    pub const ALL: [ReceiveDrop; 1] = [ReceiveDrop::TooLong];
    pub fn label(self) -> &'static str {
        match self {
            ReceiveDrop::TooLong => "too_long",
        }
    }
}

/// One socket of one shard.
#[derive(Default)]
pub struct SocketMetrics {
    /// Cumulative kernel drops of the socket (SO_RXQ_OVFL).
    pub kernel_drops: AtomicU64,
    /// SO_RCVBUF as granted.
    pub buffer_bytes: AtomicU64,
}

/// One shard's counters; written by the shard only.
#[derive(Default)]
pub struct ShardMetrics {
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    pub receive_drops: [AtomicU64; ReceiveDrop::ALL.len()],
    pub receive_errors: AtomicU64,
    pub timestamp_fallbacks: AtomicU64,
    pub flows: AtomicU64,
    pub templates: AtomicU64,
    pub pending_queued: AtomicU64,
    pub pending_decoded: AtomicU64,
    pub pending_dropped: AtomicU64,
    pub decode_errors: [AtomicU64; Reason::ALL.len()],
    pub updates_sent: AtomicU64,
    pub updates_dropped: AtomicU64,
    pub updates_applied: AtomicU64,
    pub sink_flows: AtomicU64,
    /// Housekeeping ticks: stops moving when the shard is wedged (`probes`).
    pub heartbeats: AtomicU64,
    /// One per listener, in config order.
    pub sockets: Vec<SocketMetrics>,
}

impl ShardMetrics {
    pub fn new(listeners: usize) -> Self {
        ShardMetrics { sockets: (0..listeners).map(|_| SocketMetrics::default()).collect(), ..Default::default() }
    }

    /// Publishes the decoder's counters (owned by the shard's decoder).
    pub fn publish_decoder(&self, c: &DecodeCounters) {
        self.flows.store(c.flows, Relaxed);
        self.templates.store(c.templates, Relaxed);
        self.pending_queued.store(c.pending_queued, Relaxed);
        self.pending_decoded.store(c.pending_decoded, Relaxed);
        self.pending_dropped.store(c.pending_dropped, Relaxed);
        for (a, v) in self.decode_errors.iter().zip(c.errors) {
            a.store(v, Relaxed);
        }
    }
}

/// Every shard's counters, and the listeners they receive on.
pub struct ReceiveMetrics {
    pub listeners: Vec<String>,
    pub cores: Vec<usize>,
    pub shards: Vec<Arc<ShardMetrics>>,
    /// Per listener: 1 when the eBPF balancer is attached, 0 on the kernel hash.
    pub ebpf_active: Vec<AtomicU64>,
}

impl ReceiveMetrics {
    pub fn new(listeners: Vec<String>, cores: Vec<usize>) -> Self {
        let shards = cores.iter().map(|_| Arc::new(ShardMetrics::new(listeners.len()))).collect();
        let ebpf_active = listeners.iter().map(|_| AtomicU64::new(0)).collect();
        ReceiveMetrics { listeners, cores, shards, ebpf_active }
    }

    /// Flows the shards decoded.
    pub fn flows(&self) -> u64 {
        self.shards.iter().map(|s| s.flows.load(Relaxed)).sum()
    }

    /// One heartbeat per shard for the health watch.
    pub fn probes(&self) -> Vec<Probe> {
        let shard = |(i, s): (usize, &Arc<ShardMetrics>)| {
            let s = s.clone();
            Probe::heartbeat(format!("shard {i}"), move || s.heartbeats.load(Relaxed))
        };
        self.shards.iter().enumerate().map(shard).collect()
    }

    /// Per configured listener, summed over the shards' sockets.
    fn encode_listeners(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let per_listener = |get: fn(&SocketMetrics) -> u64, fold: fn(u64, u64) -> u64, start: u64| {
            (0..self.listeners.len())
                .map(|l| (self.listeners[l].as_str(), self.shards.iter().map(|s| get(&s.sockets[l])).fold(start, fold)))
                .collect::<Vec<_>>()
        };
        let drops = per_listener(|s| s.kernel_drops.load(Relaxed), u64::saturating_add, 0);
        let help = "Datagrams the kernel dropped on a full socket buffer (SO_RXQ_OVFL).";
        counter_by(e, "weir_receive_kernel_drops", help, "listener", &drops)?;
        // Every shard's socket of a listener asks for the same size; the
        // smallest grant is the one that drops first.
        let buffers = per_listener(|s| s.buffer_bytes.load(Relaxed), u64::min, u64::MAX);
        let help = "Smallest socket receive buffer the kernel granted to the listener's sockets (SO_RCVBUF).";
        gauge_by(e, "weir_receive_socket_buffer_bytes", help, "listener", &buffers)?;
        let ebpf: Vec<_> =
            self.listeners.iter().zip(&self.ebpf_active).map(|(l, a)| (l.as_str(), a.load(Relaxed))).collect();
        let help = "1: the eBPF round-robin balancer is attached; 0: kernel hash.";
        gauge_by(e, "weir_receive_balancer_ebpf", help, "listener", &ebpf)
    }
}

/// Counter names are given without `_total`: the encoder appends it.
type Get = fn(&ShardMetrics) -> &AtomicU64;
const SUMMED: [(&str, &str, Get); 13] = [
    ("weir_receive_datagrams", "Datagrams received.", |m| &m.datagrams),
    ("weir_receive_bytes", "UDP payload bytes received.", |m| &m.bytes),
    ("weir_receive_errors", "Receive calls that failed.", |m| &m.receive_errors),
    ("weir_receive_timestamp_fallbacks", "Datagrams without a kernel timestamp (the clock was read instead).", |m| {
        &m.timestamp_fallbacks
    }),
    ("weir_decode_flows", "Flows decoded.", |m| &m.flows),
    ("weir_decode_templates", "Template records accepted.", |m| &m.templates),
    ("weir_decode_pending_queued", "Data sets parked to wait for their template.", |m| &m.pending_queued),
    ("weir_decode_pending_decoded", "Parked data sets decoded once their template came.", |m| &m.pending_decoded),
    ("weir_decode_pending_drops", "Parked data sets given up on (also counted as template_missing).", |m| {
        &m.pending_dropped
    }),
    ("weir_shard_state_updates_sent", "Template and sampling-rate updates sent to the other shards.", |m| {
        &m.updates_sent
    }),
    ("weir_shard_state_updates_dropped", "Updates not delivered: a shard's inbox was full.", |m| &m.updates_dropped),
    ("weir_shard_state_updates_applied", "Updates from other shards applied.", |m| &m.updates_applied),
    ("weir_sink_flows", "Flows handed to the sink.", |m| &m.sink_flows),
];

const PER_SHARD: [(&str, &str, Get); 2] = [
    ("weir_shard_datagrams", "Datagrams received, per shard.", |m| &m.datagrams),
    ("weir_shard_flows", "Flows decoded, per shard.", |m| &m.flows),
];

impl Exported for ReceiveMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let sum = |get: &dyn Fn(&ShardMetrics) -> u64| self.shards.iter().map(|s| get(s)).sum::<u64>();
        for (name, help, get) in SUMMED {
            counter(e, name, help, sum(&|s| get(s).load(Relaxed)))?;
        }
        for (name, help, get) in PER_SHARD {
            let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (i, s) in self.shards.iter().enumerate() {
                let labels = [("shard", i.to_string()), ("core", self.cores[i].to_string())];
                family.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&get(s).load(Relaxed), None)?;
            }
        }
        let reasons = Reason::ALL.map(|r| (r.label(), sum(&|s| s.decode_errors[r as usize].load(Relaxed))));
        let help = "Datagrams, sets or samples not decoded, by reason.";
        counter_by(e, "weir_decode_errors", help, "reason", &reasons)?;
        let drops = ReceiveDrop::ALL.map(|r| (r.label(), sum(&|s| s.receive_drops[r as usize].load(Relaxed))));
        counter_by(e, "weir_receive_drops", "Datagrams dropped before decoding, by reason.", "reason", &drops)?;
        self.encode_listeners(e)
    }

    fn memory(&self, weir: &mut Map<String, Value>) {
        let socket_buffers: u64 =
            self.shards.iter().flat_map(|s| s.sockets.iter()).map(|s| s.buffer_bytes.load(Relaxed)).sum();
        weir.insert("shards".into(), self.shards.len().into());
        weir.insert("socket_receive_buffers_bytes".into(), socket_buffers.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exposition::{prometheus_text, render, Exposition};

    fn scrape(m: ReceiveMetrics) -> String {
        let mut exposition = Exposition::default();
        exposition.register(Arc::new(m));
        render(&exposition.registry())
    }

    #[test]
    fn shards_are_summed_and_the_per_shard_families_keep_them_apart() {
        let m = ReceiveMetrics::new(vec!["[::]:2055".into(), "[::]:6343".into()], vec![2, 3]);
        m.shards[0].datagrams.store(5, Relaxed);
        m.shards[1].datagrams.store(7, Relaxed);
        m.shards[1].decode_errors[Reason::ALL[0] as usize].store(4, Relaxed);
        m.shards[0].sockets[1].kernel_drops.store(2, Relaxed);
        m.shards[1].sockets[1].kernel_drops.store(3, Relaxed);
        m.shards[0].sockets[0].buffer_bytes.store(4096, Relaxed);
        m.shards[1].sockets[0].buffer_bytes.store(8192, Relaxed);
        let text = scrape(m);
        assert!(text.contains("\nweir_receive_datagrams_total 12\n"), "{text}");
        assert!(text.contains("weir_shard_datagrams_total{shard=\"0\",core=\"2\"} 5\n"), "{text}");
        assert!(text.contains("weir_shard_datagrams_total{shard=\"1\",core=\"3\"} 7\n"), "{text}");
        let reason = Reason::ALL[0].label();
        assert!(text.contains(&format!("weir_decode_errors_total{{reason=\"{reason}\"}} 4\n")), "{text}");
        assert!(text.contains("weir_receive_kernel_drops_total{listener=\"[::]:6343\"} 5\n"), "{text}");
        assert!(text.contains("weir_receive_socket_buffer_bytes{listener=\"[::]:2055\"} 4096\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let old = prometheus_text(&text);
        assert!(old.starts_with(
            "# HELP weir_receive_datagrams_total Datagrams received.\n\
             # TYPE weir_receive_datagrams_total counter\nweir_receive_datagrams_total 12\n"
        ));
        assert!(old.contains("# HELP weir_receive_balancer_ebpf 1: the eBPF"));
        assert!(old.contains("# TYPE weir_receive_balancer_ebpf gauge\n"));
        assert!(!old.contains("# EOF"));
    }

    #[test]
    fn every_reason_is_present_before_it_happens() {
        let text = scrape(ReceiveMetrics::new(vec!["[::]:2055".into()], vec![0]));
        for r in Reason::ALL {
            assert!(text.contains(&format!("weir_decode_errors_total{{reason=\"{}\"}} 0\n", r.label())), "{text}");
        }
        assert!(text.contains("weir_receive_drops_total{reason=\"too_long\"} 0\n"));
        assert!(text.contains("process_cpu_seconds_total "));
    }
}

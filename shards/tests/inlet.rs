//! `weir inlet` against tansu (a Kafka-protocol broker): every datagram
//! becomes one record on its shard's partition, in arrival order; with the
//! broker paused the shards spill to disk and replay, nothing lost; keyed
//! by exporter, an exporter's records share a partition.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::UdpSocket;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{numbered_v5_from, temp_dir, two_shards, wait_until, write_config, Collector};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_core::rawflow::{RawFlow, VERSION};

/// tansu with in-memory storage.
struct Broker {
    child: Child,
    address: String,
}

impl Broker {
    fn start(topics: &[(&str, usize)]) -> Broker {
        let (child, address) = weir_perf::collectors::start_tansu(topics, None).unwrap();
        Broker { child, address }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Every record of `topic`'s `partitions`, from the start, until `want`
    /// distinct payloads have come or `wait` has passed: (partition, key,
    /// record). A record the broker stored twice is returned twice.
    fn consume(&self, topic: &str, partitions: i32, want: usize, wait: Duration) -> Vec<(i32, Vec<u8>, RawFlow)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("group.id", "weir-inlet-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut out = Vec::new();
        let mut distinct = BTreeSet::new();
        let deadline = Instant::now() + wait;
        while distinct.len() < want && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let mut record = RawFlow::default();
                record.read(m.payload().unwrap_or_default()).expect("a RawFlow record");
                distinct.insert(record.payload.clone());
                out.push((m.partition(), m.key().unwrap_or_default().to_vec(), record));
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The v5 sequence number a numbered datagram carries.
fn sequence(record: &RawFlow) -> u32 {
    u32::from_be_bytes(record.payload[16..20].try_into().unwrap())
}

/// Sends `count` numbered datagrams (30 flows each) from each sender,
/// alternating, 300 µs apart; returns the payloads sent.
fn send(senders: &[UdpSocket], port: u16, first: u32, count: u32) -> BTreeSet<Vec<u8>> {
    let mut sent = BTreeSet::new();
    for i in 0..count {
        for (k, s) in senders.iter().enumerate() {
            let source = [10, 0, 0, k as u8 + 1];
            let d = numbered_v5_from((first + i) * 30 * senders.len() as u32 + k as u32 * 30, source);
            s.send_to(&d, ("127.0.0.1", port)).unwrap();
            sent.insert(d);
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    sent
}

fn inlet_config(dir: &std::path::Path, port: u16, broker: &Broker, kafka: &str) -> std::path::PathBuf {
    let body = format!(
        "{}[run]\ndrain_timeout_ms = 1000\n[kafka]\nbrokers = \"{}\"\nspill_dir = \"{}\"\n{kafka}",
        two_shards(port, "ebpf"),
        broker.address,
        dir.join("spill").display()
    );
    write_config(dir, "inlet.toml", &body)
}

#[test]
fn each_datagram_is_one_record_on_its_shards_partition_and_an_outage_spills_and_replays() {
    let broker = Broker::start(&[("flows-v1", 2)]);
    let dir = temp_dir("inlet");
    let port = common::free_udp_port();
    // A small producer queue, so that the paused broker makes the shards spill.
    let config = inlet_config(&dir, port, &broker, "queue_messages_max = 40\nbackpressure_wait_ms = 5\n");
    let c = Collector::start_as("inlet", &config, &[]);
    let senders: Vec<UdpSocket> = ["127.0.0.1:0", "127.0.0.2:0"].iter().map(|a| UdpSocket::bind(a).unwrap()).collect();
    let mut sent = send(&senders, port, 0, 200);
    wait_until("400 records delivered", Duration::from_secs(30), || {
        c.metric("weir_inlet_records_delivered_total", "").iter().sum::<u64>() >= 400
    });
    // The broker stops answering: the queue fills, then the spill.
    broker.signal(libc::SIGSTOP);
    sent.extend(send(&senders, port, 200, 300));
    wait_until("records spilled", Duration::from_secs(20), || {
        c.metric("weir_inlet_records_spilled_total", "").iter().sum::<u64>() > 0
    });
    let spill: u64 = c.metric("weir_inlet_spill_bytes", "").iter().sum();
    std::thread::sleep(Duration::from_secs(2));
    broker.signal(libc::SIGCONT);
    wait_until("1000 records delivered", Duration::from_secs(120), || {
        c.metric("weir_inlet_records_delivered_total", "").iter().sum::<u64>() >= 1000
    });
    wait_until("the spill emptied", Duration::from_secs(20), || {
        c.metric("weir_inlet_spill_bytes", "").iter().sum::<u64>() == 0
    });
    let replayed: u64 = c.metric("weir_inlet_records_replayed_total", "").iter().sum();
    let spilled: u64 = c.metric("weir_inlet_records_spilled_total", "").iter().sum();
    assert!(
        spill > 0 && replayed == spilled && spilled > 0,
        "spill {spill} bytes, {spilled} spilled, {replayed} replayed"
    );
    for reason in ["spill_full", "queue_full", "spill_error", "refused", "stopped", "torn"] {
        assert_eq!(c.metric("weir_inlet_records_dropped_total", &format!("\"{reason}\"")), [0], "{reason}");
    }
    assert_eq!(c.metric("weir_inlet_delivery_errors_total", ""), [0]);
    c.assert_promtool_is_silent();
    c.stop();

    let records = broker.consume("flows-v1", 2, 1000, Duration::from_secs(30));
    assert_eq!(records.len(), 1000);
    let got: BTreeSet<Vec<u8>> = records.iter().map(|r| r.2.payload.clone()).collect();
    assert_eq!(got.len(), 1000, "no record twice");
    assert_eq!(got, sent, "every datagram, unchanged");
    // Each shard to its own partition, in the order it received them (each
    // sender's numbers grow; the balancer spread every sender over both).
    let mut last: BTreeMap<(i32, Vec<u8>), u32> = BTreeMap::new();
    let mut partitions = BTreeSet::new();
    for (partition, key, r) in &records {
        assert!(key.is_empty(), "no key when partitioned by shard");
        assert_eq!((r.shard as i32, r.version), (*partition, VERSION));
        assert_eq!(r.exporter[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert!(r.exporter[12..] == [127, 0, 0, 1] || r.exporter[12..] == [127, 0, 0, 2]);
        assert!(r.received_ns > 1_700_000_000_000_000_000);
        let n = sequence(r);
        if let Some(before) = last.insert((*partition, r.exporter.clone()), n) {
            assert!(n > before, "partition {partition}: {n} after {before}");
        }
        partitions.insert(*partition);
    }
    assert_eq!(partitions.len(), 2, "both shards produced");
}

#[test]
fn keyed_by_exporter_an_exporters_records_share_a_partition() {
    let broker = Broker::start(&[("keyed-v1", 2)]);
    let dir = temp_dir("inlet-keyed");
    let port = common::free_udp_port();
    let config =
        inlet_config(&dir, port, &broker, "topic = \"keyed\"\npartitioning = \"exporter\"\ncompression = \"zstd\"\n");
    let c = Collector::start_as("inlet", &config, &[]);
    let senders: Vec<UdpSocket> = ["127.0.0.1:0", "127.0.0.2:0"].iter().map(|a| UdpSocket::bind(a).unwrap()).collect();
    let sent = send(&senders, port, 0, 100);
    wait_until("200 records delivered", Duration::from_secs(30), || {
        c.metric("weir_inlet_records_delivered_total", "").iter().sum::<u64>() >= 200
    });
    c.stop();
    // Every record at least once, on its exporter's partition. (Under load,
    // one clean run read 200 records holding 100 payloads, so this reads
    // until 200 distinct ones: a produce sent again or a fetch repeated;
    // the spill test above checks the no-duplicate case.)
    let records = broker.consume("keyed-v1", 2, 200, Duration::from_secs(60));
    let got: BTreeSet<Vec<u8>> = records.iter().map(|r| r.2.payload.clone()).collect();
    if got != sent {
        // Say which went missing (by sequence number) and what each
        // partition gave, not two sets of 200 datagrams.
        let sequences = |set: &BTreeSet<Vec<u8>>| -> Vec<u32> {
            set.iter().map(|p| u32::from_be_bytes(p[16..20].try_into().unwrap())).collect()
        };
        let missing: BTreeSet<Vec<u8>> = sent.difference(&got).cloned().collect();
        let extra: BTreeSet<Vec<u8>> = got.difference(&sent).cloned().collect();
        let mut per_partition = BTreeMap::<i32, usize>::new();
        records.iter().for_each(|r| *per_partition.entry(r.0).or_default() += 1);
        panic!(
            "{} records read ({per_partition:?} per partition), {} of {} payloads; missing sequences {:?}, \
             unexpected {:?}",
            records.len(),
            got.len(),
            sent.len(),
            sequences(&missing),
            sequences(&extra)
        );
    }
    let mut partition_of: BTreeMap<Vec<u8>, BTreeSet<i32>> = BTreeMap::new();
    for (partition, key, r) in &records {
        assert_eq!(key, &r.exporter, "the key is the exporter");
        partition_of.entry(key.clone()).or_default().insert(*partition);
    }
    assert_eq!(partition_of.len(), 2);
    assert!(partition_of.values().all(|p| p.len() == 1), "{partition_of:?}");
}

#[test]
fn a_stop_while_the_broker_is_away_keeps_every_record_for_the_next_start() {
    let broker = Broker::start(&[("flows-v1", 2)]);
    let dir = temp_dir("inlet-restart");
    let port = common::free_udp_port();
    let config = inlet_config(&dir, port, &broker, "queue_messages_max = 40\nbackpressure_wait_ms = 5\n");
    let c = Collector::start_as("inlet", &config, &[]);
    let senders: Vec<UdpSocket> = ["127.0.0.1:0", "127.0.0.2:0"].iter().map(|a| UdpSocket::bind(a).unwrap()).collect();
    let mut sent = send(&senders, port, 0, 25);
    wait_until("50 records delivered", Duration::from_secs(30), || {
        c.metric("weir_inlet_records_delivered_total", "").iter().sum::<u64>() >= 50
    });
    broker.signal(libc::SIGSTOP);
    sent.extend(send(&senders, port, 25, 200));
    wait_until("records spilled", Duration::from_secs(20), || {
        c.metric("weir_inlet_records_spilled_total", "").iter().sum::<u64>() > 0
    });
    // Stopped with records in the producers and the spill: both stay on disk.
    let mut c = c;
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(c.child.id() as i32, libc::SIGTERM) };
    let said = c.log_lines(Duration::from_secs(3));
    assert!(c.child.wait().unwrap().success());
    assert!(!said.iter().any(|l| l.contains("not delivered at stop:") && l.contains("ERROR")), "{said:?}");
    assert!(said.iter().any(|l| l.contains("kept in the spill")), "{said:?}");
    broker.signal(libc::SIGCONT);
    // The next start sends them first.
    let c = Collector::start_as("inlet", &config, &[]);
    wait_until("the spills left on disk replayed", Duration::from_secs(30), || {
        c.metric("weir_inlet_records_replayed_total", "").iter().sum::<u64>() > 0
    });
    wait_until("the spills emptied", Duration::from_secs(60), || {
        c.metric("weir_inlet_spill_bytes", "").iter().sum::<u64>() == 0
            && c.metric("weir_inlet_producer_queue_messages", "").iter().sum::<u64>() == 0
    });
    c.stop();
    let records = broker.consume("flows-v1", 2, 600, Duration::from_secs(10));
    let got: BTreeSet<Vec<u8>> = records.iter().map(|r| r.2.payload.clone()).collect();
    assert_eq!(got, sent, "every datagram, at least once");
    // Only records in flight at the stop may come twice.
    assert!(records.len() - got.len() <= 2 * 40, "{} duplicates", records.len() - got.len());
}

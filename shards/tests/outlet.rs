//! `weir inlet` → tansu → `weir outlet` → ClickHouse 18.16: two inlets
//! produce numbered flows to a 4-partition topic, keyed by exporter; two
//! outlets in one group share the partitions and store them. In the steady
//! state every flow is stored exactly once; with the store down the lag
//! grows and nothing is lost; an outlet killed mid-batch gives its
//! partitions to the other, every flow stored at least once.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use common::{query, temp_dir, wait_until, write_config, Collector, Server};

struct Broker {
    child: Child,
    address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One shard per inlet, keyed by exporter: each partition has one producer
/// (tansu's memory store loses or reorders a batch now and then when two
/// producers append to one partition at once; a Kafka broker does not).
fn inlet_config(dir: &Path, name: &str, port: u16, broker: &Broker) -> PathBuf {
    let control = if common::cpus() > 1 { 1 } else { 0 };
    let body = format!(
        "[shards]\ncores = [0]\ncontrol_core = {control}\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
         [run]\ndrain_timeout_ms = 2000\n[kafka]\nbrokers = \"{}\"\npartitioning = \"exporter\"\nspill_dir = \"{}\"\n",
        broker.address,
        dir.join(format!("{name}-spill")).display()
    );
    write_config(dir, &format!("{name}.toml"), &body)
}

fn outlet_config(dir: &Path, name: &str, core: usize, broker: &Broker, server: &Server) -> PathBuf {
    let control = if common::cpus() > 1 { 1 } else { 0 };
    let body = format!(
        "[shards]\ncores = [{core}]\ncontrol_core = {control}\n[run]\ndrain_timeout_ms = 10000\n\
         [sink]\nkind = \"store\"\n[store]\nkind = \"remote\"\nspool_dir = \"{spool}\"\nflush_interval_ms = 200\n\
         consolidation_interval_ms = 500\nretry_backoff_max_ms = 1000\n[store.remote]\nurl = \"{url}\"\n\
         [kafka]\nbrokers = \"{brokers}\"\n[kafka.outlet]\nsession_timeout_ms = 3000\nbatches_in_flight_max = 8\n\
         [kafka.enriched]\ntopic = \"flows-enriched\"\ncreate_partitions = 2\n",
        spool = dir.join(format!("{name}-spool")).display(),
        url = server.url(),
        brokers = broker.address,
    );
    write_config(dir, &format!("{name}.toml"), &body)
}

/// CRC-32 (IEEE), librdkafka's partitioner on a key.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Eight exporters on loopback addresses, two per partition: sender k
/// goes to inlet k % 2, and inlet 0's exporters fall on partitions 0 and
/// 1, inlet 1's on 2 and 3.
fn senders() -> Vec<UdpSocket> {
    let partition = |k: u8| {
        let mut key = [0u8; 16];
        key[10..12].copy_from_slice(&[0xff, 0xff]);
        key[12..].copy_from_slice(&[127, 0, 0, k]);
        crc32(&key) % 4
    };
    let mut picked = Vec::new();
    for want in [0, 2, 0, 2, 1, 3, 1, 3] {
        let k = (1..=254u8).find(|&k| partition(k) == want && !picked.contains(&k)).unwrap();
        picked.push(k);
    }
    picked.iter().map(|k| UdpSocket::bind(format!("127.0.0.{k}:0")).unwrap()).collect()
}

/// Sends `count` datagrams of 30 numbered flows from each of the senders,
/// round robin, numbers from `first` up, about 2 000 datagrams/s in all.
/// Returns the flows sent.
fn send(senders: &[UdpSocket], ports: &[u16], first: u32, count: u32) -> u64 {
    for i in 0..count {
        for (k, s) in senders.iter().enumerate() {
            let n = (first + i) * senders.len() as u32 + k as u32;
            let d = common::numbered_v5_from(n * 30, [10, 0, 0, k as u8 + 1]);
            s.send_to(&d, ("127.0.0.1", ports[k % ports.len()])).unwrap();
        }
        std::thread::sleep(Duration::from_micros(4_000));
    }
    count as u64 * senders.len() as u64 * 30
}

/// Distinct flow numbers and rows stored.
fn stored(config: &Path) -> (u64, u64) {
    let text = query(config, None, "SELECT uniqExact(SrcPort + 65536 * DstPort), count() FROM weir.flows");
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Partitions of the enriched topic (`flows-enriched-<hash>`), asked
/// without creating anything.
fn enriched_partitions(brokers: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let topic = metadata.topics().iter().find(|t| t.name().starts_with("flows-enriched-")).expect("the enriched topic");
    topic.partitions().len()
}

/// Records in `flows-v1`'s 4 partitions, read from the start by a
/// consumer of its own.
fn topic_records(brokers: &str, watch: &[u32]) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "weir-outlet-test-count")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..4 {
        list.add_partition_offset("flows-v1", p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut n = 0;
    let mut idle = 0;
    while idle < 10 {
        match consumer.poll(Duration::from_millis(300)) {
            Some(Ok(m)) => {
                n += 1;
                use rdkafka::Message;
                let mut r = weir_core::rawflow::RawFlow::default();
                if r.read(m.payload().unwrap_or_default()).is_ok() && r.payload.len() > 60 {
                    let src = u16::from_be_bytes([r.payload[24 + 32], r.payload[24 + 33]]) as u32;
                    let dst = u16::from_be_bytes([r.payload[24 + 34], r.payload[24 + 35]]) as u32;
                    if watch.contains(&((src + 65536 * dst) / 30)) {
                        eprintln!(
                            "datagram {} is at partition {} offset {}",
                            (src + 65536 * dst) / 30,
                            m.partition(),
                            m.offset()
                        );
                    }
                }
            }
            _ => idle += 1,
        }
    }
    n
}

/// Waits until `weir.flows` holds `want` distinct flows; on a timeout,
/// fails with what each outlet consumed and stored.
fn wait_stored(
    config: &Path,
    want: u64,
    within: Duration,
    outlets: &[&Collector],
    inlets: &[Collector],
    brokers: &str,
) {
    let deadline = std::time::Instant::now() + within;
    while stored(config).0 < want {
        if std::time::Instant::now() > deadline {
            let seen: Vec<String> = outlets
                .iter()
                .map(|c| {
                    let m = |name: &str| c.metric(name, "").iter().sum::<u64>();
                    format!(
                        "records {} consume errors {} pauses {} flows {} rows inserted {} partitions {} in flight {} lag {}",
                        m("weir_outlet_records_total"),
                        m("weir_outlet_consume_errors_total"),
                        m("weir_outlet_pauses_total"),
                        m("weir_decode_flows_total"),
                        m("weir_store_rows_inserted_total"),
                        m("weir_outlet_partitions"),
                        m("weir_outlet_batches_in_flight"),
                        m("weir_outlet_consumer_lag_records"),
                    )
                })
                .collect();
            let fed: Vec<String> = inlets
                .iter()
                .map(|c| {
                    let m = |name: &str| c.metric(name, "").iter().sum::<u64>();
                    format!(
                        "datagrams {} kernel drops {} records {} delivered {}",
                        m("weir_receive_datagrams_total"),
                        m("weir_receive_kernel_drops_total"),
                        m("weir_inlet_records_total"),
                        m("weir_inlet_records_delivered_total"),
                    )
                })
                .collect();
            // The datagrams (flow number / 30) that miss flows.
            let missing = query(
                config,
                None,
                &format!(
                    "SELECT arrayFilter(x -> NOT has(seen, x), range({})) \
                     FROM (SELECT groupUniqArray(intDiv(SrcPort + 65536 * DstPort, 30)) AS seen FROM weir.flows)",
                    want / 30
                ),
            );
            let missing_list: Vec<u32> = missing
                .trim()
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .filter_map(|x| x.trim().parse().ok())
                .collect();
            panic!(
                "stored {:?} of {want} flows; datagrams missing {missing}; outlets: {seen:?}; inlets: {fed:?}; \
                 {} records in the topic",
                stored(config),
                topic_records(brokers, &missing_list)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lag(c: &Collector) -> u64 {
    c.metric("weir_outlet_consumer_lag_records", "").iter().sum()
}

#[test]
fn inlets_to_outlets_store_every_flow_through_an_outage_and_a_killed_outlet() {
    let dir = temp_dir("outlet");
    let (child, address) = weir_perf::collectors::start_tansu(&[("flows-v1", 4)], None).unwrap();
    let broker = Broker { child, address };
    let server = Server::start(&dir.join("clickhouse"));
    let ports = [common::free_udp_port(), common::free_udp_port()];
    let inlets: Vec<Collector> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| Collector::start_as("inlet", &inlet_config(&dir, &format!("inlet{i}"), port, &broker), &[]))
        .collect();
    let a_config = outlet_config(&dir, "outlet-a", 0, &broker, &server);
    let mut a = Collector::start_as("outlet", &a_config, &[]);
    wait_until("A owns the 4 partitions", Duration::from_secs(60), || a.metric("weir_outlet_partitions", "")[0] == 4);
    // Eight exporters over the two inlets, keyed by exporter over the 4 partitions.
    let senders = senders();

    // B joins while A consumes: A hands its batch over, waits for the
    // store and commits before the partitions move, so every flow is
    // still stored exactly once.
    let sending = {
        let senders: Vec<UdpSocket> = senders.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || send(&senders, &ports, 0, 500))
    };
    std::thread::sleep(Duration::from_millis(500));
    let b = Collector::start_as("outlet", &outlet_config(&dir, "outlet-b", 1, &broker, &server), &[]);
    wait_until("the outlets share the 4 partitions", Duration::from_secs(60), || {
        let (pa, pb) = (a.metric("weir_outlet_partitions", "")[0], b.metric("weir_outlet_partitions", "")[0]);
        pa + pb == 4 && pa > 0 && pb > 0
    });
    let mut sent = sending.join().unwrap();
    assert!(a.metric("weir_outlet_partitions_revoked_total", "")[0] > 0, "A gave partitions up");
    wait_stored(&a_config, sent, Duration::from_secs(60), &[&a, &b], &inlets, &broker.address);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stored(&a_config), (sent, sent), "every flow once");
    let records: u64 = [&a, &b].iter().map(|c| c.metric("weir_outlet_records_total", "")[0]).sum();
    assert_eq!(records, 500 * 8, "one record per datagram");
    // The enriched output: each flow handed to the store once, produced once,
    // to the topic the first outlet created.
    wait_until("every enriched flow delivered", Duration::from_secs(30), || {
        [&a, &b].iter().map(|c| c.metric("weir_enriched_flows_delivered_total", "")[0]).sum::<u64>() >= sent
    });
    let enriched: u64 = [&a, &b].iter().map(|c| c.metric("weir_enriched_flows_delivered_total", "")[0]).sum();
    assert_eq!(enriched, sent);
    assert_eq!(enriched_partitions(&broker.address), 2, "created with kafka.enriched.create_partitions");
    wait_until("the lag drains to 0", Duration::from_secs(20), || lag(&a) + lag(&b) == 0);
    let commits: u64 = [&a, &b].iter().map(|c| c.metric("weir_outlet_commits_total", "")[0]).sum();
    assert!(commits > 0, "offsets committed");
    eprintln!(
        "records: A {}, B {}",
        a.metric("weir_outlet_records_total", "")[0],
        b.metric("weir_outlet_records_total", "")[0]
    );
    for c in [&a, &b] {
        assert_eq!(c.metric("weir_outlet_records_skipped_total", "").iter().sum::<u64>(), 0);
        c.assert_promtool_is_silent();
    }

    // The store down for 30 s: the outlets pause, the lag grows, nothing is lost.
    let mut server = server;
    server.stop();
    sent += send(&senders, &ports, 500, 250);
    std::thread::sleep(Duration::from_secs(5));
    let behind = lag(&a) + lag(&b);
    assert!(behind > 0, "lag while the store is down");
    std::thread::sleep(Duration::from_secs(25));
    server.restart();
    wait_stored(&a_config, sent, Duration::from_secs(90), &[&a, &b], &inlets, &broker.address);
    wait_until("the lag drains after the outage", Duration::from_secs(30), || lag(&a) + lag(&b) == 0);
    let (distinct, rows) = stored(&a_config);
    assert_eq!(distinct, sent, "every flow after the outage");
    // An insert the server took but never acknowledged comes back (at least once).
    assert!(rows - distinct <= 2 * 8 * 30 * 100, "{} duplicates", rows - distinct);

    // Outlet A killed mid-stream: B takes its partitions, every flow at least once.
    let (distinct_before, rows_before) = stored(&a_config);
    let sending = {
        let senders: Vec<UdpSocket> = senders.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || send(&senders, &ports, 750, 500))
    };
    std::thread::sleep(Duration::from_secs(1));
    a.child.kill().unwrap();
    let _ = a.child.wait();
    sent += sending.join().unwrap();
    wait_until("B owns all 4 partitions", Duration::from_secs(60), || b.metric("weir_outlet_partitions", "")[0] == 4);
    wait_stored(&a_config, sent, Duration::from_secs(90), &[&b], &inlets, &broker.address);
    let (distinct, rows) = stored(&a_config);
    assert_eq!(distinct, sent, "every flow at least once");
    // Duplicates: what A had stored without its offsets committed (at most
    // its batches in flight and a commit interval's worth).
    let duplicates = (rows - distinct) - (rows_before - distinct_before);
    assert!(duplicates <= 500 * 8 * 30, "{duplicates} duplicates");
    wait_until("B's lag drains", Duration::from_secs(30), || lag(&b) == 0);
    b.assert_promtool_is_silent();
    b.stop();
    for c in inlets {
        assert_eq!(c.metric("weir_inlet_records_dropped_total", "").iter().sum::<u64>(), 0);
        c.stop();
    }
}

/// librdkafka's mock cluster (in this process, on loopback ports) for what
/// tansu cannot do: offset commits that fail. Two partitions of numbered
/// records, with two that are not datagrams in partition 0; the outlet's
/// first commits fail. Every flow is stored once, the bad records are
/// counted and skipped, the commits land in the end, and a restarted
/// outlet reads nothing again.
#[test]
fn failed_commits_and_records_that_are_not_datagrams_neither_lose_nor_repeat_flows() {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseRecord, Producer};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use weir_core::rawflow::RawFlow;

    let dir = temp_dir("outlet-mock");
    let (cluster, brokers, producer) = mock_cluster(2);
    let mut bytes = Vec::new();
    let (per_partition, mut flows) = (200u32, 0u64);
    for i in 0..per_partition {
        for partition in 0..2 {
            let payload = common::numbered_v5_from((i * 2 + partition) * 30, [10, 0, 0, partition as u8 + 1]);
            produce_datagram(&producer, &payload, partition as u8 + 1, Some(partition as i32));
            flows += 30;
            if i == 100 && partition == 0 {
                // Not protobuf; then an exporter of 3 bytes.
                let junk = BaseRecord::<(), [u8]>::to("flows-v1").partition(0).payload(&b"not a record"[..]);
                producer.send(junk).map_err(|(e, _)| e).unwrap();
                let short = RawFlow { exporter: vec![1, 2, 3], payload: payload.clone(), ..RawFlow::default() };
                short.write(&mut bytes);
                let r = BaseRecord::<(), [u8]>::to("flows-v1").partition(0).payload(&bytes[..]);
                producer.send(r).map_err(|(e, _)| e).unwrap();
            }
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    // The first offset commits fail.
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 4];
    cluster.request_errors(RDKafkaApiKey::OffsetCommit, &errors);

    let body = format!(
        "[shards]\ncores = [0]\n[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\nspool_dir = \"{spool}\"\n\
         flush_interval_ms = 200\nconsolidation_interval_ms = 500\n[store.embedded]\npath = \"{chdb}\"\n\
         [kafka]\nbrokers = \"{brokers}\"\n[kafka.outlet]\nsession_timeout_ms = 6000\n",
        spool = dir.join("spool").display(),
        chdb = dir.join("chdb").display(),
    );
    let config = write_config(&dir, "outlet.toml", &body);
    let c = Collector::start_as("outlet", &config, &[]);
    let records = u64::from(per_partition) * 2 + 2;
    wait_until("every record consumed", Duration::from_secs(60), || {
        c.metric("weir_outlet_records_total", "")[0] >= records
    });
    wait_until("every flow stored", Duration::from_secs(60), || {
        c.metric("weir_store_rows_inserted_total", "")[0] >= flows
    });
    assert_eq!(c.metric("weir_outlet_records_skipped_total", "\"malformed\""), [1]);
    assert_eq!(c.metric("weir_outlet_records_skipped_total", "\"exporter\""), [1]);
    wait_until("commits land after the failures", Duration::from_secs(30), || {
        c.metric("weir_outlet_commits_total", "")[0] > 0
            && c.metric("weir_outlet_consumer_lag_records", "").iter().sum::<u64>() == 0
    });
    let failed = c.metric("weir_outlet_commit_errors_total", "")[0];
    c.assert_promtool_is_silent();
    c.stop();

    // The group's committed offsets are the partitions' ends.
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", "weir-outlet").create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition("flows-v1", 0);
    list.add_partition("flows-v1", 1);
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
    let offsets: Vec<_> = committed.elements().iter().map(|e| e.offset()).collect();
    let ends = [i64::from(per_partition) + 2, i64::from(per_partition)];
    assert_eq!(offsets, ends.map(rdkafka::Offset::Offset), "{failed} commits failed on the way");
    drop(consumer);

    // A restart reads nothing again.
    let c = Collector::start_as("outlet", &config, &[]);
    wait_until("partitions assigned again", Duration::from_secs(60), || c.metric("weir_outlet_partitions", "")[0] == 2);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.metric("weir_outlet_records_total", ""), [0]);
    let stored =
        query(&config, Some(&c.metrics), "SELECT uniqExact(SrcPort + 65536 * DstPort), count() FROM weir.flows");
    assert_eq!(stored.split_whitespace().collect::<Vec<_>>(), [flows.to_string(), flows.to_string()]);
    c.stop();
}

/// librdkafka's mock cluster (in this process, on loopback ports) with
/// `flows-v1` of `partitions` and the outlets' state topic made beforehand
/// (it has no CreateTopics), its address, and a producer to it.
fn mock_cluster(
    partitions: i32,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
    rdkafka::producer::BaseProducer,
) {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("flows-v1", partitions, 1).unwrap();
    cluster.create_topic("flows-state-v1", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer = rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    (cluster, brokers, producer)
}

/// Produces `payload` as received from exporter 127.0.0.`exporter` to
/// `flows-v1`, as an inlet would: to `partition`, or where the producer
/// puts it.
fn produce_datagram(producer: &rdkafka::producer::BaseProducer, payload: &[u8], exporter: u8, partition: Option<i32>) {
    use rdkafka::producer::BaseRecord;
    let d = weir_core::Datagram {
        exporter: weir_core::flow::addr_from_v4([127, 0, 0, exporter]),
        received_ns: 1_800_000_000_000_000_000,
        payload,
        options: Default::default(),
    };
    let mut record = weir_core::rawflow::RawFlow::default();
    record.set(&d, 0);
    let mut bytes = Vec::new();
    record.write(&mut bytes);
    let mut r = BaseRecord::<(), [u8]>::to("flows-v1").payload(&bytes[..]);
    if let Some(p) = partition {
        r = r.partition(p);
    }
    producer.send(r).map_err(|(e, _)| e).unwrap();
    producer.poll(Duration::ZERO);
}

/// Splits a record of length-delimited messages.
fn delimited(mut s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (mut len, mut at) = (0usize, 0);
        loop {
            let b = s[at];
            len |= usize::from(b & 0x7f) << (7 * at);
            at += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        out.push(&s[at..at + len]);
        s = &s[at + len..];
    }
    out
}

/// The enriched output, through librdkafka's mock cluster: the outlet
/// names the topic after the schema it serves at /api/v0/schema.proto (the
/// mock cluster makes it on the producer's first request; the tansu test
/// has the outlets create it); every stored flow comes out once, enriched
/// (the exporter's and interface's names), as protoc reads the served
/// schema.
#[test]
fn enriched_flows_go_to_the_schemas_topic_as_protoc_reads_them() {
    use prost::Message;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::Producer;
    use weir_core::flowproto::FlowProto;
    use weir_core::schema::stored_columns;

    /// Ports and names, numbered as the schema numbers their columns.
    #[derive(Clone, PartialEq, Message)]
    struct Ports {
        #[prost(uint32, tag = "21")]
        src_port: u32,
        #[prost(uint32, tag = "22")]
        dst_port: u32,
        #[prost(string, tag = "58")]
        exporter_name: String,
    }

    let dir = temp_dir("outlet-enriched");
    let (_cluster, brokers, producer) = mock_cluster(1);
    let datagrams = 40u32;
    for i in 0..datagrams {
        let payload = common::numbered_v5_through(i * 30, [10, 0, 0, 1], (17, 3));
        produce_datagram(&producer, &payload, 1, None);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let flows = u64::from(datagrams) * 30;

    let body = format!(
        "[shards]\ncores = [0]\n[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\nspool_dir = \"{spool}\"\n\
         flush_interval_ms = 200\nconsolidation_interval_ms = 500\n[store.embedded]\npath = \"{chdb}\"\n\
         [[metadata.exporters]]\nsubnet = \"127.0.0.1\"\nname = \"edge1-par\"\n\
         [metadata.exporters.interfaces]\n\"17\" = {{ name = \"et-17\", boundary = \"external\" }}\n\
         [kafka]\nbrokers = \"{brokers}\"\n[kafka.outlet]\nsession_timeout_ms = 6000\n\
         [kafka.enriched]\ntopic = \"flows-enriched\"\nrecord_bytes_max = 4096\nlinger_ms = 5\n",
        spool = dir.join("spool").display(),
        chdb = dir.join("chdb").display(),
    );
    let config = write_config(&dir, "outlet.toml", &body);
    let c = Collector::start_as("outlet", &config, &[]);
    wait_until("every flow stored and produced", Duration::from_secs(60), || {
        c.metric("weir_store_rows_inserted_total", "")[0] >= flows
            && c.metric("weir_enriched_flows_delivered_total", "")[0] >= flows
    });
    // The served schema is the one the store's columns make, and names the topic.
    let parsed = weir_core::config::Config::parse(&body).unwrap();
    let proto = FlowProto::new(&stored_columns(&parsed.store.schema_settings()));
    let served = c.get("/api/v0/schema.proto");
    assert_eq!(served, proto.text());
    assert!(c.get("/api/v0/rawflow.proto").contains("message RawFlow"));
    let topic = proto.topic("flows-enriched");
    assert_eq!(c.metric("weir_enriched_flows_dropped_total", "").iter().sum::<u64>(), 0);
    c.assert_promtool_is_silent();
    c.stop();

    // Every record of the topic's two partitions.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "enriched-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut messages = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (messages as u64) < flows && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            use rdkafka::Message as _;
            let payload = m.payload().unwrap_or_default().to_vec();
            messages += delimited(&payload).len();
            records.push(payload);
        }
    }
    assert!(records.len() > 1, "cut at kafka.enriched.record_bytes_max");
    let all: Vec<&[u8]> = records.iter().flat_map(|r| delimited(r)).collect();
    assert_eq!(all.len() as u64, flows);
    let mut numbers: Vec<u32> = all
        .iter()
        .map(|m| {
            let p = Ports::decode(*m).unwrap();
            assert_eq!(p.exporter_name, "edge1-par");
            p.src_port + 65_536 * p.dst_port
        })
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len() as u64, flows, "each flow once");

    // protoc reads the schema and decodes a message with it.
    std::fs::write(dir.join("schema.proto"), &served).unwrap();
    let mut protoc = std::process::Command::new("protoc")
        .args(["--decode=weir.FlowMessage", "-I"])
        .arg(&dir)
        .arg(dir.join("schema.proto"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("protoc (scripts/setup installs protobuf-compiler)");
    use std::io::Write as _;
    protoc.stdin.take().unwrap().write_all(all[0]).unwrap();
    let out = protoc.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in ["ExporterName: \"edge1-par\"", "InIfName: \"et-17\"", "InIfBoundary: external", "Proto: 17"] {
        assert!(text.contains(want), "{want} in {text}");
    }
    assert!(text.contains("InIfIndex: 17") && text.contains("OutIfIndex: 3"), "{text}");
}

/// A rebalance while the store holds an insert in flight, on librdkafka's
/// mock cluster: outlet A has consumed both partitions and its batches wait
/// on a ClickHouse that is frozen (SIGSTOP), when outlet B joins. A's
/// revocation hands its batch over and waits for the store — the insert in
/// flight is not cancelled, and B gets no partition meanwhile — then
/// stores and commits; once the store wakes the partitions move, and every
/// flow is stored exactly once.
#[test]
fn a_rebalance_during_a_flush_waits_for_the_insert_in_flight_and_loses_nothing() {
    use rdkafka::producer::Producer;

    let dir = temp_dir("outlet-rebalance");
    let (_cluster, brokers, producer) = mock_cluster(2);
    let server = Server::start(&dir.join("clickhouse"));
    // `count` records of 30 numbered flows to each partition, numbers from `first` up.
    let produce = |first: u32, count: u32| -> u64 {
        for i in first..first + count {
            for partition in 0..2u8 {
                let payload = common::numbered_v5_from((i * 2 + u32::from(partition)) * 30, [10, 0, 0, partition + 1]);
                produce_datagram(&producer, &payload, partition + 1, Some(i32::from(partition)));
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        u64::from(count) * 2 * 30
    };
    // The mock's coordinator waits one session timeout less a second for
    // members to rejoin (a broker waits max.poll.interval.ms, which the
    // outlet sets past revoke_wait_ms), and refuses a follower's SyncGroup
    // that comes after the leader's: the follower rejoins at once and the
    // mock refuses commits until the group is back. Were A the follower it
    // would not rejoin before its revocation ends (the store frozen), nor
    // could it commit at the end of it, and B would read partition 0
    // again. So B leads (the mock elects the least `group.instance.id`):
    // B's SyncGroup, after the assignor's run, comes after A's.
    let config = |name: &str, core: usize, member: &str| {
        let control = if common::cpus() > 1 { 1 } else { 0 };
        let body = format!(
            "[shards]\ncores = [{core}]\ncontrol_core = {control}\n[run]\ndrain_timeout_ms = 10000\n\
             [sink]\nkind = \"store\"\n[store]\nkind = \"remote\"\nspool_dir = \"{spool}\"\nflush_interval_ms = 200\n\
             consolidation_interval_ms = 500\nretry_backoff_max_ms = 1000\n[store.remote]\nurl = \"{url}\"\n\
             timeout_ms = 60000\n[kafka]\nbrokers = \"{brokers}\"\n[kafka.outlet]\nsession_timeout_ms = 15000\n\
             revoke_wait_ms = 60000\n[kafka.outlet.options]\n\"group.instance.id\" = \"{member}\"\n",
            spool = dir.join(format!("{name}-spool")).display(),
            url = server.url(),
        );
        write_config(&dir, &format!("{name}.toml"), &body)
    };

    let mut sent = produce(0, 100);
    let a_config = config("outlet-a", 0, "owner");
    let mut a = Collector::start_as("outlet", &a_config, &[]);
    wait_until("A owns both partitions", Duration::from_secs(60), || a.metric("weir_outlet_partitions", "")[0] == 2);
    wait_until("the first flows stored", Duration::from_secs(60), || stored(&a_config).1 >= sent);

    // The store frozen mid-stream: A takes the next records, its batches wait.
    // SAFETY: plain syscall on the server this test started.
    unsafe { libc::kill(server.pid, libc::SIGSTOP) };
    sent += produce(100, 100);
    wait_until("A consumed every record", Duration::from_secs(60), || {
        a.metric("weir_outlet_records_total", "")[0] >= 400
    });
    wait_until("A's batches wait on the frozen store", Duration::from_secs(10), || {
        a.metric("weir_outlet_batches_in_flight", "")[0] > 0
    });

    // B joins. The group's first (cooperative) round: A is asked to give a
    // partition up, and its revocation waits on the insert in flight; B
    // gets nothing meanwhile. (The mock elects a leader one session timeout
    // less a second after B joins.)
    let b = Collector::start_as("outlet", &config("outlet-b", 1, "joiner"), &[]);
    a.wait_for_within("kafka: revoking", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(b.metric("weir_outlet_partitions", ""), [0], "nothing moves while A's insert is in flight");
    assert_eq!(a.metric("weir_outlet_partitions", ""), [2]);
    unsafe { libc::kill(server.pid, libc::SIGCONT) };
    let revoked = a.wait_for("partitions revoked");
    let took: u64 = revoked.rsplit("took_ms=").next().unwrap().trim().parse().unwrap();
    assert!(took >= 2_000, "the revocation waited for the store: {revoked}");
    wait_until("the outlets share the partitions", Duration::from_secs(60), || {
        a.metric("weir_outlet_partitions", "")[0] == 1 && b.metric("weir_outlet_partitions", "")[0] == 1
    });
    assert_eq!(a.metric("weir_outlet_revoke_waits_expired_total", ""), [0]);

    // More records after the move: each partition's owner stores its own.
    sent += produce(200, 50);
    wait_until("every flow stored", Duration::from_secs(60), || stored(&a_config).1 >= sent);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stored(&a_config), (sent, sent), "every flow exactly once");
    let records: u64 = [&a, &b].iter().map(|c| c.metric("weir_outlet_records_total", "")[0]).sum();
    assert_eq!(records, 500, "no record read twice");
    a.stop();
    b.stop();
}

/// Templates across outlets, on librdkafka's mock cluster: two IPFIX
/// exporters each send their template to one partition and their data to
/// the other, and two outlets own a partition each, so each sees one
/// exporter's template and the other's data. Through the state topic every
/// flow decodes; a third outlet started afterwards with nothing saved reads
/// the templates from the topic before it consumes, and decodes data that
/// comes without them.
#[test]
fn outlets_share_templates_through_the_state_topic() {
    use rdkafka::producer::Producer;
    use weir_core::encode::{ExportHeader, MessageBuilder, TemplateSpec};
    use weir_core::flow::{addr_from_v4, FlowRecord};
    use weir_core::wire::template::Protocol;

    let dir = temp_dir("outlet-state");
    let (_cluster, brokers, producer) = mock_cluster(2);
    let template = TemplateSpec::compact_ipv4(256);
    let mut sequence = 0;
    // Exporter 127.0.0.k: a datagram with its template only, or one of 30
    // numbered flows without it, to `partition`.
    let mut produce = |k: u8, partition: i32, flows_from: Option<u32>| {
        sequence += 1;
        let h = ExportHeader { export_time_s: 1_800_000_000, sys_uptime_ms: 1000, sequence, domain: 0 };
        let mut b = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
        match flows_from {
            None => b.template(&template),
            Some(first) => {
                for n in first..first + 30 {
                    let mut f = FlowRecord::default();
                    f.set_src_addr(addr_from_v4([10, 0, 0, k]));
                    f.set_src_port((n % 65_536) as u16);
                    f.set_dst_port((n / 65_536) as u16);
                    f.set_bytes(100);
                    f.set_packets(1);
                    b.data(&template, &f);
                }
            }
        }
        produce_datagram(&producer, &b.finish(), k, Some(partition));
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    let config = |name: &str, core: usize| {
        let body = format!(
            "[shards]\ncores = [{core}]\n[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\n\
             spool_dir = \"{spool}\"\nflush_interval_ms = 200\nconsolidation_interval_ms = 500\n\
             [store.embedded]\npath = \"{chdb}\"\n[kafka]\nbrokers = \"{brokers}\"\n\
             [kafka.outlet]\nsession_timeout_ms = 6000\n",
            spool = dir.join(format!("{name}-spool")).display(),
            chdb = dir.join(format!("{name}-chdb")).display(),
        );
        write_config(&dir, &format!("{name}.toml"), &body)
    };
    let rows = |c: &Collector, config: &Path| -> u64 {
        query(config, Some(&c.metrics), "SELECT count() FROM weir.flows").trim().parse().unwrap()
    };

    let (a_config, b_config) = (config("a", 0), config("b", if common::cpus() > 1 { 1 } else { 0 }));
    let a = Collector::start_as("outlet", &a_config, &[]);
    wait_until("A owns both partitions", Duration::from_secs(60), || a.metric("weir_outlet_partitions", "")[0] == 2);
    let b = Collector::start_as("outlet", &b_config, &[]);
    wait_until("one partition each", Duration::from_secs(60), || {
        a.metric("weir_outlet_partitions", "")[0] == 1 && b.metric("weir_outlet_partitions", "")[0] == 1
    });
    // Exporter 1's template to partition 0 and its data to 1; exporter 2 the other way.
    produce(1, 0, None);
    produce(2, 1, None);
    let mut flows = 0;
    for i in 0..10 {
        produce(1, 1, Some(i * 60));
        produce(2, 0, Some(i * 60 + 30));
        flows += 60;
    }
    wait_until("every flow stored by one outlet or the other", Duration::from_secs(60), || {
        rows(&a, &a_config) + rows(&b, &b_config) >= flows
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rows(&a, &a_config) + rows(&b, &b_config), flows);
    for c in [&a, &b] {
        assert!(c.metric("weir_outlet_state_produced_total", "")[0] >= 1, "its template shared");
        assert!(c.metric("weir_outlet_state_received_total", "")[0] >= 1, "the other's template received");
        assert_eq!(c.metric("weir_outlet_state_malformed_total", ""), [0]);
        c.assert_promtool_is_silent();
    }
    // One at a time, so the second commits outside a rebalance.
    a.stop();
    wait_until("B owns both partitions", Duration::from_secs(60), || b.metric("weir_outlet_partitions", "")[0] == 2);
    b.stop();

    // A new outlet, nothing saved: the templates come from the topic.
    let c_config = config("c", 0);
    let c = Collector::start_as("outlet", &c_config, &[]);
    assert!(c.metric("weir_outlet_state_received_total", "")[0] >= 2, "read before consuming");
    wait_until("C owns both partitions", Duration::from_secs(60), || c.metric("weir_outlet_partitions", "")[0] == 2);
    produce(1, 0, Some(10_000));
    produce(2, 1, Some(10_030));
    wait_until("C decodes data without templates of its own", Duration::from_secs(60), || rows(&c, &c_config) >= 60);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rows(&c, &c_config), 60, "and reads nothing again");
    c.stop();
}

//! `weir-decode-count FORMAT [PASSES]`: decodes the decode bench's datagrams
//! (`traffic::data_datagrams`, `sflow_datagrams`; FORMAT `ipfix`, `v9` or
//! `sflow`) PASSES times (default 300) and prints the flows; FORMAT
//! `accesslog` renders the access-log bench's 1024 HAProxy lines instead. Made to run
//! under `valgrind --tool=callgrind`, whose instruction counts repeat on a
//! VM without performance counters, where criterion's times move ±20 %
//! with the neighbours: compare two builds by their totals (perf/RESULTS.md).

use std::hint::black_box;

use weir_core::config::HaproxyConfig;
use weir_core::wire::template::Protocol;
use weir_core::Decoder;
use weir_perf::traffic::{data_datagrams, decode_all as decode, sflow_datagrams, template_datagram, FlowMix};

/// Datagrams per pass, as in `benches/decode.rs`.
const DATAGRAMS: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let format = args.next().unwrap_or_default();
    let passes: usize = args.next().and_then(|p| p.parse().ok()).unwrap_or(300);
    let mut mix = FlowMix::new(1);
    let (templates, data) = match format.as_str() {
        "ipfix" => (vec![template_datagram(Protocol::Ipfix)], data_datagrams(Protocol::Ipfix, &mut mix, DATAGRAMS).0),
        "v9" => {
            (vec![template_datagram(Protocol::NetflowV9)], data_datagrams(Protocol::NetflowV9, &mut mix, DATAGRAMS).0)
        }
        "sflow" => (Vec::new(), sflow_datagrams(&mut mix, DATAGRAMS).0),
        "accesslog" => return render_lines(passes),
        other => {
            eprintln!("weir-decode-count: FORMAT is ipfix, v9, sflow or accesslog, not {other:?}");
            std::process::exit(2);
        }
    };
    let mut decoder = Decoder::default();
    decode(&mut decoder, &templates);
    let mut sum = 0;
    for _ in 0..passes {
        sum ^= decode(&mut decoder, black_box(&data));
    }
    println!("{} flows ({sum})", decoder.counters().flows);
}

/// The access-log bench's lines through the default format, `passes` times.
fn render_lines(passes: usize) {
    let format = HaproxyConfig::default().format();
    let lines = weir_perf::accesslog::haproxy_lines(1024);
    let mut out = Vec::with_capacity(4096);
    let (mut rendered, mut bytes) = (0u64, 0usize);
    for _ in 0..passes {
        for line in &lines {
            if format.render(black_box(line), &mut out).is_ok() {
                rendered += 1;
                bytes += out.len();
            }
        }
    }
    println!("{rendered} lines rendered ({bytes} bytes)");
}

//! `weir decode FILE.pcap`: reads a capture, decodes its datagrams in order
//! with one shared decoder state (as a collector would), prints one JSON
//! object per flow on stdout and a summary on stderr.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use weir_core::json::write_flow;
use weir_core::pcap::{Frame, PcapReader};
use weir_core::wire::{Decapsulation, ListenerOptions, TimestampSource};
use weir_core::{Datagram, Decoder, Reason};

#[derive(clap::Args)]
pub struct Args {
    /// The capture (classic pcap: Ethernet, Linux cooked, raw IP or loopback).
    pub file: PathBuf,
    /// Only datagrams sent to this UDP port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Add a "Frame" key: the 1-based number of the pcap frame a flow came from.
    #[arg(long)]
    pub frame_numbers: bool,
    /// Load decoder state (templates, sampling rates) from this file first.
    #[arg(long)]
    pub load_state: Option<PathBuf>,
    /// Save decoder state to this file at the end.
    #[arg(long)]
    pub save_state: Option<PathBuf>,
    /// Report the packet inside this tunnel for sampled packets: none,
    /// vxlan, gre, ipip, srv6 (as a listener's `decapsulation`).
    #[arg(long, default_value = "none")]
    pub decapsulation: Decapsulation,
    /// TimeReceived from: kernel (the capture time), export, flow_start.
    #[arg(long, default_value = "kernel")]
    pub timestamp_source: TimestampSource,
}

pub fn run(args: &Args) -> Result<(), String> {
    let data = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let reader = PcapReader::new(&data).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let mut decoder = Decoder::default();
    if let Some(path) = &args.load_state {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        decoder.restore_state_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = String::with_capacity(1024);
    let mut skipped: BTreeMap<&str, u64> = BTreeMap::new();
    let mut write_error = None;
    let mut file_error = None;
    for (index, frame) in reader.enumerate() {
        let d = match frame {
            Ok(Frame::Udp(d)) => d,
            Ok(Frame::Skipped(reason)) => {
                *skipped.entry(reason.label()).or_default() += 1;
                continue;
            }
            Err(e) => {
                file_error = Some(e);
                break;
            }
        };
        if args.port.is_some_and(|p| p != d.dst_port) {
            *skipped.entry("other_port").or_default() += 1;
            continue;
        }
        let options = ListenerOptions { decapsulation: args.decapsulation, timestamp_source: args.timestamp_source };
        let datagram = Datagram { exporter: d.src, received_ns: d.timestamp_ns, payload: d.payload, options };
        let mut sink = |flow: &weir_core::FlowRecord| {
            line.clear();
            write_flow(flow, &mut line);
            if args.frame_numbers {
                line.pop();
                let _ = write!(line, ",\"Frame\":{}}}", index + 1);
            }
            line.push('\n');
            if let Err(e) = out.write_all(line.as_bytes()) {
                write_error.get_or_insert(e);
            }
        };
        // Errors are counted by the decoder and reported in the summary.
        let _ = decoder.decode(&datagram, &mut sink);
        if write_error.is_some() {
            break;
        }
    }
    decoder.flush_pending();
    out.flush().map_err(|e| format!("stdout: {e}"))?;
    if let Some(e) = write_error {
        return Err(format!("stdout: {e}"));
    }
    print_summary(&decoder, &skipped);
    if let Some(path) = &args.save_state {
        std::fs::write(path, decoder.state().snapshot_json()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    match file_error {
        Some(e) => Err(format!("{}: {e}", args.file.display())),
        None => Ok(()),
    }
}

fn print_summary(decoder: &Decoder, skipped: &BTreeMap<&str, u64>) {
    let c = decoder.counters();
    let mut s = String::new();
    s.push_str(&format!("datagrams {}\nflows {}\n", c.datagrams, c.flows));
    s.push_str(&format!("templates {}\ntemplates_withdrawn {}\n", c.templates, c.templates_withdrawn));
    s.push_str(&format!("options_records {}\ncounter_samples {}\n", c.options_records, c.counter_samples));
    s.push_str(&format!(
        "pending_queued {}\npending_decoded {}\npending_dropped {}\n",
        c.pending_queued, c.pending_decoded, c.pending_dropped
    ));
    for reason in Reason::ALL {
        s.push_str(&format!("errors{{reason=\"{}\"}} {}\n", reason.label(), c.errors[reason as usize]));
    }
    for (reason, n) in skipped {
        s.push_str(&format!("frames_skipped{{reason=\"{reason}\"}} {n}\n"));
    }
    eprint!("{s}");
}

//! Steady-state decoding allocates nothing: once templates are known, a
//! datagram of any format decodes without a single heap allocation (counted
//! by a global allocator wrapper, per thread: the test harness's own
//! threads allocate whenever they like).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use weir_core::encode::{
    netflow_v5, sflow_v5, ExportHeader, MessageBuilder, SflowAgent, SflowSampleOptions, TemplateSpec,
};
use weir_core::flow::addr_from_v4;
use weir_core::wire::template::{FieldSpec, Protocol, REVERSE_PEN};
use weir_core::{Datagram, Decoder, FlowRecord};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn flow(i: u32) -> FlowRecord {
    let mut f = FlowRecord::default();
    f.set_src_addr(addr_from_v4(i.to_be_bytes()));
    f.set_dst_addr(addr_from_v4([198, 51, 100, 1]));
    f.set_src_port(i as u16);
    f.set_dst_port(443);
    f.set_proto(6);
    f.set_bytes(1000 + i as u64);
    f.set_packets(3);
    f.set_sampling_rate(100);
    f.set_src_mac([2, 0, 0, 0, 0, 1]);
    f.set_dst_mac([2, 0, 0, 0, 0, 2]);
    f.push_dst_as_path(64_500);
    f
}

fn datagrams() -> Vec<Vec<u8>> {
    let h = ExportHeader { export_time_s: 1_767_225_600, sys_uptime_ms: 1000, sequence: 1, domain: 1 };
    let flows: Vec<FlowRecord> = (0..20).map(flow).collect();
    let mut out = Vec::new();
    for protocol in [Protocol::Ipfix, Protocol::NetflowV9] {
        let t = TemplateSpec::standard_ipv4(256);
        let mut m = MessageBuilder::new(protocol, h, Vec::new());
        m.template(&t);
        m.options_template(300, &[FieldSpec { id: 48, pen: 0, len: 1 }], &[FieldSpec { id: 34, pen: 0, len: 4 }]);
        m.raw_record(300, &[FieldSpec { id: 48, pen: 0, len: 1 }, FieldSpec { id: 34, pen: 0, len: 4 }], &[0, 64]);
        flows.iter().for_each(|f| m.data(&t, f));
        out.push(m.finish());
    }
    // A biflow template with a variable-length field: the slower IPFIX path.
    let fields = vec![
        FieldSpec { id: 8, pen: 0, len: 4 },
        FieldSpec { id: 82, pen: 0, len: 0xffff },
        FieldSpec { id: 1, pen: 0, len: 8 },
        FieldSpec { id: 1, pen: REVERSE_PEN, len: 8 },
    ];
    let t = TemplateSpec { id: 257, fields };
    let mut m = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
    m.template(&t);
    flows.iter().for_each(|f| m.data(&t, f));
    out.push(m.finish());
    let mut v5 = Vec::new();
    netflow_v5(&h, (0, 0), 10, &flows, &mut v5);
    out.push(v5);
    let agent = SflowAgent { address: addr_from_v4([192, 0, 2, 1]), sub_agent_id: 0, sequence: 0, uptime_ms: 0 };
    let mut sflow = Vec::new();
    sflow_v5(&agent, SflowSampleOptions { expanded: true, extended: true }, &flows[..6], &mut sflow);
    out.push(sflow);
    out
}

#[test]
fn steady_state_decoding_does_not_allocate() {
    let all = datagrams();
    let mut decoder = Decoder::default();
    let mut flows = 0u64;
    let mut decode_all = |decoder: &mut Decoder| {
        for payload in &all {
            let d = Datagram { exporter: addr_from_v4([192, 0, 2, 1]), received_ns: 1, payload, ..Default::default() };
            decoder.decode(&d, &mut |f: &FlowRecord| flows += f.bytes.min(1)).unwrap();
        }
    };
    // The first pass learns templates and sampling rates (allocation allowed).
    decode_all(&mut decoder);
    let before = allocations();
    for _ in 0..10 {
        decode_all(&mut decoder);
    }
    let after = allocations();
    assert_eq!(decoder.counters().errors_total(), 0);
    // Per pass: 20 IPFIX + 20 v9 + 20 biflow (no reverse traffic) + 20 v5 + 6 sFlow.
    assert_eq!(decoder.counters().flows, 11 * 86);
    assert_eq!(after - before, 0, "allocations while decoding known templates");
}

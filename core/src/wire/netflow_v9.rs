//! NetFlow v9 (RFC 3954): a 20-byte header, then flowsets — templates (id 0),
//! options templates (id 1) and data (id ≥ 256), several per packet, each
//! padded to a 4-byte boundary.

use zerocopy::byteorder::big_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::record::RecordContext;
use super::template::{FieldSpec, Protocol, TemplateKey};
use super::{be16, Datagram, DecodeError, Reason};
use crate::decoder::Decoder;
use crate::flow::FlowRecord;

/// RFC 3954 §5.1 packet header.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    pub version: U16,
    pub count: U16,
    pub sys_uptime_ms: U32,
    pub unix_secs: U32,
    pub sequence: U32,
    pub source_id: U32,
}

/// Header of any flowset (RFC 3954 §5.2–5.4); `length` includes it.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SetHeader {
    pub id: U16,
    pub length: U16,
}

pub const TEMPLATE_SET_ID: u16 = 0;
pub const OPTIONS_TEMPLATE_SET_ID: u16 = 1;
/// Data flowsets and template ids start here.
pub const FIRST_DATA_SET_ID: u16 = 256;

pub(crate) fn decode<F: FnMut(&FlowRecord)>(dec: &mut Decoder, d: &Datagram, sink: &mut F) -> Result<(), DecodeError> {
    let Ok((header, mut rest)) = Header::ref_from_prefix(d.payload) else {
        return Err(dec.counters.error(DecodeError::new(Reason::Truncated, "v9 header")));
    };
    let ctx = RecordContext::new(
        d.exporter,
        header.source_id.get(),
        d.received_ns,
        header.unix_secs.get(),
        Some(header.sys_uptime_ms.get()),
        d.options,
    );
    dec.state.touch_exporter(d.exporter, d.received_ns);
    dec.state.expire_pending(d.received_ns, &mut dec.counters);
    // Sets pad to 4 bytes; fewer than 4 bytes left cannot hold another set.
    while rest.len() >= 4 {
        let (id, body) = next_set(dec, Protocol::NetflowV9, &mut rest)?;
        let key = |template_id| TemplateKey {
            protocol: Protocol::NetflowV9,
            exporter: d.exporter,
            domain: ctx.domain,
            template_id,
        };
        match id {
            TEMPLATE_SET_ID => templates(dec, body, &key, sink),
            OPTIONS_TEMPLATE_SET_ID => options_templates(dec, body, &key, sink),
            _ => data_set(dec, key(id), body, &ctx, sink),
        }
    }
    Ok(())
}

/// Splits the next set off `rest`: v9 flowsets (RFC 3954 §5.2) and IPFIX
/// sets (RFC 7011 §3.3.2) share the header. An error is already counted.
pub(crate) fn next_set<'a>(
    dec: &mut Decoder,
    protocol: Protocol,
    rest: &mut &'a [u8],
) -> Result<(u16, &'a [u8]), DecodeError> {
    let [header, length, truncated] = match protocol {
        Protocol::NetflowV9 => ["v9 flowset header", "v9 flowset length", "v9 flowset"],
        Protocol::Ipfix => ["IPFIX set header", "IPFIX set length", "IPFIX set"],
    };
    let Ok((set, after)) = SetHeader::ref_from_prefix(rest) else {
        return Err(dec.counters.error(DecodeError::new(Reason::Truncated, header)));
    };
    let len = set.length.get() as usize;
    if len < 4 {
        return Err(dec.counters.error(DecodeError::new(Reason::BadLength, length)));
    }
    let Some(body) = after.get(..len - 4) else {
        return Err(dec.counters.error(DecodeError::new(Reason::Truncated, truncated)));
    };
    let id = set.id.get();
    *rest = &rest[len..];
    Ok((id, body))
}

/// A set that is not a template set: data for a template (ids from 256, in
/// v9 and IPFIX alike) or a reserved id, counted as `unsupported`.
pub(crate) fn data_set<F: FnMut(&FlowRecord)>(
    dec: &mut Decoder,
    key: TemplateKey,
    body: &[u8],
    ctx: &RecordContext,
    sink: &mut F,
) {
    if key.template_id >= FIRST_DATA_SET_ID {
        let (state, counters, flow) = (&mut dec.state, &mut dec.counters, &mut dec.flow);
        // Errors inside the set are counted by the state; the next set still decodes.
        let _ = state.decode_data_set(key, body, ctx, counters, flow, sink);
        return;
    }
    let context = match key.protocol {
        Protocol::NetflowV9 => "v9 reserved flowset id",
        Protocol::Ipfix => "IPFIX reserved set id",
    };
    dec.counters.error(DecodeError::new(Reason::Unsupported, context));
}

fn templates<F: FnMut(&FlowRecord)>(
    dec: &mut Decoder,
    mut body: &[u8],
    key: &dyn Fn(u16) -> TemplateKey,
    sink: &mut F,
) {
    while body.len() >= 4 {
        let (id, count) = (be16(body, 0).unwrap_or(0), be16(body, 2).unwrap_or(0) as usize);
        let Some(fields) = body.get(4..4 + count * 4) else {
            dec.counters.error(DecodeError::new(Reason::Truncated, "v9 template"));
            return;
        };
        if id < FIRST_DATA_SET_ID || count == 0 {
            dec.counters.error(DecodeError::new(Reason::BadTemplate, "v9 template id or count"));
            return;
        }
        read_specs(fields, &mut dec.specs);
        let (state, counters, flow) = (&mut dec.state, &mut dec.counters, &mut dec.flow);
        state.offer_template(key(id), &dec.specs, 0, false, counters, flow, sink);
        body = &body[4 + count * 4..];
    }
}

/// RFC 3954 §6.1: template id, scope length and option length in bytes,
/// then the scope fields and the option fields.
fn options_templates<F: FnMut(&FlowRecord)>(
    dec: &mut Decoder,
    mut body: &[u8],
    key: &dyn Fn(u16) -> TemplateKey,
    sink: &mut F,
) {
    while body.len() >= 6 {
        let id = be16(body, 0).unwrap_or(0);
        let scope_len = be16(body, 2).unwrap_or(0) as usize;
        let option_len = be16(body, 4).unwrap_or(0) as usize;
        if id < FIRST_DATA_SET_ID
            || !scope_len.is_multiple_of(4)
            || !option_len.is_multiple_of(4)
            || scope_len + option_len == 0
        {
            dec.counters.error(DecodeError::new(Reason::BadTemplate, "v9 options template header"));
            return;
        }
        let Some(fields) = body.get(6..6 + scope_len + option_len) else {
            dec.counters.error(DecodeError::new(Reason::Truncated, "v9 options template"));
            return;
        };
        read_specs(fields, &mut dec.specs);
        let scope_fields = (scope_len / 4) as u16;
        let (state, counters, flow) = (&mut dec.state, &mut dec.counters, &mut dec.flow);
        state.offer_template(key(id), &dec.specs, scope_fields, true, counters, flow, sink);
        body = &body[6 + scope_len + option_len..];
    }
}

fn read_specs(fields: &[u8], out: &mut Vec<FieldSpec>) {
    out.clear();
    for pair in fields.chunks_exact(4) {
        let id = u16::from_be_bytes([pair[0], pair[1]]);
        let len = u16::from_be_bytes([pair[2], pair[3]]);
        out.push(FieldSpec { id, pen: 0, len });
    }
}

#[cfg(test)]
#[path = "netflow_v9_tests.rs"]
mod tests;

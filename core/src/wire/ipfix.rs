//! IPFIX (RFC 7011): a 16-byte message header, then sets — templates (id 2),
//! options templates (id 3) and data (id ≥ 256). Field specifiers may carry
//! an enterprise number (RFC 7011 §3.2) and variable lengths (§7); a template
//! record with no fields withdraws the template (§8.1).

use zerocopy::byteorder::big_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::netflow_v9::{data_set, next_set};
use super::record::RecordContext;
use super::template::{FieldSpec, Protocol, TemplateKey};
use super::{be16, be32, Datagram, DecodeError, Reason};
use crate::decoder::Decoder;
use crate::flow::FlowRecord;

/// RFC 7011 §3.1 message header.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    pub version: U16,
    pub length: U16,
    pub export_time: U32,
    pub sequence: U32,
    pub observation_domain: U32,
}

pub const TEMPLATE_SET_ID: u16 = 2;
pub const OPTIONS_TEMPLATE_SET_ID: u16 = 3;
pub const FIRST_DATA_SET_ID: u16 = 256;
/// Bit 15 of an element id: an enterprise number follows (RFC 7011 §3.2).
const ENTERPRISE_BIT: u16 = 0x8000;

pub(crate) fn decode<F: FnMut(&FlowRecord)>(dec: &mut Decoder, d: &Datagram, sink: &mut F) -> Result<(), DecodeError> {
    let Ok((header, _)) = Header::ref_from_prefix(d.payload) else {
        return Err(dec.counters.error(DecodeError::new(Reason::Truncated, "IPFIX header")));
    };
    let length = header.length.get() as usize;
    if length < 16 {
        return Err(dec.counters.error(DecodeError::new(Reason::BadLength, "IPFIX message length")));
    }
    let Some(message) = d.payload.get(16..length) else {
        return Err(dec.counters.error(DecodeError::new(Reason::Truncated, "IPFIX message")));
    };
    let ctx = RecordContext::new(
        d.exporter,
        header.observation_domain.get(),
        d.received_ns,
        header.export_time.get(),
        None,
        d.options,
    );
    dec.state.touch_exporter(d.exporter, d.received_ns);
    dec.state.expire_pending(d.received_ns, &mut dec.counters);
    let mut rest = message;
    while !rest.is_empty() {
        let (id, body) = next_set(dec, Protocol::Ipfix, &mut rest)?;
        let key = |template_id| TemplateKey {
            protocol: Protocol::Ipfix,
            exporter: d.exporter,
            domain: ctx.domain,
            template_id,
        };
        match id {
            TEMPLATE_SET_ID => templates(dec, body, false, &key, sink),
            OPTIONS_TEMPLATE_SET_ID => templates(dec, body, true, &key, sink),
            _ => data_set(dec, key(id), body, &ctx, sink),
        }
    }
    Ok(())
}

/// Template and options template records (RFC 7011 §3.4.1, §3.4.2), and
/// withdrawals (§8.1). Padding after the last record is ignored.
fn templates<F: FnMut(&FlowRecord)>(
    dec: &mut Decoder,
    mut body: &[u8],
    options: bool,
    key: &dyn Fn(u16) -> TemplateKey,
    sink: &mut F,
) {
    let set_id = if options { OPTIONS_TEMPLATE_SET_ID } else { TEMPLATE_SET_ID };
    while body.len() >= 4 {
        let id = be16(body, 0).unwrap_or(0);
        let count = be16(body, 2).unwrap_or(0);
        if count == 0 {
            let all = (id == set_id).then_some(options);
            if id != set_id && id < FIRST_DATA_SET_ID {
                dec.counters.error(DecodeError::new(Reason::BadTemplate, "IPFIX withdrawal id"));
                return;
            }
            dec.state.withdraw(key(id), all, &mut dec.counters);
            body = &body[4..];
            continue;
        }
        if id < FIRST_DATA_SET_ID {
            // Only padding (all zero) may follow the last record.
            if id != 0 {
                dec.counters.error(DecodeError::new(Reason::BadTemplate, "IPFIX template id"));
            }
            return;
        }
        let mut at = 4;
        let scope_fields = if options {
            let Some(scope) = be16(body, 4) else {
                dec.counters.error(DecodeError::new(Reason::Truncated, "IPFIX options template"));
                return;
            };
            at = 6;
            if scope == 0 || scope > count {
                dec.counters.error(DecodeError::new(Reason::BadTemplate, "IPFIX scope field count"));
                return;
            }
            scope
        } else {
            0
        };
        let Some(used) = read_specs(body.get(at..).unwrap_or(&[]), count as usize, &mut dec.specs) else {
            dec.counters.error(DecodeError::new(Reason::Truncated, "IPFIX template"));
            return;
        };
        let (state, counters, flow) = (&mut dec.state, &mut dec.counters, &mut dec.flow);
        state.offer_template(key(id), &dec.specs, scope_fields, options, counters, flow, sink);
        body = &body[at + used..];
    }
}

/// Reads `count` field specifiers; returns the bytes used.
fn read_specs(b: &[u8], count: usize, out: &mut Vec<FieldSpec>) -> Option<usize> {
    out.clear();
    let mut at = 0;
    for _ in 0..count {
        let raw_id = be16(b, at)?;
        let len = be16(b, at + 2)?;
        at += 4;
        let pen = if raw_id & ENTERPRISE_BIT != 0 {
            at += 4;
            be32(b, at - 4)?
        } else {
            0
        };
        out.push(FieldSpec { id: raw_id & !ENTERPRISE_BIT, pen, len });
    }
    Some(at)
}

#[cfg(test)]
#[path = "ipfix_tests.rs"]
mod tests;

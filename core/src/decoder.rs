//! The decoder front: one per shard (or per `weir decode` run). It detects the
//! format of each datagram from its version field, owns the state that spans
//! datagrams and the counters, and hands every decoded flow to a sink closure
//! by reference — the same `FlowRecord` is reused for every flow.

use crate::flow::FlowRecord;
use crate::wire::state::{DecoderState, Limits, StateUpdate};
use crate::wire::template::FieldSpec;
use crate::wire::{be16, be32, ipfix, netflow_v5, netflow_v9, sflow, Datagram, DecodeCounters, DecodeError, Reason};

/// The wire format of a datagram, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    NetflowV5,
    NetflowV9,
    Ipfix,
    SflowV5,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::NetflowV5, Format::NetflowV9, Format::Ipfix, Format::SflowV5];

    /// The short name tools take and print: `v5`, `v9`, `ipfix`, `sflow`.
    pub fn name(self) -> &'static str {
        match self {
            Format::NetflowV5 => "v5",
            Format::NetflowV9 => "v9",
            Format::Ipfix => "ipfix",
            Format::SflowV5 => "sflow",
        }
    }

    /// The template protocol of NetFlow v9 and IPFIX.
    pub fn templated(self) -> Option<crate::wire::template::Protocol> {
        use crate::wire::template::Protocol;
        match self {
            Format::NetflowV9 => Some(Protocol::NetflowV9),
            Format::Ipfix => Some(Protocol::Ipfix),
            Format::NetflowV5 | Format::SflowV5 => None,
        }
    }

    /// NetFlow and IPFIX start with a 16-bit version; sFlow with a 32-bit one.
    pub fn detect(payload: &[u8]) -> Option<Format> {
        match be16(payload, 0)? {
            5 => Some(Format::NetflowV5),
            9 => Some(Format::NetflowV9),
            10 => Some(Format::Ipfix),
            0 if be32(payload, 0)? == sflow::VERSION => Some(Format::SflowV5),
            _ => None,
        }
    }
}

pub struct Decoder {
    pub(crate) state: DecoderState,
    pub(crate) counters: DecodeCounters,
    pub(crate) flow: FlowRecord,
    /// Scratch for template field lists, reused across templates.
    pub(crate) specs: Vec<FieldSpec>,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("{s}: not a format (v5, v9, ipfix, sflow)"))
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::default())
    }
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            state: DecoderState::new(limits),
            counters: DecodeCounters::default(),
            flow: FlowRecord::default(),
            specs: Vec::with_capacity(64),
        }
    }

    /// Decodes one datagram, calling `sink` once per flow. A datagram-level
    /// failure is returned; every failure (datagram, set or sample) is
    /// counted in `counters()` exactly once.
    pub fn decode<F: FnMut(&FlowRecord)>(&mut self, d: &Datagram, sink: &mut F) -> Result<Format, DecodeError> {
        self.counters.datagrams += 1;
        let Some(format) = Format::detect(d.payload) else {
            let reason = if d.payload.len() < 4 { Reason::Truncated } else { Reason::BadVersion };
            return Err(self.counters.error(DecodeError::new(reason, "version field")));
        };
        match format {
            Format::NetflowV5 => netflow_v5::decode(self, d, sink)?,
            Format::NetflowV9 => netflow_v9::decode(self, d, sink)?,
            Format::Ipfix => ipfix::decode(self, d, sink)?,
            Format::SflowV5 => sflow::decode(self, d, sink)?,
        }
        Ok(format)
    }

    pub fn counters(&self) -> &DecodeCounters {
        &self.counters
    }

    pub fn state(&self) -> &DecoderState {
        &self.state
    }

    /// Restores saved state (see `DecoderState::restore_json`).
    pub fn restore_state_json(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        self.state.restore_json(bytes, &mut self.counters)
    }

    /// Starts logging state changes (templates, sampling rates) for
    /// `drain_updates`: a shard broadcasts them to the other shards.
    pub fn record_updates(&mut self) {
        self.state.record_updates();
    }

    /// Moves the state changes made since the last call into `out`.
    pub fn drain_updates(&mut self, out: &mut Vec<StateUpdate>) {
        self.state.drain_updates(out);
    }

    /// Applies another shard's state change; data parked for it is decoded
    /// into `sink`.
    pub fn apply_update<F: FnMut(&FlowRecord)>(&mut self, update: &StateUpdate, sink: &mut F) {
        self.state.apply_update(update, &mut self.counters, &mut self.flow, sink);
    }

    /// Applies a batch of another shard's changes: sampling rates and system
    /// init times first, so data parked for a template of the same batch is
    /// decoded with them (an exporter often sends its templates before its
    /// options data in one datagram).
    pub fn apply_updates<F: FnMut(&FlowRecord)>(&mut self, updates: &[StateUpdate], sink: &mut F) {
        let is_template = |u: &&StateUpdate| matches!(u, StateUpdate::Template(_) | StateUpdate::Withdraw { .. });
        for u in updates.iter().filter(|u| !is_template(u)) {
            self.apply_update(u, sink);
        }
        for u in updates.iter().filter(is_template) {
            self.apply_update(u, sink);
        }
    }

    /// Drops parked data sets older than `pending_age_max_ms` at `now_ns`
    /// (an idle shard calls this; a busy one does it per datagram).
    pub fn expire_pending(&mut self, now_ns: u64) {
        self.state.expire_pending(now_ns, &mut self.counters);
    }

    /// Gives up on every parked data set (end of input or shutdown); each is
    /// counted as `template_missing`.
    pub fn flush_pending(&mut self) {
        self.state.flush_pending(&mut self.counters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_go_by_their_short_names() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        assert!("v7".parse::<Format>().is_err());
        assert!(Format::Ipfix.templated().is_some() && Format::SflowV5.templated().is_none());
    }
}

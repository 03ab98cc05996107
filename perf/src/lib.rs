//! Weir's performance tools. For now: `traffic`, a deterministic, realistic
//! mix of flows (Zipf-like top talkers, common ports and protocols, packet
//! sizes, interfaces, AS numbers) and the datagrams the decoder benchmarks
//! (`benches/decode.rs`) feed to Weir and its peers. The flow generator
//! (`weir-flowgen`) will send the same datagrams over UDP.

pub mod traffic;

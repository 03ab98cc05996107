//! Weir's SO_REUSEPORT balancer, from Rust.
//!
//! The shards of one listener (one UDP address) each own a socket, and the
//! sockets form a SO_REUSEPORT group. Left alone, the kernel picks a socket
//! by hashing the 5-tuple, so one exporter (one source address and port)
//! always lands on one shard. `reuseport.bpf.c` (beside this crate, built
//! into `reuseport.bpf.o` by `scripts/build-ebpf`) replaces that choice with
//! round robin per datagram.
//!
//! `Balancer::attach` loads one copy of the program and its maps for one
//! group, fills the socket array (shard i's socket at index i) and attaches
//! the program through one of the sockets. Attaching replaces whatever
//! program the group had: this is how a new `weir run` joining the group of
//! a running one takes the traffic over during a graceful restart. The
//! `Balancer` must live as long as the sockets; dropping it does not detach
//! the program (the kernel keeps it while the group exists).
//!
//! When loading fails (old kernel, no CAP_BPF), the caller keeps the
//! kernel's hash and says so in its metrics.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::maps::{Array, ReusePortSockArray};
use aya::programs::SkReuseport;
use aya::Ebpf;

/// The program, built by `scripts/build-ebpf` (checked in CI to match its source).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../reuseport.bpf.o");

/// Sockets one group can hold (`max_entries` of `shard_sockets`).
pub const SHARDS_MAX: usize = 1024;

/// The loaded program and maps of one reuseport group.
pub struct Balancer {
    _ebpf: Ebpf,
}

/// Why the program could not be used; the step says where it failed.
#[derive(Debug)]
pub struct Error {
    pub step: &'static str,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eBPF reuseport balancer: {}: {}", self.step, self.message)
    }
}

impl std::error::Error for Error {}

/// aya's errors keep the OS error (and the verifier's words) as their
/// source: the message is the whole chain.
fn step<E: std::error::Error>(step: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error { step, message: error_chain(&e) }
}

fn missing(step: &'static str) -> Error {
    Error { step, message: "not in reuseport.bpf.o".to_string() }
}

impl Balancer {
    /// Loads the program for one group and attaches it: `sockets[i]` is
    /// shard i's socket, already bound with SO_REUSEPORT.
    pub fn attach(sockets: &[BorrowedFd<'_>]) -> Result<Balancer, Error> {
        if sockets.is_empty() || sockets.len() > SHARDS_MAX {
            return Err(Error { step: "sockets", message: format!("{} sockets (1..={SHARDS_MAX})", sockets.len()) });
        }
        let mut ebpf = Ebpf::load(OBJECT).map_err(step("load object"))?;
        {
            let map = ebpf.map_mut("shard_sockets").ok_or_else(|| missing("shard_sockets"))?;
            let mut array = ReusePortSockArray::try_from(map).map_err(step("shard_sockets"))?;
            for (i, socket) in sockets.iter().enumerate() {
                array.set(i as u32, &socket.as_raw_fd(), 0).map_err(step("add socket"))?;
            }
        }
        {
            let map = ebpf.map_mut("shard_count").ok_or_else(|| missing("shard_count"))?;
            let mut count: Array<_, u32> = Array::try_from(map).map_err(step("shard_count"))?;
            count.set(0, sockets.len() as u32, 0).map_err(step("shard_count"))?;
        }
        let program = ebpf.program_mut("select_shard").ok_or_else(|| missing("select_shard"))?;
        let program: &mut SkReuseport = program.try_into().map_err(step("select_shard"))?;
        program.load().map_err(step("verify program"))?;
        program.attach(sockets[0]).map_err(step("attach"))?;
        Ok(Balancer { _ebpf: ebpf })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

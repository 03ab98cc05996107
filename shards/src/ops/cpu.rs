//! Where threads run: the CPUs online, and pinning the calling thread to
//! one (the control plane, the HTTP runtime, the log shard).

use tracing::warn;

pub fn online_cpus() -> usize {
    // SAFETY: plain libc call.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// Pins the calling thread to `core`; a failure is logged, not fatal.
pub fn pin_to(core: usize) {
    // SAFETY: cpu_set_t is plain data; the calls only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            warn!("could not pin the control plane to CPU {core}");
        }
    }
}

//! systemd's notify protocol, without libsystemd: `READY=1` once the
//! shards run, `WATCHDOG=1` while `health` says the pipeline is alive,
//! `STOPPING=1` on the way out. With no `NOTIFY_SOCKET` (not started by
//! systemd as `Type=notify`), every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
    /// Half of `WATCHDOG_USEC` when the watchdog is on for this process.
    pub watchdog_every: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let path = std::env::var("NOTIFY_SOCKET").ok().filter(|p| !p.is_empty());
        let socket = path.and_then(|p| UnixDatagram::unbound().ok().map(|s| (s, p)));
        // WATCHDOG_PID, when set, names the process meant to ping.
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let usec = std::env::var("WATCHDOG_USEC").ok().and_then(|u| u.parse::<u64>().ok()).filter(|u| *u > 0);
        let watchdog_every = usec.filter(|_| ours && socket.is_some()).map(|u| Duration::from_micros(u / 2));
        Notifier { socket, watchdog_every }
    }

    /// Sends one state line; errors are ignored (systemd may be gone).
    pub fn notify(&self, state: &str) {
        let Some((socket, path)) = &self.socket else { return };
        let _ = match path.strip_prefix('@') {
            // An abstract socket: a leading NUL instead of '@'.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|a| socket.send_to_addr(state.as_bytes(), &a))
            }
            None => socket.send_to(state.as_bytes(), path),
        };
    }
}

//! One shard's UDP socket and its batch receive.
//!
//! `open` makes a socket that joins the SO_REUSEPORT group of its address,
//! asks for kernel receive timestamps (SO_TIMESTAMPNS_NEW) and the kernel's
//! drop counter (SO_RXQ_OVFL) on every datagram, and sets the receive buffer
//! (SO_RCVBUFFORCE as root, else SO_RCVBUF, capped by net.core.rmem_max).
//!
//! `ReceiveBatch` holds preallocated buffers for `receive_batch_datagrams`
//! datagrams and fills them with one `recvmmsg` call; nothing is allocated
//! per datagram. perf/RESULTS.md has the numbers that chose recvmmsg over
//! glommio's recv and io_uring multishot.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use weir_core::flow::Addr;

// Socket option numbers of asm-generic/socket.h (x86, arm, riscv; not
// sparc, mips, parisc or alpha, which Weir does not build for).
const SO_RCVBUFFORCE: libc::c_int = 33;
const SO_TIMESTAMPNS_OLD: libc::c_int = 35;
const SO_RXQ_OVFL: libc::c_int = 40;
const SO_TIMESTAMPNS_NEW: libc::c_int = 64;

/// What the kernel granted a new socket.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    /// SO_RCVBUF as read back. Linux doubles the asked size for its own
    /// bookkeeping, so a full grant reads back as twice the asked size.
    pub receive_buffer_bytes: usize,
    /// SO_RCVBUFFORCE worked (root or CAP_NET_ADMIN); else rmem_max capped it.
    pub forced: bool,
}

/// Opens a non-blocking UDP socket bound to `address` in its SO_REUSEPORT group.
pub fn open(address: SocketAddr, receive_buffer_bytes: usize) -> io::Result<(OwnedFd, Opened)> {
    let family = if address.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscall; the fd is owned right after.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    if let SocketAddr::V6(v6) = address {
        // `[::]:P` takes IPv4 too (as mapped addresses) whatever the sysctl says.
        let v6only = if v6.ip().is_unspecified() { 0 } else { 1 };
        set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, v6only)?;
    }
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    let forced = set_receive_buffer(fd, receive_buffer_bytes)?;
    // Kernels before 5.1 only have the old option; on 64-bit its timespec
    // has the same layout.
    if set_int(fd, libc::SOL_SOCKET, SO_TIMESTAMPNS_NEW, 1).is_err() {
        set_int(fd, libc::SOL_SOCKET, SO_TIMESTAMPNS_OLD, 1)?;
    }
    set_int(fd, libc::SOL_SOCKET, SO_RXQ_OVFL, 1)?;
    bind(fd, address)?;
    Ok((socket, Opened { receive_buffer_bytes: receive_buffer_bytes_of(fd)?, forced }))
}

/// Sets the receive buffer: SO_RCVBUFFORCE when permitted, else SO_RCVBUF.
/// Returns whether the forced size was taken.
pub fn set_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<bool> {
    let bytes = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    if set_int(fd, libc::SOL_SOCKET, SO_RCVBUFFORCE, bytes).is_ok() {
        return Ok(true);
    }
    set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)?;
    Ok(false)
}

/// SO_RCVBUF as the kernel reports it.
pub fn receive_buffer_bytes_of(fd: RawFd) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for the call.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&raw mut value).cast(), &mut len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value as usize)
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    let len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value outlives the call; len is its size.
    let r = unsafe { libc::setsockopt(fd, level, name, (&raw const value).cast(), len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind(fd: RawFd, address: SocketAddr) -> io::Result<()> {
    // SAFETY: sockaddr_storage is plain data; zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match address {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: storage holds a valid address of `len` bytes.
    let r = unsafe { libc::bind(fd, (&raw const storage).cast(), len as libc::socklen_t) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Room for the control messages of one datagram: a 16-byte timespec and a
/// 4-byte drop counter, each with its 16-byte header, rounded up.
const CONTROL_BYTES: usize = 64;

/// One received datagram, borrowed from its `ReceiveBatch`.
pub struct Received<'a> {
    pub payload: &'a [u8],
    /// The source address, IPv4 as IPv4-mapped IPv6 (the flow record's form).
    pub exporter: Addr,
    /// Kernel receive time (SO_TIMESTAMPNS_NEW), nanoseconds since the epoch.
    pub timestamp_ns: Option<u64>,
    /// The socket's cumulative kernel drop count (SO_RXQ_OVFL) when it was
    /// queued; the kernel sends it only once the count is above zero.
    pub kernel_drops: Option<u32>,
    /// Longer than the buffer: the payload is cut and must be dropped.
    pub truncated: bool,
}

/// Preallocated buffers for one recvmmsg call. Holds raw pointers into its
/// own heap buffers, so it stays on the shard thread that made it.
pub struct ReceiveBatch {
    datagram_bytes_max: usize,
    payloads: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<[u64; CONTROL_BYTES / 8]>,
    headers: Vec<libc::mmsghdr>,
    len: usize,
}

impl ReceiveBatch {
    pub fn new(datagrams_max: usize, datagram_bytes_max: usize) -> Self {
        let mut b = ReceiveBatch {
            datagram_bytes_max,
            payloads: vec![0; datagrams_max * datagram_bytes_max],
            // SAFETY (the zeroed calls): plain C structs; zero is valid.
            iovecs: vec![unsafe { zeroed() }; datagrams_max],
            names: vec![unsafe { zeroed() }; datagrams_max],
            controls: vec![[0; CONTROL_BYTES / 8]; datagrams_max],
            headers: vec![unsafe { zeroed() }; datagrams_max],
            len: 0,
        };
        for i in 0..datagrams_max {
            b.iovecs[i].iov_base = b.payloads[i * datagram_bytes_max..].as_mut_ptr().cast();
            b.iovecs[i].iov_len = datagram_bytes_max;
            let h = &mut b.headers[i].msg_hdr;
            h.msg_iov = &raw mut b.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_name = (&raw mut b.names[i]).cast();
            h.msg_control = b.controls[i].as_mut_ptr().cast();
        }
        b
    }

    /// Receives up to `datagrams_max` datagrams without waiting. Ok(0): none
    /// were queued.
    pub fn receive(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        self.len = 0;
        for h in &mut self.headers {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = CONTROL_BYTES;
            h.msg_hdr.msg_flags = 0;
        }
        let n = self.headers.len() as libc::c_uint;
        // SAFETY: every header points into buffers owned by self, sized as declared.
        let r = unsafe {
            libc::recvmmsg(fd.as_raw_fd(), self.headers.as_mut_ptr(), n, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.len = r as usize;
        Ok(self.len)
    }

    /// Datagrams the last `receive` returned.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Datagrams one `receive` can return.
    pub fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// The i-th datagram of the last `receive`.
    pub fn get(&self, i: usize) -> Received<'_> {
        debug_assert!(i < self.len);
        let h = &self.headers[i];
        let len = (h.msg_len as usize).min(self.datagram_bytes_max);
        let payload = &self.payloads[i * self.datagram_bytes_max..][..len];
        let (timestamp_ns, kernel_drops) = read_control(&h.msg_hdr);
        Received {
            payload,
            exporter: exporter_of(&self.names[i]),
            timestamp_ns,
            kernel_drops,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }
}

fn read_control(h: &libc::msghdr) -> (Option<u64>, Option<u32>) {
    let (mut timestamp, mut drops) = (None, None);
    // SAFETY: the kernel wrote msg_controllen bytes of well-formed cmsgs into
    // our buffer; the CMSG_* walkers stay inside it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            let data = libc::CMSG_DATA(c);
            if level == libc::SOL_SOCKET && (kind == SO_TIMESTAMPNS_NEW || kind == SO_TIMESTAMPNS_OLD) {
                let ts = data.cast::<[i64; 2]>().read_unaligned();
                timestamp = Some((ts[0] as u64).wrapping_mul(1_000_000_000).wrapping_add(ts[1] as u64));
            } else if level == libc::SOL_SOCKET && kind == SO_RXQ_OVFL {
                drops = Some(data.cast::<u32>().read_unaligned());
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (timestamp, drops)
}

fn exporter_of(name: &libc::sockaddr_storage) -> Addr {
    match name.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            weir_core::flow::addr_from_v4(sin.sin_addr.s_addr.to_ne_bytes())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_addr.s6_addr
        }
        _ => [0; 16],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn a_batch_carries_payloads_sources_and_kernel_timestamps() {
        let (socket, opened) = open("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(opened.receive_buffer_bytes >= 1 << 20);
        let local = UdpSocket::from(socket);
        let address = local.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            sender.send_to(&[i; 10], address).unwrap();
        }
        let mut batch = ReceiveBatch::new(4, 2048);
        assert_eq!(batch.receive(&local).unwrap(), 4);
        let mut last = 0;
        for i in 0..4 {
            let d = batch.get(i);
            assert_eq!(d.payload, &[i as u8; 10]);
            assert_eq!(d.exporter, weir_core::flow::addr_from_v4([127, 0, 0, 1]));
            let ts = d.timestamp_ns.expect("kernel timestamp");
            // In order, but the wall clock they read may be stepped back a
            // little (NTP) between two datagrams.
            assert!(ts + 1_000_000_000 >= last, "{ts} after {last}");
            last = ts;
            assert_eq!(d.kernel_drops, None, "no drops yet: the kernel sends no counter");
            assert!(!d.truncated);
        }
        assert_eq!(batch.receive(&local).unwrap(), 1);
        assert_eq!(batch.receive(&local).unwrap(), 0, "empty queue is not an error");
    }

    #[test]
    fn a_datagram_longer_than_the_buffer_is_flagged() {
        let (socket, _) = open("[::1]:0".parse().unwrap(), 1 << 16).unwrap();
        let local = UdpSocket::from(socket);
        let sender = UdpSocket::bind("[::1]:0").unwrap();
        sender.send_to(&[7; 1000], local.local_addr().unwrap()).unwrap();
        let mut batch = ReceiveBatch::new(2, 512);
        assert_eq!(batch.receive(&local).unwrap(), 1);
        let d = batch.get(0);
        assert!(d.truncated);
        assert_eq!(d.payload.len(), 512);
        assert_eq!(d.exporter, std::net::Ipv6Addr::LOCALHOST.octets());
    }
}

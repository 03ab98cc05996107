//! The unix datagram socket HAProxy logs to: created with the configured
//! mode and owner, read in batches (recvmmsg), and its queue watched
//! (sock_diag).
//!
//! A unix datagram socket queues at most `net.unix.max_dgram_qlen`
//! datagrams (per network namespace; 512 on recent kernels), whatever its
//! receive buffer: that count, not the bytes, is what fills first with
//! access-log lines, so the queue depth is read as a count.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use weir_core::config::HaproxyConfig;

/// The bound socket; its file is removed when dropped.
pub struct LogSocket {
    pub socket: UnixDatagram,
    pub path: PathBuf,
    /// The socket's inode in sockfs, for sock_diag.
    inode: u32,
    /// The socket file's (device, inode): removed only while it is ours.
    file: (u64, u64),
    /// SO_RCVBUF as granted.
    pub buffer_bytes: usize,
}

impl LogSocket {
    /// Removes the socket file, if it is still the one we created (not a
    /// successor's): new lines then fail at HAProxy, while the ones
    /// already queued can still be read.
    pub fn unlink(&self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.file {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for LogSocket {
    fn drop(&mut self) {
        self.unlink();
    }
}

/// Creates the socket file. A socket file left by an earlier run is
/// replaced; one another process still reads from is refused, and so is
/// any file that is not a socket.
pub fn create(config: &HaproxyConfig) -> Result<LogSocket, String> {
    let path = &config.socket;
    let at = |e: &dyn std::fmt::Display| format!("haproxy.socket {}: {e}", path.display());
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            let probe = UnixDatagram::unbound().map_err(|e| at(&e))?;
            if probe.connect(path).is_ok() {
                return Err(at(&"in use: another process reads this socket"));
            }
            std::fs::remove_file(path).map_err(|e| at(&format!("removing the stale socket: {e}")))?;
        }
        Ok(_) => return Err(at(&"exists and is not a socket: not replacing it")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| at(&format!("creating its directory: {e}")))?;
            }
        }
        Err(e) => return Err(at(&e)),
    }
    let socket = UnixDatagram::bind(path).map_err(|e| at(&e))?;
    let cleanup = |e: String| {
        let _ = std::fs::remove_file(path);
        e
    };
    let mode = u32::from_str_radix(&config.socket_mode, 8).unwrap_or(0o660);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| cleanup(at(&format!("socket_mode: {e}"))))?;
    let uid = config.socket_owner.as_deref().map(user_id).transpose().map_err(|e| cleanup(at(&e)))?;
    let gid = config.socket_group.as_deref().map(group_id).transpose().map_err(|e| cleanup(at(&e)))?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(path, uid, gid).map_err(|e| cleanup(at(&format!("chown: {e}"))))?;
    }
    let fd = socket.as_raw_fd();
    let _ = crate::receive::socket::set_receive_buffer(fd, config.receive_buffer_bytes);
    let buffer_bytes = crate::receive::socket::receive_buffer_bytes_of(fd).unwrap_or(0);
    // Wake up regularly to see the stop flag and update the queue gauge.
    socket.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| cleanup(at(&e)))?;
    let inode = socket_inode(fd).map_err(|e| cleanup(at(&e)))?;
    let file = std::fs::symlink_metadata(path).map_err(|e| cleanup(at(&e)))?;
    let file = (std::os::unix::fs::MetadataExt::dev(&file), std::os::unix::fs::MetadataExt::ino(&file));
    Ok(LogSocket { socket, path: path.clone(), inode, file, buffer_bytes })
}

fn socket_inode(fd: RawFd) -> io::Result<u32> {
    // SAFETY: stat is plain data filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; st is valid for the call.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_ino as u32)
}

/// A user name or number.
fn user_id(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name).map_err(|_| format!("socket_owner {name:?}: not a user name"))?;
    // SAFETY: getpwnam reads a NUL-terminated name; the result is read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(format!("socket_owner: no user {name:?}"));
    }
    // SAFETY: non-null entry from getpwnam.
    Ok(unsafe { (*pw).pw_uid })
}

/// A group name or number.
fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name).map_err(|_| format!("socket_group {name:?}: not a group name"))?;
    // SAFETY: getgrnam reads a NUL-terminated name; the result is read at once.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return Err(format!("socket_group: no group {name:?}"));
    }
    // SAFETY: non-null entry from getgrnam.
    Ok(unsafe { (*gr).gr_gid })
}

/// `net.unix.max_dgram_qlen`: how many datagrams the socket queues.
pub fn max_queue_datagrams() -> u64 {
    std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

impl LogSocket {
    /// Datagrams waiting in the socket's queue (sock_diag UNIX_DIAG_RQLEN).
    pub fn queued_datagrams(&self) -> io::Result<u64> {
        queue_length(self.inode)
    }
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_RQLEN: u16 = 4;

fn queue_length(inode: u32) -> io::Result<u64> {
    // SAFETY: plain socket call; the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let fd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    // nlmsghdr (16 bytes) + unix_diag_req (24 bytes).
    let mut request = [0u8; 40];
    request[0..4].copy_from_slice(&40u32.to_ne_bytes());
    request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    request[16] = libc::AF_UNIX as u8;
    request[20..24].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    request[24..28].copy_from_slice(&inode.to_ne_bytes());
    request[28..32].copy_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes());
    request[32..40].copy_from_slice(&[0xff; 8]); // no cookie
                                                 // SAFETY: the buffer is valid for its length; the kernel is the peer
                                                 // (a zeroed sockaddr_nl addresses it).
    let sent = unsafe {
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            fd.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 512];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_rqlen(&reply[..n as usize])
}

/// The receive queue length from a sock_diag reply.
fn parse_rqlen(reply: &[u8]) -> io::Result<u64> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"));
    let u16_at = |i: usize| reply.get(i..i + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |i: usize| reply.get(i..i + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let kind = u16_at(4).ok_or_else(|| bad("short reply"))?;
    if kind == libc::NLMSG_ERROR as u16 {
        let errno = u32_at(16).map_or(0, |e| -(e as i32));
        return Err(io::Error::from_raw_os_error(errno));
    }
    let len = (u32_at(0).ok_or_else(|| bad("short reply"))? as usize).min(reply.len());
    // nlmsghdr (16) + unix_diag_msg (16), then rtattr-framed attributes.
    let mut at = 32;
    while at + 4 <= len {
        let (attr_len, attr_type) = (u16_at(at).unwrap_or(0) as usize, u16_at(at + 2).unwrap_or(0));
        if attr_len < 4 {
            break;
        }
        if attr_type == UNIX_DIAG_RQLEN {
            return u32_at(at + 4).map(u64::from).ok_or_else(|| bad("short RQLEN"));
        }
        at += (attr_len + 3) & !3;
    }
    Err(bad("no RQLEN attribute"))
}

/// One recvmmsg worth of lines.
pub struct LineBatch {
    buffer: Vec<u8>,
    line_max: usize,
    lengths: Vec<usize>,
    truncated: Vec<bool>,
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    len: usize,
}

// SAFETY: the raw pointers in headers and iovecs point into `buffer` and
// `iovecs`, owned by the batch; it moves to the log shard's thread whole.
unsafe impl Send for LineBatch {}

impl LineBatch {
    pub fn new(lines: usize, line_max: usize) -> LineBatch {
        LineBatch {
            buffer: vec![0; lines * line_max],
            line_max,
            lengths: vec![0; lines],
            truncated: vec![false; lines],
            // SAFETY: mmsghdr and iovec are plain data; zero is valid.
            headers: vec![unsafe { std::mem::zeroed() }; lines],
            iovecs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; lines],
            len: 0,
        }
    }

    /// Waits up to the socket's read timeout for lines, then takes what is
    /// queued, up to the batch size. Ok(0) on the timeout or a signal.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        self.receive_flags(fd, libc::MSG_WAITFORONE)
    }

    /// Takes what is queued without waiting.
    pub fn receive_now(&mut self, fd: RawFd) -> io::Result<usize> {
        self.receive_flags(fd, libc::MSG_DONTWAIT)
    }

    fn receive_flags(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        for i in 0..self.lengths.len() {
            self.iovecs[i] = libc::iovec {
                // SAFETY: in bounds: i < lines, each slot line_max long.
                iov_base: unsafe { self.buffer.as_mut_ptr().add(i * self.line_max) }.cast(),
                iov_len: self.line_max,
            };
            // SAFETY: zero is a valid msghdr.
            self.headers[i].msg_hdr = unsafe { std::mem::zeroed() };
            self.headers[i].msg_hdr.msg_iov = &raw mut self.iovecs[i];
            self.headers[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: headers point at iovecs and buffer, valid for the call.
        let n = unsafe {
            libc::recvmmsg(fd, self.headers.as_mut_ptr(), self.headers.len() as u32, flags, std::ptr::null_mut())
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.len = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.len = n as usize;
        for i in 0..self.len {
            self.lengths[i] = (self.headers[i].msg_len as usize).min(self.line_max);
            self.truncated[i] = self.headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        Ok(self.len)
    }

    /// Line `i` of the last receive and whether the kernel cut it.
    pub fn get(&self, i: usize) -> (&[u8], bool) {
        let start = i * self.line_max;
        (&self.buffer[start..start + self.lengths[i]], self.truncated[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(dir: &Path) -> HaproxyConfig {
        HaproxyConfig { enabled: true, socket: dir.join("sub/log.sock"), ..Default::default() }
    }

    /// A fresh directory for a test's sockets, removed when the test ends.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("weir-haproxy-socket-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    #[test]
    fn created_with_its_mode_and_replacing_only_stale_sockets() {
        let dir = temp_dir("create");
        let mut c = config(&dir);
        c.socket_mode = "0620".into();
        let s = create(&c).unwrap();
        let mode = std::fs::metadata(&c.socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o620);
        assert!(create(&c).err().unwrap().contains("in use"), "a live socket is not taken over");
        // A socket nobody reads any more is stale: replaced.
        let stale = UnixDatagram::bind(dir.join("stale.sock")).unwrap();
        drop(stale);
        drop(s);
        assert!(!c.socket.exists(), "removed on drop");
        let mut c2 = config(&dir);
        c2.socket = dir.join("stale.sock");
        let s2 = create(&c2).unwrap();
        // Replaced by someone else meanwhile: not ours to remove.
        std::fs::remove_file(&c2.socket).unwrap();
        let _other = UnixDatagram::bind(&c2.socket).unwrap();
        drop(s2);
        assert!(c2.socket.exists(), "a successor's socket file stays");
        // Not a socket: never replaced.
        std::fs::write(dir.join("file"), b"keep").unwrap();
        c2.socket = dir.join("file");
        assert!(create(&c2).err().unwrap().contains("not a socket"));
        assert_eq!(std::fs::read(dir.join("file")).unwrap(), b"keep");
        c2.socket_owner = Some("no-such-user-here".into());
        c2.socket = dir.join("owned.sock");
        assert!(create(&c2).err().unwrap().contains("no user"));
        assert!(!dir.join("owned.sock").exists(), "cleaned up after a failed set-up");
    }

    #[test]
    fn owner_and_group_by_name_or_number() {
        // SAFETY: plain libc call.
        if unsafe { libc::geteuid() } != 0 {
            return; // chown to another user needs root (CI runs as root)
        }
        use std::os::unix::fs::MetadataExt;
        let dir = temp_dir("owner");
        let mut c = config(&dir);
        c.socket_owner = Some("nobody".into());
        c.socket_group = Some("4321".into());
        let s = create(&c).unwrap();
        let m = std::fs::metadata(&s.path).unwrap();
        assert_eq!((m.uid(), m.gid()), (user_id("nobody").unwrap(), 4321));
        assert_eq!(group_id("root").unwrap(), 0);
        assert!(group_id("no-such-group-here").unwrap_err().contains("no group"));
    }

    #[test]
    fn batches_flag_cut_lines_and_the_queue_is_counted() {
        let dir = temp_dir("batch");
        let s = create(&config(&dir)).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        for line in [&b"one"[..], b"two", &[b'x'; 100]] {
            client.send_to(line, &s.path).unwrap();
        }
        assert_eq!(s.queued_datagrams().unwrap(), 3);
        let mut batch = LineBatch::new(8, 64);
        assert_eq!(batch.receive(s.socket.as_raw_fd()).unwrap(), 3);
        assert_eq!(batch.get(0), (&b"one"[..], false));
        assert_eq!(batch.get(1), (&b"two"[..], false));
        assert_eq!(batch.get(2), (&[b'x'; 64][..], true));
        assert_eq!(s.queued_datagrams().unwrap(), 0);
        // Nothing queued: the read timeout ends the wait with no lines.
        assert_eq!(batch.receive(s.socket.as_raw_fd()).unwrap(), 0);
        assert!(max_queue_datagrams() > 0);
    }
}

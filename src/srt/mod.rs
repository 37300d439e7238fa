//! SRT transport over the system libsrt 1.5 (what OBS and ffmpeg use): a listener that checks
//! each caller at handshake and hands accepted connections and their bytes to tokio.
//!
//! libsrt's calls block or wait on its own epoll, so none of them runs on the async runtime.
//! One dedicated thread (`srt-io`) owns the listener and every accepted socket: it waits in
//! `srt_epoll_uwait`, accepts, and reads each readable socket until it would block, handing the
//! bytes to the connection's bounded channel. A connection whose receiver is dropped (the
//! ingest session ended, was replaced or kicked) is closed on the thread's next round (at most
//! [`POLL_MS`] later); a connection libsrt reports broken (the caller left, or went silent past
//! libsrt's peer idle timeout) ends its channel.
//!
//! The [`Gate`] runs inside libsrt's handshake (`srt_listen_callback`, on libsrt's receive
//! thread) with the caller's address and stream id, before libsrt sends its conclusion: a
//! refused caller never gets a connection, so no media from it is read. The passphrase (AES)
//! is set on the listener; libsrt itself refuses a caller whose passphrase differs (or that has
//! none), right after the gate, and its log line is forwarded here.
//!
//! Why libsrt and not `srt-tokio` (pure Rust): srt-tokio 0.4.4 (2024) says of itself that it
//! is not production ready, while libsrt is the reference implementation every encoder talks
//! to; bindings are a handful of functions (see [`ffi`]).

mod ffi;

use std::ffi::{CStr, CString};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// How long the IO thread waits for an event before it looks for closed connections.
pub const POLL_MS: i64 = 100;
/// Batches of received bytes waiting for a connection's session (about 1 s at 25 Mb/s).
const CONNECTION_QUEUE: usize = 256;
/// Most bytes read from one socket per round before the others get their turn.
const MAX_BATCH: usize = 256 << 10;
/// libsrt's largest live-mode payload.
const MAX_PAYLOAD: usize = 1456;

#[derive(Debug, thiserror::Error)]
pub enum SrtError {
    #[error("libsrt: {call} failed: {reason}")]
    Call { call: &'static str, reason: String },
}

/// Why the gate refused a caller; each maps to an SRT rejection code the caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The stream id is malformed or names nothing (1400).
    BadRequest,
    /// The stream key is unknown (1401).
    Unauthorized,
    /// Too many connections (1402).
    Overload,
    /// Refused for another reason (1403).
    Forbidden,
    /// The caller asked to play (1405).
    BadMode,
}

/// Decides at handshake whether a caller may connect. Runs on libsrt's thread: quick, no IO.
pub trait Gate: Send + Sync + 'static {
    fn admit(&self, peer: SocketAddr, streamid: &str) -> Result<(), Refusal>;
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct SrtOptions {
    /// Receiver latency (ms); libsrt uses the larger of this and the caller's.
    pub latency_ms: u32,
    /// AES passphrase (10 to 79 characters); `None`: unencrypted callers only.
    pub passphrase: Option<String>,
    /// Connections at once; the gate is asked about more only while fewer are open.
    pub max_connections: usize,
}

/// An accepted caller: its address, stream id and bytes. Dropping it closes the connection.
#[derive(Debug)]
pub struct SrtConnection {
    pub peer: SocketAddr,
    pub streamid: String,
    /// Received bytes, in order; ends when the caller leaves or the connection breaks.
    pub data: mpsc::Receiver<Bytes>,
    /// Bytes the IO thread dropped because the session did not keep up.
    pub dropped: Arc<AtomicU64>,
}

/// The running listener. Dropping it stops the IO thread and closes every connection.
pub struct SrtListener {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SrtListener {
    /// Binds `addr` and starts the IO thread; accepted connections arrive on the receiver.
    pub fn bind(
        addr: SocketAddr,
        opts: SrtOptions,
        gate: Arc<dyn Gate>,
    ) -> Result<(SrtListener, mpsc::Receiver<SrtConnection>), SrtError> {
        startup();
        // SAFETY (all calls below): plain libsrt calls on a socket this function owns, with
        // pointers to live locals and their true lengths.
        let sock = unsafe { ffi::srt_create_socket() };
        if sock == ffi::SRT_INVALID_SOCK {
            return Err(last_error("srt_create_socket"));
        }
        let fail = |call| {
            let e = last_error(call);
            unsafe { ffi::srt_close(sock) };
            e
        };
        let no: c_int = 0;
        let latency = opts.latency_ms as c_int;
        set_int(sock, ffi::SRTO_RCVSYN, no).map_err(|_| fail("SRTO_RCVSYN"))?;
        set_int(sock, ffi::SRTO_LATENCY, latency).map_err(|_| fail("SRTO_LATENCY"))?;
        if let Some(p) = &opts.passphrase {
            let r = unsafe {
                ffi::srt_setsockflag(
                    sock,
                    ffi::SRTO_PASSPHRASE,
                    p.as_ptr().cast(),
                    p.len() as c_int,
                )
            };
            if r == ffi::SRT_ERROR {
                return Err(fail("SRTO_PASSPHRASE"));
            }
            set_int(sock, ffi::SRTO_ENFORCEDENCRYPTION, 1)
                .map_err(|_| fail("SRTO_ENFORCEDENCRYPTION"))?;
        }
        let active = Arc::new(AtomicUsize::new(0));
        // Leaked on purpose: libsrt may call the hook until the listener is closed, and the
        // closing happens on the IO thread; one small allocation per listener.
        let hook: &'static HookContext = Box::leak(Box::new(HookContext {
            gate,
            active: active.clone(),
            max: opts.max_connections,
        }));
        let r = unsafe {
            ffi::srt_listen_callback(sock, listen_hook, hook as *const HookContext as *mut c_void)
        };
        if r == ffi::SRT_ERROR {
            return Err(fail("srt_listen_callback"));
        }
        let (storage, len) = to_sockaddr(addr);
        if unsafe { ffi::srt_bind(sock, storage.as_ptr(), len) } == ffi::SRT_ERROR {
            return Err(fail("srt_bind"));
        }
        if unsafe { ffi::srt_listen(sock, 64) } == ffi::SRT_ERROR {
            return Err(fail("srt_listen"));
        }
        let local = local_addr(sock).unwrap_or(addr);
        let eid = unsafe { ffi::srt_epoll_create() };
        if eid < 0 {
            return Err(fail("srt_epoll_create"));
        }
        let events = ffi::SRT_EPOLL_IN | ffi::SRT_EPOLL_ERR;
        if unsafe { ffi::srt_epoll_add_usock(eid, sock, &events) } == ffi::SRT_ERROR {
            unsafe { ffi::srt_epoll_release(eid) };
            return Err(fail("srt_epoll_add_usock"));
        }
        let (tx, rx) = mpsc::channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let io = IoThread {
            listener: sock,
            eid,
            accepted: tx,
            conns: Vec::new(),
            active,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("srt-io".into())
            .spawn(move || io.run())
            .map_err(|e| SrtError::Call {
                call: "spawn srt-io thread",
                reason: e.to_string(),
            })?;
        Ok((
            SrtListener {
                local,
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// The bound address (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for SrtListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct HookContext {
    gate: Arc<dyn Gate>,
    active: Arc<AtomicUsize>,
    max: usize,
}

/// `srt_listen_callback` hook: runs during a caller's handshake on libsrt's thread.
unsafe extern "C" fn listen_hook(
    opaque: *mut c_void,
    ns: ffi::SRTSOCKET,
    hs_version: c_int,
    peer: *const libc::sockaddr,
    streamid: *const c_char,
) -> c_int {
    // SAFETY: `opaque` is the leaked HookContext given in bind; libsrt passes a valid peer
    // address and a NUL-terminated stream id (or null) for the call's duration.
    let verdict = std::panic::catch_unwind(|| {
        let ctx = unsafe { &*(opaque as *const HookContext) };
        let peer = unsafe { from_sockaddr(peer) }.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        if hs_version < 5 {
            warn!(%peer, "srt connection refused: the caller speaks SRT before 1.3 (no stream id)");
            return Err(Refusal::BadRequest);
        }
        if ctx.active.load(Ordering::Relaxed) >= ctx.max {
            warn!(%peer, limit = ctx.max, "srt connection refused: srt.max_connections reached");
            return Err(Refusal::Overload);
        }
        let sid = if streamid.is_null() {
            String::new()
        } else {
            unsafe { CStr::from_ptr(streamid) }
                .to_string_lossy()
                .into_owned()
        };
        ctx.gate.admit(peer, &sid)
    })
    .unwrap_or(Err(Refusal::Forbidden));
    match verdict {
        Ok(()) => 0,
        Err(r) => {
            let code = match r {
                Refusal::BadRequest => ffi::SRT_REJX_BAD_REQUEST,
                Refusal::Unauthorized => ffi::SRT_REJX_UNAUTHORIZED,
                Refusal::Overload => ffi::SRT_REJX_OVERLOAD,
                Refusal::Forbidden => ffi::SRT_REJX_FORBIDDEN,
                Refusal::BadMode => ffi::SRT_REJX_BAD_MODE,
            };
            unsafe { ffi::srt_setrejectreason(ns, code) };
            -1
        }
    }
}

struct Conn {
    sock: ffi::SRTSOCKET,
    tx: mpsc::Sender<Bytes>,
    dropped: Arc<AtomicU64>,
}

struct IoThread {
    listener: ffi::SRTSOCKET,
    eid: c_int,
    accepted: mpsc::Sender<SrtConnection>,
    conns: Vec<Conn>,
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl IoThread {
    fn run(mut self) {
        let mut events = [ffi::SRT_EPOLL_EVENT::default(); 64];
        let mut buf = vec![0u8; MAX_PAYLOAD + 64];
        let mut last_sweep = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            // SAFETY: `events` is a live array of its stated length.
            let n = unsafe {
                ffi::srt_epoll_uwait(
                    self.eid,
                    events.as_mut_ptr(),
                    events.len() as c_int,
                    POLL_MS,
                )
            };
            if n < 0 {
                let mut errno = 0;
                let code = unsafe { ffi::srt_getlasterror(&mut errno) };
                if code != ffi::SRT_ETIMEOUT {
                    warn!(error = %last_error("srt_epoll_uwait"), "srt listener wait failed");
                    std::thread::sleep(Duration::from_millis(POLL_MS as u64));
                }
            }
            for ev in events.iter().take(n.max(0) as usize) {
                if ev.fd == self.listener {
                    self.accept();
                } else {
                    self.read(ev.fd, ev.events, &mut buf);
                }
            }
            if last_sweep.elapsed() >= Duration::from_millis(POLL_MS as u64) {
                last_sweep = Instant::now();
                let closed: Vec<ffi::SRTSOCKET> = self
                    .conns
                    .iter()
                    .filter(|c| c.tx.is_closed())
                    .map(|c| c.sock)
                    .collect();
                for s in closed {
                    self.close(s);
                }
            }
        }
        for s in self.conns.iter().map(|c| c.sock).collect::<Vec<_>>() {
            self.close(s);
        }
        // SAFETY: the listener and epoll are owned by this thread and no longer used.
        unsafe {
            ffi::srt_close(self.listener);
            ffi::srt_epoll_release(self.eid);
        }
    }

    /// Accepts one pending caller (the epoll reports the listener again while more wait;
    /// calling `srt_accept` with none pending would log an error in libsrt).
    fn accept(&mut self) {
        let mut storage = [0u8; std::mem::size_of::<libc::sockaddr_storage>()];
        let mut len = storage.len() as c_int;
        // SAFETY: `storage` is large enough for any socket address and `len` says so.
        let s = unsafe { ffi::srt_accept(self.listener, storage.as_mut_ptr().cast(), &mut len) };
        if s == ffi::SRT_INVALID_SOCK {
            return;
        }
        let peer = unsafe { from_sockaddr(storage.as_ptr().cast()) }
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let streamid = get_string(s, ffi::SRTO_STREAMID).unwrap_or_default();
        let _ = set_int(s, ffi::SRTO_RCVSYN, 0);
        let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let conn = SrtConnection {
            peer,
            streamid,
            data: rx,
            dropped: dropped.clone(),
        };
        if self.accepted.try_send(conn).is_err() {
            warn!(%peer, "srt connection closed: the server is not taking connections");
            unsafe { ffi::srt_close(s) };
            return;
        }
        let events = ffi::SRT_EPOLL_IN | ffi::SRT_EPOLL_ERR;
        // SAFETY: `s` is the socket just accepted.
        unsafe { ffi::srt_epoll_add_usock(self.eid, s, &events) };
        self.active.fetch_add(1, Ordering::Relaxed);
        self.conns.push(Conn {
            sock: s,
            tx,
            dropped,
        });
        debug!(%peer, "srt connection accepted");
    }

    fn read(&mut self, sock: ffi::SRTSOCKET, events: c_int, buf: &mut [u8]) {
        let Some(i) = self.conns.iter().position(|c| c.sock == sock) else {
            // SAFETY: a socket the epoll still reports but no connection owns.
            unsafe { ffi::srt_epoll_remove_usock(self.eid, sock) };
            return;
        };
        let mut batch = Vec::new();
        let mut broken = false;
        loop {
            // SAFETY: `buf` is live and at least MAX_PAYLOAD long.
            let n = unsafe { ffi::srt_recvmsg(sock, buf.as_mut_ptr().cast(), buf.len() as c_int) };
            if n > 0 {
                batch.extend_from_slice(&buf[..n as usize]);
                if batch.len() >= MAX_BATCH {
                    break;
                }
                continue;
            }
            let mut errno = 0;
            let code = unsafe { ffi::srt_getlasterror(&mut errno) };
            broken = n == 0 || code != ffi::SRT_EASYNCRCV;
            break;
        }
        if events & ffi::SRT_EPOLL_ERR != 0 && batch.is_empty() {
            broken = true;
        }
        if !batch.is_empty() {
            let c = &self.conns[i];
            let len = batch.len() as u64;
            match c.tx.try_send(Bytes::from(batch)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    c.dropped.fetch_add(len, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => broken = true,
            }
        }
        if broken {
            self.close(sock);
        }
    }

    fn close(&mut self, sock: ffi::SRTSOCKET) {
        if let Some(i) = self.conns.iter().position(|c| c.sock == sock) {
            self.conns.swap_remove(i);
            self.active.fetch_sub(1, Ordering::Relaxed);
        }
        // SAFETY: the socket belongs to this thread; closing removes it from the epoll.
        unsafe {
            ffi::srt_epoll_remove_usock(self.eid, sock);
            ffi::srt_close(sock);
        }
    }
}

/// Starts libsrt once per process and sends its warnings and errors to `tracing`.
fn startup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: process-wide libsrt setup, done once before any other call.
        unsafe {
            ffi::srt_startup();
            ffi::srt_setloglevel(ffi::LOG_WARNING);
            ffi::srt_setlogflags(
                ffi::SRT_LOGF_DISABLE_TIME
                    | ffi::SRT_LOGF_DISABLE_THREADNAME
                    | ffi::SRT_LOGF_DISABLE_SEVERITY
                    | ffi::SRT_LOGF_DISABLE_EOL,
            );
            ffi::srt_setloghandler(std::ptr::null_mut(), log_handler);
        }
    });
}

/// libsrt log lines at most this often (a flood of garbage datagrams must not become a flood of
/// log lines); the rest are counted and reported with the next line let through.
const LOG_LINES_PER_SECOND: u64 = 10;

/// libsrt's log lines as `tracing` events (target `libsrt`). libsrt's warnings and errors name
/// no stream id, so they carry no stream key.
unsafe extern "C" fn log_handler(
    _opaque: *mut c_void,
    level: c_int,
    _file: *const c_char,
    _line: c_int,
    area: *const c_char,
    message: *const c_char,
) {
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    static IN_WINDOW: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let _ = std::panic::catch_unwind(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if WINDOW.swap(now, Ordering::Relaxed) != now {
            IN_WINDOW.store(0, Ordering::Relaxed);
        }
        if IN_WINDOW.fetch_add(1, Ordering::Relaxed) >= LOG_LINES_PER_SECOND {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // SAFETY: libsrt passes NUL-terminated strings (or null) for the call's duration.
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let (area, message) = (text(area), text(message));
        let message = message.trim().trim_start_matches(':').trim();
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        if level <= ffi::LOG_ERR {
            warn!(target: "libsrt", area, suppressed, "{message}");
        } else {
            tracing::info!(target: "libsrt", area, suppressed, "{message}");
        }
    });
}

fn last_error(call: &'static str) -> SrtError {
    // SAFETY: libsrt returns a pointer to a thread-local NUL-terminated string.
    let reason = unsafe {
        let p = ffi::srt_getlasterror_str();
        if p.is_null() {
            "unknown error".to_string()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    SrtError::Call { call, reason }
}

fn set_int(sock: ffi::SRTSOCKET, opt: c_int, value: c_int) -> Result<(), SrtError> {
    // SAFETY: an int option with a pointer to a live int.
    let r = unsafe {
        ffi::srt_setsockflag(
            sock,
            opt,
            (&value as *const c_int).cast(),
            std::mem::size_of::<c_int>() as c_int,
        )
    };
    if r == ffi::SRT_ERROR {
        Err(last_error("srt_setsockflag"))
    } else {
        Ok(())
    }
}

fn get_string(sock: ffi::SRTSOCKET, opt: c_int) -> Option<String> {
    let mut buf = [0u8; 513];
    let mut len = buf.len() as c_int;
    // SAFETY: a string option into a live buffer of the stated length.
    let r = unsafe { ffi::srt_getsockflag(sock, opt, buf.as_mut_ptr().cast(), &mut len) };
    if r == ffi::SRT_ERROR {
        return None;
    }
    let len = (len.max(0) as usize).min(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

fn local_addr(sock: ffi::SRTSOCKET) -> Option<SocketAddr> {
    let mut storage = [0u8; std::mem::size_of::<libc::sockaddr_storage>()];
    let mut len = storage.len() as c_int;
    // SAFETY: `storage` is large enough for any socket address and `len` says so.
    if unsafe { ffi::srt_getsockname(sock, storage.as_mut_ptr().cast(), &mut len) }
        == ffi::SRT_ERROR
    {
        return None;
    }
    unsafe { from_sockaddr(storage.as_ptr().cast()) }
}

/// A socket address as a C `sockaddr` (in storage aligned for it) and its length.
fn to_sockaddr(addr: SocketAddr) -> (SockAddrBuf, c_int) {
    let mut buf = SockAddrBuf(unsafe { std::mem::zeroed() });
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut buf.0 as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut buf.0 as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (buf, len as c_int)
}

struct SockAddrBuf(libc::sockaddr_storage);

impl SockAddrBuf {
    fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.0 as *const libc::sockaddr_storage).cast()
    }
}

/// Reads a C socket address (IPv4 or IPv6).
///
/// # Safety
/// `p` is null or points to a valid `sockaddr` of the family it names.
unsafe fn from_sockaddr(p: *const libc::sockaddr) -> Option<SocketAddr> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's promise; unaligned reads since libsrt's buffers may be bytes.
    unsafe {
        match (*p).sa_family as c_int {
            libc::AF_INET => {
                let sin = std::ptr::read_unaligned(p.cast::<libc::sockaddr_in>());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let sin6 = std::ptr::read_unaligned(p.cast::<libc::sockaddr_in6>());
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// A passphrase as libsrt wants it (no interior NUL), for validating configuration.
pub fn passphrase_ok(p: &str) -> bool {
    (10..=79).contains(&p.len()) && CString::new(p).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip() {
        for a in ["127.0.0.1:8890", "0.0.0.0:0", "[::1]:9000"] {
            let addr: SocketAddr = a.parse().expect("address");
            let (buf, _) = to_sockaddr(addr);
            assert_eq!(unsafe { from_sockaddr(buf.as_ptr()) }, Some(addr));
        }
        assert!(passphrase_ok("0123456789"));
        assert!(!passphrase_ok("short"));
    }
}

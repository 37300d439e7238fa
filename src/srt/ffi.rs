//! The part of libsrt 1.5's C API (`<srt/srt.h>`) that onair uses, declared by hand.
//!
//! Why not a crate: `libsrt-sys` and `srt-sys` vendor libsrt 1.4 and build it with cmake (one
//! of them with prebuilt OpenSSL binaries), and neither links the system library. onair links
//! the libsrt that Debian's ffmpeg already loads into the process (`libsrt1.5-gnutls`, found
//! through pkg-config in build.rs): a second libsrt with the same symbols in one process would
//! be asking for trouble. The declarations below are checked against `srt.h` of 1.5.1; only
//! plain integers, pointers and one two-field struct cross the boundary.

// C names kept as in srt.h, so the declarations can be checked against it line by line.
#![allow(non_camel_case_types, clippy::upper_case_acronyms)]

use std::os::raw::{c_char, c_int, c_void};

pub type SRTSOCKET = i32;

pub const SRT_INVALID_SOCK: SRTSOCKET = -1;
pub const SRT_ERROR: c_int = -1;

// SRT_SOCKOPT values.
pub const SRTO_RCVSYN: c_int = 2;
pub const SRTO_LATENCY: c_int = 23;
pub const SRTO_PASSPHRASE: c_int = 26;
pub const SRTO_STREAMID: c_int = 46;
pub const SRTO_ENFORCEDENCRYPTION: c_int = 53;

// SRT_EPOLL_OPT values.
pub const SRT_EPOLL_IN: c_int = 0x1;
pub const SRT_EPOLL_ERR: c_int = 0x8;

// SRT_ERRNO values that are not failures of a non-blocking call.
pub const SRT_EASYNCRCV: c_int = 6002;
pub const SRT_ETIMEOUT: c_int = 6003;

// Rejection codes a listen callback may set (`access_control.h`).
pub const SRT_REJX_BAD_REQUEST: c_int = 1400;
pub const SRT_REJX_UNAUTHORIZED: c_int = 1401;
pub const SRT_REJX_OVERLOAD: c_int = 1402;
pub const SRT_REJX_FORBIDDEN: c_int = 1403;
pub const SRT_REJX_BAD_MODE: c_int = 1405;

// Logging (`logging_api.h`; levels are syslog's).
pub const LOG_ERR: c_int = 3;
pub const LOG_WARNING: c_int = 4;
pub const SRT_LOGF_DISABLE_TIME: c_int = 1;
pub const SRT_LOGF_DISABLE_THREADNAME: c_int = 2;
pub const SRT_LOGF_DISABLE_SEVERITY: c_int = 4;
pub const SRT_LOGF_DISABLE_EOL: c_int = 8;

/// `SRT_EPOLL_EVENT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SRT_EPOLL_EVENT {
    pub fd: SRTSOCKET,
    pub events: c_int,
}

/// `srt_listen_callback_fn`: returns 0 to accept the caller, -1 to reject it.
pub type srt_listen_callback_fn = unsafe extern "C" fn(
    opaque: *mut c_void,
    ns: SRTSOCKET,
    hs_version: c_int,
    peer: *const libc::sockaddr,
    streamid: *const c_char,
) -> c_int;

/// `SRT_LOG_HANDLER_FN`.
pub type srt_log_handler_fn = unsafe extern "C" fn(
    opaque: *mut c_void,
    level: c_int,
    file: *const c_char,
    line: c_int,
    area: *const c_char,
    message: *const c_char,
);

extern "C" {
    pub fn srt_startup() -> c_int;
    pub fn srt_create_socket() -> SRTSOCKET;
    pub fn srt_bind(u: SRTSOCKET, name: *const libc::sockaddr, namelen: c_int) -> c_int;
    pub fn srt_listen(u: SRTSOCKET, backlog: c_int) -> c_int;
    pub fn srt_accept(u: SRTSOCKET, addr: *mut libc::sockaddr, addrlen: *mut c_int) -> SRTSOCKET;
    pub fn srt_listen_callback(
        lsn: SRTSOCKET,
        hook: srt_listen_callback_fn,
        opaque: *mut c_void,
    ) -> c_int;
    pub fn srt_close(u: SRTSOCKET) -> c_int;
    pub fn srt_getsockname(u: SRTSOCKET, name: *mut libc::sockaddr, namelen: *mut c_int) -> c_int;
    pub fn srt_setsockflag(u: SRTSOCKET, opt: c_int, optval: *const c_void, optlen: c_int)
        -> c_int;
    pub fn srt_getsockflag(
        u: SRTSOCKET,
        opt: c_int,
        optval: *mut c_void,
        optlen: *mut c_int,
    ) -> c_int;
    pub fn srt_recvmsg(u: SRTSOCKET, buf: *mut c_char, len: c_int) -> c_int;
    pub fn srt_getlasterror(errno_loc: *mut c_int) -> c_int;
    pub fn srt_getlasterror_str() -> *const c_char;
    pub fn srt_setrejectreason(u: SRTSOCKET, value: c_int) -> c_int;
    pub fn srt_epoll_create() -> c_int;
    pub fn srt_epoll_add_usock(eid: c_int, u: SRTSOCKET, events: *const c_int) -> c_int;
    pub fn srt_epoll_remove_usock(eid: c_int, u: SRTSOCKET) -> c_int;
    pub fn srt_epoll_uwait(
        eid: c_int,
        fds: *mut SRT_EPOLL_EVENT,
        fds_size: c_int,
        timeout_ms: i64,
    ) -> c_int;
    pub fn srt_epoll_release(eid: c_int) -> c_int;
    pub fn srt_setloglevel(level: c_int);
    pub fn srt_setlogflags(flags: c_int);
    pub fn srt_setloghandler(opaque: *mut c_void, handler: srt_log_handler_fn);
}

//! The process's open-file limit against the connection budgets the configuration sets.
//!
//! Every connection is a file descriptor: `rtmp.max_connections`, `http.max_connections` and
//! `http.max_event_streams` together (plus a reserve for listeners, the database, recordings and
//! the runtime) must fit `RLIMIT_NOFILE`, or the server runs out of descriptors at accept
//! (`EMFILE`) and *every* kind of client waits, not only the surplus. `main.rs` raises the soft
//! limit to the hard limit at start ([`raise_open_file_limit`]) and fits the budgets to what it
//! got ([`fit`]): the event-stream budget, the one that holds connections for hours, gives way,
//! so past it a subscriber is answered 503 while playlists, segments and posts go on.
//! `check-config` reports the same arithmetic ([`budget`]) without changing anything.

use crate::config::Config;

/// Descriptors kept aside from the connection budgets: listeners, the database and its journal,
/// log and recording files, the runtime's epoll and wake-up descriptors, SRT's sockets.
pub const RESERVED_FDS: u64 = 256;

/// The soft and hard open-file limits after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// What the process had at start.
    pub before: u64,
    /// What it has now (the hard limit, unless raising failed).
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (an unprivileged process may), and says
/// what it got. An error only when the limit cannot even be read.
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = to_u64(lim.rlim_cur);
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit we own; raising the soft limit up to the hard
        // limit is always allowed, and a failure leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(OpenFileLimit {
        before,
        soft: to_u64(lim.rlim_cur),
        hard: to_u64(lim.rlim_max),
    })
}

/// `rlim_t` is `u64` on 64-bit Linux and narrower on some other targets.
#[allow(clippy::unnecessary_cast)]
fn to_u64(v: libc::rlim_t) -> u64 {
    v as u64
}

/// The descriptors the configured budgets need, by key, against a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub rtmp: u64,
    pub http: u64,
    pub event_streams: u64,
    pub limit: u64,
}

impl Budget {
    pub fn needed(&self) -> u64 {
        self.rtmp + self.http + self.event_streams + RESERVED_FDS
    }

    pub fn fits(&self) -> bool {
        self.needed() <= self.limit
    }

    /// The largest `http.max_event_streams` that fits the limit (at least 1, so event streams
    /// still work when the other budgets alone exceed it).
    pub fn event_streams_that_fit(&self) -> u64 {
        self.limit
            .saturating_sub(self.rtmp + self.http + RESERVED_FDS)
            .max(1)
    }

    /// One sentence naming the keys, for logs and `check-config`.
    pub fn describe(&self) -> String {
        format!(
            "rtmp.max_connections ({}) + http.max_connections ({}) + http.max_event_streams ({}) \
             + {RESERVED_FDS} reserved need {} file descriptors; the open-file limit is {}",
            self.rtmp,
            self.http,
            self.event_streams,
            self.needed(),
            self.limit
        )
    }
}

/// What the configuration's connection budgets need against `limit` open files.
pub fn budget(cfg: &Config, limit: u64) -> Budget {
    Budget {
        rtmp: cfg.rtmp.max_connections as u64,
        http: cfg.http.max_connections as u64,
        event_streams: cfg.http.max_event_streams as u64,
        limit,
    }
}

/// Lowers `http.max_event_streams` until the budgets fit `limit`; returns the budget as
/// configured when it had to (for the caller's warning), `None` when it already fitted.
pub fn fit(cfg: &mut Config, limit: u64) -> Option<Budget> {
    let b = budget(cfg, limit);
    if b.fits() {
        return None;
    }
    cfg.http.max_event_streams = usize::try_from(b.event_streams_that_fit()).unwrap_or(usize::MAX);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_fit_the_limit_by_giving_way_on_event_streams() {
        let mut cfg = Config::default();
        // The defaults: 256 + 4096 + 20000 + reserve.
        assert_eq!(
            budget(&cfg, 1 << 20).needed(),
            256 + 4096 + 20_000 + RESERVED_FDS
        );
        assert_eq!(fit(&mut cfg, 1 << 20), None);
        assert_eq!(cfg.http.max_event_streams, 20_000);

        let told = fit(&mut cfg, 20_000).expect("does not fit 20000");
        assert_eq!(told.event_streams, 20_000);
        assert!(told.describe().contains("http.max_event_streams (20000)"));
        assert_eq!(cfg.http.max_event_streams, 20_000 - 256 - 4096 - 256);
        assert!(budget(&cfg, 20_000).fits());

        // A container's 1024: the other budgets alone exceed it; event streams keep one.
        let mut small = Config::default();
        fit(&mut small, 1024).expect("does not fit");
        assert_eq!(small.http.max_event_streams, 1);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let l = raise_open_file_limit().expect("getrlimit");
        assert!(l.soft >= l.before);
        assert_eq!(l.soft, l.hard);
    }
}

//! The delivery core: one task per target reads a bounded queue and delivers each post with
//! retries. It serves every kind of post through [`Destination`]: the go-live announcements
//! (`mod.rs`) and viewers' cross-posts (`identity::crosspost`). 429, 5xx, 408 and network errors (timeouts included) are retried with exponential
//! backoff and jitter, honouring `Retry-After` and `x-rate-limit-reset`; any other refusal
//! (401/403 above all) is final and logged once with the target's name and what to check.
//!
//! Each target has its own queue and task, so a slow or failing target never delays another,
//! and the dispatcher (`mod.rs`) only ever `try_send`s: the lifecycle loop never waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};

use std::future::Future;

use tokio::sync::Semaphore;

/// Counters of one target, read by `/metrics`. Relaxed atomics: plain counters, no ordering.
#[derive(Debug)]
pub struct TargetStats {
    pub name: String,
    /// HTTP requests made (every try counts; Bluesky's session request does not).
    pub attempts: AtomicU64,
    /// Posts delivered.
    pub successes: AtomicU64,
    /// Posts given up: refused for good, or still failing after `announce.tries`.
    pub failures: AtomicU64,
    /// Posts dropped because the target's queue was full.
    pub dropped: AtomicU64,
}

impl TargetStats {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            attempts: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// (attempts, successes, failures, dropped) at this moment.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.attempts.load(Ordering::Relaxed),
            self.successes.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// Every enabled target's counters, in configuration order.
#[derive(Debug, Default)]
pub struct AnnounceStats {
    pub targets: Vec<Arc<TargetStats>>,
}

impl AnnounceStats {
    pub fn target(&self, name: &str) -> Option<&TargetStats> {
        self.targets.iter().find(|t| t.name == name).map(|t| &**t)
    }
}

/// Where the queue delivers posts: a go-live target, or viewers' own accounts.
pub trait Destination: Send + Sync + 'static {
    type Post: Send + Sync + 'static;
    /// The name in logs and metrics.
    fn name(&self) -> &str;
    /// What a post is called in log lines ("announcement", "cross-post").
    fn noun(&self) -> &'static str;
    /// What an admin should check when the destination refuses us.
    fn credentials_hint(&self) -> &'static str;
    /// A post's channel and kind, for log fields.
    fn about<'p>(&self, p: &'p Self::Post) -> (&'p str, &'static str);
    /// One try: builds and sends the request(s).
    fn attempt<'a>(
        &'a self,
        p: &'a Self::Post,
    ) -> impl Future<Output = Result<(), AttemptError>> + Send + 'a;
    /// Told how a post ended (delivered or given up), once.
    fn finished(&self, _p: &Self::Post, _d: &Delivery) {}
}

/// How often and how patiently to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub tries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base: Duration,
    /// Cap on any wait, Retry-After included.
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1 for the first): exponential, capped, with "equal
    /// jitter" (between half and all of it) so that many servers do not retry in step.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }

    /// The wait before the next try after `err`.
    fn delay(&self, retry: u32, err: &AttemptError) -> Duration {
        match err {
            AttemptError::Status {
                retry_after: Some(d),
                ..
            } => (*d).min(self.max),
            _ => self.backoff(retry),
        }
    }
}

/// Why one try failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The target answered, but not with success.
    #[error("HTTP {status}: {detail}")]
    Status {
        status: StatusCode,
        /// What the answer asked for (Retry-After, x-rate-limit-reset).
        retry_after: Option<Duration>,
        /// The start of the answer's body.
        detail: String,
    },
    /// No answer: refused, reset, DNS, TLS, timeout.
    #[error("no answer: {detail}")]
    Network { detail: String },
    /// Something retrying cannot fix (a bad URL, an unexpected answer).
    #[error("{detail}")]
    Fatal { detail: String },
}

impl AttemptError {
    pub fn retryable(&self) -> bool {
        match self {
            AttemptError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || status.is_server_error()
            }
            AttemptError::Network { .. } => true,
            AttemptError::Fatal { .. } => false,
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            AttemptError::Status { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }

    /// A request error, with the URL removed (webhook URLs can carry a token).
    pub fn network(e: reqwest::Error) -> Self {
        let e = e.without_url();
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        let mut detail = format!("{kind}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(&format!(": {s}"));
            source = s.source();
        }
        AttemptError::Network { detail }
    }

    pub fn fatal(detail: impl Into<String>) -> Self {
        AttemptError::Fatal {
            detail: detail.into(),
        }
    }
}

/// Turns a non-success answer into [`AttemptError::Status`]; passes success through.
pub async fn check(resp: reqwest::Response) -> Result<reqwest::Response, AttemptError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = retry_after(status, resp.headers(), Utc::now());
    let body = resp.text().await.unwrap_or_default();
    Err(AttemptError::Status {
        status,
        retry_after,
        detail: snippet(&body),
    })
}

/// The first 300 characters of an answer, on one line.
pub fn snippet(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if one_line.trim().is_empty() {
        "(empty answer)".into()
    } else {
        one_line.trim().to_string()
    }
}

/// How long the target asks us to wait: `Retry-After` (seconds or an HTTP date), else, on 429,
/// X's `x-rate-limit-reset` (Unix time when the window reopens).
pub fn retry_after(status: StatusCode, h: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(v) = header("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(Duration::from_secs_f64(secs.min(86_400.0)));
            }
        }
        if let Ok(at) = DateTime::parse_from_rfc2822(v) {
            let d = at.with_timezone(&Utc) - now;
            return Some(d.to_std().unwrap_or(Duration::ZERO));
        }
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(reset) = header("x-rate-limit-reset").and_then(|v| v.parse::<i64>().ok()) {
            let d = reset.saturating_sub(now.timestamp());
            return Some(Duration::from_secs(d.clamp(0, 86_400) as u64));
        }
    }
    None
}

/// How a post ended on one target.
#[derive(Debug)]
pub enum Delivery {
    Delivered { tries: u32 },
    GaveUp { tries: u32, error: AttemptError },
    Cancelled,
}

/// Delivers one post to one destination, trying up to `policy.tries` times.
pub async fn deliver<D: Destination>(
    target: &D,
    a: &D::Post,
    policy: RetryPolicy,
    stats: &TargetStats,
    cancel: &CancellationToken,
) -> Delivery {
    let d = deliver_inner(target, a, policy, stats, cancel).await;
    if !matches!(d, Delivery::Cancelled) {
        target.finished(a, &d);
    }
    d
}

async fn deliver_inner<D: Destination>(
    target: &D,
    a: &D::Post,
    policy: RetryPolicy,
    stats: &TargetStats,
    cancel: &CancellationToken,
) -> Delivery {
    let name = target.name();
    let noun = target.noun();
    let (channel, event) = target.about(a);
    let mut try_no = 0;
    loop {
        try_no += 1;
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let result = tokio::select! {
            _ = cancel.cancelled() => return Delivery::Cancelled,
            r = target.attempt(a) => r,
        };
        let err = match result {
            Ok(()) => {
                stats.successes.fetch_add(1, Ordering::Relaxed);
                info!(
                    target = name,
                    channel,
                    event,
                    tries = try_no,
                    "{noun} posted"
                );
                return Delivery::Delivered { tries: try_no };
            }
            Err(e) => e,
        };
        if !err.retryable() || try_no >= policy.tries {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            let status = err.status();
            if status == Some(401) {
                error!(target = name, channel, status, error = %err,
                    "{noun} refused by {name}: credentials not accepted; check {} (not retried)", target.credentials_hint());
            } else if status == Some(403) {
                error!(target = name, channel, status, error = %err,
                    "{noun} refused by {name} (not retried): see its answer; if it is about permissions, check {}", target.credentials_hint());
            } else if err.retryable() {
                error!(target = name, channel, status, tries = try_no, error = %err,
                    "{noun} to {name} failed after {try_no} tries; giving up");
            } else {
                error!(target = name, channel, status, error = %err,
                    "{noun} refused by {name} (not retried)");
            }
            return Delivery::GaveUp {
                tries: try_no,
                error: err,
            };
        }
        let wait = policy.delay(try_no, &err);
        warn!(target = name, channel, status = err.status(), error = %err,
            retry_in_ms = wait.as_millis() as u64, try_no, "{noun} to {name} failed; will retry");
        tokio::select! {
            _ = cancel.cancelled() => return Delivery::Cancelled,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Starts a destination's task; returns the sending side of its bounded queue. With
/// `concurrency` 1 posts go out one after the other, in order (announcements); more lets that
/// many deliveries run at once (cross-posts, where one slow server must not hold up the
/// others' posts), each still retried on its own.
pub fn spawn_worker<D: Destination>(
    target: D,
    policy: RetryPolicy,
    queue: usize,
    concurrency: usize,
    stats: Arc<TargetStats>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> mpsc::Sender<Arc<D::Post>> {
    let (tx, mut rx) = mpsc::channel::<Arc<D::Post>>(queue);
    let span = tracing::info_span!("announce", target = %target.name());
    let target = Arc::new(target);
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let t = tracker.clone();
    tracker.spawn(
        async move {
            loop {
                let a = tokio::select! {
                    _ = cancel.cancelled() => break,
                    a = rx.recv() => match a {
                        Some(a) => a,
                        None => break,
                    },
                };
                if concurrency <= 1 {
                    if let Delivery::Cancelled =
                        deliver(&*target, &a, policy, &stats, &cancel).await
                    {
                        break;
                    }
                    continue;
                }
                let permit = tokio::select! {
                    _ = cancel.cancelled() => break,
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let (target, stats, cancel) = (target.clone(), stats.clone(), cancel.clone());
                t.spawn(
                    async move {
                        deliver(&*target, &a, policy, &stats, &cancel).await;
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
        }
        .instrument(span),
    );
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_with_jitter_and_cap() {
        let p = RetryPolicy {
            tries: 5,
            base: Duration::from_millis(1000),
            max: Duration::from_millis(5000),
        };
        for _ in 0..50 {
            let d1 = p.backoff(1);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_millis(1000));
            let d3 = p.backoff(3);
            assert!(d3 >= Duration::from_millis(2000) && d3 <= Duration::from_millis(4000));
            let d9 = p.backoff(9);
            assert!(d9 >= Duration::from_millis(2500) && d9 <= Duration::from_millis(5000));
            assert!(p.backoff(1000) <= Duration::from_millis(5000));
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(StatusCode::TOO_MANY_REQUESTS, &h, now), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, now),
            Some(Duration::from_secs(7))
        );
        h.insert("retry-after", HeaderValue::from_static("1.5"));
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h, now),
            Some(Duration::from_millis(1500))
        );
        h.insert(
            "retry-after",
            HeaderValue::from_static("Tue, 24 Nov 2026 12:00:30 GMT"),
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h, now),
            Some(Duration::from_secs(30))
        );
        h.insert("retry-after", HeaderValue::from_static("garbage"));
        assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, now), None);
        let mut h = HeaderMap::new();
        let reset = (now.timestamp() + 42).to_string();
        h.insert(
            "x-rate-limit-reset",
            HeaderValue::from_str(&reset).expect("header"),
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h, now),
            Some(Duration::from_secs(42))
        );
        // Only a 429 means the rate limit window matters.
        assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, now), None);
    }

    #[test]
    fn what_is_retried() {
        let status = |s: u16| AttemptError::Status {
            status: StatusCode::from_u16(s).expect("status"),
            retry_after: None,
            detail: String::new(),
        };
        for s in [429, 500, 502, 503, 504, 408] {
            assert!(status(s).retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(!status(s).retryable(), "{s}");
        }
        assert!(AttemptError::Network {
            detail: String::new()
        }
        .retryable());
        assert!(!AttemptError::fatal("x").retryable());
    }

    #[test]
    fn snippet_is_one_short_line() {
        assert_eq!(snippet(""), "(empty answer)");
        assert_eq!(snippet("a\nb"), "a b");
        assert_eq!(snippet(&"x".repeat(1000)).len(), 300);
    }
}

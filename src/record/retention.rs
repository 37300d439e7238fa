//! Retention: finished recordings older than `record.keep_days` are deleted, then the oldest
//! finished ones until all fit in `record.max_gb`. Runs at start, after each recording ends and
//! every few minutes; the choice is the pure [`choose`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Recorder, RETENTION_INTERVAL};
use crate::db::recordings::{self, Recording};

/// Which recordings to delete, given all of them oldest first. Live ones are never chosen
/// (nor counted out of the total: they are still growing and cannot go).
pub fn choose(
    all: &[Recording],
    now: DateTime<Utc>,
    keep_seconds: Option<f64>,
    max_bytes: Option<u64>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut total: i64 = all.iter().map(|r| r.bytes).sum();
    for r in all {
        if r.live() {
            continue;
        }
        let too_old = keep_seconds.is_some_and(|keep| {
            DateTime::parse_from_rfc3339(&r.started_at)
                .map(|t| (now - t.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0 > keep)
                .unwrap_or(false)
        });
        let too_big = max_bytes.is_some_and(|max| total > max as i64);
        if too_old || too_big {
            total -= r.bytes;
            out.push((r.channel.clone(), r.id.clone()));
        }
    }
    out
}

/// One pass.
pub async fn sweep(rec: &Recorder) {
    let (keep, max) = (rec.cfg.keep_seconds(), rec.cfg.max_bytes());
    if keep.is_none() && max.is_none() {
        return;
    }
    let all = match rec.db.call(|c| recordings::all(c)).await {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "retention: recordings not listed");
            return;
        }
    };
    for (channel, id) in choose(&all, Utc::now(), keep, max) {
        // A recording resumed meanwhile is left alone.
        if rec.is_recording(&channel, &id) {
            continue;
        }
        match rec.remove(&channel, &id).await {
            Ok(()) => {
                metrics::counter!("onair_record_retention_deleted_total").increment(1);
                info!(%channel, recording = %id, "recording removed by retention (record.keep_days / record.max_gb)");
            }
            Err(e) => {
                warn!(%channel, recording = %id, error = %e, "retention could not remove a recording")
            }
        }
    }
}

pub async fn run(rec: Arc<Recorder>, cancel: CancellationToken) {
    loop {
        sweep(&rec).await;
        tokio::select! {
            _ = rec.sweep.notified() => {}
            _ = tokio::time::sleep(RETENTION_INTERVAL) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, started: &str, bytes: i64, live: bool) -> Recording {
        Recording {
            channel: "alice".into(),
            id: id.into(),
            started_at: started.into(),
            ended_at: (!live).then(|| started.to_string()),
            title: None,
            duration: 0,
            bytes,
        }
    }

    #[test]
    fn oldest_first_by_age_then_size_never_live() {
        let now = DateTime::parse_from_rfc3339("2026-12-10T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let all = vec![
            r("a", "2026-12-01T00:00:00Z", 100, false),
            r("b", "2026-12-08T00:00:00Z", 100, true),
            r("c", "2026-12-09T00:00:00Z", 100, false),
            r("d", "2026-12-09T12:00:00Z", 100, false),
        ];
        let ids = |v: Vec<(String, String)>| v.into_iter().map(|x| x.1).collect::<Vec<_>>();
        assert_eq!(ids(choose(&all, now, Some(5.0 * 86400.0), None)), ["a"]);
        assert_eq!(ids(choose(&all, now, None, Some(250))), ["a", "c"]);
        assert_eq!(ids(choose(&all, now, None, Some(1))), ["a", "c", "d"]);
        assert!(choose(&all, now, None, None).is_empty());
    }
}

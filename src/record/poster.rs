//! A recording's poster: the first live thumbnail of the show (`transcode::thumbnails`, made on
//! the transcode pool every `thumbnail.interval_seconds`) is kept as `poster.jpg` in the
//! recording's directory, where `http::vod` serves it (`/vod/{c}/{id}/poster.jpg`, the
//! recordings list's `thumbnail`, the replay page's card picture) and the uploader copies it
//! to the object store.
//!
//! One small task per recording session waits for a thumbnail taken after the recording
//! began and hands it to the recording's disk task ([`super::disk`], the only writer of the
//! directory) as a job. It holds the disk task's sender weakly, so it never keeps a finished
//! recording open; it ends once the poster is handed over, the session ends, or the server
//! stops. Without thumbnails (no transcode pool) there is no poster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::{self, WeakSender};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::disk::DiskJob;
use super::Recorder;

/// How often a waiting task checks that its session is still on.
const CHECK: Duration = Duration::from_secs(5);

/// Waits (in the background) for the first thumbnail of `channel` taken at or after `since`
/// and hands it to the recording's disk task as its poster; `done` is set once it is.
pub(super) fn spawn(
    rec: &Arc<Recorder>,
    channel: &str,
    since: DateTime<Utc>,
    jobs: WeakSender<DiskJob>,
    done: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let Some(thumbs) = rec.thumbnails.get().cloned() else {
        return;
    };
    let channel = channel.to_string();
    rec.tracker.spawn(async move {
        let mut since = since;
        loop {
            let t = tokio::select! {
                _ = cancel.cancelled() => return,
                t = thumbs.wait_since(&channel, since, CHECK) => t,
            };
            // The session ended: its disk task takes nothing more.
            let Some(tx) = jobs.upgrade() else {
                return;
            };
            let Some(t) = t else {
                continue;
            };
            match tx.try_send(DiskJob::Poster(t.jpeg.clone())) {
                Ok(()) => {
                    done.store(true, Ordering::Release);
                    return;
                }
                // The disk is behind: a later picture will do.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(%channel, "recording's disk queue full: poster postponed");
                    since = t.taken_at + chrono::Duration::milliseconds(1);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
}

//! The chat's two background tasks, started by [`super::Chat::start`]: one turns the bus's
//! lifecycle broadcast into `live` / `offline` events (resyncing every channel if it falls
//! behind), the other pushes `viewers` counts, forgets idle rate-limit state, sends the
//! keep-alive comments and, at shutdown, ends every event stream.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, instrument};

use super::{Chat, KEEPALIVE_INTERVAL, VIEWERS_INTERVAL};
use crate::bus::Lifecycle;

#[instrument(skip_all)]
pub(super) async fn lifecycle_task(
    chat: Arc<Chat>,
    mut rx: broadcast::Receiver<Lifecycle>,
    cancel: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = cancel.cancelled() => return,
        };
        match ev {
            // In a cluster, live and offline come through Redis (or from the cluster when it
            // is lost), so that every node numbers them alike.
            Ok(_) if chat.cluster.get().is_some() => {}
            Ok(ev) => chat.lifecycle(&ev),
            Err(broadcast::error::RecvError::Lagged(_)) if chat.cluster.get().is_some() => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Missed some: tell every channel's viewers the state as it is now.
                debug!(missed = n, "chat lagged on lifecycle events; resyncing");
                for c in chat.bus.all() {
                    let ev = match c.publisher() {
                        Some(p) => Lifecycle::Live {
                            channel: c.name.clone(),
                            started_at: p.live_since,
                        },
                        None => Lifecycle::Offline {
                            channel: c.name.clone(),
                        },
                    };
                    chat.lifecycle(&ev);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Viewer counts and rate-limit upkeep every [`VIEWERS_INTERVAL`], keep-alive comments every
/// [`KEEPALIVE_INTERVAL`]; at shutdown, ends every event stream.
pub(super) async fn housekeeping_task(chat: Arc<Chat>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(VIEWERS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_keepalive = tokio::time::Instant::now();
    loop {
        tokio::select! {
            now = tick.tick() => {
                let keepalive = now.duration_since(last_keepalive) >= KEEPALIVE_INTERVAL;
                if keepalive {
                    last_keepalive = now;
                }
                chat.housekeeping(keepalive);
            }
            _ = cancel.cancelled() => break,
        }
    }
    let channels: Vec<_> = chat
        .channels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    for ch in channels {
        ch.close();
    }
}

//! The chat's two background tasks, started by [`super::Chat::start`]: one turns the bus's
//! lifecycle broadcast into `live` / `offline` events (resyncing every channel if it falls
//! behind), the other pushes `viewers` counts, forgets idle rate-limit state, sends the
//! keep-alive comments and, at shutdown, ends every event stream. What they do each time is
//! here too: [`Chat::lifecycle`] (also the cluster's way in while Redis is lost) and
//! [`Chat::housekeeping`].

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, instrument};

use super::channel::{Ring, KEEPALIVE};
use super::{now_rfc3339, Chat, HLS_VIEWER_WINDOW, KEEPALIVE_INTERVAL, VIEWERS_INTERVAL};
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

impl Chat {
    /// A lifecycle event as this node's viewers hear it (the cluster's, when Redis is lost).
    pub(crate) fn lifecycle(&self, ev: &Lifecycle) {
        let (name, event, data) = match ev {
            Lifecycle::Live {
                channel,
                started_at,
            } => (
                channel,
                "live",
                serde_json::json!({"channel": channel.as_str(), "started_at": now_rfc3339(*started_at)}),
            ),
            Lifecycle::Offline { channel } => (
                channel,
                "offline",
                serde_json::json!({"channel": channel.as_str()}),
            ),
        };
        if let Some(ch) = self.channel(name.as_str()) {
            let mut st = ch.lock();
            ch.publish(&mut st, self.cfg.history, event, &data, Some(None));
        }
    }

    /// Pushes changed viewer counts and forgets idle rate-limit state.
    fn housekeeping(&self, keepalive: bool) {
        let now = Instant::now();
        let rate = self.cfg.rate_per_second;
        let burst = self.cfg.burst as f64;
        for ch in self.all() {
            ch.lock_hls()
                .retain(|_, t| now.saturating_duration_since(*t) < HLS_VIEWER_WINDOW);
            let viewers = self.total_viewers(&ch, now);
            if keepalive && ch.events.receiver_count() > 0 {
                let _ = ch.events.send(Ring::Frame(KEEPALIVE));
            }
            let mut st = ch.lock();
            if viewers != st.viewers_pushed {
                st.viewers_pushed = viewers;
                let data = serde_json::json!({ "viewers": viewers });
                if self.cluster.get().is_some() {
                    // Counts differ per node for a moment: under the last shared id, so that
                    // they never make an id the other nodes do not know.
                    let id = st.last_id;
                    ch.publish_at(&mut st, self.cfg.history, id, "viewers", &data, None);
                } else {
                    ch.publish(&mut st, self.cfg.history, "viewers", &data, None);
                }
            }
            st.forget_idle(rate, burst, now);
        }
    }
}

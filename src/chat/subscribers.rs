//! Who is watching: event-stream subscriptions and the viewer count.
//!
//! [`Chat::subscribe_as`] admits a subscriber (per-channel and per-address limits, address
//! bans), builds its snapshot (the history after `Last-Event-ID`, the live state, the count)
//! and subscribes it to the channel's ring under the channel's lock, so it misses nothing
//! between the two. The [`SubscriberGuard`] inside the returned body gives the place back when
//! the body is dropped. Viewers are counted per address from the open streams and the recent
//! HLS requests ([`Chat::touch_hls`]); the housekeeping task pushes the count when it changes.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::channel::{sse_frame, ChatChannel};
use super::{now_rfc3339, Chat, ChatError, SseBody, HLS_VIEWER_WINDOW};

/// One channel's chat figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatStats {
    pub channel: String,
    pub subscribers: u64,
    pub viewers: u64,
    pub messages: u64,
    /// Subscribers disconnected for falling more than [`super::EVENT_BUFFER`] events behind.
    pub lagged: u64,
}

/// Keeps the subscriber counts right: dropped with the response body.
pub struct SubscriberGuard {
    pub(super) channel: Arc<ChatChannel>,
    pub(super) addr: IpAddr,
    pub(super) audience: Audience,
}

/// Who an event stream is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Viewer,
    /// The broadcaster's studio page (`?role=studio`): not counted as a viewer.
    Studio,
}

impl SubscriberGuard {
    /// Counts a disconnection for falling behind.
    pub(super) fn lagged(&self) {
        self.channel.lagged.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        let mut st = self.channel.lock();
        st.subscribers = st.subscribers.saturating_sub(1);
        let addr = self.addr;
        let release = |map: &mut HashMap<IpAddr, usize>| {
            if let Some(n) = map.get_mut(&addr) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&addr);
                }
            }
        };
        release(&mut st.subscribers_by_address);
        if self.audience == Audience::Studio {
            release(&mut st.studio_by_address);
        }
    }
}

impl ChatChannel {
    /// Viewers: per address, the number of event streams open from it, or 1 if it only plays
    /// HLS. A player and the chat on one page count once; two tabs behind one NAT count twice.
    /// The broadcaster's studio streams do not count (nor hide a player at their address).
    pub(super) fn viewers(&self, now: Instant) -> u64 {
        let hls: Vec<IpAddr> = self
            .lock_hls()
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) < HLS_VIEWER_WINDOW)
            .map(|(a, _)| *a)
            .collect();
        let st = self.lock();
        let counted = |a: &IpAddr| {
            let all = st.subscribers_by_address.get(a).copied().unwrap_or(0);
            all.saturating_sub(st.studio_by_address.get(a).copied().unwrap_or(0)) as u64
        };
        let sse: u64 = st.subscribers_by_address.keys().map(counted).sum();
        let hls_only = hls.iter().filter(|a| counted(a) == 0).count() as u64;
        sse + hls_only
    }
}

impl Chat {
    /// Opens an event stream for a subscriber at `addr`. `last_event_id` (from the
    /// `Last-Event-ID` header) replays the events after it still in the history; without it
    /// the whole history is sent. Then the current state (`live`/`offline`, `viewers`) follows.
    pub fn subscribe(
        &self,
        channel: &str,
        addr: IpAddr,
        last_event_id: Option<u64>,
    ) -> Result<SseBody, ChatError> {
        self.subscribe_as(channel, addr, last_event_id, Audience::Viewer)
    }

    /// [`Chat::subscribe`] for a viewer or for the broadcaster's studio page, whose stream is
    /// held to the same limits but not counted as a viewer.
    pub fn subscribe_as(
        &self,
        channel: &str,
        addr: IpAddr,
        last_event_id: Option<u64>,
        audience: Audience,
    ) -> Result<SseBody, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let mut pending = VecDeque::new();
        // Tells EventSource how soon to reconnect after a drop.
        pending.push_back(Bytes::from_static(b"retry: 2000\n\n"));
        let (rx, snapshot_id) = {
            let mut st = ch.lock();
            if st.subscribers >= self.cfg.max_subscribers {
                return Err(ChatError::ChannelFull);
            }
            let from_addr = st.subscribers_by_address.get(&addr).copied().unwrap_or(0);
            if from_addr >= self.cfg.max_subscribers_per_address {
                return Err(ChatError::AddressFull);
            }
            if st.bans.addresses.contains(&addr) {
                return Err(ChatError::Banned);
            }
            st.subscribers += 1;
            *st.subscribers_by_address.entry(addr).or_insert(0) += 1;
            if audience == Audience::Studio {
                *st.studio_by_address.entry(addr).or_insert(0) += 1;
            }
            // A client that claims an id we never issued (another server, a clock step back)
            // or one older than the history gets the whole history.
            let after = last_event_id
                .filter(|id| {
                    *id <= st.last_id
                        && st
                            .history
                            .front()
                            .is_some_and(|h| h.id <= id.saturating_add(1))
                })
                .unwrap_or(0);
            for h in st.history.iter().filter(|h| h.id > after) {
                pending.push_back(h.frame.clone());
            }
            // Read under our lock (the bus's own lock nests inside ours and never the other
            // way round), so the state is at least as new as every lifecycle event already in
            // the history: a fresh `live` replayed above cannot be followed by a stale `offline`.
            let live = self
                .bus
                .get(channel)
                .and_then(|b| b.publisher())
                .map(|p| p.live_since)
                .or_else(|| self.remote_live_since(channel));
            let state = match live {
                Some(t) => sse_frame(
                    st.last_id,
                    "live",
                    &serde_json::json!({"channel": channel, "started_at": now_rfc3339(t)}),
                ),
                None => sse_frame(
                    st.last_id,
                    "offline",
                    &serde_json::json!({"channel": channel}),
                ),
            };
            pending.push_back(state);
            // Subscribing under the lock: every event after the snapshot reaches this receiver,
            // and so does the end of the stream if the channel closes later.
            let closed = st.closed || self.shutdown.is_cancelled();
            ((!closed).then(|| ch.events.subscribe()), st.last_id)
        };
        pending.push_back(sse_frame(
            snapshot_id,
            "viewers",
            &serde_json::json!({"viewers": self.total_viewers(&ch, Instant::now())}),
        ));
        let guard = SubscriberGuard {
            channel: ch.clone(),
            addr,
            audience,
        };
        Ok(SseBody::new(pending, rx, guard))
    }

    /// Records an HLS request from `addr` (a player) for the viewer count.
    pub fn touch_hls(&self, channel: &str, addr: IpAddr) {
        if let Some(ch) = self.channel(channel) {
            ch.lock_hls().insert(addr, Instant::now());
        }
    }

    /// Current viewers of a channel.
    pub fn viewers(&self, channel: &str) -> u64 {
        self.channel(channel)
            .map(|c| self.total_viewers(&c, Instant::now()))
            .unwrap_or(0)
    }

    /// Per-channel figures for `/metrics`.
    pub fn stats(&self) -> Vec<ChatStats> {
        let now = Instant::now();
        self.all()
            .iter()
            .map(|ch| {
                // Own statement: the guard must be gone before `viewers` takes the lock again.
                let subscribers = ch.lock().subscribers as u64;
                ChatStats {
                    channel: ch.name.to_string(),
                    subscribers,
                    viewers: ch.viewers(now),
                    messages: ch.messages.load(Ordering::Relaxed),
                    lagged: ch.lagged.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

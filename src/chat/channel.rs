//! One channel's chat state and how an event reaches its subscribers: the per-channel id
//! sequence, the bounded history, and the broadcast ring every event stream reads from.
//!
//! [`ChatChannel::publish`] numbers an event, renders it once into SSE bytes
//! ([`sse_frame`]), keeps it in the history if asked, and sends the same `Bytes` through the
//! ring, all under the channel's lock so that ids, history and broadcast stay in one order.
//! The rest of the chat (admission, bans, subscribers, the cluster in `shared.rs`) changes a
//! channel only through this state and these calls. [`Chat::channel`] creates a channel's
//! chat on first use for a name the bus knows; [`Chat::all`] forgets the ones it no longer has.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::broadcast;
use tracing::info;

use super::admission::{Admitted, Author};
use super::bans::Bans;
use super::moderation::TokenBucket;
use super::{lock, Chat, ChatError, ChatMessage, EVENT_BUFFER};
use crate::bus::ChannelName;

/// The keep-alive comment, sent through each channel's ring every
/// [`super::KEEPALIVE_INTERVAL`].
pub(super) const KEEPALIVE: Bytes = Bytes::from_static(b": keep-alive\n\n");

/// What goes through a channel's ring to its subscribers. Control items ride with the events
/// so that a subscriber needs nothing else to wait on (no timer, no cancellation future).
#[derive(Clone, Debug)]
pub(super) enum Ring {
    /// Bytes to send as they are: an event or a keep-alive comment.
    Frame(Bytes),
    /// The subscribers from this address end their streams (an address ban).
    Kick(IpAddr),
    /// Every stream ends: the channel was removed or the server is stopping.
    End,
}

/// One entry of a channel's history: the rendered frame plus what moderation needs.
pub(super) struct Stored {
    pub(super) id: u64,
    pub(super) frame: Bytes,
    /// `Some` for chat messages: the author, for deletion by ban.
    pub(super) author: Option<Author>,
}

/// A channel's mutable chat state.
pub(super) struct ChannelState {
    pub(super) last_id: u64,
    pub(super) history: VecDeque<Stored>,
    pub(super) subscribers: usize,
    pub(super) subscribers_by_address: HashMap<IpAddr, usize>,
    /// Of those, the broadcaster's own streams (the studio page), which are not viewers.
    pub(super) studio_by_address: HashMap<IpAddr, usize>,
    pub(super) buckets: HashMap<(IpAddr, String), TokenBucket>,
    pub(super) address_buckets: HashMap<IpAddr, TokenBucket>,
    /// Last post per address while slow mode is on (posts before it was turned on do not
    /// count: the first message after turning it on always goes through).
    pub(super) last_post: HashMap<IpAddr, Instant>,
    pub(super) slow_mode: Duration,
    pub(super) bans: Bans,
    /// Handles (with and without their server) and display names of the signed-in viewers
    /// who chatted here: anonymous nicks may not take them.
    pub(super) signed_names: HashSet<String>,
    /// The last count pushed as a `viewers` event.
    pub(super) viewers_pushed: u64,
    /// The channel was removed or the server is stopping: its event streams have been told
    /// to end, and new ones end after their snapshot.
    pub(super) closed: bool,
}

/// One channel's chat.
pub struct ChatChannel {
    pub(super) name: ChannelName,
    pub(super) events: broadcast::Sender<Ring>,
    /// A std mutex: every critical section is short and synchronous (no `.await` inside), and
    /// `broadcast::Sender::send` never blocks, so holding it while sending is fine; sending
    /// under the lock is what keeps ids, history and the broadcast in the same order.
    pub(super) state: Mutex<ChannelState>,
    /// HLS players by address and when they last asked for something. Separate from `state`
    /// because every playlist and segment request touches it.
    pub(super) hls_seen: Mutex<HashMap<IpAddr, Instant>>,
    /// Messages accepted, for metrics.
    pub(super) messages: AtomicU64,
    /// Subscribers disconnected for falling behind, for metrics.
    pub(super) lagged: AtomicU64,
}

impl ChatChannel {
    pub(super) fn lock(&self) -> MutexGuard<'_, ChannelState> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn lock_hls(&self) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.hls_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Assigns the next id, renders the frame, keeps it in the history if `keep`, and sends it
    /// to every subscriber. Called with the state lock held.
    pub(super) fn publish(
        &self,
        st: &mut ChannelState,
        history_len: usize,
        event: &str,
        data: &serde_json::Value,
        keep: Option<Option<Author>>,
    ) -> u64 {
        let id = st.last_id + 1;
        self.publish_at(st, history_len, id, event, data, keep);
        id
    }

    /// [`ChatChannel::publish`] under a given id (a cluster's, or the last one again for the
    /// counts, which resume nothing).
    pub(super) fn publish_at(
        &self,
        st: &mut ChannelState,
        history_len: usize,
        id: u64,
        event: &str,
        data: &serde_json::Value,
        keep: Option<Option<Author>>,
    ) {
        st.last_id = st.last_id.max(id);
        let frame = sse_frame(id, event, data);
        if let Some(author) = keep {
            st.history.push_back(Stored {
                id,
                frame: frame.clone(),
                author,
            });
            while st.history.len() > history_len {
                st.history.pop_front();
            }
        }
        // No receivers is not an error: nobody is watching.
        let _ = self.events.send(Ring::Frame(frame));
    }

    /// Numbers an admitted message, keeps and sends it.
    pub(super) fn commit(&self, history_len: usize, a: Admitted) -> ChatMessage {
        let mut st = self.lock();
        let id = st.last_id + 1;
        self.commit_at(&mut st, history_len, id, a)
    }

    /// [`ChatChannel::commit`] under a given id.
    pub(super) fn commit_at(
        &self,
        st: &mut ChannelState,
        history_len: usize,
        id: u64,
        a: Admitted,
    ) -> ChatMessage {
        let msg = ChatMessage { id, ..a.msg };
        let data = serde_json::json!({"id": id, "nick": msg.nick, "text": msg.text, "ts": msg.ts, "author": msg.author});
        self.publish_at(st, history_len, id, "chat", &data, Some(Some(a.who)));
        self.messages.fetch_add(1, Ordering::Relaxed);
        msg
    }

    /// Ends every event stream of the channel, now and to come: one [`Ring::End`] through
    /// the ring rather than a cancellation future per subscriber, which would cost each of
    /// them memory and a lock on every wake-up.
    pub(super) fn close(&self) {
        let mut st = self.lock();
        if !st.closed {
            st.closed = true;
            let _ = self.events.send(Ring::End);
        }
    }

    /// Tells every subscriber that message `id` is gone (kept in the history so that a
    /// resuming client learns it too).
    pub(super) fn publish_delete(&self, st: &mut ChannelState, history_len: usize, id: u64) {
        self.publish(
            st,
            history_len,
            "delete",
            &serde_json::json!({ "id": id }),
            Some(None),
        );
    }
}

/// Renders one server-sent event. serde_json escapes line breaks, so `data` is one line.
pub(super) fn sse_frame(id: u64, event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {event}\ndata: {data}\n\n"))
}

impl Chat {
    /// The chat of a channel the bus knows.
    pub(super) fn channel(&self, name: &str) -> Option<Arc<ChatChannel>> {
        let bus = self.bus.get(name)?;
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let ch = map.entry(bus.name.clone()).or_insert_with(|| {
            let (events, _) = broadcast::channel(EVENT_BUFFER);
            Arc::new(ChatChannel {
                name: bus.name.clone(),
                events,
                state: Mutex::new(ChannelState {
                    // Ids start from the wall clock in microseconds, so they keep growing
                    // across restarts (and a channel removed and added again).
                    // In a cluster the ids are the cluster's, from the stream (`shared.rs`).
                    last_id: match self.cluster.get() {
                        Some(_) => 0,
                        None => Utc::now().timestamp_micros().max(0) as u64,
                    },
                    history: VecDeque::new(),
                    subscribers: 0,
                    subscribers_by_address: HashMap::new(),
                    studio_by_address: HashMap::new(),
                    buckets: HashMap::new(),
                    address_buckets: HashMap::new(),
                    last_post: HashMap::new(),
                    slow_mode: Duration::from_secs(self.cfg.slow_mode_seconds),
                    // Saved bans of this channel move in when it is first used.
                    bans: lock(&self.saved_bans)
                        .remove(bus.name.as_str())
                        .unwrap_or_default(),
                    signed_names: HashSet::new(),
                    viewers_pushed: 0,
                    closed: false,
                }),
                hls_seen: Mutex::new(HashMap::new()),
                messages: AtomicU64::new(0),
                lagged: AtomicU64::new(0),
            })
        });
        Some(ch.clone())
    }

    /// Every channel's chat; channels the bus no longer has are closed and forgotten.
    pub(super) fn all(&self) -> Vec<Arc<ChatChannel>> {
        for c in self.bus.all() {
            let _ = self.channel(c.name.as_str());
        }
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, ch| {
            let keep = self.bus.get(name.as_str()).is_some();
            if !keep {
                ch.close();
                // Kept for the file, and for the channel if it comes back.
                let bans = ch.lock().bans.clone();
                if !bans.is_empty() {
                    lock(&self.saved_bans).insert(name.to_string(), bans);
                }
            }
            keep
        });
        map.values().cloned().collect()
    }

    /// Deletes a message: it leaves the history and subscribers get a `delete` event.
    pub fn delete(&self, channel: &str, id: u64) -> Result<(), ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let mut st = ch.lock();
        let pos = st
            .history
            .iter()
            .position(|h| h.id == id && h.author.is_some())
            .ok_or(ChatError::NoSuchMessage { id })?;
        st.history.remove(pos);
        ch.publish_delete(&mut st, self.cfg.history, id);
        info!(channel = %ch.name, id, "chat message deleted");
        Ok(())
    }
}

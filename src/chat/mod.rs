//! Chat: per-channel messages, a bounded history, moderation and the server-sent-events fan-out,
//! plus the viewer count.
//!
//! `http` calls [`Chat::post`] for `POST /api/channels/{c}/chat`, [`Chat::subscribe`] for
//! `GET /api/channels/{c}/events` (the returned [`SseBody`] is the streaming response body),
//! [`Chat::touch_hls`] for every HLS request, and the moderation calls for the admin routes.
//! [`Chat::start`] spawns two tasks: one turns the bus's lifecycle broadcast into `live` /
//! `offline` events, the other pushes `viewers` events and forgets idle rate-limit state.
//!
//! Every event of a channel (chat, delete, live, offline, viewers) takes the next id of one
//! per-channel sequence and is rendered once into SSE bytes; subscribers share those bytes
//! through a `tokio::sync::broadcast` ring. The ring is each subscriber's bounded buffer: one
//! that falls more than [`EVENT_BUFFER`] events behind gets `Lagged` and is disconnected, and
//! its browser reconnects with `Last-Event-ID` to replay what it missed from the history. The
//! sender never waits, so a slow subscriber cannot slow the others. Ids start from the channel's
//! creation time in microseconds, so they keep growing across restarts and a client resuming
//! after a restart is not told it is ahead.
//!
//! Bans live in the database (`db::bans`) and, for the check on every post, in memory per
//! channel. [`Chat::start`] loads them (importing the deprecated `chat.bans_file` once first);
//! [`Chat::ban`] and [`Chat::unban`] run on the database thread: the row is committed, then
//! the in-memory set changes, then the caller hears back, in that order and in one piece.

pub mod bans;
pub mod moderation;
mod sse;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, instrument, warn};

use crate::bus::{Bus, ChannelName, Lifecycle};
use crate::config::ChatConfig;
use crate::db::{self, Db, DbError};
use crate::identity::Identity;
use bans::{BanFile, BanMap, Bans};
use moderation::{clean_nick, clean_text, Invalid, TokenBucket};
pub use sse::SseBody;

/// Events a subscriber may fall behind before it is disconnected (its bounded buffer).
pub const EVENT_BUFFER: usize = 256;
/// An HLS player counts as a viewer for this long after its last request.
pub const HLS_VIEWER_WINDOW: Duration = Duration::from_secs(10);
/// How often viewer counts are recomputed and pushed.
pub const VIEWERS_INTERVAL: Duration = Duration::from_secs(2);
/// Keep-alive comment interval on event streams (proxies close silent connections). One
/// comment through each channel's ring, not a timer per subscriber.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE: Bytes = Bytes::from_static(b": keep-alive\n\n");

/// What goes through a channel's ring to its subscribers. Control items ride with the events
/// so that a subscriber needs nothing else to wait on (no timer, no cancellation future).
#[derive(Clone, Debug)]
enum Ring {
    /// Bytes to send as they are: an event or a keep-alive comment.
    Frame(Bytes),
    /// The subscribers from this address end their streams (an address ban).
    Kick(IpAddr),
    /// Every stream ends: the channel was removed or the server is stopping.
    End,
}
/// The address bucket is this many times looser than the address + nick bucket: it only stops
/// one address from dodging the limit by changing nick, while people behind one NAT still chat.
const ADDRESS_BUCKET_FACTOR: f64 = 4.0;
/// Longest slow mode an admin can set.
pub const MAX_SLOW_MODE_SECONDS: u64 = 3600;

/// Why a chat request was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChatError {
    #[error("no such channel")]
    NoChannel,
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("{reason}")]
    TooLong { reason: String },
    #[error("you are banned from this chat")]
    Banned,
    #[error("too many messages; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("slow mode is on; retry in {retry_after} s")]
    SlowMode { retry_after: u64 },
    #[error("this channel has too many chat subscribers")]
    ChannelFull,
    #[error("too many chat subscribers from your address")]
    AddressFull,
    #[error("no such message")]
    NoSuchMessage { id: u64 },
    #[error("slow mode is limited to {max} seconds", max = MAX_SLOW_MODE_SECONDS)]
    SlowModeTooLong { seconds: u64 },
    /// The database refused or failed the change (logged with the cause): nothing changed.
    #[error("the change could not be saved; try again")]
    Unsaved,
}

impl From<Invalid> for ChatError {
    fn from(i: Invalid) -> Self {
        match i {
            Invalid::TextTooLong { .. } => ChatError::TooLong { reason: i.reason() },
            _ => ChatError::Invalid { reason: i.reason() },
        }
    }
}

/// A chat message as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub id: u64,
    pub nick: String,
    pub text: String,
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    /// The signed-in author as the provider vouched (`null` for anonymous messages).
    pub author: Option<Identity>,
}

/// What a ban targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanTarget {
    /// Compared case-insensitively.
    Nick(String),
    Address(IpAddr),
    /// A signed-in identity, `provider:id` (as in `channels[].owners`): banned under any nick.
    Identity(String),
}

impl BanTarget {
    /// The form kept in memory and in the database: nicks trimmed and lowercased.
    pub fn normalized(&self) -> BanTarget {
        match self {
            BanTarget::Nick(n) => BanTarget::Nick(n.trim().to_lowercase()),
            BanTarget::Address(a) => BanTarget::Address(*a),
            BanTarget::Identity(i) => BanTarget::Identity(i.trim().to_string()),
        }
    }
}

/// Who wrote a stored message, for deletion by ban.
#[derive(Debug, Clone)]
struct Author {
    /// The nick, lowercased.
    nick: String,
    addr: IpAddr,
    /// `provider:id` of a signed-in author.
    identity: Option<String>,
}

/// The form in which names are compared for impersonation: lowercased, without `@`s.
fn name_key(s: &str) -> String {
    s.trim().trim_start_matches('@').to_lowercase()
}

/// One entry of a channel's history: the rendered frame plus what moderation needs.
struct Stored {
    id: u64,
    frame: Bytes,
    /// `Some` for chat messages: the author, for deletion by ban.
    author: Option<Author>,
}

/// A channel's mutable chat state.
struct ChannelState {
    last_id: u64,
    history: VecDeque<Stored>,
    subscribers: usize,
    subscribers_by_address: HashMap<IpAddr, usize>,
    buckets: HashMap<(IpAddr, String), TokenBucket>,
    address_buckets: HashMap<IpAddr, TokenBucket>,
    last_post: HashMap<IpAddr, Instant>,
    slow_mode: Duration,
    bans: Bans,
    /// Handles (with and without their server) and display names of the signed-in viewers
    /// who chatted here: anonymous nicks may not take them.
    signed_names: HashSet<String>,
    /// The last count pushed as a `viewers` event.
    viewers_pushed: u64,
    /// The channel was removed or the server is stopping: its event streams have been told
    /// to end, and new ones end after their snapshot.
    closed: bool,
}

/// One channel's chat.
pub struct ChatChannel {
    name: ChannelName,
    events: broadcast::Sender<Ring>,
    /// A std mutex: every critical section is short and synchronous (no `.await` inside), and
    /// `broadcast::Sender::send` never blocks, so holding it while sending is fine; sending
    /// under the lock is what keeps ids, history and the broadcast in the same order.
    state: Mutex<ChannelState>,
    /// HLS players by address and when they last asked for something. Separate from `state`
    /// because every playlist and segment request touches it.
    hls_seen: Mutex<HashMap<IpAddr, Instant>>,
    /// Messages accepted, for metrics.
    messages: AtomicU64,
    /// Subscribers disconnected for falling behind, for metrics.
    lagged: AtomicU64,
}

impl ChatChannel {
    fn lock(&self) -> MutexGuard<'_, ChannelState> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_hls(&self) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.hls_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Assigns the next id, renders the frame, keeps it in the history if `keep`, and sends it
    /// to every subscriber. Called with the state lock held.
    fn publish(
        &self,
        st: &mut ChannelState,
        history_len: usize,
        event: &str,
        data: &serde_json::Value,
        keep: Option<Option<Author>>,
    ) -> u64 {
        st.last_id += 1;
        let id = st.last_id;
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
        id
    }

    /// Ends every event stream of the channel, now and to come: one [`Ring::End`] through
    /// the ring rather than a cancellation future per subscriber, which would cost each of
    /// them memory and a lock on every wake-up.
    fn close(&self) {
        let mut st = self.lock();
        if !st.closed {
            st.closed = true;
            let _ = self.events.send(Ring::End);
        }
    }

    /// Tells every subscriber that message `id` is gone (kept in the history so that a
    /// resuming client learns it too).
    fn publish_delete(&self, st: &mut ChannelState, history_len: usize, id: u64) {
        self.publish(
            st,
            history_len,
            "delete",
            &serde_json::json!({ "id": id }),
            Some(None),
        );
    }

    /// Adds a (normalized) ban in memory and deletes the target's messages still in the
    /// history; returns how many. Its open event streams end if it is an address.
    fn apply_ban(&self, target: &BanTarget, history_len: usize) -> usize {
        let mut st = self.lock();
        let doomed: Vec<u64> = st
            .history
            .iter()
            .filter(|h| match (&h.author, target) {
                (Some(a), BanTarget::Nick(t)) => a.nick == *t,
                (Some(a), BanTarget::Address(t)) => a.addr == *t,
                (Some(a), BanTarget::Identity(t)) => a.identity.as_ref() == Some(t),
                _ => false,
            })
            .map(|h| h.id)
            .collect();
        match target {
            BanTarget::Nick(n) => {
                st.bans.nicks.insert(n.clone());
            }
            BanTarget::Address(a) => {
                st.bans.addresses.insert(*a);
                // Its open event streams end; new ones are refused while the ban lasts.
                let _ = self.events.send(Ring::Kick(*a));
            }
            BanTarget::Identity(i) => {
                st.bans.identities.insert(i.clone());
            }
        }
        st.history.retain(|h| !doomed.contains(&h.id));
        for id in &doomed {
            self.publish_delete(&mut st, history_len, *id);
        }
        // Addresses are personal data: debug level only.
        debug!(channel = %self.name, ?target, deleted = doomed.len(), "chat ban");
        info!(channel = %self.name, deleted = doomed.len(), "chat ban added");
        doomed.len()
    }

    /// Lifts a (normalized) ban in memory; false if there was none.
    fn apply_unban(&self, target: &BanTarget) -> bool {
        let mut st = self.lock();
        match target {
            BanTarget::Nick(n) => st.bans.nicks.remove(n),
            BanTarget::Address(a) => st.bans.addresses.remove(a),
            BanTarget::Identity(i) => st.bans.identities.remove(i),
        }
    }

    /// Viewers: per address, the number of event streams open from it, or 1 if it only plays
    /// HLS. A player and the chat on one page count once; two tabs behind one NAT count twice.
    fn viewers(&self, now: Instant) -> u64 {
        let hls: Vec<IpAddr> = self
            .lock_hls()
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) < HLS_VIEWER_WINDOW)
            .map(|(a, _)| *a)
            .collect();
        let st = self.lock();
        let sse: u64 = st.subscribers_by_address.values().map(|n| *n as u64).sum();
        let hls_only = hls
            .iter()
            .filter(|a| !st.subscribers_by_address.contains_key(a))
            .count() as u64;
        sse + hls_only
    }
}

/// Logs why a change could not be saved; the client is told to try again.
fn unsaved(channel: &str, what: &str, e: DbError) -> ChatError {
    error!(channel, error = %e, "{what} not saved to the database; nothing changed");
    ChatError::Unsaved
}

/// Locks a std mutex, ignoring poisoning (the data are plain values).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Renders one server-sent event. serde_json escapes line breaks, so `data` is one line.
fn sse_frame(id: u64, event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {event}\ndata: {data}\n\n"))
}

fn now_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Chat for every channel.
pub struct Chat {
    cfg: ChatConfig,
    bus: Arc<Bus>,
    /// Channels are created on first use for names the bus knows. Std mutex, short sections.
    channels: Mutex<BTreeMap<ChannelName, Arc<ChatChannel>>>,
    shutdown: CancellationToken,
    /// Where bans are kept; ban changes run on its thread, which orders them.
    db: Db,
    /// `chat.bans_file` (deprecated): imported once, then rewritten from the database after
    /// every change while the key is set, so that an older onair still finds the bans.
    ban_file: Option<Arc<BanFile>>,
    /// Saved bans of channels not in use yet (or removed by a reload).
    saved_bans: Mutex<BanMap>,
}

impl Chat {
    /// Loads the bans from the database (importing `chat.bans_file` first, once), creates the
    /// chat and starts its lifecycle and viewer tasks.
    pub async fn start(
        cfg: ChatConfig,
        bus: Arc<Bus>,
        db: Db,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Arc<Chat>, DbError> {
        let ban_file = (!cfg.bans_file.is_empty()).then(|| Arc::new(BanFile::new(&cfg.bans_file)));
        if let Some(file) = &ban_file {
            bans::import_once(&db, file.clone()).await?;
            warn!(
                path = %cfg.bans_file,
                database = %db.path().display(),
                "chat.bans_file is deprecated: bans now live in the database (the file was \
                 imported once and is only rewritten for older versions); remove the key"
            );
        }
        let saved_bans = db.call(|c| db::bans::all(c)).await?;
        info!(bans = bans::count(&saved_bans), "chat bans loaded");
        let chat = Arc::new(Chat {
            cfg,
            bus: bus.clone(),
            channels: Mutex::new(BTreeMap::new()),
            shutdown: cancel.clone(),
            db,
            ban_file,
            saved_bans: Mutex::new(saved_bans),
        });
        tracker.spawn(lifecycle_task(
            chat.clone(),
            bus.subscribe_lifecycle(),
            cancel.clone(),
        ));
        tracker.spawn(housekeeping_task(chat.clone(), cancel));
        Ok(chat)
    }

    /// The chat of a channel the bus knows.
    fn channel(&self, name: &str) -> Option<Arc<ChatChannel>> {
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
                    last_id: Utc::now().timestamp_micros().max(0) as u64,
                    history: VecDeque::new(),
                    subscribers: 0,
                    subscribers_by_address: HashMap::new(),
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
    fn all(&self) -> Vec<Arc<ChatChannel>> {
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

    /// Posts a message from `addr`: under `nick`, or under `author`'s handle when the viewer
    /// is signed in; returns it with its id.
    pub fn post(
        &self,
        channel: &str,
        addr: IpAddr,
        nick: &str,
        text: &str,
        author: Option<&Identity>,
    ) -> Result<ChatMessage, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        // A signed-in viewer's name is the provider's, not typed: no nick rules apply to it.
        let nick = match author {
            Some(a) => a.handle.clone(),
            None => clean_nick(nick, self.cfg.max_nick_chars, &self.cfg.blocked_words)?,
        };
        let text = clean_text(text, self.cfg.max_message_chars, &self.cfg.blocked_words)?;
        let nick_key = nick.to_lowercase();
        let identity = author.map(Identity::key);
        let now = Instant::now();
        let rate = self.cfg.rate_per_second;
        let burst = self.cfg.burst as f64;
        let mut st = ch.lock();
        if st.bans.nicks.contains(&nick_key)
            || st.bans.addresses.contains(&addr)
            || identity
                .as_ref()
                .is_some_and(|i| st.bans.identities.contains(i))
        {
            return Err(ChatError::Banned);
        }
        if author.is_none() && st.signed_names.contains(&name_key(&nick)) {
            return Err(ChatError::Invalid {
                reason:
                    "this name belongs to a signed-in viewer here: pick another nick, or sign in"
                        .into(),
            });
        }
        if !st.slow_mode.is_zero() {
            if let Some(last) = st.last_post.get(&addr) {
                let next = *last + st.slow_mode;
                if next > now {
                    return Err(ChatError::SlowMode {
                        retry_after: moderation::retry_after_seconds(next - now),
                    });
                }
            }
        }
        let (arate, aburst) = (rate * ADDRESS_BUCKET_FACTOR, burst * ADDRESS_BUCKET_FACTOR);
        let user = st
            .buckets
            .entry((addr, nick_key.clone()))
            .or_insert_with(|| TokenBucket::full(burst, now))
            .check(rate, burst, now);
        let whole = st
            .address_buckets
            .entry(addr)
            .or_insert_with(|| TokenBucket::full(aburst, now))
            .check(arate, aburst, now);
        if let Err(wait) = user.and(whole) {
            return Err(ChatError::RateLimited {
                retry_after: moderation::retry_after_seconds(wait),
            });
        }
        if let Some(b) = st.buckets.get_mut(&(addr, nick_key.clone())) {
            b.take();
        }
        if let Some(b) = st.address_buckets.get_mut(&addr) {
            b.take();
        }
        st.last_post.insert(addr, now);
        if let Some(a) = author {
            // The handle, its name part (`bob` of `@bob@host`) and the display name.
            let handle = name_key(&a.handle);
            let user = handle.split('@').next().unwrap_or_default().to_string();
            for n in [handle, user, name_key(&a.display_name)] {
                if !n.is_empty() {
                    st.signed_names.insert(n);
                }
            }
        }
        let id = st.last_id + 1;
        let msg = ChatMessage {
            id,
            nick,
            text,
            ts: now_rfc3339(Utc::now()),
            author: author.cloned(),
        };
        let data = serde_json::json!({"id": id, "nick": msg.nick, "text": msg.text, "ts": msg.ts, "author": msg.author});
        let got = ch.publish(
            &mut st,
            self.cfg.history,
            "chat",
            &data,
            Some(Some(Author {
                nick: nick_key,
                addr,
                identity,
            })),
        );
        debug_assert_eq!(got, id);
        ch.messages.fetch_add(1, Ordering::Relaxed);
        Ok(msg)
    }

    /// `chat.max_message_chars`.
    pub fn max_message_chars(&self) -> usize {
        self.cfg.max_message_chars
    }

    /// `chat.blocked_words`.
    pub fn blocked_words(&self) -> &[String] {
        &self.cfg.blocked_words
    }

    /// Opens an event stream for a subscriber at `addr`. `last_event_id` (from the
    /// `Last-Event-ID` header) replays the events after it still in the history; without it
    /// the whole history is sent. Then the current state (`live`/`offline`, `viewers`) follows.
    pub fn subscribe(
        &self,
        channel: &str,
        addr: IpAddr,
        last_event_id: Option<u64>,
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
                .map(|p| p.live_since);
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
            &serde_json::json!({"viewers": ch.viewers(Instant::now())}),
        ));
        let guard = SubscriberGuard {
            channel: ch.clone(),
            addr,
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
            .map(|c| c.viewers(Instant::now()))
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

    /// Bans a nick or an address and deletes its messages still in the history. Returns the
    /// number of messages deleted, once the ban is committed to the database.
    pub async fn ban(&self, channel: &str, target: &BanTarget) -> Result<usize, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let target = target.normalized();
        let (history, file) = (self.cfg.history, self.ban_file.clone());
        // All of it on the database thread: the commit, then memory, in the order of the
        // commits, and whole even if our caller stops waiting.
        self.db
            .call(move |conn| {
                db::bans::add(conn, ch.name.as_str(), &target)?;
                let deleted = ch.apply_ban(&target, history);
                if let Some(f) = file {
                    bans::rewrite(conn, &f);
                }
                Ok(deleted)
            })
            .await
            .map_err(|e| unsaved(channel, "chat ban", e))
    }

    /// A channel's bans.
    pub fn bans(&self, channel: &str) -> Result<Bans, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let bans = ch.lock().bans.clone();
        Ok(bans)
    }

    /// Lifts a ban; false if there was none. Answers once the change is committed.
    pub async fn unban(&self, channel: &str, target: &BanTarget) -> Result<bool, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let target = target.normalized();
        let file = self.ban_file.clone();
        self.db
            .call(move |conn| {
                let stored = db::bans::remove(conn, ch.name.as_str(), &target)?;
                let lifted = ch.apply_unban(&target) || stored;
                if lifted {
                    info!(channel = %ch.name, "chat ban lifted");
                    if let Some(f) = file {
                        bans::rewrite(conn, &f);
                    }
                }
                Ok(lifted)
            })
            .await
            .map_err(|e| unsaved(channel, "chat unban", e))
    }

    /// Sets slow mode (0 turns it off).
    pub fn set_slow_mode(&self, channel: &str, seconds: u64) -> Result<(), ChatError> {
        if seconds > MAX_SLOW_MODE_SECONDS {
            return Err(ChatError::SlowModeTooLong { seconds });
        }
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        ch.lock().slow_mode = Duration::from_secs(seconds);
        info!(channel = %ch.name, seconds, "chat slow mode set");
        Ok(())
    }

    fn lifecycle(&self, ev: &Lifecycle) {
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
            let viewers = ch.viewers(now);
            if keepalive && ch.events.receiver_count() > 0 {
                let _ = ch.events.send(Ring::Frame(KEEPALIVE));
            }
            let mut st = ch.lock();
            if viewers != st.viewers_pushed {
                st.viewers_pushed = viewers;
                ch.publish(
                    &mut st,
                    self.cfg.history,
                    "viewers",
                    &serde_json::json!({ "viewers": viewers }),
                    None,
                );
            }
            st.buckets.retain(|_, b| !b.is_full(rate, burst, now));
            let (ar, ab) = (rate * ADDRESS_BUCKET_FACTOR, burst * ADDRESS_BUCKET_FACTOR);
            st.address_buckets.retain(|_, b| !b.is_full(ar, ab, now));
            let slow = st.slow_mode;
            st.last_post
                .retain(|_, t| now.saturating_duration_since(*t) < slow);
        }
    }
}

/// One channel's chat figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatStats {
    pub channel: String,
    pub subscribers: u64,
    pub viewers: u64,
    pub messages: u64,
    /// Subscribers disconnected for falling more than [`EVENT_BUFFER`] events behind.
    pub lagged: u64,
}

/// Keeps the subscriber counts right: dropped with the response body.
pub struct SubscriberGuard {
    channel: Arc<ChatChannel>,
    addr: IpAddr,
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
        if let Some(n) = st.subscribers_by_address.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                st.subscribers_by_address.remove(&self.addr);
            }
        }
    }
}

#[instrument(skip_all)]
async fn lifecycle_task(
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
            Ok(ev) => chat.lifecycle(&ev),
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
async fn housekeeping_task(chat: Arc<Chat>, cancel: CancellationToken) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn chat_with(cfg: ChatConfig) -> (Arc<Chat>, Arc<Bus>) {
        let db = Db::open_in_memory().await.unwrap();
        chat_on(cfg, db).await
    }

    async fn chat_on(cfg: ChatConfig, db: Db) -> (Arc<Chat>, Arc<Bus>) {
        let bus = Bus::new();
        bus.ensure(&ChannelName::new("alice"));
        let tracker = TaskTracker::new();
        let chat = Chat::start(cfg, bus.clone(), db, &tracker, CancellationToken::new())
            .await
            .unwrap();
        (chat, bus)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    async fn frames(body: &mut SseBody, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let f = tokio::time::timeout(Duration::from_secs(2), body.frame())
                .await
                .expect("frame in time")
                .expect("stream open")
                .expect("infallible");
            if let Ok(d) = f.into_data() {
                out.push(String::from_utf8_lossy(&d).into_owned());
            }
        }
        out
    }

    /// The next data frame, or `None` when the stream ended.
    async fn next_frame(body: &mut SseBody) -> Option<String> {
        loop {
            let f = tokio::time::timeout(Duration::from_secs(60), body.frame())
                .await
                .expect("frame or end in time")?
                .expect("infallible");
            if let Ok(d) = f.into_data() {
                return Some(String::from_utf8_lossy(&d).into_owned());
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keepalives_come_through_the_ring_and_shutdown_ends_every_stream() {
        let bus = Bus::new();
        bus.ensure(&ChannelName::new("alice"));
        let cancel = CancellationToken::new();
        let chat = Chat::start(
            ChatConfig::default(),
            bus.clone(),
            Db::open_in_memory().await.unwrap(),
            &TaskTracker::new(),
            cancel.clone(),
        )
        .await
        .unwrap();
        let start = tokio::time::Instant::now();
        let mut body = chat.subscribe("alice", ip("10.0.0.1"), None).unwrap();
        let mut seen = Vec::new();
        loop {
            let f = next_frame(&mut body).await.expect("stream open");
            if f == ": keep-alive\n\n" {
                break;
            }
            seen.push(f);
        }
        let waited = start.elapsed();
        assert!(
            waited >= KEEPALIVE_INTERVAL && waited <= KEEPALIVE_INTERVAL + VIEWERS_INTERVAL,
            "keep-alive after {waited:?}"
        );
        assert!(seen[0].starts_with("retry:"), "{seen:?}");
        // Stopping ends the open stream, and one opened afterwards ends after its snapshot.
        cancel.cancel();
        while let Some(f) = next_frame(&mut body).await {
            assert!(
                f.starts_with(": keep-alive") || f.contains("event: viewers"),
                "{f}"
            );
        }
        let mut late = chat.subscribe("alice", ip("10.0.0.2"), None).unwrap();
        let mut n = 0;
        while next_frame(&mut late).await.is_some() {
            n += 1;
        }
        assert_eq!(n, 3, "retry, state and viewers, then the end");
    }

    #[tokio::test]
    async fn post_reaches_subscribers_and_history_replays_after_last_event_id() {
        let (chat, _bus) = chat_with(ChatConfig::default()).await;
        let a = ip("10.0.0.1");
        let first = chat.post("alice", a, "ann", "one").unwrap();
        let second = chat.post("alice", a, "ann", "two").unwrap();
        assert_eq!(second.id, first.id + 1);

        let mut fresh = chat.subscribe("alice", a, None).unwrap();
        let f = frames(&mut fresh, 5).await;
        assert_eq!(f[0], "retry: 2000\n\n");
        assert!(f[1].contains("\"text\":\"one\""), "{f:?}");
        assert!(f[2].contains("\"text\":\"two\""), "{f:?}");
        assert!(f[3].starts_with(&format!("id: {}\nevent: offline\n", second.id)));
        assert!(f[4].contains("event: viewers"));

        let mut resumed = chat.subscribe("alice", a, Some(first.id)).unwrap();
        let f = frames(&mut resumed, 3).await;
        assert!(f[1].contains("\"text\":\"two\""), "{f:?}");
        assert!(f[2].contains("event: offline"), "{f:?}");

        // An id from nowhere (another server, garbage) gets the whole history.
        let mut stranger = chat.subscribe("alice", a, Some(u64::MAX)).unwrap();
        let f = frames(&mut stranger, 3).await;
        assert!(f[1].contains("\"text\":\"one\""), "{f:?}");

        let third = chat.post("alice", a, "bob", "three").unwrap();
        let got = frames(&mut resumed, 2).await;
        let got = got.iter().find(|f| f.contains("event: chat")).unwrap();
        assert!(got.starts_with(&format!("id: {}\n", third.id)), "{got}");
    }

    #[tokio::test]
    async fn moderation() {
        let cfg = ChatConfig {
            burst: 2,
            rate_per_second: 1.0,
            blocked_words: vec!["darn".into()],
            max_message_chars: 10,
            ..Default::default()
        };
        let (chat, _bus) = chat_with(cfg).await;
        let a = ip("10.0.0.1");
        assert!(chat.post("alice", a, "ann", "hi").is_ok());
        assert!(chat.post("alice", a, "ann", "hi").is_ok());
        assert_eq!(
            chat.post("alice", a, "ann", "hi"),
            Err(ChatError::RateLimited { retry_after: 1 })
        );
        // Another nick from the same address has its own bucket.
        assert_eq!(chat.post("alice", a, "bea", "darn").unwrap().text, "****");
        assert!(matches!(
            chat.post("alice", a, "cy", "01234567890"),
            Err(ChatError::TooLong { .. })
        ));
        assert!(matches!(
            chat.post("alice", a, "", "x"),
            Err(ChatError::Invalid { .. })
        ));
        assert_eq!(chat.post("nobody", a, "x", "y"), Err(ChatError::NoChannel));

        let b = ip("10.0.0.2");
        let m = chat.post("alice", b, "Troll", "spam").unwrap();
        assert_eq!(
            chat.ban("alice", &BanTarget::Nick("troll".into())).await,
            Ok(1)
        );
        assert_eq!(chat.post("alice", b, "TROLL", "x"), Err(ChatError::Banned));
        assert_eq!(
            chat.delete("alice", m.id),
            Err(ChatError::NoSuchMessage { id: m.id })
        );
        assert_eq!(
            chat.unban("alice", &BanTarget::Nick("Troll".into())).await,
            Ok(true)
        );
        // An address ban ends that address's event streams (and only those) and refuses new
        // ones while it lasts.
        let mut troll_stream = chat.subscribe("alice", b, None).unwrap();
        let mut other_stream = chat.subscribe("alice", ip("10.0.0.9"), None).unwrap();
        chat.ban("alice", &BanTarget::Address(b)).await.unwrap();
        assert_eq!(chat.post("alice", b, "other", "x"), Err(ChatError::Banned));
        // Ends after its snapshot and whatever was already on its way (a timeout fails).
        while next_frame(&mut troll_stream).await.is_some() {}
        assert!(matches!(
            chat.subscribe("alice", b, None),
            Err(ChatError::Banned)
        ));
        let m = chat
            .post("alice", ip("10.0.0.9"), "fay", "still here")
            .unwrap();
        let want = format!("id: {}\nevent: chat", m.id);
        while !next_frame(&mut other_stream)
            .await
            .expect("still open")
            .contains(&want)
        {}
        drop(troll_stream);
        let alice = chat.stats().into_iter().find(|s| s.channel == "alice");
        assert_eq!(alice.map(|s| s.subscribers), Some(1));

        chat.set_slow_mode("alice", 30).unwrap();
        let c = ip("10.0.0.3");
        assert!(chat.post("alice", c, "dee", "one").is_ok());
        assert!(matches!(
            chat.post("alice", c, "dee", "two"),
            Err(ChatError::SlowMode {
                retry_after: 30 | 29
            })
        ));
    }

    #[tokio::test]
    async fn bans_are_committed_before_the_answer_and_loaded_at_start() {
        let db = Db::open_in_memory().await.unwrap();
        let (chat, _bus) = chat_on(ChatConfig::default(), db.clone()).await;
        let stored = |db: Db| async move { db.call(|c| db::bans::all(c)).await.unwrap() };
        assert_eq!(
            chat.ban("alice", &BanTarget::Nick(" Troll ".into())).await,
            Ok(0)
        );
        chat.ban("alice", &BanTarget::Address(ip("203.0.113.7")))
            .await
            .unwrap();
        let saved = stored(db.clone()).await;
        assert!(saved["alice"].nicks.contains("troll"), "{saved:?}");
        assert_eq!(chat.bans("alice").unwrap(), saved["alice"]);
        assert_eq!(
            chat.ban("nobody", &BanTarget::Nick("x".into())).await,
            Err(ChatError::NoChannel)
        );

        // A new chat on the same database (a restart) starts with them.
        let (again, _bus) = chat_on(ChatConfig::default(), db.clone()).await;
        assert_eq!(
            again.post("alice", ip("10.0.0.1"), "TROLL", "x"),
            Err(ChatError::Banned)
        );
        assert_eq!(again.bans("alice").unwrap(), saved["alice"]);
        let troll = BanTarget::Nick("troll".into());
        assert_eq!(again.unban("alice", &troll).await, Ok(true));
        assert_eq!(again.unban("alice", &troll).await, Ok(false));
        assert!(stored(db.clone()).await["alice"].nicks.is_empty());

        // A database that fails the write: refused, and nothing changes in memory either.
        db.call(|c| Ok(c.execute_batch("DROP TABLE chat_bans")?))
            .await
            .unwrap();
        assert_eq!(again.ban("alice", &troll).await, Err(ChatError::Unsaved));
        assert!(again.post("alice", ip("10.0.0.1"), "troll", "x").is_ok());
    }

    #[tokio::test]
    async fn subscriber_caps_and_counts() {
        let cfg = ChatConfig {
            max_subscribers: 3,
            max_subscribers_per_address: 2,
            ..Default::default()
        };
        let (chat, _bus) = chat_with(cfg).await;
        let a = ip("10.0.0.1");
        let s1 = chat.subscribe("alice", a, None).unwrap();
        let _s2 = chat.subscribe("alice", a, None).unwrap();
        assert!(matches!(
            chat.subscribe("alice", a, None),
            Err(ChatError::AddressFull)
        ));
        let _s3 = chat.subscribe("alice", ip("10.0.0.2"), None).unwrap();
        assert!(matches!(
            chat.subscribe("alice", ip("10.0.0.3"), None),
            Err(ChatError::ChannelFull)
        ));
        chat.touch_hls("alice", a);
        chat.touch_hls("alice", ip("10.0.0.9"));
        assert_eq!(chat.viewers("alice"), 4);
        drop(s1);
        assert_eq!(chat.viewers("alice"), 3);
        assert!(chat.subscribe("alice", a, None).is_ok());
    }

    #[tokio::test]
    async fn slow_subscriber_is_disconnected_without_blocking_others() {
        let (chat, _bus) = chat_with(ChatConfig {
            rate_per_second: 1e6,
            burst: 1_000_000,
            ..Default::default()
        })
        .await;
        let a = ip("10.0.0.1");
        let mut slow = chat.subscribe("alice", a, None).unwrap();
        let mut fast = chat.subscribe("alice", a, None).unwrap();
        let _ = frames(&mut slow, 3).await;
        let _ = frames(&mut fast, 3).await;
        let total = EVENT_BUFFER + 10;
        let last = format!("\"m{}\"", total - 1);
        let reader = tokio::spawn(async move {
            loop {
                match fast.frame().await {
                    Some(Ok(f)) => {
                        if f.into_data()
                            .is_ok_and(|d| String::from_utf8_lossy(&d).contains(&last))
                        {
                            return true;
                        }
                    }
                    _ => return false,
                }
            }
        });
        for i in 0..total {
            chat.post("alice", a, "ann", &format!("m{i}")).unwrap();
            if i % 32 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert!(reader.await.unwrap(), "the fast subscriber got everything");
        // The slow one gets its buffer's worth at most, then its stream ends.
        let mut got = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(2), slow.frame()).await {
                Ok(None) => break,
                Ok(Some(_)) => got += 1,
                Err(_) => panic!("lagging subscriber must be disconnected"),
            }
        }
        assert!(got <= EVENT_BUFFER, "{got}");
        let st = chat.stats();
        let alice = st.iter().find(|c| c.channel == "alice").unwrap();
        assert_eq!((alice.lagged, alice.messages), (1, total as u64));
    }
}

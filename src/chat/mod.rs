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
pub mod questions;
mod shared;
mod sse;
mod tasks;

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
use tracing::{debug, error, info, warn};

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
/// comment through each channel's ring, not a timer per subscriber. The unit tests run on the
/// real clock (tokio's `test-util` would give the test build other features than a user's
/// `cargo build`, and `scripts/run` in tests/cli.rs would rebuild half the crates), hence a
/// shorter interval there.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(if cfg!(test) { 8 } else { 15 });
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
    /// `http.max_event_streams` (all channels) is reached; said by HTTP, not by the chat.
    #[error("this server has too many chat subscribers")]
    ServerFull,
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Author {
    /// The nick, lowercased.
    nick: String,
    addr: IpAddr,
    /// `provider:id` of a signed-in author.
    identity: Option<String>,
}

/// A message that passed every check, not yet numbered.
struct Admitted {
    msg: ChatMessage,
    who: Author,
    /// For a signed-in author: the names anonymous nicks may no longer take, for the other nodes.
    signed_names: Option<Vec<String>>,
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
    /// Of those, the broadcaster's own streams (the studio page), which are not viewers.
    studio_by_address: HashMap<IpAddr, usize>,
    buckets: HashMap<(IpAddr, String), TokenBucket>,
    address_buckets: HashMap<IpAddr, TokenBucket>,
    /// Last post per address while slow mode is on (posts before it was turned on do not
    /// count: the first message after turning it on always goes through).
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

impl ChannelState {
    /// Turning slow mode off forgets who posted when; turning it on starts counting afresh.
    fn set_slow_mode(&mut self, slow: Duration) {
        if slow.is_zero() || self.slow_mode.is_zero() {
            self.last_post.clear();
        }
        self.slow_mode = slow;
    }
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
        let id = st.last_id + 1;
        self.publish_at(st, history_len, id, event, data, keep);
        id
    }

    /// [`ChatChannel::publish`] under a given id (a cluster's, or the last one again for the
    /// counts, which resume nothing).
    fn publish_at(
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
    fn commit(&self, history_len: usize, a: Admitted) -> ChatMessage {
        let mut st = self.lock();
        let id = st.last_id + 1;
        self.commit_at(&mut st, history_len, id, a)
    }

    /// [`ChatChannel::commit`] under a given id.
    fn commit_at(
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
    /// The broadcaster's studio streams do not count (nor hide a player at their address).
    fn viewers(&self, now: Instant) -> u64 {
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
    /// Set once when the node is part of a cluster (`shared.rs`).
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
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
            cluster: std::sync::OnceLock::new(),
        });
        tracker.spawn(tasks::lifecycle_task(
            chat.clone(),
            bus.subscribe_lifecycle(),
            cancel.clone(),
        ));
        tracker.spawn(tasks::housekeeping_task(chat.clone(), cancel));
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
        let (ch, a) = self.admit(channel, addr, nick, text, author)?;
        Ok(ch.commit(self.cfg.history, a))
    }

    /// Every check of [`Chat::post`] (bans, names, slow mode, rate limits, which it charges):
    /// the message is accepted, and not yet numbered or sent.
    fn admit(
        &self,
        channel: &str,
        addr: IpAddr,
        nick: &str,
        text: &str,
        author: Option<&Identity>,
    ) -> Result<(Arc<ChatChannel>, Admitted), ChatError> {
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
        if !st.slow_mode.is_zero() {
            st.last_post.insert(addr, now);
        }
        let mut signed_names = None;
        if let Some(a) = author {
            // The handle, its name part (`bob` of `@bob@host`) and the display name.
            let handle = name_key(&a.handle);
            let user = handle.split('@').next().unwrap_or_default().to_string();
            let names: Vec<String> = [handle, user, name_key(&a.display_name)]
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect();
            st.signed_names.extend(names.iter().cloned());
            signed_names = Some(names);
        }
        drop(st);
        Ok((
            ch,
            Admitted {
                msg: ChatMessage {
                    id: 0,
                    nick,
                    text,
                    ts: now_rfc3339(Utc::now()),
                    author: author.cloned(),
                },
                who: Author {
                    nick: nick_key,
                    addr,
                    identity,
                },
                signed_names,
            },
        ))
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
        if let Some(deleted) = self.ban_shared(&ch, &target).await? {
            return Ok(deleted);
        }
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
        if let Some(lifted) = self.unban_shared(&ch, &target).await? {
            return Ok(lifted);
        }
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

    /// The slow mode in force, in seconds (0: off).
    pub fn slow_mode(&self, channel: &str) -> Result<u64, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let seconds = ch.lock().slow_mode.as_secs();
        Ok(seconds)
    }

    /// Sets slow mode (0 turns it off).
    pub fn set_slow_mode(&self, channel: &str, seconds: u64) -> Result<(), ChatError> {
        if seconds > MAX_SLOW_MODE_SECONDS {
            return Err(ChatError::SlowModeTooLong { seconds });
        }
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        ch.lock().set_slow_mode(Duration::from_secs(seconds));
        info!(channel = %ch.name, seconds, "chat slow mode set");
        Ok(())
    }

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
    audience: Audience,
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

#[cfg(test)]
mod tests;

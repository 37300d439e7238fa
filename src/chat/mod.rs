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
//!
//! One module per concern: `channel` (a channel's state, its id sequence, history and ring),
//! `admission` (what a post must pass: names, text, rate limits, slow mode), `bans` (ban
//! sets, applying and lifting them, their storage), `subscribers` (event streams and viewer
//! counts), `sse` (the event-stream body), `tasks` (lifecycle events and housekeeping),
//! `shared` (the same through a cluster) and `questions` (the debate's questions).

mod admission;
pub mod bans;
mod channel;
pub mod moderation;
pub mod questions;
mod shared;
mod sse;
mod subscribers;
mod tasks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::bus::{Bus, ChannelName};
use crate::config::ChatConfig;
use crate::db::{self, Db, DbError};
use crate::identity::Identity;
use admission::{name_key, Author};
use bans::{BanFile, BanMap};
use channel::Ring;
use moderation::Invalid;

pub use admission::MAX_SLOW_MODE_SECONDS;
pub use bans::BanTarget;
pub use channel::ChatChannel;
pub use sse::SseBody;
pub use subscribers::{Audience, ChatStats, SubscriberGuard};

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

/// Logs why a change could not be saved; the client is told to try again.
fn unsaved(channel: &str, what: &str, e: DbError) -> ChatError {
    error!(channel, error = %e, "{what} not saved to the database; nothing changed");
    ChatError::Unsaved
}

/// Locks a std mutex, ignoring poisoning (the data are plain values).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
}

#[cfg(test)]
mod tests;

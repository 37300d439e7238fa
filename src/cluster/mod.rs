//! What the nodes of a cluster share through Redis (`cluster.redis_url`): chat events, viewer
//! counts, live state and the channel registry. Empty `redis_url`: none of this runs and the
//! node is the single node it always was.
//!
//! - Events (`stream.rs`): every chat event of a channel (message, deletion, ban, unban, slow
//!   mode, live, offline; the debate's questions, votes, pins and timers as `q.*`) is appended to the channel's Redis stream by
//!   a script that gives it the channel's next id ([`scripts`]); each node reads every stream
//!   and hands the entries, in stream order, to `Chat::apply_shared` (the `q.*` kinds, `live`
//!   and `offline` also to `Debate::apply_shared`), its own included. So ids are the same on
//!   every node and `Last-Event-ID` resumes anywhere. A new kind of event is an
//!   [`Event`] with its kind and data: `Chat::apply_shared` frames unknown kinds as they are.
//! - Registry (`registry.rs`): `{ch}:origin` names the node a channel is live on (its
//!   `advertise_url`), with a TTL its heartbeat renews every second; a publish on another node
//!   claims it, which tells the old node to stop its publisher (a takeover, as on one node).
//!   Announcements go out from the node whose claim found the channel live nowhere: once per
//!   go-live in the cluster. Viewer counts: each node writes its own, every node sums them.
//! - HLS (`proxy.rs`): a node where a channel is not live serves it from its origin node, one
//!   upstream request per object however many viewers ask, held for the window.
//!
//! Losing Redis: appends fail fast and each node goes on alone (its own ids, its own viewers),
//! logging once; `/metrics` (`onair_cluster_redis_up`) and `/healthz` show it. The connection
//! manager reconnects; the reader resumes each stream after the last entry it applied, and the
//! heartbeat writes this node's registry entries again. Media never waits on Redis.

mod proxy;
mod registry;
pub mod scripts;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::bus::{Bus, Lifecycle};
use crate::chat::questions::Debate;
use crate::chat::Chat;
use crate::config::cluster::ClusterConfig;
use crate::config::Config;
pub use proxy::{Fetched, ProxyStats};

/// How long one Redis command may take before the node counts Redis as lost.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the registry and the counts are written and read.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL did not parse (the message names the key, never the URL: it may hold a password).
    #[error("cluster.redis_url is not a usable Redis URL: {reason}")]
    Url { reason: String },
}

/// One event as it travels between nodes: what `Chat::apply_shared` gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The channel's id for it (the same on every node).
    pub id: u64,
    /// `chat`, `delete`, `ban`, `unban`, `slow`, `live`, `offline`, `origin`, or a later kind.
    pub kind: String,
    /// The event's data as clients see it (for kinds that reach them).
    pub data: serde_json::Value,
    /// What only the nodes need (a chat message's author for bans); `Null` if nothing.
    pub meta: serde_json::Value,
    /// The node that appended it.
    pub node: String,
}

/// Where a channel is live: the registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub node: String,
    /// The node's `cluster.advertise_url`, without a trailing slash.
    pub url: String,
    /// RFC 3339: when the broadcast started (kept across takeovers).
    pub started_at: String,
}

/// The cluster as `/healthz` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub node: String,
    pub redis_up: bool,
    pub upstream_requests: u64,
    pub upstream_waiters: u64,
}

/// Redis key names, all under `cluster.key_prefix`.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    fn ch(&self, channel: &str, what: &str) -> String {
        format!("{}:ch:{channel}:{what}", self.prefix)
    }
    pub fn events(&self, channel: &str) -> String {
        self.ch(channel, "events")
    }
    pub fn seq(&self, channel: &str) -> String {
        self.ch(channel, "seq")
    }
    pub fn origin(&self, channel: &str) -> String {
        self.ch(channel, "origin")
    }
    pub fn state(&self, channel: &str) -> String {
        self.ch(channel, "state")
    }
    pub fn bans(&self, channel: &str) -> String {
        self.ch(channel, "bans")
    }
    pub fn slow(&self, channel: &str) -> String {
        self.ch(channel, "slow")
    }
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    pub fn viewers(&self, node: &str) -> String {
        format!("{}:node:{node}:viewers", self.prefix)
    }
}

/// This node's part in the cluster.
pub struct Cluster {
    cfg: ClusterConfig,
    node: String,
    /// `advertise_url` without a trailing slash.
    url: String,
    keys: Keys,
    client: redis::Client,
    /// The command connection, made by the first caller that finds none (Redis may be down at
    /// start). Std mutex: only cloned out, never held across an await.
    conn: Mutex<Option<ConnectionManager>>,
    up: AtomicBool,
    bus: Arc<Bus>,
    chat: OnceLock<Arc<Chat>>,
    /// The debate, which applies its own kinds of events (`q.*`) and follows `live` /
    /// `offline` for its broadcasts (`chat::questions::shared`). Weak: the debate holds the
    /// chat, which holds this; a strong reference would keep the debate (and its database
    /// writers) alive past shutdown.
    debate: OnceLock<std::sync::Weak<Debate>>,
    /// The registry as last read: channel -> origin (this node's entries included).
    origins: Mutex<HashMap<String, Origin>>,
    /// Viewers of the other live nodes, summed, as last read.
    viewers: Mutex<HashMap<String, u64>>,
    /// Cluster-wide go-lives and ends, for the announcer: each one on one node only.
    announce: broadcast::Sender<Lifecycle>,
    /// Stream length kept in Redis (`MAXLEN ~`).
    maxlen: usize,
    proxy: proxy::Proxy,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it half-written in a way that matters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// The cluster part of a node, or `None` for a single node. Nothing runs until [`start`].
    ///
    /// [`start`]: Cluster::start
    pub fn new(cfg: &Config, bus: Arc<Bus>) -> Result<Option<Arc<Cluster>>, ClusterError> {
        let c = &cfg.cluster;
        if !c.enabled() {
            return Ok(None);
        }
        let client = redis::Client::open(c.redis_url.expose()).map_err(|e| ClusterError::Url {
            reason: format!("{:?}", e.kind()),
        })?;
        let (announce, _) = broadcast::channel(64);
        let window = cfg.hls.playlist_window.max(3) as f64 * cfg.hls.segment_seconds.max(1.0);
        Ok(Some(Arc::new(Cluster {
            node: c.node(),
            url: c.advertise_url.trim_end_matches('/').to_string(),
            keys: Keys {
                prefix: c.key_prefix.clone(),
            },
            client,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            bus,
            chat: OnceLock::new(),
            debate: OnceLock::new(),
            origins: Mutex::new(HashMap::new()),
            viewers: Mutex::new(HashMap::new()),
            announce,
            maxlen: (cfg.chat.history * 4).max(1000),
            proxy: proxy::Proxy::new(Duration::from_secs_f64(window), cfg.hls.part_seconds),
            cfg: c.clone(),
        })))
    }

    /// Go-lives and ends as the cluster sees them, for the announcer. Subscribe before
    /// [`Cluster::start`] so that none is missed.
    pub fn subscribe_lifecycle(&self) -> broadcast::Receiver<Lifecycle> {
        self.announce.subscribe()
    }

    /// Starts the event reader, the heartbeat and the lifecycle task.
    pub fn start(
        self: &Arc<Self>,
        chat: Arc<Chat>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) {
        let _ = self.chat.set(chat);
        info!(node = %self.node, advertise_url = %self.url, "cluster on: sharing chat, counts and live state through Redis");
        tracker.spawn(stream::reader(self.clone(), cancel.clone()));
        tracker.spawn(registry::heartbeat(self.clone(), cancel.clone()));
        tracker.spawn(registry::lifecycle(
            self.clone(),
            self.bus.subscribe_lifecycle(),
            cancel,
        ));
    }

    /// Hands the debate its events: call before [`Cluster::start`], so that the first read
    /// (the streams' tails) reaches it too.
    pub fn attach_debate(&self, debate: &Arc<Debate>) {
        let _ = self.debate.set(Arc::downgrade(debate));
    }

    fn debate(&self) -> Option<Arc<Debate>> {
        self.debate.get()?.upgrade()
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether Redis answered the last command.
    pub fn online(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn chat(&self) -> Option<&Arc<Chat>> {
        self.chat.get()
    }

    /// Records whether Redis answered; logs the changes only (once per loss, once per return).
    fn note(&self, result: Result<(), &redis::RedisError>) {
        let ok = result.is_ok();
        let was = self.up.swap(ok, Ordering::AcqRel);
        match result {
            Err(e) if was => {
                warn!(error = %e, "lost Redis: this node goes on with its own viewers (per-node chat, local counts) until it comes back");
                if let Some(chat) = self.chat() {
                    chat.cluster_lost();
                }
            }
            Ok(()) if !was => {
                info!(node = %self.node, "Redis reachable: chat, counts and live state shared with the cluster")
            }
            _ => {}
        }
    }

    /// A connection manager over Redis with the given timeouts.
    async fn connect(&self, response_timeout: Duration) -> redis::RedisResult<ConnectionManager> {
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(response_timeout)
            .set_number_of_retries(1)
            .set_max_delay(500);
        ConnectionManager::new_with_config(self.client.clone(), cfg).await
    }

    /// The command connection; made on first use.
    async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(c) = lock(&self.conn).clone() {
            return Ok(c);
        }
        let c = self.connect(COMMAND_TIMEOUT).await?;
        *lock(&self.conn) = Some(c.clone());
        Ok(c)
    }

    /// Appends events to a channel's stream in one piece; returns their ids, or `None` when
    /// Redis is lost (the caller then does it locally). Fails at once while Redis is down.
    pub async fn append(
        &self,
        channel: &str,
        events: &[(&str, serde_json::Value, serde_json::Value)],
    ) -> Option<Vec<u64>> {
        if !self.online() {
            return None;
        }
        let result = async {
            let mut conn = self.conn().await?;
            let mut inv = scripts::APPEND_EVENTS.prepare_invoke();
            inv.key(self.keys.events(channel))
                .key(self.keys.seq(channel))
                .key(self.keys.bans(channel))
                .key(self.keys.slow(channel))
                .arg(self.maxlen)
                .arg(&self.node);
            for (kind, data, meta) in events {
                inv.arg(*kind).arg(data.to_string()).arg(meta_string(meta));
            }
            inv.invoke_async::<Vec<u64>>(&mut conn).await
        }
        .await;
        match result {
            Ok(ids) => {
                self.note(Ok(()));
                Some(ids)
            }
            Err(e) => {
                self.note(Err(&e));
                None
            }
        }
    }

    /// Where a channel is live when that is another node; `None` if here or nowhere.
    pub fn remote_origin(&self, channel: &str) -> Option<Origin> {
        lock(&self.origins)
            .get(channel)
            .filter(|o| o.node != self.node)
            .cloned()
    }

    /// Viewers of a channel on the other nodes, while Redis answers; `None` otherwise (the
    /// node counts its own only).
    pub fn other_viewers(&self, channel: &str) -> Option<u64> {
        if !self.online() {
            return None;
        }
        Some(lock(&self.viewers).get(channel).copied().unwrap_or(0))
    }

    pub fn status(&self) -> ClusterStatus {
        let p = self.proxy.stats();
        ClusterStatus {
            node: self.node.clone(),
            redis_up: self.online(),
            upstream_requests: p.requests,
            upstream_waiters: p.shared,
        }
    }

    /// An HLS object of a channel live on another node, fetched from it (once for all the
    /// viewers asking at the same time). `path_and_query` starts with `/hls/`.
    pub async fn fetch_hls(&self, origin: &Origin, path_and_query: &str) -> Fetched {
        self.proxy.fetch(&origin.url, path_and_query).await
    }
}

fn meta_string(meta: &serde_json::Value) -> String {
    if meta.is_null() {
        String::new()
    } else {
        meta.to_string()
    }
}

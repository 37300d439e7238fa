//! Go-live announcements: when a channel goes live, post its watch link to X, Mastodon, Bluesky
//! and webhooks (Discord included); optionally post again when it ends.
//!
//! [`start`] subscribes to the bus's lifecycle events and runs the dispatcher task: it drops a
//! `Live` that follows the channel's `Offline` within `announce.grace_seconds` (a broadcaster
//! reconnecting), renders `announce.template` and hands the post to every enabled target's own
//! bounded queue (`queue.rs`), which delivers it with retries. Nothing here touches the media
//! path, and the dispatcher never waits on a target. Each post carries the channel's live
//! thumbnail when there is one (`picture.rs`: Mastodon and Bluesky upload it, webhooks link
//! it), and `announce.replay_post` ends a show with its replay's link (the recorder tells
//! where through [`AnnounceHandle::set_replay_links`]). Counters per target live in
//! [`AnnounceStats`], reachable from `Server::announce` for `/metrics`.
//! `onair announce-test` uses [`send_test`].

pub mod bluesky;
pub mod mastodon;
pub mod message;
pub mod oauth1;
pub mod picture;
pub mod queue;
pub mod twitter;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::bus::{Bus, Lifecycle};
use crate::config::{AnnounceConfig, ChannelConfig, Config, Secret};
pub use message::{AnnounceKind, Announcement};
pub use picture::{Picture, Pictures};
pub use queue::{AnnounceStats, Delivery, Destination, RetryPolicy, TargetStats};

use bluesky::BlueskyTarget;
use mastodon::MastodonTarget;
use queue::AttemptError;
use twitter::TwitterTarget;
use webhook::WebhookTarget;

#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("cannot set up the HTTP client for announcements: {source}")]
    Client { source: reqwest::Error },
    #[error("no enabled announce target named {name:?} (enabled: {known})")]
    UnknownTarget { name: String, known: String },
    #[error("no announce target is enabled: set enabled = true in [announce.twitter], [announce.mastodon], [announce.bluesky] or an [[announce.webhooks]] entry")]
    NoTargets,
}

/// One place to post to.
pub enum Target {
    Twitter(TwitterTarget),
    Mastodon(MastodonTarget),
    Bluesky(BlueskyTarget),
    Webhook(WebhookTarget),
}

impl Target {
    /// The name in logs, metrics and `announce-test --target`.
    pub fn name(&self) -> &str {
        match self {
            Target::Twitter(_) => "twitter",
            Target::Mastodon(_) => "mastodon",
            Target::Bluesky(_) => "bluesky",
            Target::Webhook(w) => &w.name,
        }
    }

    /// What an admin should check when the target refuses us.
    pub fn credentials_hint(&self) -> &'static str {
        match self {
            Target::Twitter(_) => "announce.twitter.consumer_key, consumer_secret, access_token and access_token_secret (the app needs Read and Write permission; regenerate the access token after changing it)",
            Target::Mastodon(_) => "announce.mastodon.access_token (it needs the write:statuses scope, and write:media for the picture) and instance_url",
            Target::Bluesky(_) => "announce.bluesky.identifier and app_password",
            Target::Webhook(_) => "the webhook's url and secret",
        }
    }

    /// One try: builds and sends the request(s), with the post's picture if it has one (X
    /// shows the watch page's card instead: its media upload needs another API tier).
    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        a: &Announcement,
        picture: Option<&Picture>,
    ) -> Result<(), AttemptError> {
        match self {
            Target::Twitter(t) => t.attempt(client, a).await,
            Target::Mastodon(t) => t.attempt(client, a, picture).await,
            Target::Bluesky(t) => t.attempt(client, a, picture).await,
            Target::Webhook(t) => t.attempt(client, a, picture).await,
        }
    }
}

/// A go-live target with the client it posts through: what the delivery queue serves.
pub struct Posting {
    pub target: Target,
    pub client: reqwest::Client,
    pub pictures: Pictures,
}

impl Destination for Posting {
    type Post = Announcement;

    fn name(&self) -> &str {
        self.target.name()
    }

    fn noun(&self) -> &'static str {
        "announcement"
    }

    fn credentials_hint(&self) -> &'static str {
        self.target.credentials_hint()
    }

    fn about<'p>(&self, a: &'p Announcement) -> (&'p str, &'static str) {
        (&a.channel, a.kind.as_str())
    }

    async fn attempt(&self, a: &Announcement) -> Result<(), AttemptError> {
        let picture = match self.target {
            Target::Twitter(_) => None,
            _ => self.pictures.for_post(a).await,
        };
        self.target.attempt(&self.client, a, picture.as_ref()).await
    }
}

/// The enabled targets, in a fixed order: twitter, mastodon, bluesky, then webhooks.
pub fn build_targets(cfg: &AnnounceConfig) -> Vec<Target> {
    let mut out = Vec::new();
    if cfg.twitter.enabled {
        out.push(Target::Twitter(TwitterTarget::new(cfg.twitter.clone())));
    }
    if cfg.mastodon.enabled {
        out.push(Target::Mastodon(MastodonTarget::new(cfg.mastodon.clone())));
    }
    if cfg.bluesky.enabled {
        out.push(Target::Bluesky(BlueskyTarget::new(cfg.bluesky.clone())));
    }
    for (i, w) in cfg.webhooks.iter().enumerate() {
        if w.enabled {
            let name = w.name.clone().unwrap_or_else(|| format!("webhook-{i}"));
            out.push(Target::Webhook(WebhookTarget::new(name, w.clone())));
        }
    }
    out
}

/// The HTTP client every target shares: per-request timeout, no redirects (a redirected POST
/// would be re-signed wrongly or carry credentials elsewhere), rustls.
pub fn http_client(cfg: &AnnounceConfig) -> Result<reqwest::Client, AnnounceError> {
    let t = Duration::from_secs(cfg.timeout_seconds);
    reqwest::Client::builder()
        .timeout(t)
        .connect_timeout(t)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("onair/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| AnnounceError::Client { source })
}

pub fn retry_policy(cfg: &AnnounceConfig) -> RetryPolicy {
    RetryPolicy {
        tries: cfg.tries.max(1),
        base: Duration::from_millis(cfg.backoff_base_ms),
        max: Duration::from_secs(cfg.backoff_max_seconds),
    }
}

/// Decides which go-lives are announced: not one that follows the channel's last offline
/// within the grace period. Pure (time is passed in) so it is tested without a clock.
#[derive(Debug)]
pub struct GraceFilter {
    grace: Duration,
    last_offline: HashMap<String, Instant>,
}

impl GraceFilter {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            last_offline: HashMap::new(),
        }
    }

    /// Whether this go-live is announced.
    pub fn on_live(&mut self, channel: &str, now: Instant) -> bool {
        match self.last_offline.remove(channel) {
            Some(t) => now.saturating_duration_since(t) >= self.grace,
            None => true,
        }
    }

    pub fn on_offline(&mut self, channel: &str, now: Instant) {
        self.last_offline.insert(channel.to_string(), now);
    }
}

/// What the dispatcher knows of the channels: titles, and the stream keys no post may show.
/// Replaced whole when a reload changes the channels.
#[derive(Default)]
struct ChannelFacts {
    titles: HashMap<String, String>,
    keys: Vec<Secret>,
}

impl ChannelFacts {
    fn new(channels: &[ChannelConfig]) -> Self {
        Self {
            titles: channels
                .iter()
                .map(|c| (c.name.clone(), c.title.clone().unwrap_or_default()))
                .collect(),
            keys: channels.iter().map(|c| c.key.clone()).collect(),
        }
    }
}

/// Shared between the handle (reloads write) and the dispatcher (reads a snapshot per event).
/// A std lock: held only to clone or swap the `Arc`, never across an await.
type SharedFacts = Arc<RwLock<Arc<ChannelFacts>>>;

/// Also posts each announced go-live somewhere else (a channel owner's own account, from
/// `identity`). Called from the dispatcher: it must only hand the post on, never wait.
pub type LiveHook = Arc<dyn Fn(Arc<Announcement>) + Send + Sync>;

/// The replay page (absolute URL) of a channel's show that went live at the given time, from
/// the recorder; `None` when it was not recorded. Called from the dispatcher: no waiting.
pub type ReplayLinks = Arc<dyn Fn(&str, DateTime<Utc>) -> Option<String> + Send + Sync>;

/// What `Server` keeps of the announcer.
#[derive(Clone)]
pub struct AnnounceHandle {
    pub stats: Arc<AnnounceStats>,
    channels: SharedFacts,
    /// Set once, when the sign-in component has started.
    live_hook: Arc<OnceLock<LiveHook>>,
    /// The posts' pictures (live thumbnails, set once they exist).
    pictures: Pictures,
    /// Set once by the recorder: where a show's replay is (`announce.replay_post`).
    replay_links: Arc<OnceLock<ReplayLinks>>,
}

impl AnnounceHandle {
    /// Takes a reload's channels: new titles, new channels, rotated keys. Target settings take
    /// effect at restart.
    pub fn set_channels(&self, channels: &[ChannelConfig]) {
        let facts = Arc::new(ChannelFacts::new(channels));
        *self.channels.write().unwrap_or_else(|e| e.into_inner()) = facts;
    }

    /// Hands every announced go-live to `hook` too (after the grace filter and the stream-key
    /// check), whether or not a target is enabled.
    pub fn on_live(&self, hook: LiveHook) {
        let _ = self.live_hook.set(hook);
    }

    /// Where posts take their picture from (Mastodon and Bluesky upload it, webhooks link it).
    pub fn set_thumbnails(&self, t: Arc<crate::transcode::thumbnails::Thumbnails>) {
        self.pictures.set(t);
    }

    /// How `announce.replay_post` finds a show's replay page.
    pub fn set_replay_links(&self, links: ReplayLinks) {
        let _ = self.replay_links.set(links);
    }
}

struct Queued {
    name: String,
    stats: Arc<TargetStats>,
    tx: mpsc::Sender<Arc<Announcement>>,
}

/// The dispatcher's state.
struct Dispatcher {
    cfg: AnnounceConfig,
    public_url: String,
    /// Titles and stream keys (a post containing a key is never sent: titles are free text).
    channels: SharedFacts,
    grace: GraceFilter,
    /// When each channel went live (the last announced or suppressed go-live).
    live_since: HashMap<String, DateTime<Utc>>,
    /// "Ended" posts waiting for the grace period to pass without a reconnect.
    pending_ended: HashMap<String, (Instant, Arc<Announcement>)>,
    targets: Vec<Queued>,
    live_hook: Arc<OnceLock<LiveHook>>,
    replay_links: Arc<OnceLock<ReplayLinks>>,
}

/// Starts the announcer: one task per enabled target and the dispatcher. Subscribes to the
/// lifecycle events before returning, so no go-live after this call is missed.
pub fn start(
    cfg: &Config,
    bus: &Bus,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Result<AnnounceHandle, AnnounceError> {
    start_with(cfg, bus.subscribe_lifecycle(), tracker, cancel)
}

/// [`start`] on another source of go-lives: a cluster's, where each happens on one node.
pub fn start_with(
    cfg: &Config,
    rx: broadcast::Receiver<Lifecycle>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Result<AnnounceHandle, AnnounceError> {
    let targets = build_targets(&cfg.announce);
    let channels: SharedFacts = Arc::new(RwLock::new(Arc::new(ChannelFacts::new(&cfg.channels))));
    let live_hook: Arc<OnceLock<LiveHook>> = Arc::new(OnceLock::new());
    if targets.is_empty() {
        // The dispatcher still runs: owners may post their go-live from their own accounts.
        info!("announcements off: no target enabled");
    }
    let client = http_client(&cfg.announce)?;
    let policy = retry_policy(&cfg.announce);
    let pictures = Pictures::new(
        &cfg.server.public_url,
        Duration::from_secs(cfg.announce.picture_wait_seconds),
    );
    let replay_links: Arc<OnceLock<ReplayLinks>> = Arc::new(OnceLock::new());
    let mut queued = Vec::new();
    for t in targets {
        let stats = Arc::new(TargetStats::new(t.name()));
        let name = t.name().to_string();
        let tx = queue::spawn_worker(
            Posting {
                target: t,
                client: client.clone(),
                pictures: pictures.clone(),
            },
            policy,
            cfg.announce.queue,
            1,
            stats.clone(),
            tracker,
            cancel.child_token(),
        );
        queued.push(Queued { name, stats, tx });
    }
    let stats = Arc::new(AnnounceStats {
        targets: queued.iter().map(|q| q.stats.clone()).collect(),
    });
    if !queued.is_empty() {
        info!(
            targets = %queued.iter().map(|q| q.name.as_str()).collect::<Vec<_>>().join(","),
            grace_seconds = cfg.announce.grace_seconds,
            "announcements on"
        );
    }
    let d = Dispatcher {
        cfg: cfg.announce.clone(),
        public_url: cfg.server.public_url.clone(),
        channels: channels.clone(),
        grace: GraceFilter::new(Duration::from_secs(cfg.announce.grace_seconds)),
        live_since: HashMap::new(),
        pending_ended: HashMap::new(),
        targets: queued,
        live_hook: live_hook.clone(),
        replay_links: replay_links.clone(),
    };
    tracker.spawn(d.run(rx, cancel));
    Ok(AnnounceHandle {
        stats,
        channels,
        live_hook,
        pictures,
        replay_links,
    })
}

impl Dispatcher {
    async fn run(mut self, mut rx: broadcast::Receiver<Lifecycle>, cancel: CancellationToken) {
        loop {
            let next_ended = self.pending_ended.values().map(|(due, _)| *due).min();
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = rx.recv() => match ev {
                    Ok(Lifecycle::Live { channel, started_at }) => {
                        self.on_live(channel.as_str(), started_at);
                    }
                    Ok(Lifecycle::Offline { channel }) => self.on_offline(channel.as_str()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "announce fell behind the lifecycle events; some go-lives may not be announced");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = sleep_until_opt(next_ended), if next_ended.is_some() => self.flush_ended(),
            }
        }
    }

    fn facts(&self) -> Arc<ChannelFacts> {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn title(&self, channel: &str) -> String {
        self.facts()
            .titles
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    fn on_live(&mut self, channel: &str, started_at: DateTime<Utc>) {
        let now = Instant::now();
        let cancelled_ended = self.pending_ended.remove(channel).is_some();
        if !self.grace.on_live(channel, now) {
            info!(
                channel,
                cancelled_ended,
                grace_seconds = self.cfg.grace_seconds,
                "channel back live within the grace period: not announced again"
            );
            return;
        }
        self.live_since.insert(channel.to_string(), started_at);
        let a = Announcement::for_channel(
            AnnounceKind::Live,
            &self.cfg.template,
            &self.public_url,
            channel,
            &self.title(channel),
            started_at,
        );
        self.dispatch(a);
    }

    fn on_offline(&mut self, channel: &str) {
        let now = Instant::now();
        self.grace.on_offline(channel, now);
        info!(
            channel,
            grace_seconds = self.cfg.grace_seconds,
            "channel offline: going live again within the grace period is not announced"
        );
        if !self.cfg.ended && !self.cfg.replay_post {
            return;
        }
        let started_at = self
            .live_since
            .get(channel)
            .copied()
            .unwrap_or_else(Utc::now);
        let a = if self.cfg.replay_post {
            // The replay is looked up when the post is due (the recording is final by then).
            Announcement::for_replay(
                &self.cfg.replay_template,
                channel,
                &self.title(channel),
                started_at,
                "",
            )
        } else {
            Announcement::for_channel(
                AnnounceKind::Ended,
                &self.cfg.ended_template,
                &self.public_url,
                channel,
                &self.title(channel),
                started_at,
            )
        };
        let due = now + Duration::from_secs(self.cfg.grace_seconds);
        self.pending_ended
            .insert(channel.to_string(), (due, Arc::new(a)));
        if self.cfg.grace_seconds == 0 {
            self.flush_ended();
        }
    }

    fn flush_ended(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .pending_ended
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(c, _)| c.clone())
            .collect();
        for c in due {
            if let Some((_, a)) = self.pending_ended.remove(&c) {
                self.live_since.remove(&c);
                if a.url.is_empty() {
                    // A replay post: its link comes from the recorder now.
                    match self.replay_link(&a) {
                        Some(a) => self.dispatch(a),
                        None => info!(channel = %c, "no replay of this show: no replay post"),
                    }
                    continue;
                }
                self.dispatch_arc(a);
            }
        }
    }

    /// The replay post of `pending` with its link, if the recorder has the show.
    fn replay_link(&self, pending: &Announcement) -> Option<Announcement> {
        let links = self.replay_links.get()?;
        let started_at = pending.started_at?;
        let url = links(&pending.channel, started_at)?;
        Some(Announcement::for_replay(
            &pending.template,
            &pending.channel,
            &pending.title,
            started_at,
            &url,
        ))
    }

    fn dispatch(&mut self, a: Announcement) {
        self.dispatch_arc(Arc::new(a));
    }

    /// Queues a post on every target without waiting: a full queue drops it for that target.
    fn dispatch_arc(&mut self, a: Arc<Announcement>) {
        if a.leaks_any(self.facts().keys.iter().map(Secret::expose)) {
            error!(channel = %a.channel, event = a.kind.as_str(),
                "announcement text would contain a stream key (check the channel title and announce templates); not posted");
            return;
        }
        if a.kind == AnnounceKind::Live {
            if let Some(hook) = self.live_hook.get() {
                hook(a.clone());
            }
        }
        if !self.targets.is_empty() {
            info!(channel = %a.channel, event = a.kind.as_str(), text = %a.text, "announcing");
        }
        for t in &self.targets {
            match t.tx.try_send(a.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    t.stats
                        .dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(target = %t.name, channel = %a.channel, "announce queue full: post dropped for this target");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Posts a test message to every enabled target, or only `only`; at most two tries each.
/// Returns each target's name and outcome.
pub async fn send_test(
    cfg: &Config,
    only: Option<&str>,
) -> Result<Vec<(String, Delivery)>, AnnounceError> {
    let mut targets = build_targets(&cfg.announce);
    if targets.is_empty() {
        return Err(AnnounceError::NoTargets);
    }
    if let Some(name) = only {
        let known = targets
            .iter()
            .map(|t| t.name().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        targets.retain(|t| t.name() == name);
        if targets.is_empty() {
            return Err(AnnounceError::UnknownTarget {
                name: name.to_string(),
                known,
            });
        }
    }
    let client = http_client(&cfg.announce)?;
    let mut policy = retry_policy(&cfg.announce);
    policy.tries = policy.tries.min(2);
    let a = Arc::new(Announcement::test(&cfg.server.public_url));
    let cancel = CancellationToken::new();
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.into_iter().enumerate() {
        let (client, a, cancel) = (client.clone(), a.clone(), cancel.clone());
        set.spawn(async move {
            let stats = TargetStats::new(t.name());
            let name = t.name().to_string();
            let p = Posting {
                target: t,
                client,
                pictures: Pictures::default(),
            };
            let d = queue::deliver(&p, &a, policy, &stats, &cancel).await;
            (i, name, d)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    Ok(out.into_iter().map(|(_, n, d)| (n, d)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_swallows_quick_reconnects_only() {
        let mut g = GraceFilter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(g.on_live("alice", t0), "first go-live is announced");
        g.on_offline("alice", t0 + Duration::from_secs(100));
        assert!(
            !g.on_live("alice", t0 + Duration::from_secs(130)),
            "reconnect after 30 s"
        );
        assert!(
            g.on_live("bob", t0 + Duration::from_secs(130)),
            "other channel"
        );
        g.on_offline("alice", t0 + Duration::from_secs(200));
        assert!(
            g.on_live("alice", t0 + Duration::from_secs(261)),
            "back after 61 s is a new go-live"
        );
        let mut g = GraceFilter::new(Duration::ZERO);
        g.on_offline("alice", t0);
        assert!(g.on_live("alice", t0), "grace 0 announces every go-live");
    }

    #[test]
    fn targets_are_built_from_enabled_config_only() {
        let mut cfg = AnnounceConfig::default();
        assert!(build_targets(&cfg).is_empty());
        cfg.mastodon.enabled = true;
        cfg.webhooks.push(crate::config::WebhookConfig {
            name: None,
            url: Secret::new("http://127.0.0.1:1/hook"),
            secret: Secret::default(),
            secret_env: None,
            format: "json".into(),
            enabled: true,
        });
        cfg.webhooks.push(crate::config::WebhookConfig {
            name: Some("discord".into()),
            url: Secret::new("http://127.0.0.1:1/hook"),
            secret: Secret::default(),
            secret_env: None,
            format: "discord".into(),
            enabled: false,
        });
        let names: Vec<String> = build_targets(&cfg)
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        assert_eq!(names, ["mastodon", "webhook-0"]);
    }
}

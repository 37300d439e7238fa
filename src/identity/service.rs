//! [`Auth`]: the sign-in component the HTTP surfaces and the chat share. It holds the
//! outbound clients, the token key, the sign-ins under way and the cross-post queue, and
//! answers "who is this request?" ([`Auth::session`]) and "may they?" (owners, admins). Flows
//! are in `signin.rs`, chat gates and cross-posts in `gate.rs`.
//!
//! Sessions live in the database (`db::identity`), found by the SHA-256 of the cookie value,
//! and end at logout or after `auth.session_days`; a task deletes expired rows (and so their
//! grants) every few minutes. [`Auth::spawn`] builds it; `Server` keeps it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::crosspost::{CrossPost, CrossPoster, Limits, Outcomes};
use super::crypto::{sha256_hex, CryptoError, TokenKey};
use super::gate::FollowCache;
use super::net::Net;
use super::pending::Pending;
use super::signin::PendingLogin;
use super::web::CookieRules;
use super::{Grant, Identity, IdentityError, Provider};
use crate::announce::queue::{self, RetryPolicy, TargetStats};
use crate::config::{AuthConfig, ChannelConfig, ChatMode, Config};
use crate::db::{self, Db};

/// How often expired sessions are deleted.
const TIDY_EVERY: Duration = Duration::from_secs(300);
/// Cross-posts waiting to be sent, all viewers together.
const CROSS_POST_QUEUE: usize = 256;
/// Cross-posts being sent at once.
const CROSS_POST_CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum AuthStartError {
    #[error(transparent)]
    Key(#[from] CryptoError),
    #[error("cannot set up the HTTP client for sign-in: {0}")]
    Client(#[from] reqwest::Error),
}

/// A signed-in request's session.
#[derive(Clone)]
pub struct Session {
    /// The stored id (SHA-256 of the cookie value).
    pub id_hash: String,
    pub identity: Identity,
    pub can_cross_post: bool,
    pub expires_at: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("identity", &self.identity.key())
            .finish_non_exhaustive()
    }
}

/// Who owns which channel, and who is a server admin (identity keys), from the config.
#[derive(Debug, Default)]
pub struct Roles {
    owners: HashMap<String, Vec<String>>,
    admins: Vec<String>,
}

impl Roles {
    pub fn new(channels: &[ChannelConfig], admins: &[String]) -> Self {
        Self {
            owners: channels
                .iter()
                .map(|c| (c.name.clone(), c.owners.clone()))
                .collect(),
            admins: admins.to_vec(),
        }
    }

    pub fn owners(&self, channel: &str) -> &[String] {
        self.owners.get(channel).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The sign-in component.
pub struct Auth {
    pub(super) cfg: AuthConfig,
    pub(super) public_url: String,
    pub(super) chat_mode: ChatMode,
    pub cookies: CookieRules,
    pub(super) net: Net,
    pub(super) key: TokenKey,
    pub(super) db: Db,
    pub(super) pending: Pending<PendingLogin>,
    pub outcomes: Arc<Outcomes>,
    pub(super) limits: Limits,
    pub(super) cross_tx: mpsc::Sender<Arc<CrossPost>>,
    /// Counters of the cross-post queue, for `/metrics`.
    pub cross_stats: Arc<TargetStats>,
    pub(super) follows: FollowCache,
    /// Replaced whole on reload; std lock held only to clone the `Arc`.
    roles: RwLock<Arc<Roles>>,
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Auth {
    /// Opens the token key, builds the clients and starts the cross-post queue and the task
    /// that deletes expired sessions.
    pub fn spawn(
        cfg: &Config,
        db: Db,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Arc<Auth>, AuthStartError> {
        let a = &cfg.auth;
        let key = TokenKey::load(a.secret.expose(), &cfg.storage.data_dir)?;
        let net = Net::new(
            a.allow_private_hosts,
            Duration::from_secs(a.timeout_seconds),
        )?;
        let outcomes = Arc::new(Outcomes::default());
        let cross_stats = Arc::new(TargetStats::new("cross_post"));
        // Refreshed grants (Bluesky) are sealed and stored again from the queue's task.
        let (refresh_tx, refresh_rx) = mpsc::channel::<(String, Grant)>(64);
        let poster = CrossPoster {
            net: net.clone(),
            visibility: a.mastodon.cross_post_visibility.clone(),
            outcomes: outcomes.clone(),
            refreshed: Arc::new(move |session: &str, g: &Grant| {
                if refresh_tx
                    .try_send((session.to_string(), g.clone()))
                    .is_err()
                {
                    warn!("a refreshed Bluesky session could not be stored; it refreshes again next time");
                }
            }),
        };
        let policy = RetryPolicy {
            tries: cfg.announce.tries.clamp(1, 5),
            base: Duration::from_millis(cfg.announce.backoff_base_ms),
            max: Duration::from_secs(cfg.announce.backoff_max_seconds.min(120)),
        };
        let cross_tx = queue::spawn_worker(
            poster,
            policy,
            CROSS_POST_QUEUE,
            CROSS_POST_CONCURRENCY,
            cross_stats.clone(),
            tracker,
            cancel.child_token(),
        );
        let auth = Arc::new(Auth {
            cfg: a.clone(),
            public_url: cfg.server.public_url.trim_end_matches('/').to_string(),
            chat_mode: cfg.chat.mode,
            cookies: CookieRules::new(&cfg.server.public_url),
            net,
            key,
            db,
            pending: Pending::default(),
            outcomes,
            limits: Limits::new(a.cross_post_per_minute, a.cross_post_per_broadcast),
            cross_tx,
            cross_stats,
            follows: FollowCache::new(Duration::from_secs(a.followers_cache_seconds)),
            roles: RwLock::new(Arc::new(Roles::new(
                &cfg.channels,
                &cfg.server.admin_identities,
            ))),
        });
        tracker.spawn(tidy_task(auth.clone(), refresh_rx, cancel));
        info!(
            mastodon = a.mastodon.enabled,
            x = a.x.enabled,
            bluesky = a.bluesky.enabled.then(|| auth.bluesky_mode()),
            chat_mode = ?cfg.chat.mode,
            "sign-in ready"
        );
        Ok(auth)
    }

    /// Max-Age of the session cookie.
    pub fn session_seconds(&self) -> i64 {
        self.cfg.session_days as i64 * 86_400
    }

    /// Takes a reload's owners and admins.
    pub fn set_roles(&self, channels: &[ChannelConfig], admins: &[String]) {
        *self.roles.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Roles::new(channels, admins));
    }

    pub fn roles(&self) -> Arc<Roles> {
        self.roles.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_owner(&self, channel: &str, who: &Identity) -> bool {
        let k = who.key();
        self.roles().owners(channel).contains(&k)
    }

    pub fn is_admin(&self, who: &Identity) -> bool {
        let k = who.key();
        self.roles().admins.contains(&k)
    }

    /// Whether Bluesky signs in by OAuth (public https URL) or by app password.
    pub fn bluesky_mode(&self) -> &'static str {
        if self.public_url.starts_with("https://") {
            "oauth"
        } else {
            "app_password"
        }
    }

    /// What a signed-out page may offer (the 401 of `/api/me`).
    pub fn offer(&self) -> serde_json::Value {
        serde_json::json!({
            "mastodon": self.cfg.mastodon.enabled,
            "x": self.cfg.x.enabled,
            "bluesky": if self.cfg.bluesky.enabled { serde_json::json!(self.bluesky_mode()) } else { false.into() },
        })
    }

    pub(super) fn enabled(&self, p: Provider) -> Result<(), IdentityError> {
        let on = match p {
            Provider::Mastodon => self.cfg.mastodon.enabled,
            Provider::X => self.cfg.x.enabled,
            Provider::Bluesky => self.cfg.bluesky.enabled,
        };
        if on {
            Ok(())
        } else {
            Err(IdentityError::Disabled { provider: p })
        }
    }

    pub(super) fn store_error(e: db::DbError) -> IdentityError {
        error!(error = %e, "sign-in: database");
        IdentityError::Internal {
            detail: "the server could not store the session; try again".into(),
        }
    }

    /// The session of a cookie value, if it is valid now.
    pub async fn session(&self, cookie: &str) -> Option<Session> {
        let hash = sha256_hex(cookie);
        let now = rfc3339(Utc::now());
        let row = match self
            .db
            .call(move |c| db::identity::session(c, &hash, &now))
            .await
        {
            Ok(r) => r?,
            Err(e) => {
                error!(error = %e, "sign-in: reading a session");
                return None;
            }
        };
        let grant_ok = row
            .grant_expires_at
            .as_deref()
            .is_none_or(|t| t > rfc3339(Utc::now()).as_str());
        Some(Session {
            id_hash: row.id_hash,
            identity: row.identity,
            can_cross_post: row.can_cross_post && grant_ok,
            expires_at: row.expires_at,
        })
    }

    /// The session's grant, opened.
    pub(super) async fn grant(&self, s: &Session) -> Option<Grant> {
        let hash = s.id_hash.clone();
        let now = rfc3339(Utc::now());
        let row = self
            .db
            .call(move |c| db::identity::session(c, &hash, &now))
            .await
            .ok()??;
        let plain = match self.key.open(&row.grant_sealed, &row.id_hash) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "a stored grant does not open (auth.secret or the key file changed?)");
                return None;
            }
        };
        serde_json::from_slice(&plain).ok()
    }

    /// Seals and stores a refreshed grant.
    pub(super) async fn store_grant(&self, id_hash: String, g: Grant) {
        let Ok(plain) = serde_json::to_vec(&g) else {
            return;
        };
        let sealed = self.key.seal(&plain, &id_hash);
        let until = grant_expiry(&g);
        if let Err(e) = self
            .db
            .call(move |c| db::identity::update_grant(c, &id_hash, &sealed, until.as_deref()))
            .await
        {
            warn!(error = %e, "a refreshed grant could not be stored");
        }
    }

    /// Ends the session of a cookie value; its grant and outcomes go with it.
    pub async fn logout(&self, cookie: &str) {
        let hash = sha256_hex(cookie);
        self.outcomes.forget(&hash);
        match self
            .db
            .call(move |c| db::identity::delete_session(c, &hash))
            .await
        {
            Ok(true) => info!("signed out"),
            Ok(false) => debug!("sign-out of an unknown session"),
            Err(e) => error!(error = %e, "sign-in: deleting a session"),
        }
    }

    /// `GET /api/me`.
    pub fn me(&self, s: &Session) -> serde_json::Value {
        let i = &s.identity;
        serde_json::json!({
            "provider": i.provider, "id": i.id, "handle": i.handle, "display_name": i.display_name,
            "avatar_url": i.avatar_url, "profile_url": i.profile_url,
            "can_cross_post": s.can_cross_post && self.provider_posts(i.provider),
            "expires_at": s.expires_at,
        })
    }

    /// Whether this server posts to the provider at all (X only with `auth.x.cross_post`).
    pub(super) fn provider_posts(&self, p: Provider) -> bool {
        p != Provider::X || self.cfg.x.cross_post
    }
}

/// When a grant stops working, as stored next to it.
pub(super) fn grant_expiry(g: &Grant) -> Option<String> {
    // Bluesky grants refresh themselves; only X's two-hour tokens end posting.
    if g.refresh_token.is_some() {
        return None;
    }
    g.expires_at
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .map(rfc3339)
}

async fn tidy_task(
    auth: Arc<Auth>,
    mut refreshed: mpsc::Receiver<(String, Grant)>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(TIDY_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = refreshed.recv() => match r {
                Some((session, g)) => auth.store_grant(session, g).await,
                None => return,
            },
            _ = tick.tick() => {
                let now = rfc3339(Utc::now());
                match auth.db.call(move |c| db::identity::delete_expired(c, &now)).await {
                    Ok(0) => {}
                    Ok(n) => info!(sessions = n, "expired sessions deleted with their tokens"),
                    Err(e) => warn!(error = %e, "deleting expired sessions"),
                }
                auth.limits.tidy(std::time::Instant::now());
                auth.follows.tidy();
            }
        }
    }
}

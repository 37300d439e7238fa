//! The sign-in flows of [`Auth`]: `start` (a provider's authorization URL, with what the
//! callback needs kept server-side under a fresh `state`), `callback` (that entry taken once,
//! the browser checked, the code exchanged, the account read) and the Bluesky app-password
//! sign-in; each ends in a new session row. The browser that starts a sign-in gets a
//! short-lived cookie whose hash the pending entry keeps, so a callback link sent to someone
//! else cannot sign them in to the sender's account (login CSRF).

use std::collections::HashMap;

use chrono::Utc;
use oauth2::PkceCodeVerifier;
use subtle::ConstantTimeEq;
use tracing::{info, warn};
use url::Url;

use super::crypto::{random_token, sha256_hex};
use super::mastodon::{self, App, Endpoints};
use super::service::{grant_expiry, rfc3339, Auth};
use super::web::safe_return;
use super::{atproto, bluesky, x, Grant, Identity, IdentityError, Provider};
use crate::config::ChatMode;
use crate::db::{self, identity::AppRow, identity::SessionRow};

/// What `start` read from the query.
#[derive(Debug, Default, Clone)]
pub struct StartParams {
    pub return_to: Option<String>,
    pub instance: Option<String>,
    pub handle: Option<String>,
    pub cross_post: bool,
}

/// Where to send the browser, and the login cookie to set on the way.
pub struct Started {
    pub location: String,
    pub login_cookie: String,
}

/// A finished sign-in: the session cookie's value and where to go back.
pub struct SignedIn {
    pub cookie: String,
    pub return_to: String,
    pub identity: Identity,
}

enum Flow {
    Mastodon {
        origin: Url,
        endpoints: Endpoints,
        app: App,
        verifier: PkceCodeVerifier,
        scopes: Vec<String>,
    },
    X {
        verifier: PkceCodeVerifier,
        scopes: Vec<String>,
    },
    Bluesky {
        handle: String,
        waiting: atproto::Waiting,
    },
}

/// A sign-in under way (kept in `Auth::pending` under its `state`).
pub struct PendingLogin {
    /// SHA-256 of the login cookie set at start.
    browser: String,
    return_to: String,
    cross_post: bool,
    flow: Flow,
}

impl Auth {
    pub(super) fn redirect_uri(&self, p: Provider) -> String {
        format!("{}/auth/{p}/callback", self.public_url)
    }

    fn followers_mode(&self) -> bool {
        self.chat_mode == ChatMode::Followers
    }

    /// `GET /auth/{provider}/start`.
    pub async fn start(&self, p: Provider, q: StartParams) -> Result<Started, IdentityError> {
        self.enabled(p)?;
        let return_to = safe_return(q.return_to.as_deref());
        let (location, state, flow) = match p {
            Provider::Mastodon => self.start_mastodon(&q).await?,
            Provider::X => {
                let scopes =
                    x::scopes(q.cross_post && self.cfg.x.cross_post, self.followers_mode());
                let (url, state, verifier) =
                    x::authorize_url(&self.cfg.x, &self.redirect_uri(p), &scopes)?;
                (
                    url.to_string(),
                    state.secret().clone(),
                    Flow::X { verifier, scopes },
                )
            }
            Provider::Bluesky => self.start_bluesky(&q).await?,
        };
        let login = random_token(32);
        self.pending.insert(
            state,
            PendingLogin {
                browser: sha256_hex(&login),
                return_to,
                cross_post: q.cross_post,
                flow,
            },
        )?;
        info!(provider = %p, "sign-in started");
        Ok(Started {
            location,
            login_cookie: login,
        })
    }

    async fn start_mastodon(
        &self,
        q: &StartParams,
    ) -> Result<(String, String, Flow), IdentityError> {
        let inst = mastodon::parse_instance(
            q.instance.as_deref().unwrap_or_default(),
            self.cfg.allow_private_hosts,
        )?;
        let redirect = self.redirect_uri(Provider::Mastodon);
        let origin = inst.origin.as_str().trim_end_matches('/').to_string();
        let stored = {
            let (o, r) = (origin.clone(), redirect.clone());
            self.db
                .call(move |c| db::identity::mastodon_app(c, &o, &r))
                .await
                .map_err(Self::store_error)?
        };
        let known = stored.and_then(|row| {
            let secret = self
                .key
                .open(
                    &row.secret_sealed,
                    &app_row_id(&row.origin, &row.redirect_uri),
                )
                .ok()?;
            let endpoints: Endpoints = serde_json::from_str(&row.endpoints).ok()?;
            Some((
                endpoints,
                App {
                    client_id: row.client_id,
                    client_secret: String::from_utf8(secret).ok()?,
                    scopes: row.scopes,
                    redirect_uri: row.redirect_uri,
                },
            ))
        });
        // Register once per server, and again only if we now need a scope the app lacks.
        let (endpoints, app) = match known {
            Some((ep, app)) if app.covers(&mastodon::scopes(&ep, true, self.followers_mode())) => {
                (ep, app)
            }
            _ => {
                let ep = mastodon::discover(&self.net, &inst.origin).await?;
                let all = mastodon::scopes(&ep, true, self.followers_mode());
                let app =
                    mastodon::register(&self.net, &ep, &redirect, &all, &self.public_url).await?;
                let row = AppRow {
                    origin: origin.clone(),
                    redirect_uri: redirect.clone(),
                    client_id: app.client_id.clone(),
                    secret_sealed: self.key.seal(
                        app.client_secret.as_bytes(),
                        &app_row_id(&origin, &redirect),
                    ),
                    scopes: app.scopes.clone(),
                    endpoints: serde_json::to_string(&ep).unwrap_or_default(),
                };
                self.db
                    .call(move |c| db::identity::put_mastodon_app(c, &row))
                    .await
                    .map_err(Self::store_error)?;
                info!(server = %origin, "registered onair on a Mastodon server");
                (ep, app)
            }
        };
        let scopes = mastodon::scopes(&endpoints, q.cross_post, self.followers_mode());
        let (url, state, verifier) = mastodon::authorize_url(&endpoints, &app, &scopes)?;
        Ok((
            url.to_string(),
            state.secret().clone(),
            Flow::Mastodon {
                origin: inst.origin,
                endpoints,
                app,
                verifier,
                scopes,
            },
        ))
    }

    async fn start_bluesky(
        &self,
        q: &StartParams,
    ) -> Result<(String, String, Flow), IdentityError> {
        if self.bluesky_mode() != "oauth" {
            return Err(IdentityError::BadInstance {
                reason: "this server signs in to Bluesky with an app password (it has no public https address)".into(),
            });
        }
        let handle = bluesky::normalize_handle(q.handle.as_deref().unwrap_or_default())?;
        let (doc, handle) = bluesky::resolve(&self.net, &self.cfg.bluesky, &handle).await?;
        let s = atproto::start(&self.net, &self.public_url, &doc, &handle, q.cross_post).await?;
        Ok((
            s.redirect.to_string(),
            s.state,
            Flow::Bluesky {
                handle,
                waiting: atproto::Waiting {
                    did: doc.did,
                    pds: doc.pds,
                    verifier: s.verifier,
                    key: s.key,
                    nonce: s.nonce,
                    server: s.server,
                },
            },
        ))
    }

    /// `GET /auth/{provider}/callback` with its query and the browser's login cookie.
    pub async fn callback(
        &self,
        p: Provider,
        query: &HashMap<String, String>,
        login_cookie: Option<&str>,
    ) -> Result<SignedIn, IdentityError> {
        self.enabled(p)?;
        let state = query.get("state").map(String::as_str).unwrap_or_default();
        let pending = self.pending.take(state)?;
        let same_browser = login_cookie
            .map(|c| {
                sha256_hex(c)
                    .as_bytes()
                    .ct_eq(pending.browser.as_bytes())
                    .into()
            })
            .unwrap_or(false);
        if !same_browser {
            warn!(provider = %p, "sign-in callback from another browser refused");
            return Err(IdentityError::WrongBrowser);
        }
        if query.contains_key("error") {
            return Err(IdentityError::Declined { provider: p });
        }
        let code = query.get("code").cloned().unwrap_or_default();
        if code.is_empty() {
            return Err(IdentityError::Provider {
                provider: p,
                detail: "the callback has no code".into(),
            });
        }
        let (identity, grant, asked_post) = match (p, pending.flow) {
            (
                Provider::Mastodon,
                Flow::Mastodon {
                    origin,
                    endpoints,
                    app,
                    verifier,
                    scopes,
                },
            ) => {
                let (i, g) = mastodon::finish(
                    &self.net, &origin, &endpoints, &app, code, verifier, &scopes,
                )
                .await?;
                let post = g.has_scope("write:statuses") || g.has_scope("write");
                (i, g, post)
            }
            (Provider::X, Flow::X { verifier, scopes }) => {
                let (i, g) = x::finish(
                    &self.net,
                    &self.cfg.x,
                    &self.redirect_uri(p),
                    code,
                    verifier,
                    &scopes,
                )
                .await?;
                let post = g.has_scope("tweet.write");
                (i, g, post)
            }
            (Provider::Bluesky, Flow::Bluesky { handle, waiting }) => {
                let did = waiting.did.clone();
                let g = atproto::finish(
                    &self.net,
                    &self.public_url,
                    waiting,
                    &code,
                    query.get("iss").map(String::as_str),
                )
                .await?;
                let post = g.has_scope("transition:generic");
                (
                    bluesky::identity(&self.net, &self.cfg.bluesky, &did, &handle).await,
                    g,
                    post,
                )
            }
            _ => {
                return Err(IdentityError::Internal {
                    detail: "this sign-in was started for another provider".into(),
                })
            }
        };
        let cookie = self
            .new_session(&identity, &grant, pending.cross_post && asked_post)
            .await?;
        Ok(SignedIn {
            cookie,
            return_to: pending.return_to,
            identity,
        })
    }

    /// `POST /auth/bluesky/app-password`: the password is used here once and dropped.
    pub async fn app_password(
        &self,
        handle: &str,
        password: &str,
        cross_post: bool,
    ) -> Result<SignedIn, IdentityError> {
        self.enabled(Provider::Bluesky)?;
        if password.trim().is_empty() || password.len() > 200 {
            return Err(IdentityError::BadInstance {
                reason: "type an app password (Settings > Privacy and security > App passwords)"
                    .into(),
            });
        }
        let (identity, grant) =
            bluesky::app_password(&self.net, &self.cfg.bluesky, handle, password).await?;
        let cookie = self.new_session(&identity, &grant, cross_post).await?;
        Ok(SignedIn {
            cookie,
            return_to: "/".into(),
            identity,
        })
    }

    /// Stores a session with its grant sealed; returns the cookie value.
    async fn new_session(
        &self,
        identity: &Identity,
        grant: &Grant,
        can_cross_post: bool,
    ) -> Result<String, IdentityError> {
        let cookie = random_token(32);
        let id_hash = sha256_hex(&cookie);
        let plain = serde_json::to_vec(grant).map_err(|e| IdentityError::Internal {
            detail: e.to_string(),
        })?;
        let now = Utc::now();
        let row = SessionRow {
            grant_sealed: self.key.seal(&plain, &id_hash),
            id_hash,
            identity: identity.clone(),
            can_cross_post,
            grant_expires_at: grant_expiry(grant),
            created_at: rfc3339(now),
            expires_at: rfc3339(now + chrono::Duration::days(self.cfg.session_days as i64)),
        };
        self.db
            .call(move |c| db::identity::insert_session(c, &row))
            .await
            .map_err(Self::store_error)?;
        info!(provider = %identity.provider, can_cross_post, "signed in");
        tracing::debug!(identity = %identity.key(), "signed in as");
        Ok(cookie)
    }
}

/// The associated data a Mastodon app's secret is sealed with.
fn app_row_id(origin: &str, redirect_uri: &str) -> String {
    format!("mastodon_app {origin} {redirect_uri}")
}

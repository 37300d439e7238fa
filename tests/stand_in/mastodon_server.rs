//! A Mastodon server for sign-in: app registration (`POST /api/v1/apps`), OAuth metadata
//! (4.3+; [`MastodonOpts::classic`] leaves it out, as older servers), the consent page, the
//! token endpoint (client secret in the body or Basic, the registered redirect_uri exactly,
//! PKCE S256, single-use codes), and the API calls onair makes with a viewer's token:
//! `verify_credentials` (scope `profile`, `read:accounts` or `read`), statuses (`write:statuses`
//! or `write`), search and relationships (`read:search`, `read:follows`). Every other request,
//! or one without the scope, is refused as Mastodon refuses it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::oauth::{
    bearer, check_pkce, oauth_error, path_only, query, query_all, AuthRequest, Codes,
};
use super::{Received, Reply, StandIn};

const SCOPES: [&str; 8] = [
    "read",
    "write",
    "profile",
    "read:accounts",
    "read:follows",
    "read:search",
    "write:statuses",
    "follow",
];

#[derive(Debug, Clone, Default)]
pub struct MastodonOpts {
    /// No `/.well-known/oauth-authorization-server` and no `profile` scope (Mastodon < 4.3).
    pub classic: bool,
    /// verify_credentials claims an account URL on another server (a hostile server).
    pub claim_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub display_name: String,
    /// Account URLs this account follows.
    pub following: HashSet<String>,
}

#[derive(Debug, Clone)]
struct App {
    secret: String,
    redirect_uri: String,
    scopes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Token {
    account: String,
    scopes: Vec<String>,
}

/// A status as it was posted.
#[derive(Debug, Clone)]
pub struct Status {
    pub account: String,
    pub status: String,
    pub visibility: String,
    pub idempotency_key: String,
}

#[derive(Default)]
pub struct State {
    pub base: String,
    opts: MastodonOpts,
    apps: HashMap<String, App>,
    codes: Codes,
    tokens: HashMap<String, Token>,
    pub accounts: HashMap<String, Account>,
    pub statuses: Vec<Status>,
    /// Apps registered (to check onair registers once per server).
    pub registrations: usize,
}

/// The running server and its state.
pub struct MastodonServer {
    pub http: StandIn,
    pub state: Arc<Mutex<State>>,
}

impl MastodonServer {
    /// A server with accounts `alice` (id 1) and `bob` (id 2).
    pub fn start(opts: MastodonOpts) -> MastodonServer {
        let state = Arc::new(Mutex::new(State {
            opts,
            ..State::default()
        }));
        let s = state.clone();
        let http = StandIn::start(move |r| {
            let mut st = s.lock().unwrap_or_else(|e| e.into_inner());
            st.handle(r)
        });
        {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.base = http.url();
            for (id, name, display) in [("1", "alice", "Alice A."), ("2", "bob", "Bob B.")] {
                st.accounts.insert(
                    name.into(),
                    Account {
                        id: id.into(),
                        username: name.into(),
                        display_name: display.into(),
                        following: HashSet::new(),
                    },
                );
            }
        }
        MastodonServer { http, state }
    }

    pub fn url(&self) -> String {
        self.http.url()
    }

    /// The account URL (onair's identity id) of `name`.
    pub fn account_url(&self, name: &str) -> String {
        format!("{}/@{name}", self.url())
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every scope granted to `account`'s tokens.
    pub fn token_scopes(&self, account: &str) -> Vec<String> {
        self.lock()
            .tokens
            .values()
            .filter(|t| t.account == account)
            .flat_map(|t| t.scopes.clone())
            .collect()
    }

    pub fn statuses(&self) -> Vec<Status> {
        self.lock().statuses.clone()
    }

    /// Every secret this server handed onair: access tokens and app client secrets (none of
    /// which may show up in onair's database or logs).
    pub fn secrets(&self) -> Vec<String> {
        let st = self.lock();
        st.tokens
            .keys()
            .cloned()
            .chain(st.apps.values().map(|a| a.secret.clone()))
            .collect()
    }

    /// `who` follows `whom`.
    pub fn follow(&self, who: &str, whom: &str) {
        let url = self.account_url(whom);
        if let Some(a) = self.lock().accounts.get_mut(who) {
            a.following.insert(url);
        }
    }
}

fn not_found() -> Reply {
    Reply::new(404, r#"{"error":"Record not found"}"#)
}

fn unauthorized() -> Reply {
    Reply::new(401, r#"{"error":"The access token is invalid"}"#)
}

fn forbidden_scope() -> Reply {
    Reply::new(
        403,
        r#"{"error":"This action is outside the authorized scopes"}"#,
    )
}

impl State {
    fn account_json(&self, a: &Account) -> serde_json::Value {
        let url = format!("{}/@{}", self.base, a.username);
        serde_json::json!({
            "id": a.id, "username": a.username, "acct": a.username,
            "display_name": a.display_name, "url": url, "uri": format!("{}/users/{}", self.base, a.username),
            "avatar": format!("{}/avatars/{}.png", self.base, a.username),
        })
    }

    /// The token's account if it has one of `scopes`.
    fn authorized(&self, r: &Received, scopes: &[&str]) -> Result<Account, Reply> {
        let t = bearer(r)
            .and_then(|t| {
                if self.codes.revoked(&t) {
                    None
                } else {
                    self.tokens.get(&t).cloned()
                }
            })
            .ok_or_else(unauthorized)?;
        if !t.scopes.iter().any(|s| scopes.contains(&s.as_str())) {
            return Err(forbidden_scope());
        }
        self.accounts
            .get(&t.account)
            .cloned()
            .ok_or_else(unauthorized)
    }

    fn handle(&mut self, r: &Received) -> Reply {
        let path = path_only(&r.path).to_string();
        match (r.method.as_str(), path.as_str()) {
            ("GET", "/.well-known/oauth-authorization-server") if !self.opts.classic => {
                let b = &self.base;
                Reply::new(
                    200,
                    serde_json::json!({
                        "issuer": format!("{b}/"),
                        "authorization_endpoint": format!("{b}/oauth/authorize"),
                        "token_endpoint": format!("{b}/oauth/token"),
                        "revocation_endpoint": format!("{b}/oauth/revoke"),
                        "app_registration_endpoint": format!("{b}/api/v1/apps"),
                        "scopes_supported": SCOPES,
                        "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
                        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                    })
                    .to_string(),
                )
            }
            ("POST", "/api/v1/apps") => self.register(r),
            ("GET", "/oauth/authorize") => self.authorize(r),
            ("POST", "/oauth/authorize") => self.codes.decide(r),
            ("POST", "/oauth/token") => self.token(r),
            ("GET", "/api/v1/accounts/verify_credentials") => {
                match self.authorized(r, &["profile", "read:accounts", "read"]) {
                    Ok(a) => {
                        let mut j = self.account_json(&a);
                        if let Some(u) = &self.opts.claim_url {
                            j["url"] = u.clone().into();
                        }
                        Reply::new(200, j.to_string())
                    }
                    Err(e) => e,
                }
            }
            ("POST", "/api/v1/statuses") => self.status(r),
            ("GET", "/api/v2/search") => match self.authorized(r, &["read:search", "read"]) {
                Ok(_) => {
                    let q = query(&r.path);
                    let want = q.get("q").cloned().unwrap_or_default();
                    let found: Vec<serde_json::Value> = self
                        .accounts
                        .values()
                        .filter(|a| format!("{}/@{}", self.base, a.username) == want)
                        .map(|a| self.account_json(a))
                        .collect();
                    Reply::new(200, serde_json::json!({"accounts": found}).to_string())
                }
                Err(e) => e,
            },
            ("GET", "/api/v1/accounts/relationships") => {
                match self.authorized(r, &["read:follows", "read"]) {
                    Ok(me) => {
                        let rel: Vec<serde_json::Value> = query_all(&r.path, "id[]")
                            .iter()
                            .filter_map(|id| self.accounts.values().find(|a| a.id == *id))
                            .map(|a| {
                                let url = format!("{}/@{}", self.base, a.username);
                                serde_json::json!({"id": a.id, "following": me.following.contains(&url)})
                            })
                            .collect();
                        Reply::new(200, serde_json::Value::from(rel).to_string())
                    }
                    Err(e) => e,
                }
            }
            _ => not_found(),
        }
    }

    fn register(&mut self, r: &Received) -> Reply {
        let f = r.form();
        let redirect = f.get("redirect_uris").cloned().unwrap_or_default();
        let scopes: Vec<String> = f
            .get("scopes")
            .map(|s| s.split(' ').map(String::from).collect())
            .unwrap_or_else(|| vec!["read".into()]);
        let known =
            |s: &String| SCOPES.contains(&s.as_str()) && !(self.opts.classic && s == "profile");
        if f.get("client_name").is_none_or(String::is_empty)
            || url::Url::parse(&redirect).is_err()
            || !scopes.iter().all(known)
        {
            return Reply::new(
                422,
                r#"{"error":"Validation failed: Redirect URI must be an absolute URI."}"#,
            );
        }
        let id = super::oauth::random(16);
        let secret = super::oauth::random(24);
        self.apps.insert(
            id.clone(),
            App {
                secret: secret.clone(),
                redirect_uri: redirect.clone(),
                scopes,
            },
        );
        self.registrations += 1;
        Reply::new(
            200,
            serde_json::json!({"id": "1", "name": f["client_name"], "redirect_uri": redirect,
                "client_id": id, "client_secret": secret, "vapid_key": "x"})
            .to_string(),
        )
    }

    fn authorize(&mut self, r: &Received) -> Reply {
        let q = query(&r.path);
        let Some(app) = q.get("client_id").and_then(|c| self.apps.get(c)).cloned() else {
            return oauth_error(401, "invalid_client", "Client authentication failed");
        };
        if q.get("response_type").map(String::as_str) != Some("code") {
            return oauth_error(400, "unsupported_response_type", "code only");
        }
        if q.get("redirect_uri") != Some(&app.redirect_uri) {
            return oauth_error(
                400,
                "invalid_redirect_uri",
                "The redirect uri included is not valid.",
            );
        }
        let scopes: Vec<String> = q
            .get("scope")
            .map(|s| s.split(' ').map(String::from).collect())
            .unwrap_or_else(|| vec!["read".into()]);
        if !scopes.iter().all(|s| app.scopes.contains(s)) {
            return oauth_error(
                400,
                "invalid_scope",
                "The requested scope is invalid, unknown, or malformed.",
            );
        }
        let challenge = match check_pkce(&q) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let req = AuthRequest {
            client_id: q["client_id"].clone(),
            redirect_uri: app.redirect_uri.clone(),
            scopes,
            state: q.get("state").cloned().unwrap_or_default(),
            challenge,
            dpop_jkt: None,
            iss: None,
        };
        self.codes.page(
            "/oauth/authorize",
            req,
            "alice",
            "Authorize onair on Mastodon",
        )
    }

    fn token(&mut self, r: &Received) -> Reply {
        let f = r.form();
        if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return oauth_error(400, "unsupported_grant_type", "authorization_code only");
        }
        let (id, secret) = super::oauth::basic_auth(r).unwrap_or_else(|| {
            (
                f.get("client_id").cloned().unwrap_or_default(),
                f.get("client_secret").cloned().unwrap_or_default(),
            )
        });
        match self.apps.get(&id) {
            Some(app) if app.secret == secret => {}
            _ => return oauth_error(401, "invalid_client", "Client authentication failed"),
        }
        let (code, entry) = match self.codes.redeem_form(&f, &id) {
            Ok(x) => x,
            Err(e) => return e,
        };
        if !self.accounts.contains_key(&entry.subject) {
            return oauth_error(400, "invalid_grant", "no such account");
        }
        let token = self.codes.token_for(&code);
        self.tokens.insert(
            token.clone(),
            Token {
                account: entry.subject.clone(),
                scopes: entry.req.scopes.clone(),
            },
        );
        Reply::new(
            200,
            serde_json::json!({"access_token": token, "token_type": "Bearer",
                "scope": entry.req.scopes.join(" "), "created_at": 1_700_000_000})
            .to_string(),
        )
    }

    fn status(&mut self, r: &Received) -> Reply {
        let a = match self.authorized(r, &["write:statuses", "write"]) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let (status, vis) = match super::status_form(r) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let key = r.header("idempotency-key").unwrap_or_default().to_string();
        let dup = !key.is_empty()
            && self
                .statuses
                .iter()
                .any(|s| s.idempotency_key == key && s.account == a.username);
        if !dup {
            self.statuses.push(Status {
                account: a.username.clone(),
                status: status.clone(),
                visibility: vis.clone(),
                idempotency_key: key,
            });
        }
        Reply::new(
            200,
            serde_json::json!({"id": self.statuses.len().to_string(), "content": status, "visibility": vis,
                "url": format!("{}/@{}/{}", self.base, a.username, self.statuses.len())})
            .to_string(),
        )
    }
}

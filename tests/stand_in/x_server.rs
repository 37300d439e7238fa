//! X's OAuth 2.0 and the API calls onair makes with a user token, as X checks them: the
//! consent page at `/i/oauth2/authorize` (registered redirect_uri exactly, known scopes,
//! PKCE S256), the token endpoint `/2/oauth2/token` for a confidential client (HTTP Basic with
//! the client id and secret, single-use codes, the verifier), then `/2/users/me` (`users.read`
//! and `tweet.read`), `/2/tweets` (`tweet.write`) and `/2/users/{id}/following`
//! (`follows.read`) with the Bearer token. Anything else is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::oauth::{
    basic_auth, bearer, check_pkce, oauth_error, path_only, query, AuthRequest, Codes,
};
use super::{weighted_len, Received, Reply, StandIn};

pub const X_CLIENT_ID: &str = "x-test-client-id";
pub const X_CLIENT_SECRET: &str = "x-test-client-secret";
const SCOPES: [&str; 6] = [
    "users.read",
    "tweet.read",
    "tweet.write",
    "follows.read",
    "offline.access",
    "like.read",
];

#[derive(Debug, Clone)]
struct Token {
    user: String,
    scopes: Vec<String>,
}

/// A user: id, username, name; ids of the users they follow.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub name: String,
    pub following: Vec<String>,
}

#[derive(Default)]
pub struct State {
    pub redirect_uri: String,
    codes: Codes,
    tokens: HashMap<String, Token>,
    pub users: HashMap<String, User>,
    /// Posted texts, by username.
    pub tweets: Vec<(String, String)>,
}

pub struct XServer {
    pub http: StandIn,
    pub state: Arc<Mutex<State>>,
}

impl XServer {
    /// X with users `carol` (id 2244994945) and `dave` (id 783214); `redirect_uri` is the one
    /// registered for the app (onair's `{public_url}/auth/x/callback`).
    pub fn start(redirect_uri: &str) -> XServer {
        let mut users = HashMap::new();
        for (id, username, name) in [
            ("2244994945", "carol", "Carol C."),
            ("783214", "dave", "Dave D."),
        ] {
            users.insert(
                username.to_string(),
                User {
                    id: id.into(),
                    username: username.into(),
                    name: name.into(),
                    following: Vec::new(),
                },
            );
        }
        let state = Arc::new(Mutex::new(State {
            redirect_uri: redirect_uri.to_string(),
            users,
            ..State::default()
        }));
        let s = state.clone();
        let http = StandIn::start(move |r| s.lock().unwrap_or_else(|e| e.into_inner()).handle(r));
        XServer { http, state }
    }

    pub fn url(&self) -> String {
        self.http.url()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every scope granted to `username`'s tokens.
    pub fn token_scopes(&self, username: &str) -> Vec<String> {
        self.lock()
            .tokens
            .values()
            .filter(|t| t.user == username)
            .flat_map(|t| t.scopes.clone())
            .collect()
    }
}

fn unauthorized() -> Reply {
    Reply::new(
        401,
        r#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#,
    )
}

fn forbidden() -> Reply {
    Reply::new(
        403,
        r#"{"title":"Forbidden","type":"about:blank","status":403,"detail":"Missing scope"}"#,
    )
}

impl State {
    fn user(&self, r: &Received, need: &[&str]) -> Result<User, Reply> {
        let t = bearer(r)
            .filter(|t| !self.codes.revoked(t))
            .and_then(|t| self.tokens.get(&t).cloned())
            .ok_or_else(unauthorized)?;
        if !need.iter().all(|n| t.scopes.iter().any(|s| s == n)) {
            return Err(forbidden());
        }
        self.users.get(&t.user).cloned().ok_or_else(unauthorized)
    }

    fn handle(&mut self, r: &Received) -> Reply {
        let path = path_only(&r.path).to_string();
        match (r.method.as_str(), path.as_str()) {
            ("GET", "/i/oauth2/authorize") => self.authorize(r),
            ("POST", "/i/oauth2/authorize") => self.codes.decide(r),
            ("POST", "/2/oauth2/token") => self.token(r),
            ("GET", "/2/users/me") => match self.user(r, &["users.read", "tweet.read"]) {
                Ok(u) => Reply::new(
                    200,
                    serde_json::json!({"data": {"id": u.id, "name": u.name, "username": u.username,
                        "profile_image_url": format!("https://pbs.twimg.com/profile_images/{}.jpg", u.id)}})
                    .to_string(),
                ),
                Err(e) => e,
            },
            ("POST", "/2/tweets") => match self.user(r, &["tweet.write"]) {
                Ok(u) => {
                    let v = r.json();
                    let Some(text) = v["text"].as_str() else {
                        return Reply::new(400, r#"{"title":"Invalid Request"}"#);
                    };
                    if weighted_len(text) > 280 {
                        return Reply::new(400, r#"{"title":"Invalid Request"}"#);
                    }
                    self.tweets.push((u.username.clone(), text.to_string()));
                    Reply::new(
                        201,
                        serde_json::json!({"data": {"id": "1", "text": text}}).to_string(),
                    )
                }
                Err(e) => e,
            },
            ("GET", p) if p.starts_with("/2/users/") && p.ends_with("/following") => {
                match self.user(r, &["follows.read", "users.read"]) {
                    Ok(u) => {
                        let id = p.trim_start_matches("/2/users/").trim_end_matches("/following");
                        if id != u.id {
                            return forbidden();
                        }
                        let data: Vec<serde_json::Value> = u
                            .following
                            .iter()
                            .map(|f| serde_json::json!({"id": f}))
                            .collect();
                        Reply::new(200, serde_json::json!({"data": data, "meta": {"result_count": data.len()}}).to_string())
                    }
                    Err(e) => e,
                }
            }
            _ => Reply::new(404, r#"{"title":"Not Found"}"#),
        }
    }

    fn authorize(&mut self, r: &Received) -> Reply {
        let q = query(&r.path);
        if q.get("client_id").map(String::as_str) != Some(X_CLIENT_ID) {
            return oauth_error(
                400,
                "invalid_request",
                "Value passed for client_id was invalid",
            );
        }
        if q.get("response_type").map(String::as_str) != Some("code")
            || q.get("redirect_uri") != Some(&self.redirect_uri)
            || q.get("state").is_none_or(String::is_empty)
        {
            return oauth_error(400, "invalid_request", "Something went wrong");
        }
        let scopes: Vec<String> = q
            .get("scope")
            .map(|s| s.split(' ').map(String::from).collect())
            .unwrap_or_default();
        if scopes.is_empty() || !scopes.iter().all(|s| SCOPES.contains(&s.as_str())) {
            return oauth_error(400, "invalid_scope", "invalid scope");
        }
        let challenge = match check_pkce(&q) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let req = AuthRequest {
            client_id: X_CLIENT_ID.into(),
            redirect_uri: self.redirect_uri.clone(),
            scopes,
            state: q["state"].clone(),
            challenge,
            dpop_jkt: None,
            iss: None,
        };
        self.codes
            .page("/i/oauth2/authorize", req, "carol", "Authorize onair on X")
    }

    fn token(&mut self, r: &Received) -> Reply {
        // A confidential client must authenticate with Basic.
        match basic_auth(r) {
            Some((id, secret)) if id == X_CLIENT_ID && secret == X_CLIENT_SECRET => {}
            _ => {
                return oauth_error(
                    401,
                    "unauthorized_client",
                    "Missing valid authorization header",
                )
            }
        }
        let f = r.form();
        if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return oauth_error(400, "invalid_request", "grant_type");
        }
        let (code, entry) = match self.codes.redeem_form(&f, X_CLIENT_ID) {
            Ok(x) => x,
            Err(e) => return e,
        };
        if !self.users.contains_key(&entry.subject) {
            return oauth_error(400, "invalid_request", "no such user");
        }
        let token = self.codes.token_for(&code);
        self.tokens.insert(
            token.clone(),
            Token {
                user: entry.subject.clone(),
                scopes: entry.req.scopes.clone(),
            },
        );
        Reply::new(
            200,
            serde_json::json!({"token_type": "bearer", "expires_in": 7200, "access_token": token,
                "scope": entry.req.scopes.join(" ")})
            .to_string(),
        )
    }
}

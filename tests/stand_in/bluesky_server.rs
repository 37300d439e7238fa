//! One stand-in for every atproto service onair talks to: the handle resolver
//! (`resolveHandle`), the PLC directory (`GET /{did}`), the PDS (app-password sessions,
//! `createRecord`, its protected-resource metadata), its authorization server (metadata, PAR,
//! consent page, token endpoint) and the AppView (`getProfile`, `getRelationships`).
//!
//! It checks what the real ones check: the app password, DPoP proofs (ES256 signature over the
//! JWK in the header, `htm`, `htu`, fresh `iat`, unused `jti`, the server's current nonce, `ath`
//! for resource requests, the key bound to the code and the tokens), PAR only (no plain
//! authorization requests), the client metadata document fetched from the `client_id` URL
//! (with `curl`, as a PDS fetches it) whose `redirect_uris` must hold the redirect_uri, PKCE
//! S256, single-use codes, the `iss` in the redirect, and post records (facets at UTF-8 byte
//! offsets, the external embed pointing at the link).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use sha2::Digest;

use super::oauth::{check_pkce, oauth_error, path_only, query, random, AuthRequest, Codes};
use super::{Received, Reply, StandIn};

pub const BSKY_VIEWER: &str = "viewer.test";
pub const BSKY_APP_PASSWORD: &str = "wxyz-abcd-efgh-ijkl";

#[derive(Debug, Clone)]
pub struct Account {
    pub did: String,
    pub handle: String,
    pub app_password: String,
    pub display_name: String,
    /// DIDs that follow this account.
    pub followed_by: HashSet<String>,
}

#[derive(Debug, Clone)]
struct OAuthToken {
    did: String,
    jkt: String,
    scopes: Vec<String>,
}

/// A post as created.
#[derive(Debug, Clone)]
pub struct Post {
    pub did: String,
    pub record: serde_json::Value,
    /// `bearer` (app password session) or `dpop` (OAuth).
    pub auth: &'static str,
}

#[derive(Default)]
pub struct State {
    pub base: String,
    pub accounts: Vec<Account>,
    sessions: HashMap<String, String>,
    refresh: HashMap<String, String>,
    par: HashMap<String, (AuthRequest, String)>,
    codes: Codes,
    tokens: HashMap<String, OAuthToken>,
    refresh_oauth: HashMap<String, OAuthToken>,
    nonce: String,
    jtis: HashSet<String>,
    pub posts: Vec<Post>,
    /// Client metadata documents fetched (client_id URLs).
    pub metadata_fetched: Vec<String>,
    /// Requests refused for a DPoP reason, with the reason.
    pub dpop_refusals: Vec<String>,
    /// Requests refused for want of the current nonce (`use_dpop_nonce`), by the PDS as a
    /// resource server and by the authorization server.
    pub nonce_challenges: (usize, usize),
}

pub struct BlueskyServer {
    pub http: StandIn,
    pub state: Arc<Mutex<State>>,
}

impl BlueskyServer {
    /// Accounts `viewer.test` (app password [`BSKY_APP_PASSWORD`]) and `owner.test`.
    pub fn start() -> BlueskyServer {
        let state = Arc::new(Mutex::new(State {
            nonce: random(12),
            ..State::default()
        }));
        let s = state.clone();
        let http = StandIn::start(move |r| s.lock().unwrap_or_else(|e| e.into_inner()).handle(r));
        {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.base = http.url();
            for (did, handle, name) in [
                ("did:plc:viewer0000000000000000", BSKY_VIEWER, "Vera Viewer"),
                ("did:plc:owner00000000000000000", "owner.test", "Olly Owner"),
            ] {
                st.accounts.push(Account {
                    did: did.into(),
                    handle: handle.into(),
                    app_password: BSKY_APP_PASSWORD.into(),
                    display_name: name.into(),
                    followed_by: HashSet::new(),
                });
            }
        }
        BlueskyServer { http, state }
    }

    pub fn url(&self) -> String {
        self.http.url()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn did(&self, handle: &str) -> String {
        self.lock()
            .accounts
            .iter()
            .find(|a| a.handle == handle)
            .map(|a| a.did.clone())
            .unwrap_or_default()
    }

    /// A new DPoP nonce (servers rotate theirs every few minutes).
    pub fn rotate_nonce(&self) {
        self.lock().nonce = random(12);
    }

    pub fn posts(&self) -> Vec<Post> {
        self.lock().posts.clone()
    }

    /// `who` follows `whom` (handles).
    pub fn follow(&self, who: &str, whom: &str) {
        let did = self.did(who);
        let mut st = self.lock();
        if let Some(a) = st.accounts.iter_mut().find(|a| a.handle == whom) {
            a.followed_by.insert(did);
        }
    }
}

fn xrpc_error(status: u16, error: &str, message: &str) -> Reply {
    Reply::new(
        status,
        serde_json::json!({"error": error, "message": message}).to_string(),
    )
}

/// RFC 7638 thumbprint of a P-256 JWK.
fn thumbprint(jwk: &serde_json::Value) -> String {
    let canon = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap_or_default(),
        jwk["y"].as_str().unwrap_or_default()
    );
    B64.encode(sha2::Sha256::digest(canon))
}

enum DpopFail {
    Nonce,
    Invalid(String),
}

impl State {
    fn account_by(&self, id: &str) -> Option<Account> {
        self.accounts
            .iter()
            .find(|a| a.did == id || a.handle == id)
            .cloned()
    }

    /// Checks the request's DPoP proof; returns the key's thumbprint.
    fn dpop(&mut self, r: &Received, access_token: Option<&str>) -> Result<String, DpopFail> {
        let bad = |m: &str| DpopFail::Invalid(m.to_string());
        let proof = r.header("dpop").ok_or_else(|| bad("missing DPoP proof"))?;
        let parts: Vec<&str> = proof.split('.').collect();
        if parts.len() != 3 {
            return Err(bad("malformed proof"));
        }
        let dec = |s: &str| -> Option<serde_json::Value> {
            serde_json::from_slice(&B64.decode(s).ok()?).ok()
        };
        let (Some(h), Some(c)) = (dec(parts[0]), dec(parts[1])) else {
            return Err(bad("undecodable proof"));
        };
        if h["typ"] != "dpop+jwt" || h["alg"] != "ES256" || h["jwk"]["kty"] != "EC" {
            return Err(bad("wrong typ, alg or key type"));
        }
        let coord = |k: &str| B64.decode(h["jwk"][k].as_str().unwrap_or_default()).ok();
        let (Some(x), Some(y)) = (coord("x"), coord("y")) else {
            return Err(bad("bad jwk"));
        };
        let mut sec1 = vec![4u8];
        sec1.extend(x);
        sec1.extend(y);
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| bad("bad jwk"))?;
        let sig = B64
            .decode(parts[2])
            .ok()
            .and_then(|s| p256::ecdsa::Signature::from_slice(&s).ok())
            .ok_or_else(|| bad("bad signature encoding"))?;
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .map_err(|_| bad("signature does not verify"))?;
        let htu = format!("{}{}", self.base, path_only(&r.path));
        if c["htm"] != r.method.as_str() || c["htu"] != htu.as_str() {
            return Err(bad("htm/htu do not match the request"));
        }
        let iat = c["iat"].as_i64().unwrap_or(0);
        if (chrono::Utc::now().timestamp() - iat).abs() > 60 {
            return Err(bad("stale iat"));
        }
        let jti = c["jti"].as_str().unwrap_or_default().to_string();
        if jti.len() < 12 || !self.jtis.insert(jti) {
            return Err(bad("jti missing or replayed"));
        }
        if let Some(t) = access_token {
            if c["ath"] != B64.encode(sha2::Sha256::digest(t.as_bytes())).as_str() {
                return Err(bad("ath does not match the access token"));
            }
        }
        if c["nonce"] != self.nonce.as_str() {
            return Err(DpopFail::Nonce);
        }
        Ok(thumbprint(&h["jwk"]))
    }

    fn dpop_refusal(&mut self, fail: DpopFail, resource: bool) -> Reply {
        if matches!(fail, DpopFail::Nonce) {
            if resource {
                self.nonce_challenges.0 += 1;
            } else {
                self.nonce_challenges.1 += 1;
            }
        }
        match fail {
            DpopFail::Nonce if resource => Reply::new(401, r#"{"error":"use_dpop_nonce","message":"DPoP nonce mismatch"}"#)
                .with_header("WWW-Authenticate", r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#)
                .with_header("DPoP-Nonce", &self.nonce.clone()),
            DpopFail::Nonce => oauth_error(400, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof")
                .with_header("DPoP-Nonce", &self.nonce.clone()),
            DpopFail::Invalid(m) => {
                self.dpop_refusals.push(m.clone());
                oauth_error(400, "invalid_dpop_proof", &m)
            }
        }
    }

    fn handle(&mut self, r: &Received) -> Reply {
        let path = path_only(&r.path).to_string();
        let q = query(&r.path);
        let b = self.base.clone();
        match (r.method.as_str(), path.as_str()) {
            ("GET", "/xrpc/com.atproto.identity.resolveHandle") => {
                match self.account_by(q.get("handle").map(String::as_str).unwrap_or("")) {
                    Some(a) if !a.handle.starts_with("did:") => Reply::new(200, serde_json::json!({"did": a.did}).to_string()),
                    _ => xrpc_error(400, "InvalidRequest", "Unable to resolve handle"),
                }
            }
            ("GET", p) if p.starts_with("/did:plc:") => match self.account_by(&p[1..]) {
                Some(a) => Reply::new(
                    200,
                    serde_json::json!({
                        "@context": ["https://www.w3.org/ns/did/v1"],
                        "id": a.did,
                        "alsoKnownAs": [format!("at://{}", a.handle)],
                        "verificationMethod": [],
                        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": b}],
                    })
                    .to_string(),
                ),
                None => Reply::new(404, r#"{"message":"DID not registered"}"#),
            },
            ("POST", "/xrpc/com.atproto.server.createSession") => {
                let v = r.json();
                match self.account_by(v["identifier"].as_str().unwrap_or_default()) {
                    Some(a) if v["password"] == a.app_password.as_str() => self.new_session(&a),
                    _ => xrpc_error(401, "AuthenticationRequired", "Invalid identifier or password"),
                }
            }
            ("POST", "/xrpc/com.atproto.server.refreshSession") => {
                let t = super::oauth::bearer(r).unwrap_or_default();
                match self.refresh.remove(&t).and_then(|d| self.account_by(&d)) {
                    Some(a) => self.new_session(&a),
                    None => xrpc_error(400, "ExpiredToken", "Token has been revoked"),
                }
            }
            ("POST", "/xrpc/com.atproto.repo.createRecord") => self.create_record(r),
            ("GET", "/.well-known/oauth-protected-resource") => Reply::new(
                200,
                serde_json::json!({"resource": b, "authorization_servers": [b], "scopes_supported": [], "bearer_methods_supported": ["header"]}).to_string(),
            ),
            ("GET", "/.well-known/oauth-authorization-server") => Reply::new(
                200,
                serde_json::json!({
                    "issuer": b,
                    "authorization_endpoint": format!("{b}/oauth/authorize"),
                    "token_endpoint": format!("{b}/oauth/token"),
                    "pushed_authorization_request_endpoint": format!("{b}/oauth/par"),
                    "require_pushed_authorization_requests": true,
                    "authorization_response_iss_parameter_supported": true,
                    "client_id_metadata_document_supported": true,
                    "dpop_signing_alg_values_supported": ["ES256"],
                    "code_challenge_methods_supported": ["S256"],
                    "scopes_supported": ["atproto", "transition:generic", "transition:chat.bsky"],
                    "response_types_supported": ["code"],
                    "grant_types_supported": ["authorization_code", "refresh_token"],
                    "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
                })
                .to_string(),
            ),
            ("POST", "/oauth/par") => self.par(r),
            ("GET", "/oauth/authorize") => {
                let Some((req, hint)) = q.get("request_uri").and_then(|u| self.par.remove(u)) else {
                    return oauth_error(400, "invalid_request", "unknown or used request_uri");
                };
                if q.get("client_id") != Some(&req.client_id) {
                    return oauth_error(400, "invalid_request", "client_id mismatch");
                }
                self.codes.page("/oauth/authorize", req, &hint, "Authorize onair on Bluesky")
            }
            ("POST", "/oauth/authorize") => self.codes.decide(r),
            ("POST", "/oauth/token") => self.token(r),
            ("GET", "/xrpc/app.bsky.actor.getProfile") => {
                match self.account_by(q.get("actor").map(String::as_str).unwrap_or("")) {
                    Some(a) => Reply::new(200, serde_json::json!({"did": a.did, "handle": a.handle, "displayName": a.display_name,
                        "avatar": format!("https://cdn.bsky.app/img/avatar/plain/{}/x@jpeg", a.did)}).to_string()),
                    None => xrpc_error(400, "InvalidRequest", "Profile not found"),
                }
            }
            ("GET", "/xrpc/app.bsky.graph.getRelationships") => {
                let actor = self.account_by(q.get("actor").map(String::as_str).unwrap_or(""));
                let other = q.get("others").cloned().unwrap_or_default();
                match actor {
                    Some(a) => {
                        let mut rel = serde_json::json!({"$type": "app.bsky.graph.defs#relationship", "did": other});
                        if a.followed_by.contains(&other) {
                            rel["followedBy"] = format!("at://{other}/app.bsky.graph.follow/3k").into();
                        }
                        Reply::new(200, serde_json::json!({"actor": a.did, "relationships": [rel]}).to_string())
                    }
                    None => xrpc_error(400, "InvalidRequest", "actor not found"),
                }
            }
            _ => xrpc_error(404, "MethodNotImplemented", "Method Not Implemented"),
        }
    }

    fn new_session(&mut self, a: &Account) -> Reply {
        let exp = chrono::Utc::now().timestamp() + 7200;
        let access = format!(
            "{}.{}.{}",
            B64.encode(r#"{"typ":"at+jwt","alg":"ES256K"}"#),
            B64.encode(
                serde_json::json!({"scope": "com.atproto.appPass", "sub": a.did, "exp": exp})
                    .to_string()
            ),
            random(16)
        );
        let refresh = random(32);
        self.sessions.insert(access.clone(), a.did.clone());
        self.refresh.insert(refresh.clone(), a.did.clone());
        Reply::new(
            200,
            serde_json::json!({"did": a.did, "handle": a.handle, "accessJwt": access, "refreshJwt": refresh, "active": true})
                .to_string(),
        )
    }

    fn create_record(&mut self, r: &Received) -> Reply {
        let auth = r.header("authorization").unwrap_or_default().to_string();
        let (did, how) = if let Some(t) = auth.strip_prefix("Bearer ") {
            match self.sessions.get(t) {
                Some(d) => (d.clone(), "bearer"),
                None => return xrpc_error(401, "InvalidToken", "Token could not be verified"),
            }
        } else if let Some(t) = auth.strip_prefix("DPoP ") {
            let t = t.to_string();
            let jkt = match self.dpop(r, Some(&t)) {
                Ok(j) => j,
                Err(f) => return self.dpop_refusal(f, true),
            };
            match self.tokens.get(&t) {
                Some(tok)
                    if tok.jkt == jkt && tok.scopes.iter().any(|s| s == "transition:generic") =>
                {
                    (tok.did.clone(), "dpop")
                }
                Some(_) => {
                    return xrpc_error(
                        403,
                        "InsufficientScope",
                        "token not bound to this key or lacks scope",
                    )
                }
                None => return xrpc_error(401, "InvalidToken", "Token could not be verified"),
            }
        } else {
            return xrpc_error(401, "AuthMissing", "Authentication Required");
        };
        let v = r.json();
        if !super::post_record_ok(&v, &did) {
            return xrpc_error(400, "InvalidRequest", "Invalid app.bsky.feed.post record");
        }
        let rec = &v["record"];
        self.posts.push(Post {
            did: did.clone(),
            record: rec.clone(),
            auth: how,
        });
        Reply::new(
            200,
            serde_json::json!({"uri": format!("at://{did}/app.bsky.feed.post/3k{}", self.posts.len()), "cid": "bafyrei"}).to_string(),
        )
    }

    /// Reads the client's metadata document from its `client_id` URL, as a PDS does.
    fn client_metadata(&mut self, client_id: &str) -> Option<serde_json::Value> {
        self.metadata_fetched.push(client_id.to_string());
        let out = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "5", client_id])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn par(&mut self, r: &Received) -> Reply {
        let jkt = match self.dpop(r, None) {
            Ok(j) => j,
            Err(f) => return self.dpop_refusal(f, false),
        };
        let f = r.form();
        let client_id = f.get("client_id").cloned().unwrap_or_default();
        if !client_id.starts_with("https://") {
            return oauth_error(400, "invalid_client", "client_id must be an https URL");
        }
        let Some(meta) = self.client_metadata(&client_id) else {
            return oauth_error(
                400,
                "invalid_client_metadata",
                "client metadata could not be fetched",
            );
        };
        let redirect = f.get("redirect_uri").cloned().unwrap_or_default();
        let scopes: Vec<String> = f
            .get("scope")
            .map(|s| s.split(' ').map(String::from).collect())
            .unwrap_or_default();
        let meta_scopes: Vec<&str> = meta["scope"]
            .as_str()
            .unwrap_or_default()
            .split(' ')
            .collect();
        if meta["client_id"] != client_id.as_str()
            || !meta["redirect_uris"]
                .as_array()
                .is_some_and(|a| a.iter().any(|u| u == redirect.as_str()))
            || meta["dpop_bound_access_tokens"] != true
        {
            return oauth_error(
                400,
                "invalid_client_metadata",
                "redirect_uri or client_id not in the client metadata",
            );
        }
        if !scopes.iter().any(|s| s == "atproto")
            || !scopes.iter().all(|s| meta_scopes.contains(&s.as_str()))
        {
            return oauth_error(
                400,
                "invalid_scope",
                "scope must include atproto and be in the metadata",
            );
        }
        if f.get("response_type").map(String::as_str) != Some("code")
            || f.get("state").is_none_or(String::is_empty)
        {
            return oauth_error(
                400,
                "invalid_request",
                "response_type code and state required",
            );
        }
        let challenge = match check_pkce(&f) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let uri = format!("urn:ietf:params:oauth:request_uri:req-{}", random(16));
        let hint = f.get("login_hint").cloned().unwrap_or_default();
        self.par.insert(
            uri.clone(),
            (
                AuthRequest {
                    client_id,
                    redirect_uri: redirect,
                    scopes,
                    state: f["state"].clone(),
                    challenge,
                    dpop_jkt: Some(jkt),
                    iss: Some(self.base.clone()),
                },
                hint,
            ),
        );
        Reply::new(
            201,
            serde_json::json!({"request_uri": uri, "expires_in": 299}).to_string(),
        )
        .with_header("DPoP-Nonce", &self.nonce.clone())
    }

    fn token(&mut self, r: &Received) -> Reply {
        let jkt = match self.dpop(r, None) {
            Ok(j) => j,
            Err(f) => return self.dpop_refusal(f, false),
        };
        let f = r.form();
        let issue = |st: &mut State, tok: OAuthToken| {
            let access = random(32);
            let refresh = random(32);
            st.tokens.insert(access.clone(), tok.clone());
            st.refresh_oauth.insert(refresh.clone(), tok.clone());
            Reply::new(
                200,
                serde_json::json!({"access_token": access, "token_type": "DPoP", "refresh_token": refresh,
                    "scope": tok.scopes.join(" "), "sub": tok.did, "expires_in": 3600})
                .to_string(),
            )
            .with_header("DPoP-Nonce", &st.nonce.clone())
        };
        match f.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let client_id = f.get("client_id").cloned().unwrap_or_default();
                let entry = match self.codes.redeem(
                    f.get("code").map(String::as_str).unwrap_or(""),
                    &client_id,
                    f.get("redirect_uri").map(String::as_str).unwrap_or(""),
                    f.get("code_verifier").map(String::as_str).unwrap_or(""),
                ) {
                    Ok(e) => e,
                    Err(e) => return e,
                };
                if entry.req.dpop_jkt.as_deref() != Some(jkt.as_str()) {
                    return oauth_error(
                        400,
                        "invalid_dpop_proof",
                        "DPoP key differs from the one used for PAR",
                    );
                }
                let Some(a) = self.account_by(&entry.subject) else {
                    return oauth_error(400, "invalid_grant", "no such account");
                };
                issue(
                    self,
                    OAuthToken {
                        did: a.did,
                        jkt,
                        scopes: entry.req.scopes,
                    },
                )
            }
            Some("refresh_token") => {
                let rt = f.get("refresh_token").cloned().unwrap_or_default();
                match self.refresh_oauth.remove(&rt) {
                    Some(tok) if tok.jkt == jkt => issue(self, tok),
                    _ => oauth_error(400, "invalid_grant", "Invalid refresh token"),
                }
            }
            _ => oauth_error(400, "unsupported_grant_type", "unsupported grant_type"),
        }
    }
}

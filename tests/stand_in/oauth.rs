//! What the OAuth stand-ins share, written independently of the server's code: authorization
//! codes bound to client, redirect_uri, scopes and a PKCE S256 challenge, redeemed once within
//! ten minutes (a replayed code also revokes what it gave, as RFC 6749 §4.1.2 asks); the
//! consent page a browser (or [`approve`]) submits; and form, query and Basic-auth parsing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;

use super::{form_decode, Received, Reply};

/// How long a code can be redeemed.
pub const CODE_TTL: Duration = Duration::from_secs(600);

/// RFC 7636 S256: base64url(SHA-256(verifier)), no padding.
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

pub fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The query of a request path as a map.
pub fn query(path: &str) -> HashMap<String, String> {
    path.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// Every value of a repeated query parameter (`id[]=1&id[]=2`).
pub fn query_all(path: &str, name: &str) -> Vec<String> {
    path.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| form_decode(k) == name)
        .map(|(_, v)| form_decode(v))
        .collect()
}

pub fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// HTTP Basic credentials, decoded as RFC 6749 §2.3.1 says (form-urlencoded, then base64).
pub fn basic_auth(r: &Received) -> Option<(String, String)> {
    let b = r.header("authorization")?.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

/// The Bearer token of a request.
pub fn bearer(r: &Received) -> Option<String> {
    r.header("authorization")?
        .strip_prefix("Bearer ")
        .map(String::from)
}

/// An OAuth error answer.
pub fn oauth_error(status: u16, code: &str, description: &str) -> Reply {
    Reply::new(
        status,
        serde_json::json!({"error": code, "error_description": description}).to_string(),
    )
}

pub fn redirect(to: &str) -> Reply {
    let mut r = Reply::new(302, "");
    r.headers.clear();
    r.with_header("Location", to)
}

pub fn html(body: String) -> Reply {
    let mut r = Reply::new(200, body);
    r.headers.clear();
    r.with_header("Content-Type", "text/html; charset=utf-8")
}

/// An authorization request the consent page is showing.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: String,
    pub challenge: String,
    /// Set by the atproto server: the DPoP key thumbprint the code is bound to.
    pub dpop_jkt: Option<String>,
    /// Added to the redirect (atproto's `iss`).
    pub iss: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CodeEntry {
    pub req: AuthRequest,
    /// The account that approved.
    pub subject: String,
    pub at: Instant,
    pub used: bool,
}

/// Consent pages shown and codes issued.
#[derive(Default)]
pub struct Codes {
    pages: HashMap<String, AuthRequest>,
    codes: HashMap<String, CodeEntry>,
    /// Tokens issued per code, revoked if the code is replayed.
    pub issued: HashMap<String, Vec<String>>,
}

impl Codes {
    /// A consent page for a checked request: a form with the account to approve as and the
    /// buttons `Authorize` and `Deny`.
    pub fn page(&mut self, action: &str, req: AuthRequest, account: &str, title: &str) -> Reply {
        let id = random(16);
        let scopes = req.scopes.join(" ");
        self.pages.insert(id.clone(), req);
        html(format!(
            "<!doctype html><title>{title}</title><h1>{title}</h1>\
<p>onair asks for: <span id=scopes>{scopes}</span></p>\
<form method=post action=\"{action}\"><input type=hidden name=request value=\"{id}\">\
<label>Account <input name=account value=\"{account}\"></label>\
<button name=decision value=approve>Authorize</button>\
<button name=decision value=deny>Deny</button></form>"
        ))
    }

    /// The consent form's answer: a redirect back with a fresh code (or `access_denied`).
    pub fn decide(&mut self, r: &Received) -> Reply {
        let f = r.form();
        let Some(req) = f.get("request").and_then(|id| self.pages.remove(id)) else {
            return Reply::new(400, r#"{"error":"unknown authorization request"}"#);
        };
        let sep = if req.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if f.get("decision").map(String::as_str) != Some("approve") {
            q.append_pair("error", "access_denied");
            q.append_pair("state", &req.state);
            return redirect(&format!("{}{sep}{}", req.redirect_uri, q.finish()));
        }
        let code = random(24);
        q.append_pair("code", &code);
        q.append_pair("state", &req.state);
        if let Some(iss) = &req.iss {
            q.append_pair("iss", iss);
        }
        let to = format!("{}{sep}{}", req.redirect_uri, q.finish());
        self.codes.insert(
            code,
            CodeEntry {
                req,
                subject: f.get("account").cloned().unwrap_or_default(),
                at: Instant::now(),
                used: false,
            },
        );
        redirect(&to)
    }

    /// Redeems a code as a token endpoint does: known, unused, fresh, for this client and
    /// redirect_uri, and the verifier hashing to the challenge. Errors are OAuth answers.
    pub fn redeem(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<CodeEntry, Reply> {
        let Some(e) = self.codes.get_mut(code) else {
            return Err(oauth_error(
                400,
                "invalid_grant",
                "The provided authorization grant is invalid",
            ));
        };
        if e.used {
            // A replayed code: refuse, and revoke what it gave.
            self.issued.remove(code);
            return Err(oauth_error(
                400,
                "invalid_grant",
                "The authorization code was already used",
            ));
        }
        e.used = true;
        if e.at.elapsed() > CODE_TTL {
            return Err(oauth_error(400, "invalid_grant", "The code has expired"));
        }
        if e.req.client_id != client_id {
            return Err(oauth_error(401, "invalid_client", "Client mismatch"));
        }
        if e.req.redirect_uri != redirect_uri {
            return Err(oauth_error(
                400,
                "invalid_grant",
                "The redirect uri included is not valid",
            ));
        }
        if verifier.len() < 43 || verifier.len() > 128 || s256(verifier) != e.req.challenge {
            return Err(oauth_error(
                400,
                "invalid_grant",
                "The code verifier does not match the challenge",
            ));
        }
        Ok(e.clone())
    }

    /// Redeems the code of a token request's form for `client_id` (see [`Codes::redeem`]).
    pub fn redeem_form(
        &mut self,
        f: &HashMap<String, String>,
        client_id: &str,
    ) -> Result<(String, CodeEntry), Reply> {
        let code = f.get("code").cloned().unwrap_or_default();
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
        let e = self.redeem(&code, client_id, get("redirect_uri"), get("code_verifier"))?;
        Ok((code, e))
    }

    /// A new access token for a redeemed code, revoked if the code is replayed.
    pub fn token_for(&mut self, code: &str) -> String {
        let token = random(32);
        self.issued
            .entry(code.to_string())
            .or_default()
            .push(token.clone());
        token
    }

    /// Whether a token was revoked because its code was replayed.
    pub fn revoked(&self, token: &str) -> bool {
        !self.issued.values().any(|ts| ts.iter().any(|t| t == token))
    }
}

/// Checks the PKCE and redirect parts of an authorization request, as servers do before
/// showing anything: S256 only, a challenge of the right length.
pub fn check_pkce(q: &HashMap<String, String>) -> Result<String, Reply> {
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(oauth_error(
            400,
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    match q.get("code_challenge") {
        Some(c) if c.len() == 43 => Ok(c.clone()),
        _ => Err(oauth_error(
            400,
            "invalid_request",
            "code_challenge missing",
        )),
    }
}

/// Plays the viewer at a consent page: GET it, then submit `decision` as `account`. Returns
/// the `Location` the provider sends the browser to (onair's callback), or the error page.
pub fn approve(authorize_url: &str, account: &str, decision: &str) -> Result<String, String> {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let page = match agent.get(authorize_url).call() {
        Ok(r) => r.into_string().map_err(|e| e.to_string())?,
        Err(ureq::Error::Status(code, r)) => {
            return Err(format!("{code}: {}", r.into_string().unwrap_or_default()))
        }
        Err(e) => return Err(e.to_string()),
    };
    let id = page
        .split("name=request value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or_else(|| format!("no consent form in {page}"))?;
    let action = page
        .split("action=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no form action")?;
    let base = url::Url::parse(authorize_url).map_err(|e| e.to_string())?;
    let target = base.join(action).map_err(|e| e.to_string())?;
    match agent.post(target.as_str()).send_form(&[
        ("request", id),
        ("account", account),
        ("decision", decision),
    ]) {
        Ok(r) if r.status() == 302 => Ok(r.header("location").unwrap_or_default().to_string()),
        Ok(r) => Err(format!(
            "{}: {}",
            r.status(),
            r.into_string().unwrap_or_default()
        )),
        Err(ureq::Error::Status(code, r)) => {
            Err(format!("{code}: {}", r.into_string().unwrap_or_default()))
        }
        Err(e) => Err(e.to_string()),
    }
}

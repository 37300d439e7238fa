//! Signing in against the stand-ins as a browser would, without one: follow `/auth/*/start`
//! to the provider's consent page, approve there, come back to the callback with the login
//! cookie, keep the session cookie. Requests carry cookies and `Origin` by hand (ureq with
//! redirects off), so tests can also leave them out or forge them. Include it with
//! `#[path = "common/signin.rs"] mod signin;` next to `mod common;` and `mod stand_in;`.
#![allow(dead_code)] // each sign-in test binary uses part of it

use std::time::Duration;

use crate::common::TestServer;
use crate::stand_in::mastodon_server::MastodonServer;
use crate::stand_in::x_server::{XServer, X_CLIENT_ID, X_CLIENT_SECRET};

/// How long a test waits for a post or an outcome.
pub const WAIT: Duration = Duration::from_secs(10);

/// An HTTP answer with what sign-in tests look at.
#[derive(Debug)]
pub struct Hop {
    pub status: u16,
    pub location: Option<String>,
    /// `Set-Cookie` values.
    pub cookies: Vec<String>,
    pub body: String,
}

impl Hop {
    /// The value a `Set-Cookie` gives to `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.iter().find_map(|c| {
            let (k, v) = c.split(';').next()?.split_once('=')?;
            (k.trim() == name && !v.is_empty()).then(|| v.to_string())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(15))
        .build()
}

fn hop(r: Result<ureq::Response, ureq::Error>) -> Hop {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    Hop {
        status: resp.status(),
        location: resp.header("location").map(String::from),
        cookies: resp
            .all("set-cookie")
            .iter()
            .map(|s| s.to_string())
            .collect(),
        body: resp.into_string().unwrap_or_default(),
    }
}

/// One request to `url` with optional cookie header, `Origin` and JSON body.
pub fn call(
    method: &str,
    url: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Hop {
    let mut req = agent().request(method, url);
    if let Some(c) = cookie {
        req = req.set("Cookie", c);
    }
    if let Some(o) = origin {
        req = req.set("Origin", o);
    }
    hop(match body {
        Some(b) => req
            .set("Content-Type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    })
}

/// The session cookie's name over plain http.
pub const SESSION: &str = "onair_session";
pub const LOGIN: &str = "onair_login";

/// The origin of the server's pages (what a browser sends as `Origin`).
pub fn origin(srv: &TestServer) -> String {
    srv.url("")
}

/// `GET /auth/{provider}/start?...` as the page's link does: the consent page URL and the login
/// cookie.
pub fn start(srv: &TestServer, provider: &str, query: &str) -> Hop {
    call(
        "GET",
        &srv.url(&format!("/auth/{provider}/start?{query}")),
        None,
        None,
        None,
    )
}

/// A full sign-in: start, approve as `account` at the stand-in, callback with the login
/// cookie. Returns the `Cookie` header value to send from then on.
pub fn sign_in(srv: &TestServer, provider: &str, query: &str, account: &str) -> String {
    let s = start(srv, provider, query);
    assert_eq!(s.status, 302, "start: {s:?}");
    let login = s.cookie(LOGIN).expect("login cookie");
    let consent = s.location.clone().expect("consent page");
    let back = crate::stand_in::oauth::approve(&consent, account, "approve").expect("approved");
    let cb = call("GET", &back, Some(&format!("{LOGIN}={login}")), None, None);
    assert_eq!(cb.status, 302, "callback: {cb:?}");
    let session = cb.cookie(SESSION).expect("session cookie");
    format!("{SESSION}={session}")
}

/// A Mastodon sign-in at the stand-in `mastodon_url` as `account`, allowing posts or not.
pub fn mastodon(srv: &TestServer, mastodon_url: &str, account: &str, cross_post: bool) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("instance", mastodon_url)
        .append_pair("return", "/watch/alice")
        .append_pair("cross_post", if cross_post { "1" } else { "0" })
        .finish();
    sign_in(srv, "mastodon", &q, account)
}

/// Posts a chat message as the session (with our `Origin`).
pub fn chat(srv: &TestServer, cookie: &str, text: &str, cross_post: bool) -> Hop {
    call(
        "POST",
        &srv.url("/api/channels/alice/chat"),
        Some(cookie),
        Some(&origin(srv)),
        Some(&serde_json::json!({"nick": "ignored", "text": text, "cross_post": cross_post})),
    )
}

/// `GET /api/me`.
pub fn me(srv: &TestServer, cookie: Option<&str>) -> Hop {
    call("GET", &srv.url("/api/me"), cookie, None, None)
}

/// Waits until `f` says yes.
pub fn wait_until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    crate::common::wait_for(within, what, || f().then_some(()));
}

/// onair on a known port with private hosts allowed (the stand-ins are on 127.0.0.1).
pub fn server(alice_keys: &str, extra: &str, env: &[(&str, &str)]) -> TestServer {
    TestServer::start_public(
        "",
        alice_keys,
        &format!("[auth]\nallow_private_hosts = true\n{extra}"),
        None,
        env,
    )
}

/// `owners = [...]` naming `who` on the Mastodon stand-in.
pub fn owner_line(m: &MastodonServer, who: &str) -> String {
    format!("owners = [\"mastodon:{}\"]", m.account_url(who))
}

/// The X stand-in and onair with `[auth.x]` pointing at it; the stand-in's registered
/// redirect_uri is onair's callback.
pub fn x_setup(cross_post: bool) -> (XServer, TestServer) {
    x_setup_with(cross_post, "", "")
}

/// [`x_setup`] with lines for alice's channel and more config.
pub fn x_setup_with(cross_post: bool, alice_keys: &str, extra: &str) -> (XServer, TestServer) {
    let x = XServer::start("pending");
    let srv = server(
        alice_keys,
        &format!(
            "{extra}[auth.x]\nenabled = true\nclient_id = \"{X_CLIENT_ID}\"\nclient_secret = \"{X_CLIENT_SECRET}\"\n\
authorize_url = \"{}/i/oauth2/authorize\"\napi_base = \"{}\"\ncross_post = {cross_post}\n",
            x.url(),
            x.url()
        ),
        &[],
    );
    x.lock().redirect_uri = format!("{}/auth/x/callback", origin(&srv).trim_end_matches('/'));
    (x, srv)
}

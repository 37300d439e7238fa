//! What a sign-in must survive, against the real binary and the stand-ins: nothing posted
//! without the viewer's choice; cookie attributes; tampered state, replayed callback, a
//! callback in another browser, off-site `return=`; a cross-origin POST riding the cookie; an
//! "instance" on a private address or a name resolving to one; nothing secret in the database
//! file, the pages or trace logs.

mod common;
#[path = "common/signin.rs"]
mod signin;
mod stand_in;

use common::*;
use serde_json::json;
use signin::*;
use stand_in::mastodon_server::{MastodonOpts, MastodonServer};

#[test]
fn nothing_is_posted_without_the_viewers_choice() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server("", "", &[]);
    // Signed in without asking to post: onair never holds a permission to post.
    let reader = mastodon(&srv, &m.url(), "alice", false);
    let granted = m.token_scopes("alice");
    assert!(!granted.is_empty(), "a token was issued");
    assert!(
        granted.iter().all(|s| !s.starts_with("write")),
        "only reading was asked: {granted:?}"
    );
    assert_eq!(me(&srv, Some(&reader)).json()["can_cross_post"], false);
    let r = chat(&srv, &reader, "not for my timeline", true);
    assert_eq!(r.status, 202, "the chat message goes on: {r:?}");
    assert_eq!(r.json()["cross_post"]["state"], "refused", "{r:?}");
    assert!(
        r.json()["cross_post"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not allow")),
        "{r:?}"
    );
    // Signed in with the permission: a message is posted only when its box is ticked. No
    // `cross_post` field at all is chat only, like `false`.
    let bob = mastodon(&srv, &m.url(), "bob", true);
    let r = call(
        "POST",
        &srv.url("/api/channels/alice/chat"),
        Some(&bob),
        Some(&origin(&srv)),
        Some(&json!({"nick": "x", "text": "no field, chat only"})),
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert!(r.json().get("cross_post").is_none(), "{r:?}");
    assert!(chat(&srv, &bob, "unticked, chat only", false)
        .json()
        .get("cross_post")
        .is_none());
    let ticked = chat(&srv, &bob, "ticked, so posted", true);
    assert_eq!(ticked.json()["cross_post"]["state"], "queued");
    let id = ticked.json()["id"].as_u64().expect("id");
    wait_until(WAIT, "the ticked message's outcome", || {
        call(
            "GET",
            &srv.url("/api/me/cross-posts"),
            Some(&bob),
            None,
            None,
        )
        .json()["cross_posts"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|x| x["message_id"] == id && x["state"] == "posted")
            })
    });
    let st = m.statuses();
    assert_eq!(st.len(), 1, "only the ticked message: {st:?}");
    assert!(st[0].status.starts_with("ticked, so posted"), "{st:?}");
    assert_eq!(st[0].account, "bob");
    // Signing in or chatting never posts on its own: nothing from alice.
    assert!(st.iter().all(|s| s.account != "alice"));
}

#[test]
fn session_cookie_attributes() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server("", "", &[]);
    let s = start(
        &srv,
        "mastodon",
        &format!("instance={}&return=/watch/alice", m.url()),
    );
    let login = s
        .cookies
        .iter()
        .find(|c| c.starts_with("onair_login="))
        .expect("login");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(login.contains(part), "{login}");
    }
    let back = stand_in::oauth::approve(s.location.as_deref().expect("loc"), "bob", "approve")
        .expect("approved");
    let cb = call(
        "GET",
        &back,
        Some(&format!("{LOGIN}={}", s.cookie(LOGIN).expect("login"))),
        None,
        None,
    );
    assert_eq!(cb.location.as_deref(), Some("/watch/alice"));
    let session = cb
        .cookies
        .iter()
        .find(|c| c.starts_with("onair_session="))
        .expect("session");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(session.contains(part), "{session}");
    }
    assert!(!session.contains("Secure"), "plain http: {session}");
}

#[test]
fn forged_and_replayed_callbacks_do_not_sign_in() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server("", "", &[]);
    let s = start(
        &srv,
        "mastodon",
        &format!("instance={}&return=/watch/alice", m.url()),
    );
    let login = format!("{LOGIN}={}", s.cookie(LOGIN).expect("login"));
    let consent = s.location.clone().expect("consent");
    assert!(
        !consent.contains("code_verifier"),
        "the verifier stays on the server"
    );
    let back = stand_in::oauth::approve(&consent, "bob", "approve").expect("approved");
    // Tampered state: unknown, refused, no session.
    let tampered = back.replace("state=", "state=x");
    let r = call("GET", &tampered, Some(&login), None, None);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.cookie(SESSION).is_none());
    // A tampered state does not use up the real one, but another browser (no login cookie,
    // or someone else's) cannot finish it: and that attempt ends it.
    let r = call(
        "GET",
        &back,
        Some(&format!("{LOGIN}=someone-else")),
        None,
        None,
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("another browser"), "{}", r.body);
    let r = call("GET", &back, Some(&login), None, None);
    assert_eq!(r.status, 400, "used once, even by the right browser: {r:?}");
    assert!(r.cookie(SESSION).is_none());

    // A clean sign-in, then the same callback again: refused (state used).
    let s = start(&srv, "mastodon", &format!("instance={}", m.url()));
    let login = format!("{LOGIN}={}", s.cookie(LOGIN).expect("login"));
    let back = stand_in::oauth::approve(s.location.as_deref().expect("loc"), "bob", "approve")
        .expect("approved");
    assert_eq!(call("GET", &back, Some(&login), None, None).status, 302);
    let again = call("GET", &back, Some(&login), None, None);
    assert_eq!(again.status, 400, "replayed: {again:?}");
    assert!(again.cookie(SESSION).is_none());

    // Declining at the provider signs nobody in.
    let s = start(&srv, "mastodon", &format!("instance={}", m.url()));
    let login = format!("{LOGIN}={}", s.cookie(LOGIN).expect("login"));
    let back = stand_in::oauth::approve(s.location.as_deref().expect("loc"), "bob", "deny")
        .expect("redirected");
    let r = call("GET", &back, Some(&login), None, None);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("declined"), "{}", r.body);

    // Off-site return= ends on this server's front page.
    for ret in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
    ] {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("instance", &m.url())
            .append_pair("return", ret)
            .finish();
        let s = start(&srv, "mastodon", &q);
        let login = format!("{LOGIN}={}", s.cookie(LOGIN).expect("login"));
        let back = stand_in::oauth::approve(s.location.as_deref().expect("loc"), "bob", "approve")
            .expect("approved");
        let r = call("GET", &back, Some(&login), None, None);
        assert_eq!(r.location.as_deref(), Some("/"), "{ret}: {r:?}");
    }
}

#[test]
fn cross_origin_requests_with_the_cookie_are_refused() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server("", "", &[]);
    let cookie = mastodon(&srv, &m.url(), "bob", true);
    let url = srv.url("/api/channels/alice/chat");
    let body = json!({"nick": "x", "text": "forged", "cross_post": true});
    for o in [Some("https://evil.example"), Some("null"), None] {
        let r = call("POST", &url, Some(&cookie), o, Some(&body));
        assert_eq!(r.status, 403, "{o:?}: {r:?}");
    }
    let r = call(
        "POST",
        &srv.url("/auth/logout"),
        Some(&cookie),
        Some("https://evil.example"),
        None,
    );
    assert_eq!(r.status, 403);
    assert_eq!(me(&srv, Some(&cookie)).status, 200, "still signed in");
    assert_eq!(
        call(
            "POST",
            &url,
            Some(&cookie),
            Some(&origin(&srv)),
            Some(&body)
        )
        .status,
        202
    );
    let r = call(
        "POST",
        &srv.url("/auth/bluesky/app-password"),
        None,
        Some("https://evil.example"),
        Some(&json!({"handle": "a.test", "app_password": "x"})),
    );
    assert_eq!(
        r.status, 403,
        "no login CSRF through the app-password route"
    );
    assert!(
        m.statuses().iter().all(|s| s.status != "forged"),
        "nothing forged was posted"
    );
}

#[test]
fn private_instances_are_refused_and_get_nothing() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = TestServer::start_public("", "", "", None, &[]);
    let port = m.http.addr.port();
    let mut instances = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("10.0.0.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("@bob@127.0.0.1:{port}"),
        format!("https://127.0.0.1:{port}"),
        m.url(),
    ];
    // A name that is neither an address nor localhost but resolves to a private one (this
    // machine's own name, in /etc/hosts): refused on the DNS answer. (Names with made-up
    // answers are in identity::net's unit tests.)
    if let Some(name) = private_host_name() {
        instances.push(format!("{name}:{port}"));
        instances.push(format!("@bob@{name}:{port}"));
    }
    for inst in instances {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("instance", &inst)
            .finish();
        let r = start(&srv, "mastodon", &q);
        assert_eq!(r.status, 400, "{inst}: {r:?}");
        assert!(r.cookie(LOGIN).is_none());
    }
    assert!(
        m.http.requests().is_empty(),
        "nothing was sent to the private address"
    );
}

/// This machine's host name, if it resolves only to non-public addresses.
fn private_host_name() -> Option<String> {
    use std::net::ToSocketAddrs;
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_string();
    let addrs: Vec<_> = (name.as_str(), 0).to_socket_addrs().ok()?.collect();
    let private = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    (!name.is_empty() && !addrs.is_empty() && addrs.iter().all(|a| private(a.ip()))).then_some(name)
}

#[test]
fn no_secret_in_the_database_file_or_in_trace_logs() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server("", "", &[("RUST_LOG", "trace")]);
    // The sign-in's secrets: the login cookie, the code (in the callback URL), the session.
    let s = start(
        &srv,
        "mastodon",
        &format!("instance={}&cross_post=1", m.url()),
    );
    let login_value = s.cookie(LOGIN).expect("login");
    let back = stand_in::oauth::approve(s.location.as_deref().expect("loc"), "bob", "approve")
        .expect("approved");
    let code = stand_in::oauth::query(&back)["code"].clone();
    let state = stand_in::oauth::query(&back)["state"].clone();
    let cb = call(
        "GET",
        &back,
        Some(&format!("{LOGIN}={login_value}")),
        None,
        None,
    );
    let session_value = cb.cookie(SESSION).expect("session");
    let cookie = format!("{SESSION}={session_value}");
    assert_eq!(chat(&srv, &cookie, "posted with a token", true).status, 202);
    wait_until(WAIT, "the cross-post", || !m.statuses().is_empty());
    let mut secrets = m.secrets();
    assert!(
        secrets.len() >= 2,
        "a token and a client secret: {secrets:?}"
    );
    secrets.extend([code, state, login_value, session_value]);
    // Everything the server wrote to disk (the database, its WAL, the key file aside).
    let mut stored = Vec::new();
    for f in std::fs::read_dir(&srv.data_dir)
        .expect("data dir")
        .flatten()
    {
        if f.file_name() != "auth.key" {
            stored.extend(std::fs::read(f.path()).unwrap_or_default());
        }
    }
    assert!(stored.len() > 1000, "read the database");
    for secret in &secrets {
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret is in the database file in clear"
        );
    }
    // Nor in what the server shows the signed-in viewer.
    for path in ["/watch/alice", "/api/me", "/api/me/cross-posts", "/"] {
        let page = call("GET", &srv.url(path), Some(&cookie), None, None);
        assert_eq!(page.status, 200, "{path}: {page:?}");
        for secret in &secrets {
            assert!(
                !page.body.contains(secret.as_str()),
                "{path} shows a secret: {secret}"
            );
        }
    }
    let logs = srv.logs();
    assert!(logs.lines().count() > 50, "trace logging on");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret is in the logs: {secret}"
        );
    }
}

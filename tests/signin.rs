//! Signing in against the real binary and the stand-ins (tests/stand_in/): the Mastodon flow
//! end to end with chat under the identity and a cross-post arriving with the right text and
//! visibility; the attacks a sign-in must survive (tampered state, replayed callback, a
//! callback in another browser, off-site `return=`, a cross-origin POST riding the cookie, an
//! "instance" on a private address); nothing secret in the database file or in trace logs;
//! `chat.mode` signed_in and followers; identity bans; owners moderating; X and Bluesky.

mod common;
#[path = "common/signin.rs"]
mod signin;
mod stand_in;

use std::time::Duration;

use common::*;
use serde_json::json;
use signin::*;
use stand_in::bluesky_server::{BlueskyServer, BSKY_APP_PASSWORD, BSKY_VIEWER};
use stand_in::mastodon_server::{MastodonOpts, MastodonServer};
use stand_in::x_server::{XServer, X_CLIENT_ID, X_CLIENT_SECRET};

const WAIT: Duration = Duration::from_secs(10);

/// onair on a known port with private hosts allowed (the stand-ins are on 127.0.0.1).
fn server(alice_keys: &str, extra: &str, env: &[(&str, &str)]) -> TestServer {
    TestServer::start_public(
        "",
        alice_keys,
        &format!("[auth]\nallow_private_hosts = true\n{extra}"),
        None,
        env,
    )
}

fn owner_line(m: &MastodonServer, who: &str) -> String {
    format!("owners = [\"mastodon:{}\"]", m.account_url(who))
}

#[test]
fn mastodon_sign_in_chat_cross_post_and_sign_out() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server("", "", &[]);
    assert_eq!(me(&srv, None).status, 401);
    assert_eq!(me(&srv, None).json()["sign_in"]["mastodon"], true);
    let cookie = mastodon(&srv, &m.url(), "bob", true);
    let who = me(&srv, Some(&cookie)).json();
    assert_eq!(who["provider"], "mastodon");
    assert_eq!(who["id"], m.account_url("bob"));
    assert_eq!(who["handle"], "@bob@127.0.0.1");
    assert_eq!(who["display_name"], "Bob B.");
    assert_eq!(who["profile_url"], m.account_url("bob"));
    assert_eq!(who["can_cross_post"], true);

    // Chat under the identity: the nick typed is ignored, the author is the provider's.
    let posted = chat(&srv, &cookie, "hello from bob", false);
    assert_eq!(posted.status, 202, "{posted:?}");
    let msg = posted.json();
    assert_eq!(msg["author"]["id"], m.account_url("bob"));
    assert_eq!(msg["nick"], "@bob@127.0.0.1");
    assert!(msg.get("cross_post").is_none(), "not asked: {msg}");
    let anon = call(
        "POST",
        &srv.url("/api/channels/alice/chat"),
        None,
        None,
        Some(&json!({"nick": "anna", "text": "hi"})),
    );
    assert_eq!(anon.status, 202);
    assert!(anon.json()["author"].is_null());
    // Nobody can take bob's names anonymously now.
    for nick in ["bob", "Bob B.", "BOB"] {
        let a = call(
            "POST",
            &srv.url("/api/channels/alice/chat"),
            None,
            None,
            Some(&json!({"nick": nick, "text": "it's me"})),
        );
        assert_eq!(a.status, 400, "{nick}: {a:?}");
        assert!(a.body.contains("signed-in"), "{}", a.body);
    }

    // The preview is the exact text; the post arrives at the stand-in, unlisted.
    let words = "A fine point, well made";
    let pv = call(
        "POST",
        &srv.url("/api/channels/alice/chat/preview"),
        Some(&cookie),
        Some(&origin(&srv)),
        Some(&json!({"text": words})),
    );
    assert_eq!(pv.status, 200, "{pv:?}");
    let expected = format!(
        "{words}\n\nWatching alice live: {}/watch/alice",
        origin(&srv).trim_end_matches('/')
    );
    assert_eq!(pv.json()["text"], expected.as_str());
    assert_eq!(pv.json()["visibility"], "unlisted");
    let posted = chat(&srv, &cookie, words, true);
    assert_eq!(posted.status, 202, "{posted:?}");
    assert_eq!(posted.json()["cross_post"]["state"], "queued");
    let id = posted.json()["id"].as_u64().expect("id");
    wait_until(WAIT, "the status at the stand-in", || {
        !m.statuses().is_empty()
    });
    let st = m.statuses();
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0].account, "bob");
    assert_eq!(st[0].status, expected);
    assert_eq!(st[0].visibility, "unlisted");
    assert!(!st[0].idempotency_key.is_empty());
    wait_until(WAIT, "the outcome", || {
        let o = call(
            "GET",
            &srv.url("/api/me/cross-posts"),
            Some(&cookie),
            None,
            None,
        )
        .json();
        o["cross_posts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["message_id"] == id && x["state"] == "posted")
        })
    });

    // Sign out: the session is gone here and in the database.
    let out = call(
        "POST",
        &srv.url("/auth/logout"),
        Some(&cookie),
        Some(&origin(&srv)),
        None,
    );
    assert_eq!(out.status, 200);
    assert!(
        out.cookies.iter().any(|c| c.contains("Max-Age=0")),
        "{out:?}"
    );
    assert_eq!(me(&srv, Some(&cookie)).status, 401);
    let db = rusqlite::Connection::open(srv.data_dir.join("onair.sqlite3")).expect("db");
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM auth_sessions", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 0, "the session row (and its tokens) deleted");
    // Signing in again reuses the app registered on that server.
    let _ = mastodon(&srv, &m.url(), "bob", false);
    assert_eq!(m.lock().registrations, 1, "one app per server");
}

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

#[test]
fn chat_mode_signed_in() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server("", "[chat]\nmode = \"signed_in\"\n", &[]);
    let anon = call(
        "POST",
        &srv.url("/api/channels/alice/chat"),
        None,
        None,
        Some(&json!({"nick": "anna", "text": "hi"})),
    );
    assert_eq!(anon.status, 401, "{anon:?}");
    let cookie = mastodon(&srv, &m.url(), "bob", false);
    assert_eq!(chat(&srv, &cookie, "signed in, so fine", false).status, 202);
}

#[test]
fn chat_mode_followers() {
    let m = MastodonServer::start(MastodonOpts::default());
    m.follow("bob", "alice");
    let srv = server(
        &owner_line(&m, "alice"),
        "[chat]\nmode = \"followers\"\n",
        &[],
    );
    let carol_like = {
        // A second account on the stand-in that does not follow alice.
        let mut st = m.lock();
        let mut a = st.accounts["bob"].clone();
        a.id = "3".into();
        a.username = "carl".into();
        a.display_name = "Carl".into();
        a.following.clear();
        st.accounts.insert("carl".into(), a);
        "carl"
    };
    let bob = mastodon(&srv, &m.url(), "bob", false);
    let r = chat(&srv, &bob, "I follow alice", false);
    assert_eq!(r.status, 202, "{r:?}");
    let carl = mastodon(&srv, &m.url(), carol_like, false);
    let r = chat(&srv, &carl, "I do not", false);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("follow"), "{}", r.body);
    let owner = mastodon(&srv, &m.url(), "alice", false);
    assert_eq!(
        chat(&srv, &owner, "the owner may always", false).status,
        202
    );
    let anon = call(
        "POST",
        &srv.url("/api/channels/alice/chat"),
        None,
        None,
        Some(&json!({"nick": "anna", "text": "hi"})),
    );
    assert_eq!(anon.status, 401);
}

#[test]
fn chat_mode_followers_on_bluesky() {
    let b = BlueskyServer::start();
    let u = b.url();
    {
        // A third account that does not follow the owner.
        let mut st = b.lock();
        let mut a = st.accounts[0].clone();
        a.did = "did:plc:stranger00000000000000".into();
        a.handle = "stranger.test".into();
        a.display_name = "Stan Stranger".into();
        st.accounts.push(a);
    }
    b.follow(BSKY_VIEWER, "owner.test");
    let srv = server(
        &format!("owners = [\"bluesky:{}\"]", b.did("owner.test")),
        &format!(
            "[chat]\nmode = \"followers\"\n[auth.bluesky]\nservice = \"{u}\"\nplc_directory = \"{u}\"\nappview = \"{u}\"\n"
        ),
        &[],
    );
    let sign_in = |handle: &str| {
        let r = call(
            "POST",
            &srv.url("/auth/bluesky/app-password"),
            None,
            Some(&origin(&srv)),
            Some(&json!({"handle": handle, "app_password": BSKY_APP_PASSWORD})),
        );
        assert_eq!(r.status, 200, "{handle}: {r:?}");
        format!("{SESSION}={}", r.cookie(SESSION).expect("session"))
    };
    let viewer = sign_in(BSKY_VIEWER);
    assert_eq!(chat(&srv, &viewer, "I follow the owner", false).status, 202);
    let stranger = sign_in("stranger.test");
    let r = chat(&srv, &stranger, "I do not", false);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("follow"), "{}", r.body);
    let owner = sign_in("owner.test");
    assert_eq!(chat(&srv, &owner, "the owner may", false).status, 202);
}

#[test]
fn chat_mode_followers_on_x() {
    // carol (2244994945) owns the channel; dave follows her at first.
    let (x, srv) = x_setup_with(
        false,
        "owners = [\"x:2244994945\"]",
        "[chat]\nmode = \"followers\"\n",
    );
    if let Some(d) = x.lock().users.get_mut("dave") {
        d.following.push("2244994945".into());
    }
    let dave = sign_in(&srv, "x", "return=/watch/alice", "dave");
    assert_eq!(chat(&srv, &dave, "I follow carol", false).status, 202);
    assert!(
        x.token_scopes("dave").iter().any(|s| s == "follows.read"),
        "followers mode asks for follows.read"
    );
    // A user who does not follow: 403. (A fresh X account, so the cached answer for dave is
    // not what is asked.)
    x.lock().users.insert(
        "erin".into(),
        stand_in::x_server::User {
            id: "99".into(),
            username: "erin".into(),
            name: "Erin E.".into(),
            following: Vec::new(),
        },
    );
    let erin = sign_in(&srv, "x", "return=/watch/alice", "erin");
    let r = chat(&srv, &erin, "I do not", false);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("follow"), "{}", r.body);
    let carol = sign_in(&srv, "x", "return=/watch/alice", "carol");
    assert_eq!(chat(&srv, &carol, "the owner may", false).status, 202);
}

#[test]
fn identity_bans_hold_under_any_nick_and_owners_moderate() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server(&owner_line(&m, "alice"), "", &[]);
    let owner = mastodon(&srv, &m.url(), "alice", false);
    let bob = mastodon(&srv, &m.url(), "bob", false);
    let first = chat(&srv, &bob, "first", false).json()["id"]
        .as_u64()
        .expect("id");
    let bans = srv.url("/api/admin/channels/alice/bans");
    let ident = json!({"identity": format!("mastodon:{}", m.account_url("bob"))});
    // A signed-in viewer who is not an owner may not moderate; the owner may, from our pages.
    assert_eq!(
        call("POST", &bans, Some(&bob), Some(&origin(&srv)), Some(&ident)).status,
        403
    );
    assert_eq!(
        call(
            "POST",
            &bans,
            Some(&owner),
            Some("https://evil.example"),
            Some(&ident)
        )
        .status,
        403,
        "cross-origin with the owner's cookie"
    );
    let r = call(
        "POST",
        &bans,
        Some(&owner),
        Some(&origin(&srv)),
        Some(&ident),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["deleted_messages"],
        1,
        "bob's message went with the ban"
    );
    let listed = call("GET", &bans, Some(&owner), None, None).json();
    assert_eq!(listed["identities"][0], ident["identity"]);
    let r = chat(&srv, &bob, "back again", false);
    assert_eq!(r.status, 403, "banned identity: {r:?}");
    // Bob signs in again: still the same identity, still banned.
    let bob2 = mastodon(&srv, &m.url(), "bob", false);
    assert_eq!(chat(&srv, &bob2, "new session", false).status, 403);
    // Owners of alice do not moderate bob's channel.
    let other = srv.url("/api/admin/channels/bob/slow-mode");
    assert_eq!(
        call(
            "PUT",
            &other,
            Some(&owner),
            Some(&origin(&srv)),
            Some(&json!({"seconds": 5}))
        )
        .status,
        403
    );
    let own = srv.url("/api/admin/channels/alice/slow-mode");
    assert_eq!(
        call(
            "PUT",
            &own,
            Some(&owner),
            Some(&origin(&srv)),
            Some(&json!({"seconds": 0}))
        )
        .status,
        200
    );
    // The owner deletes a message; lifts the ban.
    let anon = call(
        "POST",
        &srv.url("/api/channels/alice/chat"),
        None,
        None,
        Some(&json!({"nick": "anna", "text": "delete me"})),
    );
    let id = anon.json()["id"].as_u64().expect("id");
    assert_ne!(id, first);
    let del = srv.url(&format!("/api/admin/channels/alice/chat/{id}"));
    assert_eq!(
        call("DELETE", &del, Some(&owner), Some(&origin(&srv)), None).status,
        200
    );
    assert_eq!(
        call(
            "DELETE",
            &bans,
            Some(&owner),
            Some(&origin(&srv)),
            Some(&ident)
        )
        .status,
        200
    );
    assert_eq!(chat(&srv, &bob2, "unbanned", false).status, 202);
    // Server-wide routes take signed-in admins only.
    assert_eq!(
        call(
            "GET",
            &srv.url("/api/admin/streams"),
            Some(&owner),
            None,
            None
        )
        .status,
        403
    );
}

/// The X stand-in and onair with `[auth.x]` pointing at it; the stand-in's registered
/// redirect_uri is onair's callback.
fn x_setup(cross_post: bool) -> (XServer, TestServer) {
    x_setup_with(cross_post, "", "")
}

/// [`x_setup`] with lines for alice's channel and more config.
fn x_setup_with(cross_post: bool, alice_keys: &str, extra: &str) -> (XServer, TestServer) {
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

#[test]
fn x_sign_in_posts_only_when_allowed() {
    let (x, srv) = x_setup(false);
    let cookie = sign_in(&srv, "x", "cross_post=1&return=/watch/alice", "carol");
    let who = me(&srv, Some(&cookie)).json();
    assert_eq!(who["provider"], "x");
    assert_eq!(who["id"], "2244994945");
    assert_eq!(who["can_cross_post"], false, "auth.x.cross_post is off");
    let r = chat(&srv, &cookie, "no tweet please", true);
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["cross_post"]["state"], "refused");
    assert!(x.lock().tweets.is_empty());
}

#[test]
fn x_cross_post_when_enabled() {
    let (x, srv) = x_setup(true);
    let cookie = sign_in(&srv, "x", "cross_post=1", "carol");
    assert_eq!(me(&srv, Some(&cookie)).json()["can_cross_post"], true);
    assert_eq!(
        chat(&srv, &cookie, "to X", true).json()["cross_post"]["state"],
        "queued"
    );
    wait_until(WAIT, "the tweet", || !x.lock().tweets.is_empty());
    let (user, text) = x.lock().tweets[0].clone();
    assert_eq!(user, "carol");
    assert!(
        text.starts_with("to X\n\nWatching alice live: http://127.0.0.1:"),
        "{text}"
    );
}

#[test]
fn bluesky_app_password_over_http() {
    let b = BlueskyServer::start();
    let u = b.url();
    let srv = server(
        "",
        &format!("[auth.bluesky]\nservice = \"{u}\"\nplc_directory = \"{u}\"\nappview = \"{u}\"\n"),
        &[],
    );
    assert_eq!(me(&srv, None).json()["sign_in"]["bluesky"], "app_password");
    let r = call(
        "POST",
        &srv.url("/auth/bluesky/app-password"),
        None,
        Some(&origin(&srv)),
        Some(&json!({"handle": BSKY_VIEWER, "app_password": "wrong-wrong-wrong-wrong"})),
    );
    assert_eq!(r.status, 401, "{r:?}");
    let r = call(
        "POST",
        &srv.url("/auth/bluesky/app-password"),
        None,
        Some(&origin(&srv)),
        Some(
            &json!({"handle": BSKY_VIEWER, "app_password": BSKY_APP_PASSWORD, "cross_post": true}),
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["id"], b.did(BSKY_VIEWER));
    let cookie = format!("{SESSION}={}", r.cookie(SESSION).expect("session"));
    assert_eq!(
        chat(&srv, &cookie, "from bluesky", true).json()["cross_post"]["state"],
        "queued"
    );
    wait_until(WAIT, "the post", || !b.posts().is_empty());
    let p = &b.posts()[0];
    assert_eq!(p.auth, "bearer");
    assert_eq!(p.record["embed"]["$type"], "app.bsky.embed.external");
    assert!(p.record["text"]
        .as_str()
        .unwrap_or_default()
        .starts_with("from bluesky"));
    // The app password is not kept anywhere.
    let mut stored = Vec::new();
    for f in std::fs::read_dir(&srv.data_dir)
        .expect("data dir")
        .flatten()
    {
        stored.extend(std::fs::read(f.path()).unwrap_or_default());
    }
    assert!(!stored
        .windows(BSKY_APP_PASSWORD.len())
        .any(|w| w == BSKY_APP_PASSWORD.as_bytes()));
    assert!(!srv.logs().contains(BSKY_APP_PASSWORD));
    // Bluesky OAuth needs an https public_url: refused here with a clear reason.
    let r = start(&srv, "bluesky", &format!("handle={BSKY_VIEWER}"));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("app password"), "{}", r.body);
}

#[test]
fn bluesky_oauth_over_https_with_par_and_dpop() {
    let b = BlueskyServer::start();
    let u = b.url();
    let dir = temp_dir("bsky-tls");
    let (cert, key) = self_signed_cert(&dir);
    let srv = TestServer::start_public(
        "",
        "",
        &format!(
            "[auth]\nallow_private_hosts = true\n[auth.bluesky]\nservice = \"{u}\"\nplc_directory = \"{u}\"\nappview = \"{u}\"\n"
        ),
        Some((&cert, &key)),
        &[],
    );
    let base = format!("https://{}", srv.http);
    let curl = |args: &[&str]| -> (String, String) {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-D", "-", "-o", "/dev/stdout"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_string(), body.to_string())
    };
    let header = |head: &str, name: &str| -> Vec<String> {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    let (_, meta) = curl(&[&format!("{base}/auth/bluesky/client-metadata.json")]);
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("metadata");
    assert_eq!(
        meta["client_id"],
        format!("{base}/auth/bluesky/client-metadata.json")
    );
    let (head, _) = curl(&[&format!(
        "{base}/auth/bluesky/start?handle={BSKY_VIEWER}&cross_post=1&return=/watch/alice"
    )]);
    assert!(
        head.starts_with("HTTP/1.1 302") || head.starts_with("HTTP/2 302"),
        "{head}"
    );
    let login = header(&head, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("__Host-onair_login="))
        .expect("__Host- login cookie over https");
    assert!(login.contains("Secure"), "{login}");
    let login = login.split(';').next().expect("pair").to_string();
    let consent = header(&head, "location").pop().expect("location");
    assert!(
        consent.contains("request_uri=urn"),
        "PAR was used: {consent}"
    );
    assert_eq!(
        b.lock().metadata_fetched,
        [format!("{base}/auth/bluesky/client-metadata.json")]
    );
    let back = stand_in::oauth::approve(&consent, BSKY_VIEWER, "approve").expect("approved");
    assert!(back.contains("iss="), "{back}");
    let (head, _) = curl(&["-H", &format!("Cookie: {login}"), &back]);
    let session = header(&head, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("__Host-onair_session="))
        .unwrap_or_else(|| panic!("session cookie: {head}\n{}", srv.logs()));
    assert!(session.contains("Secure") && session.contains("HttpOnly"));
    let cookie = session.split(';').next().expect("pair").to_string();
    let (_, me) = curl(&[
        "-H",
        &format!("Cookie: {cookie}"),
        &format!("{base}/api/me"),
    ]);
    let me: serde_json::Value = serde_json::from_str(&me).expect("me");
    assert_eq!(me["id"], b.did(BSKY_VIEWER));
    assert_eq!(me["can_cross_post"], true);
    // The server rotates its nonce: the next proofs carry a stale one, are refused with
    // `use_dpop_nonce`, and onair retries with the new one.
    let before = b.lock().nonce_challenges;
    assert!(
        before.1 >= 1,
        "PAR and token requests met a nonce challenge"
    );
    b.rotate_nonce();
    let (_, posted) = curl(&[
        "-H",
        &format!("Cookie: {cookie}"),
        "-H",
        &format!("Origin: {base}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"text": "via OAuth", "cross_post": true}"#,
        &format!("{base}/api/channels/alice/chat"),
    ]);
    assert!(posted.contains("\"queued\""), "{posted}");
    wait_until(WAIT, "the DPoP-bound post", || !b.posts().is_empty());
    assert_eq!(b.posts()[0].auth, "dpop");
    assert!(
        b.lock().nonce_challenges.0 > before.0,
        "the post met the rotated nonce and was retried: {:?}",
        b.lock().nonce_challenges
    );
    assert!(
        b.lock().dpop_refusals.is_empty(),
        "{:?}",
        b.lock().dpop_refusals
    );
}

#[test]
fn owner_posts_the_go_live_from_their_own_account() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server(&owner_line(&m, "alice"), "", &[]);
    let url = srv.url("/api/admin/channels/alice/owner-announce");
    // Only the owner, signed in with the posting permission, can turn it on.
    let bob = mastodon(&srv, &m.url(), "bob", true);
    let on = json!({"enabled": true});
    assert_eq!(
        call("PUT", &url, Some(&bob), Some(&origin(&srv)), Some(&on)).status,
        403
    );
    let no_post = mastodon(&srv, &m.url(), "alice", false);
    let r = call("PUT", &url, Some(&no_post), Some(&origin(&srv)), Some(&on));
    assert_eq!(r.status, 403, "without the posting permission: {r:?}");
    let alice = mastodon(&srv, &m.url(), "alice", true);
    assert_eq!(
        call(
            "PUT",
            &url,
            Some(&alice),
            Some("https://evil.example"),
            Some(&on)
        )
        .status,
        403
    );
    let r = call("PUT", &url, Some(&alice), Some(&origin(&srv)), Some(&on));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["account"], "@alice@127.0.0.1");
    // Going live posts the go-live text on alice's own account.
    let _g = media_lock();
    let mut p = push(&srv.rtmp_url(ALICE_KEY), PushOpts::default());
    wait_until(Duration::from_secs(30), "the owner's go-live post", || {
        m.statuses().iter().any(|s| s.account == "alice")
    });
    p.stop();
    let st: Vec<_> = m
        .statuses()
        .into_iter()
        .filter(|s| s.account == "alice")
        .collect();
    assert_eq!(st.len(), 1, "{st:?}");
    assert!(st[0].status.contains("/watch/alice"), "{}", st[0].status);
    assert!(st[0].status.contains("Alice's debate"), "{}", st[0].status);
    assert_eq!(st[0].visibility, "public");
    // Signing out ends it.
    call(
        "POST",
        &srv.url("/auth/logout"),
        Some(&alice),
        Some(&origin(&srv)),
        None,
    );
    let owner_again = mastodon(&srv, &m.url(), "alice", false);
    assert_eq!(
        call("GET", &url, Some(&owner_again), None, None).json()["enabled"],
        false
    );
}

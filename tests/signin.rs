//! Signing in against the real binary and the stand-ins (tests/stand_in/): the Mastodon flow
//! end to end with chat under the identity and a cross-post arriving with the right text and
//! visibility; X (cross-posting only when the server allows it) and Bluesky (app password over
//! http, atproto OAuth with PAR and DPoP over https); an owner's go-live post from their own
//! account. The attacks are in tests/signin_security.rs, chat modes and bans in
//! tests/signin_chat.rs.

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

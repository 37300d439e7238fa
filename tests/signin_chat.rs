//! Chat with identities against the real binary and the stand-ins: `chat.mode` signed_in and
//! followers (Mastodon relationships, Bluesky getRelationships, X following), identity bans
//! that hold under any nick, owners moderating their channel only.

mod common;
#[path = "common/signin.rs"]
mod signin;
mod stand_in;

use serde_json::json;
use signin::*;
use stand_in::bluesky_server::{BlueskyServer, BSKY_APP_PASSWORD, BSKY_VIEWER};
use stand_in::mastodon_server::{MastodonOpts, MastodonServer};

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

//! A signed-in owner in the studio (issue 14, point 5): `/api/me` tells the page the viewer
//! owns the channel (the page then hides the `Stream key` field and sends the session cookie),
//! WHIP takes that cookie with our `Origin` instead of the key, and the broadcast plays and
//! ends. No credential, a signed-in viewer who is not an owner, and the owner's cookie sent
//! from another origin are refused; the key is in no page, answer or log line.

mod common;
#[path = "common/signin.rs"]
mod signin;
mod stand_in;

use std::time::Duration;

use common::whip::{media_file, WhipClient, WhipOpts};
use common::*;
use serde_json::json;
use signin::*;
use stand_in::mastodon_server::{MastodonOpts, MastodonServer};

fn opts() -> WhipOpts {
    WhipOpts {
        media: media_file("pattern", 6, None, None),
        seconds: 30.0,
        trickle: false,
    }
}

/// The headers the studio's fetches carry for a signed-in owner: the cookie and `Origin`.
fn with_cookie(cookie: &str, origin: &str) -> Vec<(String, String)> {
    vec![
        ("Cookie".to_string(), cookie.to_string()),
        ("Origin".to_string(), origin.to_string()),
    ]
}

#[test]
fn an_owner_goes_live_from_the_studio_without_the_key() {
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = server(&owner_line(&m, "alice"), "", &[]);
    let owner = mastodon(&srv, &m.url(), "alice", false);
    let bob = mastodon(&srv, &m.url(), "bob", false);
    assert_eq!(me(&srv, Some(&owner)).json()["owner_of"], json!(["alice"]));
    assert_eq!(me(&srv, Some(&bob)).json()["owner_of"], json!([]));
    let page = call("GET", &srv.url("/studio/alice"), Some(&owner), None, None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"owner-note\""), "{}", page.body);
    assert!(!page.body.contains(ALICE_KEY), "the key is not in the page");
    let js = call("GET", &srv.url("/assets/studio.js"), None, None, None);
    assert!(
        js.body.contains("useSession()"),
        "the studio switches to the session"
    );

    let _m = media_lock();
    let base = srv.url("");
    for (who, auth, status) in [
        ("no credential", vec![], 401),
        (
            "a signed-in non-owner",
            with_cookie(&bob, &origin(&srv)),
            401,
        ),
        (
            "the owner's cookie from another site",
            with_cookie(&owner, "https://evil.example"),
            403,
        ),
    ] {
        match WhipClient::publish_as(&base, "alice", &auth, opts()) {
            Err((s, body)) => assert_eq!(s, status, "{who}: {body}"),
            Ok(_) => panic!("{who}: accepted"),
        }
    }
    // Another channel's owner? alice owns only alice: bob's channel refuses her.
    match WhipClient::publish_as(&base, "bob", &with_cookie(&owner, &origin(&srv)), opts()) {
        Err((s, body)) => assert_eq!(s, 401, "{body}"),
        Ok(_) => panic!("alice published to bob's channel"),
    }

    let client =
        WhipClient::publish_as(&base, "alice", &with_cookie(&owner, &origin(&srv)), opts())
            .expect("201 for the owner");
    client.wait_connected(Duration::from_secs(15));
    srv.wait_segments("alice", "source", 2, Duration::from_secs(40));
    assert_eq!(srv.json("/api/channels/alice")["live"], true);
    srv.wait_log("WHIP request by a signed-in owner", Duration::from_secs(1));
    // The owner moderates from the same page with the same cookie.
    let slow = call(
        "PUT",
        &srv.url("/api/admin/channels/alice/slow-mode"),
        Some(&owner),
        Some(&origin(&srv)),
        Some(&json!({"seconds": 0})),
    );
    assert_eq!(slow.status, 200, "{slow:?}");
    assert_eq!(client.stop(), 200, "DELETE with the owner's cookie");
    wait_for(Duration::from_secs(15), "the broadcast to end", || {
        (srv.json("/api/channels/alice")["live"] == false).then_some(())
    });
    assert!(!srv.logs().contains(ALICE_KEY), "the key is in no log line");
}

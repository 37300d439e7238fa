//! What the studio page relies on, over real HTTP against the binary: the page itself (served
//! with its modules, no secret in it), channel-scoped admin routes that take that channel's
//! stream key as the Bearer token (and only for that channel; server-wide routes still need
//! `server.admin_token`), and the studio's event stream not counting as a viewer.

mod common;

use common::api::{bearer, request};
use common::sse::*;
use common::*;
use serde_json::json;

const TOKEN: &str = "studio-admin-token-0123456789";

fn post_chat(srv: &TestServer, nick: &str, text: &str) -> u64 {
    let a = request(
        srv,
        "POST",
        "/api/channels/alice/chat",
        Some(&json!({"nick": nick, "text": text}).to_string()),
        &[],
    );
    assert_eq!(a.status, 202, "{:?}", a.body);
    a.body["id"].as_u64().expect("id")
}

#[test]
fn studio_page_is_served_with_its_modules_and_no_secret() {
    let srv = TestServer::start("[server]\npublic_url = \"https://live.example.org\"\n");
    let r = ureq::get(&srv.url("/studio/alice")).call().expect("studio");
    assert_eq!(r.status(), 200);
    let csp = r
        .header("content-security-policy")
        .unwrap_or("")
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = r.into_string().expect("body");
    for needle in [
        "<label for=\"stream-key\">Stream key</label>",
        "type=\"password\"",
        "<label for=\"camera\">Camera</label>",
        "<label for=\"microphone\">Microphone</label>",
        ">Go live</button>",
        ">End broadcast</button>",
        "type=\"module\" src=\"/assets/studio.js\"",
        "https://live.example.org/watch/alice",
    ] {
        assert!(page.contains(needle), "studio page lacks {needle}");
    }
    assert!(!page.contains(ALICE_KEY), "the page carries the stream key");
    // Every module the page imports is served, as JavaScript.
    let mut pending = vec!["studio.js".to_string()];
    let mut seen = Vec::new();
    while let Some(name) = pending.pop() {
        if seen.contains(&name) {
            continue;
        }
        let r = ureq::get(&srv.url(&format!("/assets/{name}")))
            .call()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("text/javascript"),
            "{name}"
        );
        let js = r.into_string().expect("module");
        for line in js.lines().filter(|l| l.starts_with("import ")) {
            let dep = line
                .rsplit("'./")
                .next()
                .and_then(|t| t.split('\'').next())
                .expect("import path");
            pending.push(dep.to_string());
        }
        seen.push(name);
    }
    assert!(seen.len() >= 6, "{seen:?}");
    let (status, _) = srv.get("/assets/studio.css");
    assert_eq!(status, 200);
    assert_eq!(srv.get("/studio/nobody").0, 404);
    assert_eq!(srv.get("/studio/..%2Falice").0, 404);
}

#[test]
fn channel_admin_routes_take_that_channels_key() {
    let srv = TestServer::start(&format!("[server]\nadmin_token = \"{TOKEN}\"\n"));
    let bans = "/api/admin/channels/alice/bans";
    let slow = "/api/admin/channels/alice/slow-mode";

    // Alice's key moderates alice's chat: delete, ban, list, unban, slow mode, kick.
    let id = post_chat(&srv, "ann", "hello");
    let a = bearer(
        &srv,
        ALICE_KEY,
        "DELETE",
        &format!("/api/admin/channels/alice/chat/{id}"),
        None,
    );
    assert_eq!(a.status, 200, "{:?}", a.body);
    post_chat(&srv, "troll", "spam");
    let a = bearer(
        &srv,
        ALICE_KEY,
        "POST",
        bans,
        Some(json!({"nick": "troll"})),
    );
    assert_eq!(
        (a.status, &a.body["deleted_messages"]),
        (200, &json!(1)),
        "{:?}",
        a.body
    );
    let a = bearer(&srv, ALICE_KEY, "GET", bans, None);
    assert_eq!(a.body["nicks"], json!(["troll"]), "{:?}", a.body);
    let a = bearer(
        &srv,
        ALICE_KEY,
        "DELETE",
        bans,
        Some(json!({"nick": "troll"})),
    );
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = bearer(&srv, ALICE_KEY, "PUT", slow, Some(json!({"seconds": 20})));
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = bearer(&srv, ALICE_KEY, "GET", slow, None);
    assert_eq!(
        (a.status, &a.body["seconds"]),
        (200, &json!(20)),
        "{:?}",
        a.body
    );
    let a = bearer(&srv, ALICE_KEY, "PUT", slow, Some(json!({"seconds": 0})));
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = bearer(
        &srv,
        ALICE_KEY,
        "POST",
        "/api/admin/channels/alice/kick",
        None,
    );
    assert_eq!(
        (a.status, &a.body["kicked"]),
        (200, &json!(false)),
        "{:?}",
        a.body
    );

    // Bob's key is refused on every one of alice's routes, with 403.
    let id = post_chat(&srv, "ann", "keep me");
    for (method, path, body) in [
        (
            "DELETE",
            format!("/api/admin/channels/alice/chat/{id}"),
            None,
        ),
        ("POST", bans.to_string(), Some(json!({"nick": "ann"}))),
        ("GET", bans.to_string(), None),
        ("PUT", slow.to_string(), Some(json!({"seconds": 0}))),
        ("GET", slow.to_string(), None),
        ("POST", "/api/admin/channels/alice/kick".to_string(), None),
    ] {
        let a = bearer(&srv, BOB_KEY, method, &path, body);
        assert_eq!(a.status, 403, "{method} {path}: {:?}", a.body);
    }
    // ... while it works on bob's own.
    let a = bearer(&srv, BOB_KEY, "GET", "/api/admin/channels/bob/bans", None);
    assert_eq!(a.status, 200, "{:?}", a.body);
    // A wrong key, or none: 401 with a Bearer challenge.
    for headers in [
        vec![],
        vec![("Authorization", "Bearer alice-secret-key-12")],
    ] {
        let a = request(&srv, "GET", bans, None, &headers);
        assert_eq!(a.status, 401, "{headers:?}");
        assert!(a.www_authenticate.is_some_and(|v| v.starts_with("Bearer")));
    }
    // A stream key opens no server-wide route; the admin token still opens everything.
    assert_eq!(
        bearer(&srv, ALICE_KEY, "GET", "/api/admin/streams", None).status,
        401
    );
    assert_eq!(
        bearer(&srv, TOKEN, "GET", "/api/admin/streams", None).status,
        200
    );
    assert_eq!(bearer(&srv, TOKEN, "GET", bans, None).status, 200);
    let (status, body) = srv.get("/api/channels/alice");
    assert_eq!(status, 200, "{body}");
    // The keys never reach the logs.
    let logs = srv.logs();
    assert!(
        !logs.contains(ALICE_KEY) && !logs.contains(BOB_KEY),
        "a key is in the logs"
    );
}

#[test]
fn channel_key_works_without_an_admin_token() {
    // The default install has no admin token: server-wide routes are off (404), the studio
    // still moderates with the channel's key.
    let srv = TestServer::start("");
    let a = bearer(
        &srv,
        ALICE_KEY,
        "PUT",
        "/api/admin/channels/alice/slow-mode",
        Some(json!({"seconds": 5})),
    );
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        bearer(&srv, ALICE_KEY, "GET", "/api/admin/streams", None).status,
        404
    );
    let a = request(&srv, "GET", "/api/admin/channels/alice/bans", None, &[]);
    assert_eq!(a.status, 401, "{:?}", a.body);
    let a = bearer(&srv, "", "GET", "/api/admin/channels/alice/bans", None);
    assert_eq!(a.status, 401, "{:?}", a.body);
}

#[test]
fn the_studio_event_stream_is_not_a_viewer() {
    let srv = TestServer::start("");
    let studio = Sse::open_path(&srv, "/api/channels/alice/events?role=studio", None, &[]);
    assert_eq!(studio.status, 200);
    assert_eq!(studio.next_event("viewers").json()["viewers"], 0);
    let viewer = Sse::open(&srv, "alice", None);
    assert_eq!(viewer.next_event("viewers").json()["viewers"], 1);
    // The studio hears the new count.
    let seen = studio.next_where(std::time::Duration::from_secs(10), "viewers 1", |e| {
        e.event == "viewers" && e.json()["viewers"] == 1
    });
    assert_eq!(seen.json()["viewers"], 1);
}

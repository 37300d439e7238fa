//! Chat end to end against the real binary: posting, the event stream (read as a browser's
//! EventSource does, over plain HTTP), resume with Last-Event-ID, moderation, limits, admin
//! authorization, live/offline from a real ffmpeg push and the viewer count.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::api::{admin, post_chat, request, ADMIN_TOKEN};
use common::sse::*;
use common::*;
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(1);
const TOKEN: &str = ADMIN_TOKEN;

#[test]
fn messages_reach_subscribers_and_resume_replays_what_was_missed() {
    let srv = TestServer::start("");
    let a = Sse::open(&srv, "alice", None);
    assert_eq!(a.status, 200);
    assert!(
        a.content_type.starts_with("text/event-stream"),
        "{}",
        a.content_type
    );
    // The current state comes first: offline (nobody pushes) and the viewer count.
    let off = a.next_event("offline");
    assert!(off.id.is_some(), "every event has an id");
    assert!(a.next_event("viewers").json()["viewers"].as_u64() >= Some(1));

    let first = post_chat(&srv, "alice", "ann", "hello, world");
    assert_eq!(first.status, 202, "{:?}", first.body);
    let first_id = first.body["id"].as_u64().expect("id");
    assert_eq!(first.body["nick"], "ann");
    assert!(first.body["ts"].as_str().is_some_and(|t| t.ends_with('Z')));

    let got = a.next_event("chat");
    assert_eq!(got.id.as_deref(), Some(first_id.to_string().as_str()));
    let m = got.json();
    assert_eq!(
        (m["id"].as_u64(), m["nick"].as_str(), m["text"].as_str()),
        (Some(first_id), Some("ann"), Some("hello, world"))
    );
    assert_eq!(m["ts"], first.body["ts"]);

    let second = post_chat(&srv, "alice", "bea", "second");
    assert_eq!(second.status, 202);
    let second_id = second.body["id"].as_u64().expect("id");
    assert!(second_id > first_id);
    assert_eq!(a.next_event("chat").json()["text"], "second");

    // A client that saw the first message resumes: it gets the second only.
    let resumed = Sse::open(&srv, "alice", Some(&first_id.to_string()));
    let chats: Vec<Value> = resumed
        .drain_for(SECS)
        .iter()
        .filter(|e| e.event == "chat")
        .map(Event::json)
        .collect();
    assert_eq!(chats.len(), 1, "{chats:?}");
    assert_eq!(chats[0]["text"], "second");

    // A new client gets the history.
    let fresh = Sse::open(&srv, "alice", None);
    let texts: Vec<String> = fresh
        .drain_for(SECS)
        .iter()
        .filter(|e| e.event == "chat")
        .map(|e| e.json()["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(texts, ["hello, world", "second"]);

    // The page's hand-made reconnect carries the id in the query instead of the header.
    let by_query = {
        let agent = ureq::AgentBuilder::new().timeout_read(3 * SECS).build();
        let r = agent
            .get(&srv.url(&format!(
                "/api/channels/alice/events?last_event_id={first_id}"
            )))
            .call()
            .expect("events");
        let mut body = String::new();
        let mut reader = BufReader::new(r.into_reader());
        while let Ok(n) = reader.read_line(&mut body) {
            if n == 0 || body.contains("event: viewers") {
                break;
            }
        }
        body
    };
    assert!(by_query.contains("\"second\""), "{by_query}");
    assert!(!by_query.contains("hello, world"), "{by_query}");

    // Operators see the chat in /metrics.
    let (status, metrics) = srv.get("/metrics");
    assert_eq!(status, 200);
    for line in [
        "onair_chat_messages_total{channel=\"alice\"} 2",
        "onair_chat_subscribers{channel=\"alice\"}",
        "onair_viewers{channel=\"alice\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }

    assert_eq!(Sse::open(&srv, "nobody", None).status, 404);
    assert_eq!(post_chat(&srv, "nobody", "ann", "x").status, 404);
}

#[test]
fn input_is_validated_and_rate_limited() {
    let srv = TestServer::start(
        "[chat]\nburst = 2\nrate_per_second = 0.2\nmax_message_chars = 20\nmax_nick_chars = 8\nblocked_words = [\"darn\"]\n",
    );
    let post = |body: &str| request(&srv, "POST", "/api/channels/alice/chat", Some(body), &[]);
    let cases = [
        ("not json", 400),
        ("{\"nick\": \"ann\"}", 400),
        ("{\"nick\": \"\", \"text\": \"hi\"}", 400),
        ("{\"nick\": \"ann\", \"text\": \"   \"}", 400),
        ("{\"nick\": \"<script>\", \"text\": \"hi\"}", 400),
        ("{\"nick\": \"waytoolongnick\", \"text\": \"hi\"}", 400),
        (
            "{\"nick\": \"ann\", \"text\": \"123456789012345678901\"}",
            413,
        ),
    ];
    for (body, want) in cases {
        let a = post(body);
        assert_eq!(a.status, want, "{body}: {:?}", a.body);
        assert!(a.body["error"].as_str().is_some(), "JSON error for {body}");
    }
    let huge = json!({"nick": "ann", "text": "x".repeat(20_000)}).to_string();
    assert_eq!(post(&huge).status, 413);

    // The word filter masks; markup is kept as text.
    let a = post_chat(&srv, "alice", "ann", "oh darn <b>it</b>");
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["text"], "oh **** <b>it</b>");

    // burst = 2: the second goes through, the third is limited with Retry-After.
    assert_eq!(post_chat(&srv, "alice", "ann", "two").status, 202);
    let limited = post_chat(&srv, "alice", "ann", "three");
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    let retry: u64 = limited
        .retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=5).contains(&retry), "{retry}");
    // Another nick has its own bucket; the channel's other users are not affected.
    assert_eq!(post_chat(&srv, "alice", "bea", "hi").status, 202);
}

#[test]
fn admin_routes_need_the_token_and_moderate() {
    let srv = TestServer::start(&format!(
        "[server]\nadmin_token = \"{TOKEN}\"\n[chat]\ntrusted_proxies = [\"127.0.0.1\"]\n"
    ));
    let bans = "/api/admin/channels/alice/bans";
    let body = json!({"nick": "troll"}).to_string();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong-token")],
        vec![("Authorization", "Basic dGVzdA==")],
    ] {
        let a = request(&srv, "POST", bans, Some(&body), &headers);
        assert_eq!(a.status, 401, "{headers:?}");
        assert!(a.www_authenticate.is_some_and(|v| v.starts_with("Bearer")));
    }
    assert_eq!(post_chat(&srv, "alice", "troll", "still here").status, 202);

    let watcher = Sse::open(&srv, "alice", None);
    watcher.next_event("viewers");

    // Ban by nick: posts are refused and the nick's messages are deleted for everyone.
    let troll_msg = post_chat(&srv, "alice", "Troll", "spam spam");
    let troll_id = troll_msg.body["id"].as_u64().expect("id");
    let a = admin(&srv, "POST", bans, Some(json!({"nick": "troll"})));
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["deleted_messages"], 2);
    let del = watcher.next_where(10 * SECS, "delete of the troll's message", |e| {
        e.event == "delete" && e.json()["id"].as_u64() == Some(troll_id)
    });
    assert!(del.id.is_some());
    let refused = post_chat(&srv, "alice", "TROLL", "let me in");
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(
        admin(&srv, "DELETE", bans, Some(json!({"nick": "troll"}))).status,
        200
    );
    assert_eq!(post_chat(&srv, "alice", "troll", "sorry").status, 202);
    assert_eq!(
        admin(&srv, "DELETE", bans, Some(json!({"nick": "troll"}))).status,
        404
    );
    assert_eq!(
        admin(
            &srv,
            "POST",
            bans,
            Some(json!({"nick": "a", "address": "1.2.3.4"}))
        )
        .status,
        400
    );

    // Ban by address; X-Forwarded-For counts because 127.0.0.1 is a trusted proxy here.
    // The banned address's open event stream ends, a new one is refused, and the stream of
    // the address next door goes on.
    let via = |ip: &'static str| [("X-Forwarded-For", ip)];
    let troll = Sse::open_with(&srv, "alice", None, &via("198.51.100.7"));
    let neighbour = Sse::open_with(&srv, "alice", None, &via("198.51.100.8"));
    troll.next_event("viewers");
    neighbour.next_event("viewers");
    let a = admin(&srv, "POST", bans, Some(json!({"address": "198.51.100.7"})));
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(
        troll.ends_within(10 * SECS),
        "banned address's stream ended"
    );
    assert_eq!(
        Sse::open_with(&srv, "alice", None, &via("198.51.100.7")).status,
        403
    );
    let chat = "/api/channels/alice/chat";
    let msg = json!({"nick": "newnick", "text": "hi"}).to_string();
    assert_eq!(
        request(&srv, "POST", chat, Some(&msg), &via("198.51.100.7")).status,
        403
    );
    assert_eq!(
        request(&srv, "POST", chat, Some(&msg), &via("198.51.100.8")).status,
        202
    );
    neighbour.next_where(10 * SECS, "the neighbour's message", |e| {
        e.event == "chat" && e.json()["nick"] == "newnick"
    });

    // Deleting a message: subscribers get `delete`; new subscribers no longer see it.
    let victim = post_chat(&srv, "alice", "ann", "regrettable");
    let id = victim.body["id"].as_u64().expect("id");
    let path = format!("/api/admin/channels/alice/chat/{id}");
    assert_eq!(request(&srv, "DELETE", &path, None, &[]).status, 401);
    let a = admin(&srv, "DELETE", &path, None);
    assert_eq!(a.status, 200, "{:?}", a.body);
    watcher.next_where(10 * SECS, "delete event", |e| {
        e.event == "delete" && e.json()["id"].as_u64() == Some(id)
    });
    assert_eq!(admin(&srv, "DELETE", &path, None).status, 404);
    let fresh = Sse::open(&srv, "alice", None);
    let seen = fresh.drain_for(SECS);
    assert!(
        !seen.iter().any(|e| e.data.contains("regrettable")),
        "{seen:?}"
    );

    // Slow mode.
    let slow = "/api/admin/channels/alice/slow-mode";
    assert_eq!(
        request(&srv, "PUT", slow, Some("{\"seconds\": 30}"), &[]).status,
        401
    );
    assert_eq!(
        admin(&srv, "PUT", slow, Some(json!({"seconds": 30}))).status,
        200
    );
    assert_eq!(
        admin(&srv, "PUT", slow, Some(json!({"seconds": -1}))).status,
        400
    );
    let from = via("203.0.113.5");
    let one = json!({"nick": "sam", "text": "one"}).to_string();
    assert_eq!(request(&srv, "POST", chat, Some(&one), &from).status, 202);
    let two = request(&srv, "POST", chat, Some(&one), &from);
    assert_eq!(two.status, 429);
    let wait: u64 = two
        .retry_after
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((25..=30).contains(&wait), "{wait}");
    assert_eq!(
        admin(&srv, "PUT", slow, Some(json!({"seconds": 0}))).status,
        200
    );
    assert_eq!(request(&srv, "POST", chat, Some(&one), &from).status, 202);

    assert!(!srv.logs().contains(TOKEN), "token leaked into the logs");
}

#[test]
fn admin_api_is_off_without_a_token_and_forwarded_for_is_ignored_from_strangers() {
    let srv = TestServer::start("");
    let a = request(
        &srv,
        "GET",
        "/api/admin/streams",
        None,
        &[("Authorization", "Bearer ")],
    );
    assert_eq!(a.status, 404, "{:?}", a.body);
    // Channel-scoped routes stay: they also take the channel's stream key (tests/studio_api.rs).
    let a = request(
        &srv,
        "POST",
        "/api/admin/channels/alice/bans",
        Some("{\"nick\": \"x\"}"),
        &[("Authorization", "Bearer ")],
    );
    assert_eq!(a.status, 401, "{:?}", a.body);
    // 127.0.0.1 is not a trusted proxy here: a forged header does not change the address, so
    // a spammer cannot dodge the per-address limit by inventing addresses.
    let srv = TestServer::start("[chat]\nburst = 1\nrate_per_second = 0.01\n");
    let chat = "/api/channels/alice/chat";
    let mut statuses = Vec::new();
    for i in 0..6 {
        let nick = format!("n{i}");
        let forged = format!("192.0.2.{i}");
        let body = json!({"nick": nick, "text": "hi"}).to_string();
        statuses.push(
            request(
                &srv,
                "POST",
                chat,
                Some(&body),
                &[("X-Forwarded-For", &forged)],
            )
            .status,
        );
    }
    // The address bucket (4 x burst) stops nick rotation from one address.
    assert_eq!(statuses, [202, 202, 202, 202, 429, 429]);
}

#[test]
fn subscribers_are_capped_per_address_and_per_channel() {
    let srv = TestServer::start("[chat]\nmax_subscribers = 3\nmax_subscribers_per_address = 2\n");
    let a = Sse::open(&srv, "alice", None);
    let b = Sse::open(&srv, "alice", None);
    assert_eq!((a.status, b.status), (200, 200));
    let c = Sse::open(&srv, "alice", None);
    assert_eq!(c.status, 429);
    drop(a);
    // The slot frees once the server notices the closed stream (at its next write at the
    // latest); a new subscriber from the address then gets in.
    wait_for(20 * SECS, "a freed subscriber slot", || {
        let _ = post_chat(&srv, "alice", "ping", "wake the streams");
        let s = Sse::open(&srv, "alice", None);
        (s.status == 200).then_some(s)
    });
    // Other channels are separate.
    assert_eq!(Sse::open(&srv, "bob", None).status, 200);
}

#[test]
fn live_offline_and_viewers_follow_a_real_push() {
    let _g = media_lock();
    let srv = TestServer::start("");
    let s = Sse::open(&srv, "alice", None);
    s.next_event("offline");
    let pusher = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 8.0,
            ..Default::default()
        },
    );
    let live = s.next_where(30 * SECS, "live", |e| e.event == "live");
    assert_eq!(live.json()["channel"], "alice");
    assert!(live.json()["started_at"].as_str().is_some());

    // A player (this test, from 127.0.0.1, which also holds the event stream) counts once.
    srv.wait_segments("alice", "source", 1, 30 * SECS);
    let viewers = srv.json("/api/channels/alice")["viewers"].as_u64();
    assert_eq!(viewers, Some(1));
    let (ok, err) = pusher.wait(30 * SECS);
    assert!(ok, "{err}");
    let off = s.next_where(20 * SECS, "offline", |e| e.event == "offline");
    assert_eq!(off.json()["channel"], "alice");
    // A late subscriber is told the channel is offline and what happened before.
    let late = Sse::open(&srv, "alice", None);
    let evs = late.drain_for(SECS);
    assert!(evs.iter().any(|e| e.event == "live"), "{evs:?}");
    assert_eq!(
        evs.iter()
            .rev()
            .find(|e| e.event == "live" || e.event == "offline")
            .map(|e| e.event.as_str()),
        Some("offline")
    );
    drop(s);
    drop(late);
    // Viewers go down once the streams are closed and the player stopped asking.
    wait_for(30 * SECS, "viewers back to 0", || {
        let _ = post_chat(&srv, "alice", "ping", "wake the streams");
        (srv.json("/api/channels/alice")["viewers"].as_u64() == Some(0)).then_some(())
    });
}

#[test]
fn event_streams_end_when_their_channel_is_removed_and_at_shutdown() {
    let mut srv = TestServer::start("");
    let bob = Sse::open(&srv, "bob", None);
    let alice = Sse::open(&srv, "alice", None);
    bob.next_event("viewers");
    alice.next_event("viewers");
    let text = std::fs::read_to_string(&srv.config).expect("config");
    let bob_block = format!("[[channels]]\nname = \"bob\"\nkey = \"{BOB_KEY}\"\n");
    assert!(text.contains(&bob_block));
    std::fs::write(&srv.config, text.replace(&bob_block, "")).expect("write config");
    srv.signal("HUP");
    srv.wait_log("configuration reloaded", 10 * SECS);
    // Bob's stream ends within the housekeeping interval; alice's goes on.
    let deadline = Instant::now() + 10 * SECS;
    loop {
        match bob
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(None) => break,
            Ok(Some(_)) => {}
            Err(_) => panic!("bob's event stream did not end after the channel was removed"),
        }
    }
    assert_eq!(post_chat(&srv, "bob", "ann", "anyone?").status, 404);
    assert_eq!(post_chat(&srv, "alice", "ann", "still here").status, 202);
    assert_eq!(alice.next_event("chat").json()["text"], "still here");

    // SIGTERM: open event streams do not hold the shutdown up.
    let (status, took) = srv.terminate();
    assert!(status.success(), "{status:?}");
    assert!(took < 5 * SECS, "shutdown took {took:?}");
}

#[test]
fn bans_survive_a_restart_with_a_bans_file() {
    let dir = temp_dir("bans");
    let file = dir.join("bans.json");
    let config = format!(
        "[server]\nadmin_token = \"{TOKEN}\"\n[chat]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         bans_file = \"{}\"\n",
        file.display()
    );
    let bans = "/api/admin/channels/alice/bans";
    let via = [("X-Forwarded-For", "198.51.100.7")];
    let msg = json!({"nick": "someone", "text": "hi"}).to_string();
    {
        let srv = TestServer::start(&config);
        let listed = admin(&srv, "GET", bans, None);
        assert_eq!(listed.status, 200);
        assert_eq!(listed.body, json!({"nicks": [], "addresses": []}));
        assert_eq!(
            admin(&srv, "POST", bans, Some(json!({"nick": "Troll"}))).status,
            200
        );
        assert_eq!(
            admin(&srv, "POST", bans, Some(json!({"address": "198.51.100.7"}))).status,
            200
        );
        assert_eq!(
            admin(&srv, "GET", bans, None).body,
            json!({"nicks": ["troll"], "addresses": ["198.51.100.7"]})
        );
        assert_eq!(request(&srv, "GET", bans, None, &[]).status, 401);
    }
    // A new process reads them back.
    let srv = TestServer::start(&config);
    assert_eq!(post_chat(&srv, "alice", "TROLL", "back again").status, 403);
    let chat = "/api/channels/alice/chat";
    assert_eq!(request(&srv, "POST", chat, Some(&msg), &via).status, 403);
    assert_eq!(post_chat(&srv, "alice", "ann", "hello").status, 202);
    // Lifting one is saved too.
    assert_eq!(
        admin(&srv, "DELETE", bans, Some(json!({"nick": "troll"}))).status,
        200
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("bans file")).expect("json");
    assert_eq!(
        saved,
        json!({"alice": {"nicks": [], "addresses": ["198.51.100.7"]}})
    );
    assert_eq!(post_chat(&srv, "alice", "troll", "sorry").status, 202);
}

//! Debate mode end to end against the real binary: asking with the chat's rules and the
//! `[debate]` limits, one vote per viewer, the queue's order and states with one pinned
//! question, the speaking timer, bans, persistence across a restart, the events on the
//! channel's stream (in order, resumed with Last-Event-ID) and a vote flood that must neither
//! flood the stream nor delay chat. Viewers are told apart by `X-Forwarded-For` from the
//! trusted 127.0.0.1, as behind a proxy.

mod common;
#[path = "common/signin.rs"]
mod signin;
mod stand_in;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::api::{admin, bearer, request, Answer, ADMIN_TOKEN};
use common::sse::*;
use common::*;
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(1);

fn config(debate: &str) -> String {
    format!(
        "[server]\nadmin_token = \"{ADMIN_TOKEN}\"\n\
[chat]\ntrusted_proxies = [\"127.0.0.1\"]\nblocked_words = [\"darn\"]\n\
[debate]\n{debate}\n"
    )
}

fn ask(srv: &TestServer, ip: &str, nick: &str, text: &str) -> Answer {
    request(
        srv,
        "POST",
        "/api/channels/alice/questions",
        Some(&json!({"nick": nick, "text": text}).to_string()),
        &[("X-Forwarded-For", ip)],
    )
}

fn vote(srv: &TestServer, ip: &str, id: u64, add: bool) -> Answer {
    request(
        srv,
        if add { "POST" } else { "DELETE" },
        &format!("/api/channels/alice/questions/{id}/vote"),
        None,
        &[("X-Forwarded-For", ip)],
    )
}

fn list(srv: &TestServer, ip: &str) -> Value {
    let a = request(
        srv,
        "GET",
        "/api/channels/alice/questions",
        None,
        &[("X-Forwarded-For", ip)],
    );
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body
}

fn set_state(srv: &TestServer, id: u64, state: &str) -> Answer {
    admin(
        srv,
        "PUT",
        &format!("/api/admin/channels/alice/questions/{id}"),
        Some(json!({ "state": state })),
    )
}

fn id_of(a: &Answer) -> u64 {
    assert_eq!(a.status, 202, "{:?}", a.body);
    a.body["id"].as_u64().expect("question id")
}

fn ids(l: &Value) -> Vec<u64> {
    l["questions"]
        .as_array()
        .expect("questions")
        .iter()
        .map(|q| q["id"].as_u64().unwrap())
        .collect()
}

fn question(l: &Value, id: u64) -> &Value {
    l["questions"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["id"].as_u64() == Some(id)))
        .expect("question listed")
}

#[test]
fn asking_follows_the_chat_rules_and_the_debate_limits() {
    let srv = TestServer::start(&config(
        "max_question_chars = 40\nseconds_between_questions = 60\n",
    ));
    let a = ask(
        &srv,
        "198.51.100.1",
        "ann",
        "  What about the darn budget?  ",
    );
    let id = id_of(&a);
    let q = &a.body;
    assert_eq!(
        q["text"], "What about the **** budget?",
        "word filter, trimmed"
    );
    assert_eq!(q["nick"], "ann");
    assert_eq!(
        (q["votes"].as_u64(), q["state"].as_str()),
        (Some(0), Some("open"))
    );
    assert!(q["asked_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(q["author"].is_null());

    // One question per viewer per debate.seconds_between_questions.
    let again = ask(&srv, "198.51.100.1", "ann", "And another thing?");
    assert_eq!(again.status, 429, "{:?}", again.body);
    let retry: u64 = again.retry_after.expect("Retry-After").parse().unwrap();
    assert!((55..=60).contains(&retry), "{retry}");
    // Changing nick does not dodge it (the viewer is the address).
    assert_eq!(ask(&srv, "198.51.100.1", "bea", "Me again?").status, 429);

    let long = "x".repeat(41);
    let cases = [
        ("ann", "   ", 400),
        ("<b>", "Nick with markup?", 400),
        ("ann", long.as_str(), 413),
    ];
    for (i, (nick, text, want)) in cases.iter().enumerate() {
        let ip = format!("198.51.100.{}", 10 + i);
        let r = ask(&srv, &ip, nick, text);
        assert_eq!(r.status, *want, "{nick:?} {text:?}: {:?}", r.body);
        assert!(r.body["error"].as_str().is_some(), "{:?}", r.body);
    }
    // A refused question does not use the viewer's turn.
    id_of(&ask(&srv, "198.51.100.12", "ann", &"x".repeat(40)));
    // No nick: anonymous.
    let anon = ask(&srv, "198.51.100.13", "", "Who am I?");
    assert_eq!(anon.body["nick"], "anonymous");
    let bad = request(
        &srv,
        "POST",
        "/api/channels/alice/questions",
        Some("{not json"),
        &[("X-Forwarded-For", "198.51.100.14")],
    );
    assert_eq!(bad.status, 400);
    assert_eq!(ask(&srv, "198.51.100.15", "ann", "Nobody?").status, 202);
    let none = request(
        &srv,
        "POST",
        "/api/channels/nobody/questions",
        Some(&json!({"text": "hi"}).to_string()),
        &[],
    );
    assert_eq!(none.status, 404);

    // Markup stays text, in the JSON and in the Markdown export.
    let html = "<img src=x onerror=alert(1)>";
    let h = ask(&srv, "198.51.100.16", "eve", html);
    assert_eq!(h.body["text"], html);
    let l = list(&srv, "198.51.100.1");
    assert_eq!(question(&l, id)["text"], "What about the **** budget?");
    let md = ureq::get(&srv.url("/api/channels/alice/questions?format=markdown"))
        .call()
        .expect("markdown export");
    assert!(
        md.content_type().starts_with("text/markdown"),
        "{}",
        md.content_type()
    );
    let md = md.into_string().unwrap();
    assert!(md.starts_with("# Questions for alice"), "{md}");
    assert!(md.contains("What about the \\*\\*\\*\\* budget?"), "{md}");
    assert!(md.contains("&lt;img src=x onerror=alert(1)&gt;"), "{md}");
    assert!(!md.contains("<img"), "{md}");
    let json_export = request(
        &srv,
        "GET",
        "/api/channels/alice/questions?format=json",
        None,
        &[],
    );
    assert_eq!(json_export.status, 200);
    assert_eq!(ids(&json_export.body).len(), ids(&l).len());
}

#[test]
fn bans_refuse_asking_and_voting() {
    let srv = TestServer::start(&config("seconds_between_questions = 0\n"));
    let id = id_of(&ask(&srv, "198.51.100.1", "ann", "Fair question?"));
    let bans = "/api/admin/channels/alice/bans";
    assert_eq!(
        admin(&srv, "POST", bans, Some(json!({"nick": "Troll"}))).status,
        200
    );
    assert_eq!(
        admin(
            &srv,
            "POST",
            bans,
            Some(json!({"address": "198.51.100.66"}))
        )
        .status,
        200
    );
    assert_eq!(
        ask(&srv, "198.51.100.2", "troll", "Let me ask?").status,
        403
    );
    assert_eq!(ask(&srv, "198.51.100.66", "nice", "New nick?").status, 403);
    assert_eq!(vote(&srv, "198.51.100.66", id, true).status, 403);
    assert_eq!(vote(&srv, "198.51.100.2", id, true).status, 200);
    assert_eq!(
        admin(
            &srv,
            "DELETE",
            bans,
            Some(json!({"address": "198.51.100.66"}))
        )
        .status,
        200
    );
    assert_eq!(vote(&srv, "198.51.100.66", id, true).body["votes"], 2);
}

#[test]
fn one_vote_per_viewer_and_the_queue_order() {
    let srv = TestServer::start(&config(""));
    let q1 = id_of(&ask(&srv, "198.51.100.1", "ann", "First?"));
    let q2 = id_of(&ask(&srv, "198.51.100.2", "bea", "Second?"));
    let q3 = id_of(&ask(&srv, "198.51.100.3", "cat", "Third?"));
    // Oldest first while nobody has voted.
    assert_eq!(ids(&list(&srv, "198.51.100.9")), [q1, q2, q3]);

    let v = vote(&srv, "203.0.113.1", q3, true);
    assert_eq!(v.status, 200, "{:?}", v.body);
    assert_eq!(v.body["votes"], 1);
    // A second vote by the same viewer changes nothing.
    assert_eq!(vote(&srv, "203.0.113.1", q3, true).body["votes"], 1);
    assert_eq!(vote(&srv, "203.0.113.2", q3, true).body["votes"], 2);
    assert_eq!(vote(&srv, "203.0.113.1", q2, true).body["votes"], 1);
    let l = list(&srv, "203.0.113.1");
    assert_eq!(ids(&l), [q3, q2, q1], "by votes, then age");
    assert_eq!(question(&l, q3)["votes"], 2);
    assert_eq!(question(&l, q3)["voted"], true);
    assert_eq!(question(&l, q1)["voted"], false);
    assert_eq!(question(&list(&srv, "203.0.113.9"), q3)["voted"], false);

    // Taken back: once, and only one's own.
    assert_eq!(vote(&srv, "203.0.113.2", q3, false).body["votes"], 1);
    assert_eq!(vote(&srv, "203.0.113.2", q3, false).body["votes"], 1);
    assert_eq!(vote(&srv, "203.0.113.7", q3, false).body["votes"], 1);
    // q2 and q3 tie at one vote: the older first.
    assert_eq!(ids(&list(&srv, "203.0.113.1")), [q2, q3, q1]);
    assert_eq!(vote(&srv, "203.0.113.1", 999_999, true).status, 404);
}

#[test]
fn states_keep_one_pinned_question_and_admin_routes_are_guarded() {
    let srv = TestServer::start(&config(""));
    let q1 = id_of(&ask(&srv, "198.51.100.1", "ann", "First?"));
    let q2 = id_of(&ask(&srv, "198.51.100.2", "bea", "Second?"));
    let q3 = id_of(&ask(&srv, "198.51.100.3", "cat", "Third?"));
    let path = format!("/api/admin/channels/alice/questions/{q1}");
    let body = Some(json!({"state": "pinned"}));
    assert_eq!(
        request(
            &srv,
            "PUT",
            &path,
            Some(&body.clone().unwrap().to_string()),
            &[]
        )
        .status,
        401
    );
    assert_eq!(
        bearer(&srv, BOB_KEY, "PUT", &path, body.clone()).status,
        403
    );
    assert_eq!(
        bearer(&srv, "wrong-key", "PUT", &path, body.clone()).status,
        401
    );

    // The channel's stream key moderates its own channel (as the studio does).
    assert_eq!(set_state(&srv, q2, "shortlisted").status, 200);
    let p = bearer(&srv, ALICE_KEY, "PUT", &path, body);
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(p.body["state"], "pinned");
    assert_eq!(list(&srv, "x")["pinned"], q1);

    // Pinning another unpins the first (back to where it was); the shortlisted one pinned
    // and then replaced goes back to the shortlist.
    assert_eq!(set_state(&srv, q2, "pin").status, 200);
    let l = list(&srv, "x");
    assert_eq!(l["pinned"], q2);
    assert_eq!(question(&l, q1)["state"], "open");
    assert_eq!(question(&l, q2)["state"], "pinned");
    assert_eq!(set_state(&srv, q3, "pinned").status, 200);
    let l = list(&srv, "x");
    assert_eq!(question(&l, q2)["state"], "shortlisted");
    let pinned: Vec<_> = l["questions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["state"] == "pinned")
        .collect();
    assert_eq!(pinned.len(), 1, "one pinned at a time: {l}");

    // Answered: leaves the queue (listed after it, no votes) and clears the pin.
    assert_eq!(vote(&srv, "203.0.113.1", q3, true).body["votes"], 1);
    assert_eq!(set_state(&srv, q3, "answered").status, 200);
    let l = list(&srv, "x");
    assert!(l["pinned"].is_null(), "{l}");
    assert_eq!(
        ids(&l),
        [q1, q2, q3],
        "answered after the queue despite its vote"
    );
    let closed = vote(&srv, "203.0.113.2", q3, true);
    assert_eq!(closed.status, 409, "{:?}", closed.body);
    assert_eq!(set_state(&srv, q1, "dismissed").status, 200);
    assert_eq!(ids(&list(&srv, "x")), [q2, q3, q1]);
    // Reopen brings it back to the queue.
    assert_eq!(set_state(&srv, q3, "reopen").body["state"], "open");
    assert_eq!(ids(&list(&srv, "x")), [q3, q2, q1]);

    assert_eq!(set_state(&srv, q1, "deleted").status, 400);
    assert_eq!(set_state(&srv, 999_999, "pinned").status, 404);
}

#[test]
fn timer_deadlines_come_from_the_server() {
    let srv = TestServer::start(&config(""));
    let timer = "/api/admin/channels/alice/timer";
    let sse = Sse::open(&srv, "alice", None);
    sse.next_event("viewers");
    let before = chrono::Utc::now();
    let t = admin(&srv, "PUT", timer, Some(json!({"seconds": 60})));
    assert_eq!(t.status, 200, "{:?}", t.body);
    let ends = chrono::DateTime::parse_from_rfc3339(t.body["timer"]["ends_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let left = (ends - before).num_milliseconds();
    assert!((59_000..=61_500).contains(&left), "{left} ms");
    assert_eq!(t.body["timer"]["running"], true);
    let ev = sse.next_event("timer").json();
    assert_eq!(ev["ends_at"], t.body["timer"]["ends_at"]);
    assert!(
        ev["now"].as_str().is_some(),
        "the server's clock, for pages to correct theirs"
    );
    let l = list(&srv, "x");
    assert_eq!(l["timer"]["ends_at"], t.body["timer"]["ends_at"]);
    assert_eq!(l["timer"]["running"], true);

    // A short one runs out: the listing says it is no longer running.
    assert_eq!(
        admin(&srv, "PUT", timer, Some(json!({"seconds": 1}))).status,
        200
    );
    wait_for(5 * SECS, "the 1 s timer to run out", || {
        (list(&srv, "x")["timer"]["running"] == false).then_some(())
    });
    assert_eq!(
        admin(&srv, "PUT", timer, Some(json!({"seconds": 0}))).body["timer"],
        Value::Null
    );
    assert!(list(&srv, "x")["timer"].is_null());
    let stop = sse.next_where(5 * SECS, "the stop", |e| {
        e.event == "timer" && e.json()["ends_at"].is_null()
    });
    assert_eq!(stop.json()["running"], false);
    assert_eq!(
        admin(&srv, "PUT", timer, Some(json!({"seconds": 999_999}))).status,
        400
    );
    assert_eq!(
        bearer(&srv, BOB_KEY, "PUT", timer, Some(json!({"seconds": 5}))).status,
        403
    );
}

#[test]
fn events_arrive_in_order_and_resume_after_a_reconnect() {
    let srv = TestServer::start(&config(""));
    let sse = Sse::open(&srv, "alice", None);
    sse.next_event("viewers");
    let q = id_of(&ask(&srv, "198.51.100.1", "ann", "In order?"));
    assert_eq!(vote(&srv, "203.0.113.1", q, true).body["votes"], 1);
    assert_eq!(set_state(&srv, q, "pinned").status, 200);
    assert_eq!(
        admin(
            &srv,
            "PUT",
            "/api/admin/channels/alice/timer",
            Some(json!({"seconds": 30}))
        )
        .status,
        200
    );
    assert_eq!(set_state(&srv, q, "answered").status, 200);
    let debate = |e: &Event| ["question", "pinned", "timer"].contains(&e.event.as_str());
    let mut got = Vec::new();
    while got.len() < 7 {
        got.push(sse.next_where(10 * SECS, "debate events", debate));
    }
    let summary: Vec<String> = got
        .iter()
        .map(|e| {
            let d = e.json();
            match e.event.as_str() {
                "question" => format!("question {} {}", d["state"].as_str().unwrap(), d["votes"]),
                "pinned" => format!("pinned {}", d["id"]),
                _ => "timer".to_string(),
            }
        })
        .collect();
    assert_eq!(
        summary,
        [
            "question open 0",
            "question open 1",
            "question pinned 1",
            &format!("pinned {q}"),
            "timer",
            "question answered 1",
            "pinned null",
        ]
    );
    let ids: Vec<u64> = got
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(got[3].json()["question"]["text"], "In order?");

    // Chat and questions share one sequence: a client that saw the first three resumes with
    // the rest, in the same order, and a chat message in between.
    drop(sse);
    let chat = common::api::post_chat(&srv, "alice", "ann", "between");
    assert_eq!(chat.status, 202);
    let resumed = Sse::open(&srv, "alice", Some(&ids[2].to_string()));
    let again: Vec<Event> = resumed
        .drain_for(2 * SECS)
        .into_iter()
        .filter(|e| debate(e) || e.event == "chat")
        .collect();
    let names: Vec<&str> = again.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        ["pinned", "timer", "question", "pinned", "chat"],
        "{again:?}"
    );
    assert_eq!(again[0].id.as_deref(), Some(ids[3].to_string().as_str()));

    // The listing names the last event id, so a page skips replays it already has.
    let l = list(&srv, "x");
    assert!(l["event_id"].as_u64().unwrap() >= *ids.last().unwrap());
}

#[test]
fn questions_votes_and_states_survive_a_restart() {
    let data = temp_dir("questions-restart");
    let cfg = config("");
    let (q1, q2) = {
        let mut srv = TestServer::start_in(&data, &cfg);
        let q1 = id_of(&ask(&srv, "198.51.100.1", "ann", "Kept?"));
        let q2 = id_of(&ask(&srv, "198.51.100.2", "bea", "Also kept?"));
        for ip in ["203.0.113.1", "203.0.113.2"] {
            assert_eq!(vote(&srv, ip, q2, true).status, 200);
        }
        assert_eq!(vote(&srv, "203.0.113.1", q1, true).status, 200);
        assert_eq!(vote(&srv, "203.0.113.1", q1, false).status, 200);
        assert_eq!(set_state(&srv, q2, "pinned").status, 200);
        assert_eq!(set_state(&srv, q1, "dismissed").status, 200);
        // SIGKILL: what the viewers and the admin were told is saved must be in the file.
        srv.signal("KILL");
        wait_for(10 * SECS, "onair to die", || (!srv.running()).then_some(()));
        (q1, q2)
    };
    let srv = TestServer::start_in(&data, &cfg);
    let l = list(&srv, "203.0.113.1");
    assert_eq!(ids(&l), [q2, q1]);
    assert_eq!(l["pinned"], q2);
    assert_eq!(question(&l, q2)["votes"], 2);
    assert_eq!(question(&l, q2)["voted"], true);
    assert_eq!(question(&l, q1)["state"], "dismissed");
    assert_eq!(question(&l, q1)["votes"], 0);
    // The voters are kept too: voting again changes nothing.
    assert_eq!(vote(&srv, "203.0.113.2", q2, true).body["votes"], 2);
    // New ids keep growing.
    assert!(id_of(&ask(&srv, "198.51.100.3", "cat", "After?")) > q2);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn sign_in_required_counts_viewers_by_identity() {
    let m = stand_in::mastodon_server::MastodonServer::start(Default::default());
    let srv = signin::server(
        "",
        "[chat]\ntrusted_proxies = [\"127.0.0.1\"]\n[debate]\nrequire_sign_in = true\n",
        &[],
    );
    let anon = ask(&srv, "198.51.100.1", "ann", "May I?");
    assert_eq!(anon.status, 401, "{:?}", anon.body);
    let cookie = signin::mastodon(&srv, &m.url(), "bob", false);
    let origin = signin::origin(&srv);
    let asked = signin::call(
        "POST",
        &srv.url("/api/channels/alice/questions"),
        Some(&cookie),
        Some(&origin),
        Some(&json!({"nick": "ignored", "text": "Signed in, so fine?"})),
    );
    assert_eq!(asked.status, 202, "{asked:?}");
    let q = asked.json();
    assert_eq!(q["author"]["provider"], "mastodon");
    assert_ne!(q["nick"], "ignored");
    let id = q["id"].as_u64().unwrap();
    assert_eq!(vote(&srv, "198.51.100.1", id, true).status, 401);
    let voted = |cookie: &str| {
        signin::call(
            "POST",
            &srv.url(&format!("/api/channels/alice/questions/{id}/vote")),
            Some(cookie),
            Some(&origin),
            None,
        )
    };
    assert_eq!(voted(&cookie).json()["votes"], 1);
    // The same account signed in again (another browser) is the same viewer.
    let again = signin::mastodon(&srv, &m.url(), "bob", false);
    assert_eq!(voted(&again).json()["votes"], 1);
    // A cross-site vote riding the cookie is refused.
    let foreign = signin::call(
        "POST",
        &srv.url(&format!("/api/channels/alice/questions/{id}/vote")),
        Some(&cookie),
        Some("https://evil.example"),
        None,
    );
    assert_eq!(foreign.status, 403);
}

/// A chat message's delivery: from just before its POST to its arrival on the stream.
fn chat_delays(
    srv: &TestServer,
    arrivals: &mpsc::Receiver<(Instant, Event)>,
    n: usize,
    tag: &str,
    every: Duration,
) -> Vec<Duration> {
    let mut delays = Vec::new();
    for i in 0..n {
        let text = format!("{tag} {i}");
        let sent = Instant::now();
        let r = request(
            srv,
            "POST",
            "/api/channels/alice/chat",
            Some(&json!({"nick": "timer", "text": text}).to_string()),
            &[("X-Forwarded-For", &format!("192.0.2.{}", i % 200 + 1))],
        );
        assert_eq!(r.status, 202, "{:?}", r.body);
        let deadline = sent + 10 * SECS;
        loop {
            let (at, e) = arrivals
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("chat message delivered");
            if e.event == "chat" && e.json()["text"] == text {
                delays.push(at - sent);
                break;
            }
        }
        std::thread::sleep(every);
    }
    delays
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn a_vote_flood_is_coalesced_and_does_not_delay_chat() {
    let srv = TestServer::start(&config(""));
    let id = id_of(&ask(&srv, "198.51.100.1", "ann", "Popular?"));
    // One reader thread stamps every event as it arrives.
    let sse = Sse::open(&srv, "alice", None);
    let (tx, arrivals) = mpsc::channel::<(Instant, Event)>();
    let questions = Arc::new(AtomicUsize::new(0));
    let most_votes = Arc::new(AtomicUsize::new(0));
    let (counted, most) = (questions.clone(), most_votes.clone());
    std::thread::spawn(move || {
        while let Ok(Some(e)) = sse.rx.recv() {
            if e.event == "question" {
                counted.fetch_add(1, Ordering::Relaxed);
                let v = e.json()["votes"].as_u64().unwrap_or(0) as usize;
                most.fetch_max(v, Ordering::Relaxed);
            }
            if tx.send((Instant::now(), e)).is_err() {
                return;
            }
        }
    });
    let baseline = chat_delays(&srv, &arrivals, 20, "quiet", Duration::from_millis(20));

    // 1,000 viewers vote within about a second, from 16 connections.
    const VOTERS: usize = 1000;
    const THREADS: usize = 16;
    let base = srv.url(&format!("/api/channels/alice/questions/{id}/vote"));
    let before = questions.load(Ordering::Relaxed);
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let url = base.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(10 * SECS).build();
                let mut ok = 0;
                for i in (t..VOTERS).step_by(THREADS) {
                    let due = start + Duration::from_micros(i as u64 * 1_000_000 / VOTERS as u64);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
                    let r = agent.post(&url).set("X-Forwarded-For", &ip).call();
                    if matches!(r, Ok(ref r) if r.status() == 200) {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let during = chat_delays(&srv, &arrivals, 20, "flood", Duration::from_millis(30));
    let ok: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let took = start.elapsed();
    assert_eq!(ok, VOTERS, "every vote accepted");
    // The last vote's count reaches the stream (the trailing event of the interval).
    wait_for(10 * SECS, "the final count on the stream", || {
        (most_votes.load(Ordering::Relaxed) == VOTERS).then_some(())
    });
    let events = questions.load(Ordering::Relaxed) - before;
    let allowed = (took.as_secs_f64() / 0.25).ceil() as usize + 2;
    let (b50, b99) = (percentile(&baseline, 0.5), percentile(&baseline, 0.99));
    let (d50, d99) = (percentile(&during, 0.5), percentile(&during, 0.99));
    println!(
        "vote flood: {VOTERS} votes in {took:?} ({:.0}/s), {events} question events (at most \
         {allowed}); chat delivery p50/p99 quiet {b50:?}/{b99:?}, during the flood {d50:?}/{d99:?}",
        VOTERS as f64 / took.as_secs_f64()
    );
    assert!(
        events <= allowed,
        "{events} question events for {VOTERS} votes in {took:?}"
    );
    assert!(
        events >= 2,
        "{events}: the count was published while votes came"
    );
    assert!(
        d99 < Duration::from_millis(500),
        "chat p99 during the flood {d99:?} (quiet {b99:?})"
    );
    assert_eq!(question(&list(&srv, "x"), id)["votes"], VOTERS);
}

/// Pushes to alice with ffmpeg until it is live.
fn go_live(srv: &TestServer) -> Push {
    let p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 120.0,
            ..PushOpts::default()
        },
    );
    wait_for(20 * SECS, "alice live", || {
        (srv.json("/api/channels/alice")["live"] == true).then_some(())
    });
    p
}

#[test]
fn questions_stay_with_their_broadcast() {
    let _g = media_lock();
    // No grace: going live again is a new broadcast at once.
    let srv = TestServer::start(&(config("") + "[announce]\ngrace_seconds = 0\n"));
    let sse = Sse::open(&srv, "alice", None);
    sse.next_event("viewers");
    let before = id_of(&ask(&srv, "198.51.100.1", "ann", "Asked before the show?"));
    assert!(question(&list(&srv, "x"), before)["broadcast"].is_null());

    let mut first = go_live(&srv);
    let started = srv.json("/api/channels/alice")["started_at"].clone();
    // The question asked before the show joins it.
    let tagged = wait_for(10 * SECS, "the early question tagged", || {
        let b = question(&list(&srv, "x"), before)["broadcast"].clone();
        b.as_str().map(String::from)
    });
    let during = id_of(&ask(&srv, "198.51.100.2", "bea", "Asked during the show?"));
    assert_eq!(
        question(&list(&srv, "x"), during)["broadcast"],
        tagged.as_str()
    );
    assert_eq!(set_state(&srv, during, "pinned").status, 200);
    first.stop();
    wait_for(20 * SECS, "alice offline", || {
        (srv.json("/api/channels/alice")["live"] == false).then_some(())
    });
    // After the show its questions stay listed (and exportable) until the next one.
    let after = id_of(&ask(&srv, "198.51.100.3", "cat", "Asked after the show?"));
    assert_eq!(ids(&list(&srv, "x")), [before, during, after]);
    let md = ureq::get(&srv.url("/api/channels/alice/questions?format=markdown"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(md.contains("Asked during the show?"), "{md}");

    // The next broadcast starts with the questions asked since, and pages are told to reload.
    let mut second = go_live(&srv);
    assert_ne!(srv.json("/api/channels/alice")["started_at"], started);
    let reset = sse.next_where(20 * SECS, "the new broadcast", |e| {
        // (The first broadcast was announced the same way: skip that one.)
        e.event == "pinned"
            && e.json()["new_broadcast"]
                .as_str()
                .is_some_and(|b| b != tagged)
    });
    assert!(
        reset.json()["id"].is_null(),
        "the old pin went with its broadcast"
    );
    let l = list(&srv, "x");
    assert_eq!(ids(&l), [after]);
    assert!(l["pinned"].is_null());
    let new = question(&l, after)["broadcast"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, tagged);
    second.stop();
}

#[test]
fn votes_on_many_questions_stay_a_few_events_a_second() {
    let srv = TestServer::start(&config("seconds_between_questions = 0\n"));
    let qs: Vec<u64> = (0..20)
        .map(|i| id_of(&ask(&srv, "198.51.100.1", "ann", &format!("Question {i}?"))))
        .collect();
    let sse = Sse::open(&srv, "alice", None);
    sse.next_event("viewers");
    // 25 viewers vote for every question, spread over about a second.
    let start = Instant::now();
    let workers: Vec<_> = (0..10)
        .map(|t| {
            let (base, qs) = (srv.url("/api/channels/alice/questions"), qs.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(10 * SECS).build();
                for v in (t..25).step_by(10) {
                    for q in &qs {
                        let r = agent
                            .post(&format!("{base}/{q}/vote"))
                            .set("X-Forwarded-For", &format!("10.1.0.{}", v + 1))
                            .call();
                        assert!(matches!(r, Ok(ref r) if r.status() == 200));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let voting = start.elapsed();
    // Every question's final count arrives (first in, first out: none is starved)...
    let mut last = std::collections::HashMap::new();
    let mut events = 0;
    let mut last_at = start;
    while last.values().filter(|v| **v == 25).count() < qs.len() {
        let e = sse.next_where(15 * SECS, "the final counts", |e| e.event == "question");
        last_at = Instant::now();
        events += 1;
        let d = e.json();
        last.insert(d["id"].as_u64().unwrap(), d["votes"].as_u64().unwrap());
    }
    // ...at no more than 8 a second (2 every 250 ms) from the first vote to the last event
    // (read here after the voters are done: arrival times say nothing finer).
    let span = last_at - start;
    let allowed = (span.as_secs_f64() / 0.25).floor() as usize * 2 + 2;
    println!("500 votes on 20 questions in {voting:?}: {events} question events over {span:?}");
    assert!(
        events <= allowed,
        "{events} events in {span:?} (at most {allowed})"
    );
}

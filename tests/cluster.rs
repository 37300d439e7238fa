//! Several onair nodes sharing state through a real Redis (Debian's `redis-server`, started
//! here on a free port): chat in order on every node, resuming on another node, moderation
//! everywhere, summed viewer counts, HLS served by a node from the origin node (one upstream
//! request per object), takeover of a key published on a second node, one announcement per
//! go-live, Redis lost and back mid-show, and the debate (questions, votes, pins, timers) the
//! same on every node.

mod common;
mod stand_in;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::api::{admin, post_chat, request, Answer, ADMIN_TOKEN};
use common::sse::Sse;
use common::{free_port, push, segments, temp_dir, wait_for, PushOpts, TestServer, ALICE_KEY};
use serde_json::{json, Value};
use stand_in::StandIn;

const WAIT: Duration = Duration::from_secs(20);
const HOOK_SECRET: &str = "cluster-hook-secret";

/// A redis-server of our own, without persistence (a restart comes back empty).
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: temp_dir("redis"),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/packages-test.txt installs it)");
        self.child = Some(child);
        let port = self.port;
        wait_for(WAIT, "redis-server to answer PING", || {
            ping(port).then_some(())
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// A node of the cluster on `redis`, HTTP on a port known beforehand (its advertise_url).
fn node(name: &str, redis: &Redis, extra: &str, env: &[(&str, &str)]) -> TestServer {
    let port = free_port();
    let cfg = format!(
        "[server]\nadmin_token = \"{ADMIN_TOKEN}\"\n\
         [cluster]\nredis_url = \"{}\"\nnode_name = \"{name}\"\n\
         advertise_url = \"http://127.0.0.1:{port}\"\nheartbeat_ttl_seconds = 3\n\
         [chat]\nrate_per_second = 50.0\nburst = 50\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [transcode]\nladder = []\n{extra}",
        redis.url()
    );
    let srv = TestServer::start_at(port, &cfg, env);
    wait_for(WAIT, "the node to reach Redis", || {
        (srv.get("/healthz").1 == "ok\n").then_some(())
    });
    srv
}

fn chat_texts(sse: &Sse, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|_| {
            let e = sse.next_where(WAIT, "a chat event", |e| e.event == "chat");
            let v = e.json();
            let id: u64 = e.id.as_deref().and_then(|i| i.parse().ok()).expect("id");
            assert_eq!(v["id"].as_u64(), Some(id), "the data's id is the event id");
            (id, v["text"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

fn metric(srv: &TestServer, name: &str) -> f64 {
    let (_, text) = srv.get("/metrics");
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn live_on(srv: &TestServer, channel: &str) -> bool {
    srv.json(&format!("/api/channels/{channel}"))["live"] == json!(true)
}

#[test]
fn chat_is_shared_in_order_resumes_on_any_node_and_moderation_and_counts_are_cluster_wide() {
    let redis = Redis::start();
    let a = node("a", &redis, "", &[]);
    let b = node("b", &redis, "", &[]);
    let on_a = Sse::open(&a, "alice", None);
    let on_b = Sse::open(&b, "alice", None);

    // Posted on A: on both nodes, in order, under the same ids.
    let mut ids = Vec::new();
    for t in ["one", "two", "three"] {
        let r = post_chat(&a, "alice", "ann", t);
        assert_eq!(r.status, 202, "{:?}", r.body);
        ids.push(r.body["id"].as_u64().expect("id"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let want: Vec<(u64, String)> = ids
        .iter()
        .zip(["one", "two", "three"])
        .map(|(i, t)| (*i, t.to_string()))
        .collect();
    assert_eq!(chat_texts(&on_b, 3), want, "node B");
    assert_eq!(chat_texts(&on_a, 3), want, "node A");

    // Posted on B: on A after them.
    let r = post_chat(&b, "alice", "bea", "four");
    assert_eq!(r.status, 202);
    let four = chat_texts(&on_a, 1);
    assert_eq!(four[0].1, "four");
    assert!(four[0].0 > ids[2]);
    assert_eq!(chat_texts(&on_b, 1), four);

    // A viewer of A resumes on B from the first message.
    let resumed = Sse::open(&b, "alice", Some(&ids[0].to_string()));
    let got: Vec<String> = chat_texts(&resumed, 3)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(got, ["two", "three", "four"]);

    // A ban on A: ann's messages go on B too, and B refuses her.
    let r = admin(
        &a,
        "POST",
        "/api/admin/channels/alice/bans",
        Some(json!({"nick": "ann"})),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut deleted: Vec<u64> = (0..3)
        .map(|_| {
            on_b.next_where(WAIT, "a delete on B", |e| e.event == "delete")
                .json()["id"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    deleted.sort();
    assert_eq!(deleted, ids);
    wait_for(WAIT, "B to refuse the banned nick", || {
        (post_chat(&b, "alice", "ann", "again").status == 403).then_some(())
    });
    assert_eq!(
        admin(&b, "GET", "/api/admin/channels/alice/bans", None).body["nicks"],
        json!(["ann"]),
        "B lists A's ban"
    );

    // Slow mode set on B holds on A.
    let r = admin(
        &b,
        "PUT",
        "/api/admin/channels/alice/slow-mode",
        Some(json!({"seconds": 60})),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    wait_for(WAIT, "A to apply B's slow mode", || {
        let first = post_chat(&a, "alice", "cid", "hello").status;
        assert!(first == 202 || first == 429);
        (post_chat(&a, "alice", "cid", "again").status == 429).then_some(())
    });

    // A node that joins now has the history, the ban and the slow mode.
    let c = node("c", &redis, "", &[]);
    wait_for(WAIT, "C to know A's ban", || {
        let bans = admin(&c, "GET", "/api/admin/channels/alice/bans", None).body;
        (bans["nicks"] == json!(["ann"])).then_some(())
    });
    assert_eq!(post_chat(&c, "alice", "ann", "from C").status, 403);
    let r = admin(&c, "GET", "/api/admin/channels/alice/slow-mode", None);
    assert_eq!(r.body["seconds"], json!(60), "{:?}", r.body);
    let late = Sse::open(&c, "alice", None);
    let history: Vec<String> = chat_texts(&late, 1).into_iter().map(|(_, t)| t).collect();
    assert_eq!(history, ["four"], "ann's messages were deleted everywhere");
    drop(late);

    // Viewers: one stream on A, two on B; both nodes say three.
    for srv in [&a, &b] {
        wait_for(WAIT, "the viewers summed over the nodes", || {
            (srv.json("/api/channels/alice")["viewers"] == json!(3)).then_some(())
        });
    }
    on_a.next_where(WAIT, "a viewers event of 3", |e| {
        e.event == "viewers" && e.json()["viewers"] == json!(3)
    });

    // How long a message takes from a post on A to B's subscribers (a figure, not a limit).
    let r = admin(
        &a,
        "PUT",
        "/api/admin/channels/alice/slow-mode",
        Some(json!({"seconds": 0})),
    );
    assert_eq!(r.status, 200);
    wait_for(WAIT, "slow mode off on A", || {
        (post_chat(&a, "alice", "dee", "warm-up").status == 202).then_some(())
    });
    on_b.next_where(WAIT, "the warm-up on B", |e| {
        e.json()["text"] == json!("warm-up")
    });
    let mut took = Vec::new();
    for i in 0..20 {
        let t0 = Instant::now();
        assert_eq!(post_chat(&a, "alice", "dee", &format!("m{i}")).status, 202);
        let e = on_b.next_where(WAIT, "the message on B", |e| e.event == "chat");
        assert_eq!(e.json()["text"], json!(format!("m{i}")));
        took.push(t0.elapsed());
    }
    took.sort();
    eprintln!(
        "post on A -> event on B: median {:?}, max {:?} (20 messages)",
        took[10], took[19]
    );
}

fn hook_toml(url: &str) -> String {
    format!(
        "[announce]\ngrace_seconds = 0\n\
         [[announce.webhooks]]\nname = \"hook\"\nurl = \"{url}\"\nsecret_env = \"TEST_HOOK_SECRET\"\n"
    )
}

fn long_push() -> PushOpts {
    PushOpts {
        seconds: 90.0,
        ..Default::default()
    }
}

#[test]
fn hls_from_the_origin_node_takeover_from_another_node_and_one_announcement() {
    let _media = common::media_lock();
    let redis = Redis::start();
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    let env = [("TEST_HOOK_SECRET", HOOK_SECRET)];
    let a = node("a", &redis, &hook_toml(&hook.url()), &env);
    let b = node("b", &redis, &hook_toml(&hook.url()), &env);

    let mut on_a = push(&a.rtmp_url(ALICE_KEY), long_push());
    wait_for(WAIT, "B to list alice live", || {
        live_on(&b, "alice").then_some(())
    });
    assert!(b.json("/api/channels/alice")["playlist"].is_string());

    // B serves A's HLS: ffprobe decodes it through B.
    wait_for(WAIT, "B to serve alice's playlists", || {
        let (s, list) = b.get("/hls/alice/source/index.m3u8");
        (s == 200 && segments(&list).len() >= 2).then_some(())
    });
    let streams = common::ffprobe_url(&b.url("/hls/alice/master.m3u8"));
    common::assert_test_pattern(&streams);

    // Many viewers of B ask for a new segment at once: B asks A once.
    let (_, list) = b.get("/hls/alice/source/index.m3u8");
    let seen = segments(&list).last().map(|s| s.0.clone());
    let fresh = wait_for(WAIT, "a segment newer than ffprobe's", || {
        let (_, list) = b.get("/hls/alice/source/index.m3u8");
        let last = segments(&list).last().map(|s| s.0.clone());
        (last.is_some() && last != seen).then(|| last.unwrap_or_default())
    });
    let before = metric(&b, "onair_cluster_upstream_requests_total");
    let viewers = 50;
    let barrier = Arc::new(Barrier::new(viewers));
    let url = b.url(&format!("/hls/alice/source/{fresh}"));
    let sizes: Vec<usize> = (0..viewers)
        .map(|_| {
            let (barrier, url) = (barrier.clone(), url.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let r = ureq::get(&url).timeout(WAIT).call().expect("segment via B");
                let mut body = Vec::new();
                r.into_reader().read_to_end(&mut body).expect("body");
                body.len()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("viewer"))
        .collect();
    let after = metric(&b, "onair_cluster_upstream_requests_total");
    assert!(sizes.iter().all(|s| *s > 0 && *s == sizes[0]), "{sizes:?}");
    assert_eq!(
        after - before,
        1.0,
        "{viewers} viewers, one upstream request"
    );
    eprintln!(
        "{viewers} concurrent viewers of one segment on B: {} upstream request(s)",
        after - before
    );

    // One go-live, one announcement (both nodes have the webhook).
    hook.wait_accepted_blocking(1, WAIT);

    // The same key on B takes over: A's publisher is stopped, the channel stays live.
    let _on_b = push(&b.rtmp_url(ALICE_KEY), long_push());
    b.wait_log("took the channel over from another node", WAIT);
    wait_for(WAIT, "A's publisher to be stopped", || {
        (!on_a.running()).then_some(())
    });
    a.wait_log("channel taken over by another node", WAIT);
    assert!(live_on(&a, "alice") && live_on(&b, "alice"));
    // A serves B's HLS now.
    wait_for(WAIT, "A to serve the stream from B", || {
        let (s, list) = a.get("/hls/alice/source/index.m3u8");
        (s == 200 && !segments(&list).is_empty()).then_some(())
    });
    // Still one announcement: a takeover is no new go-live.
    let quiet = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet {
        assert_eq!(hook.requests().len(), 1, "announced once per go-live");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn losing_redis_keeps_media_and_per_node_chat_and_the_nodes_rejoin() {
    let _media = common::media_lock();
    let mut redis = Redis::start();
    let a = node("a", &redis, "", &[]);
    let b = node("b", &redis, "", &[]);
    let _p = push(&a.rtmp_url(ALICE_KEY), long_push());
    wait_for(WAIT, "B to list alice live", || {
        live_on(&b, "alice").then_some(())
    });
    let on_a = Sse::open(&a, "alice", None);
    let on_b = Sse::open(&b, "alice", None);

    redis.stop();
    for srv in [&a, &b] {
        wait_for(WAIT, "/healthz to say degraded", || {
            srv.get("/healthz").1.starts_with("degraded").then_some(())
        });
        assert_eq!(metric(srv, "onair_cluster_redis_up"), 0.0);
    }
    // Per-node chat, numbered from the moment of the loss (µs, as the cluster's ids).
    let lost_at = chrono_micros();
    let r = post_chat(&a, "alice", "ann", "alone on A");
    assert_eq!(r.status, 202);
    assert!(
        r.body["id"].as_u64().unwrap_or(0) + 60_000_000 > lost_at,
        "{:?}",
        r.body
    );
    assert_eq!(chat_texts(&on_a, 1)[0].1, "alone on A");
    // Per-node questions: asked on A, not on B.
    let alone = ask(&a, "10.0.1.1", "ann", "Asked while Redis is away?");
    assert!(
        alone + 60_000_000 > lost_at,
        "numbered from A's clock: {alone}"
    );
    assert!(
        debate_on(&b)["questions"] == json!([]),
        "B has no question of A's"
    );
    // Media goes on: new segments on A, and B still serves them from A.
    let last = |srv: &TestServer| {
        segments(&srv.get("/hls/alice/source/index.m3u8").1)
            .last()
            .map(|s| s.0.clone())
    };
    let (a0, b0) = (last(&a), last(&b));
    wait_for(WAIT, "new segments on A and through B", || {
        (last(&a) != a0 && last(&b) != b0).then_some(())
    });
    assert_eq!(
        a.logs().matches("lost Redis").count(),
        1,
        "the loss is logged once"
    );

    // Redis back (empty): the nodes rejoin and share again.
    redis.spawn();
    for srv in [&a, &b] {
        wait_for(WAIT, "/healthz ok again", || {
            (srv.get("/healthz").1 == "ok\n").then_some(())
        });
    }
    wait_for(WAIT, "B to list alice live again", || {
        live_on(&b, "alice").then_some(())
    });
    assert_eq!(post_chat(&b, "alice", "bea", "together again").status, 202);
    let e = on_a.next_where(WAIT, "B's message on A", |e| e.event == "chat");
    assert_eq!(e.json()["text"], json!("together again"));
    let e = on_b.next_where(WAIT, "B's message on B", |e| e.event == "chat");
    assert_eq!(e.json()["text"], json!("together again"));
    // The debate is shared again; what A had alone stays on A.
    let q = ask(&b, "10.0.1.2", "bea", "Shared again?");
    assert!(q > alone);
    wait_for(WAIT, "B's question on A", || {
        let ids: Vec<Value> = debate_on(&a)["questions"]
            .as_array()
            .map(|qs| qs.iter().map(|q| q[0].clone()).collect())
            .unwrap_or_default();
        (ids == [json!(alone), json!(q)]).then_some(())
    });
    assert_eq!(debate_on(&b)["questions"][0][0], json!(q));
}

/// Now in µs since the epoch, as cluster ids are.
fn chrono_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[test]
fn a_dead_origin_node_shows_its_channel_offline_within_the_heartbeat_ttl() {
    let redis = Redis::start();
    let a = node("a", &redis, "", &[]);
    let b = node("b", &redis, "", &[]);
    let _p = common::rtmp::LoopingPublisher::start(&a.rtmp, ALICE_KEY);
    wait_for(WAIT, "B to list alice live", || {
        live_on(&b, "alice").then_some(())
    });
    let on_b = Sse::open(&b, "alice", None);
    on_b.next_event("live");
    a.signal("KILL");
    let t0 = Instant::now();
    on_b.next_where(Duration::from_secs(10), "offline on B", |e| {
        e.event == "offline"
    });
    let took = t0.elapsed();
    assert!(!live_on(&b, "alice"));
    // TTL 3 s, plus up to one heartbeat of B.
    assert!(took < Duration::from_secs(5), "offline after {took:?}");
    eprintln!("origin killed: offline on B after {took:?} (ttl 3 s)");
}

fn ask(srv: &TestServer, ip: &str, nick: &str, text: &str) -> u64 {
    let a = request(
        srv,
        "POST",
        "/api/channels/alice/questions",
        Some(&json!({"nick": nick, "text": text}).to_string()),
        &[("X-Forwarded-For", ip)],
    );
    assert_eq!(a.status, 202, "{:?}", a.body);
    a.body["id"].as_u64().expect("question id")
}

fn vote(srv: &TestServer, ip: &str, id: u64) -> Answer {
    request(
        srv,
        "POST",
        &format!("/api/channels/alice/questions/{id}/vote"),
        None,
        &[("X-Forwarded-For", ip)],
    )
}

fn pin(srv: &TestServer, id: u64, state: &str) -> Answer {
    admin(
        srv,
        "PUT",
        &format!("/api/admin/channels/alice/questions/{id}"),
        Some(json!({ "state": state })),
    )
}

/// A node's question list as every node must show it: ids in order, texts, votes, states,
/// the pin and the timer's deadline.
fn debate_on(srv: &TestServer) -> Value {
    let l = srv.json("/api/channels/alice/questions");
    let questions: Vec<Value> = l["questions"]
        .as_array()
        .map(|qs| {
            qs.iter()
                .map(|q| {
                    json!([
                        q["id"],
                        q["text"],
                        q["nick"],
                        q["votes"],
                        q["state"],
                        q["asked_at"]
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"questions": questions, "pinned": l["pinned"], "timer": l["timer"]["ends_at"]})
}

fn question_event(sse: &Sse, what: &str, f: impl Fn(&Value) -> bool) -> (u64, Value) {
    let e = sse.next_where(WAIT, what, |e| e.event == "question" && f(&e.json()));
    let id =
        e.id.as_deref()
            .and_then(|i| i.parse().ok())
            .expect("event id");
    (id, e.json())
}

#[test]
fn questions_votes_pins_and_timers_are_the_same_on_every_node() {
    let redis = Redis::start();
    let a = node("a", &redis, "", &[]);
    let b = node("b", &redis, "", &[]);
    let on_a = Sse::open(&a, "alice", None);
    let on_b = Sse::open(&b, "alice", None);

    // Asked on B, then on A: both nodes' streams carry both, under the questions' ids.
    let q1 = ask(&b, "10.0.0.1", "ann", "Why B?");
    let q2 = ask(&a, "10.0.0.2", "bob", "And A?");
    assert!(q1 < q2, "ordered across nodes: {q1} {q2}");
    for (sse, node) in [(&on_a, "A"), (&on_b, "B")] {
        for (q, text) in [(q1, "Why B?"), (q2, "And A?")] {
            let (eid, data) = question_event(sse, node, |d| d["text"] == json!(text));
            assert_eq!((eid, data["id"].as_u64()), (q, Some(q)), "on {node}");
        }
    }

    // Votes on A; B counts them, and a viewer voting again on B is counted once.
    for ip in ["10.0.0.3", "10.0.0.4", "10.0.0.5"] {
        let r = vote(&a, ip, q2);
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(vote(&a, "10.0.0.3", q1).body["votes"], json!(1));
    question_event(&on_b, "q2's three votes on B", |d| {
        d["id"] == json!(q2) && d["votes"] == json!(3)
    });
    let again = vote(&b, "10.0.0.3", q2);
    assert_eq!((again.status, again.body["votes"].clone()), (200, json!(3)));
    let fourth = vote(&b, "10.0.0.6", q2);
    assert_eq!(fourth.body["votes"], json!(4), "{:?}", fourth.body);

    // Pinned on A: B's stream says so; pinning another on B returns the first to the queue.
    let r = pin(&a, q1, "pin");
    assert_eq!((r.status, r.body["state"].clone()), (200, json!("pinned")));
    let e = on_b.next_where(WAIT, "the pin on B", |e| e.event == "pinned");
    assert_eq!(e.json()["id"], json!(q1));
    let r = pin(&b, q2, "pin");
    assert_eq!((r.status, r.body["state"].clone()), (200, json!("pinned")));
    on_a.next_where(WAIT, "B's pin on A", |e| {
        e.event == "pinned" && e.json()["id"] == json!(q2)
    });
    let l = a.json("/api/channels/alice/questions");
    let first = l["questions"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["id"] == json!(q1)).cloned());
    assert_eq!(
        first.map(|q| q["state"].clone()),
        Some(json!("open")),
        "q1 back in the queue on A"
    );
    assert_eq!(pin(&a, q1, "answer").status, 200);

    // A timer started on A: B shows the same deadline.
    let r = admin(
        &a,
        "PUT",
        "/api/admin/channels/alice/timer",
        Some(json!({"seconds": 90})),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let ends_at = r.body["timer"]["ends_at"].clone();
    assert!(ends_at.is_string(), "{:?}", r.body);
    let e = on_b.next_where(WAIT, "the timer on B", |e| e.event == "timer");
    assert_eq!(e.json()["ends_at"], ends_at);

    // The lists agree: ids, order (votes), states, the pin, the timer.
    let want = debate_on(&a);
    assert_eq!(want["pinned"], json!(q2));
    assert_eq!(want["timer"], ends_at);
    let order: Vec<Value> = want["questions"]
        .as_array()
        .map(|qs| qs.iter().map(|q| q[0].clone()).collect())
        .unwrap_or_default();
    assert_eq!(order, [json!(q2), json!(q1)], "{want}");
    assert_eq!(want["questions"][0][3], json!(4));
    assert_eq!(want["questions"][1][4], json!("answered"));
    wait_for(WAIT, "B's list to be A's", || {
        (debate_on(&b) == want).then_some(())
    });

    // A viewer of A resumes on B after the first question: the rest comes, in order.
    let resumed = Sse::open(&b, "alice", Some(&q1.to_string()));
    let (eid, data) = question_event(&resumed, "the resumed stream", |_| true);
    assert_eq!((eid, data["id"].as_u64()), (q2, Some(q2)));
    resumed.next_where(WAIT, "the resumed pin", |e| {
        e.event == "pinned" && e.json()["id"] == json!(q2)
    });

    // A node that joins now shows the same from the stream, and takes part.
    let c = node("c", &redis, "", &[]);
    wait_for(WAIT, "C's list to be A's", || {
        (debate_on(&c) == want).then_some(())
    });
    assert_eq!(vote(&c, "10.0.0.7", q2).body["votes"], json!(5));
    wait_for(WAIT, "C's vote on A and B", || {
        let (l, m) = (debate_on(&a), debate_on(&b));
        (l == m && l["questions"][0][3] == json!(5)).then_some(())
    });
}

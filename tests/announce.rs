//! Go-live announcements against stand-ins of X, Mastodon, Bluesky, Discord and a signed JSON
//! webhook (see `stand_in`), which check requests as the real services do.
//!
//! Most tests drive the announcer through the library with a real bus (a publication going
//! live or away is exactly what ingest does), so they need no encoder and run in well under a
//! second each. The end-to-end tests start the real binary and push with ffmpeg.

mod common;
mod stand_in;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{onair, push, PushOpts, TestServer, ALICE_KEY, BOB_KEY};
use onair::announce::{self, AnnounceStats};
use onair::bus::{Bus, ChannelName, Publication};
use onair::config::{ChannelConfig, Config, Secret, WebhookConfig};
use stand_in::{Received, StandIn, X_KEYS};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const PUBLIC: &str = "https://live.example.org";
const ALICE_URL: &str = "https://live.example.org/watch/alice";
const MASTODON_TOKEN: &str = "mastodon-test-token";
const HOOK_SECRET: &str = "webhook-test-secret";
const WAIT: Duration = Duration::from_secs(5);

fn channel(name: &str, key: &str, title: Option<&str>) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        key: Secret::new(key),
        key_env: None,
        title: title.map(String::from),
        owners: Vec::new(),
    }
}

/// Channels alice ("Alice's debate") and bob, fast retries, nothing enabled yet.
fn config() -> Config {
    let mut cfg = Config::default();
    cfg.server.public_url = PUBLIC.into();
    cfg.channels = vec![
        channel("alice", ALICE_KEY, Some("Alice's debate")),
        channel("bob", BOB_KEY, None),
    ];
    let a = &mut cfg.announce;
    a.grace_seconds = 60;
    a.backoff_base_ms = 20;
    a.backoff_max_seconds = 3;
    a.timeout_seconds = 3;
    cfg
}

fn twitter(cfg: &mut Config, at: &StandIn) {
    let t = &mut cfg.announce.twitter;
    t.enabled = true;
    t.api_base = at.url();
    t.consumer_key = Secret::new(X_KEYS.consumer_key);
    t.consumer_secret = Secret::new(X_KEYS.consumer_secret);
    t.access_token = Secret::new(X_KEYS.token);
    t.access_token_secret = Secret::new(X_KEYS.token_secret);
}

fn mastodon(cfg: &mut Config, at: &StandIn) {
    let m = &mut cfg.announce.mastodon;
    m.enabled = true;
    m.instance_url = at.url();
    m.access_token = Secret::new(MASTODON_TOKEN);
    m.visibility = "unlisted".into();
}

fn webhook(cfg: &mut Config, name: &str, url: String, format: &str, secret: &str) {
    cfg.announce.webhooks.push(WebhookConfig {
        name: Some(name.into()),
        url: Secret::new(url),
        secret: Secret::new(secret),
        secret_env: None,
        format: format.into(),
        enabled: true,
    });
}

/// The announcer running on its own bus.
struct Running {
    bus: Arc<Bus>,
    stats: Arc<AnnounceStats>,
    cancel: CancellationToken,
}

impl Running {
    fn start(cfg: Config) -> Running {
        cfg.validate().expect("test config validates");
        let bus = Bus::new();
        for ch in &cfg.channels {
            bus.ensure(&ChannelName::new(&ch.name));
        }
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let h = announce::start(&cfg, &bus, &tracker, cancel.clone()).expect("announce starts");
        Running {
            bus,
            stats: h.stats,
            cancel,
        }
    }

    /// What ingest does when a broadcaster publishes; dropping it is going offline.
    fn go_live(&self, channel: &str) -> Publication {
        let addr: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
        let (ch, _) = self.bus.ensure(&ChannelName::new(channel));
        ch.begin_publish(addr, onair::bus::Protocol::Rtmp)
    }

    /// (attempts, successes, failures, dropped)
    fn counts(&self, target: &str) -> (u64, u64, u64, u64) {
        self.stats
            .target(target)
            .unwrap_or_else(|| panic!("no target {target}"))
            .snapshot()
    }

    async fn wait_counts(&self, target: &str, want: (u64, u64, u64, u64)) {
        let deadline = Instant::now() + WAIT;
        while self.counts(target) != want {
            assert!(
                Instant::now() < deadline,
                "{target}: counters {:?}, wanted {want:?}",
                self.counts(target)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn assert_go_live_text(text: &str) {
    assert!(text.contains(ALICE_URL), "{text:?} lacks the watch URL");
    assert!(text.contains("Alice's debate"), "{text:?} lacks the title");
    assert!(
        !text.contains(ALICE_KEY),
        "{text:?} contains the stream key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_live_reaches_every_target_with_requests_they_accept() {
    let x = StandIn::start(stand_in::x_api(X_KEYS));
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let b = StandIn::start(stand_in::bluesky());
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    let disc = StandIn::start(stand_in::discord());
    let mut cfg = config();
    twitter(&mut cfg, &x);
    mastodon(&mut cfg, &m);
    cfg.announce.bluesky.enabled = true;
    cfg.announce.bluesky.service = b.url();
    cfg.announce.bluesky.identifier = stand_in::BSKY_HANDLE.into();
    cfg.announce.bluesky.app_password = Secret::new(stand_in::BSKY_PASSWORD);
    webhook(
        &mut cfg,
        "hook",
        format!("{}/hooks/onair", hook.url()),
        "json",
        HOOK_SECRET,
    );
    webhook(
        &mut cfg,
        "discord",
        format!("{}/api/webhooks/1/tok", disc.url()),
        "discord",
        "",
    );
    let run = Running::start(cfg);
    let t0 = Instant::now();
    let _live = run.go_live("alice");

    let posted = x.wait_accepted(1, WAIT).await;
    assert_go_live_text(posted[0].json()["text"].as_str().expect("text"));

    let posted = m.wait_accepted(1, WAIT).await;
    let form = posted[0].form();
    assert_go_live_text(&form["status"]);
    assert_eq!(form["visibility"], "unlisted");
    let key = posted[0].header("idempotency-key").expect("key");
    assert!(key.starts_with("onair-live-alice-"), "{key}");

    let posted = b.wait_accepted(2, WAIT).await;
    let record = posted[1].json()["record"].clone();
    assert_go_live_text(record["text"].as_str().expect("text"));
    assert_eq!(record["facets"][0]["features"][0]["uri"], ALICE_URL);

    let posted = hook.wait_accepted(1, WAIT).await;
    let v = posted[0].json();
    assert_eq!(v["event"], "live");
    assert_eq!(v["channel"], "alice");
    assert_eq!(v["url"], ALICE_URL);
    assert!(
        chrono::DateTime::parse_from_rfc3339(v["started_at"].as_str().expect("started_at")).is_ok()
    );
    assert_go_live_text(v["text"].as_str().expect("text"));

    let posted = disc.wait_accepted(1, WAIT).await;
    assert_go_live_text(posted[0].json()["content"].as_str().expect("content"));
    assert_eq!(
        posted[0].json()["allowed_mentions"]["parse"],
        serde_json::json!([])
    );
    eprintln!("all five targets posted within {:?}", t0.elapsed());

    for t in ["twitter", "mastodon", "bluesky", "hook", "discord"] {
        run.wait_counts(t, (1, 1, 0, 0)).await;
    }
    for s in [&x, &m, &b, &hook, &disc] {
        assert!(s.requests().iter().all(|(_, st)| (200..300).contains(st)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_oauth_signature_gets_401_and_is_not_retried() {
    let x = StandIn::start(stand_in::x_api(X_KEYS));
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let mut cfg = config();
    twitter(&mut cfg, &x);
    cfg.announce.twitter.access_token_secret = Secret::new("not the right token secret");
    mastodon(&mut cfg, &m);
    cfg.announce.mastodon.access_token = Secret::new("wrong-token");
    let run = Running::start(cfg);
    let _live = run.go_live("alice");
    run.wait_counts("twitter", (1, 0, 1, 0)).await;
    run.wait_counts("mastodon", (1, 0, 1, 0)).await;
    let got = x.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, 401, "stand-in must refuse the bad signature");
    assert_eq!(m.requests()[0].1, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_answering_503_twice_then_201_gets_the_post_once() {
    let m = StandIn::start(stand_in::failing_first(
        2,
        503,
        vec![],
        stand_in::mastodon(MASTODON_TOKEN),
    ));
    let x = StandIn::start(stand_in::failing_first(
        2,
        503,
        vec![],
        stand_in::x_api(X_KEYS),
    ));
    let mut cfg = config();
    mastodon(&mut cfg, &m);
    twitter(&mut cfg, &x);
    let run = Running::start(cfg);
    let _live = run.go_live("alice");
    m.wait_accepted(1, WAIT).await;
    x.wait_accepted(1, WAIT).await;
    run.wait_counts("mastodon", (3, 1, 0, 0)).await;
    run.wait_counts("twitter", (3, 1, 0, 0)).await;
    let statuses: Vec<u16> = m.requests().iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, [503, 503, 200]);
    // Every try of one go-live carries the same Idempotency-Key, so Mastodon posts it once.
    let keys: Vec<String> = m
        .requests()
        .iter()
        .map(|(r, _)| r.header("idempotency-key").unwrap_or_default().to_string())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0] && !k.is_empty()),
        "{keys:?}"
    );
    // X gets a fresh signature (new nonce) per try: the stand-in refuses replayed nonces.
    assert_eq!(
        x.requests().iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [503, 503, 201]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let hook = StandIn::start(stand_in::failing_first(
        1,
        429,
        vec![("Retry-After", "1")],
        stand_in::webhook(HOOK_SECRET),
    ));
    let mut cfg = config();
    webhook(&mut cfg, "hook", hook.url(), "json", HOOK_SECRET);
    let run = Running::start(cfg);
    let _live = run.go_live("alice");
    hook.wait_accepted(1, WAIT).await;
    let r = hook.requests();
    let gap = r[1].0.at - r[0].0.at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?} despite Retry-After: 1 (backoff base is 20 ms)"
    );
    run.wait_counts("hook", (2, 1, 0, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_or_failing_target_neither_stops_nor_delays_the_others() {
    let refusing = StandIn::start(stand_in::always(401));
    let down = StandIn::start(stand_in::always(503));
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let mut cfg = config();
    // "down" waits at least 1 s before its first retry: long enough to tell waiting from not.
    cfg.announce.tries = 3;
    cfg.announce.backoff_base_ms = 2000;
    webhook(&mut cfg, "refusing", refusing.url(), "json", HOOK_SECRET);
    webhook(&mut cfg, "down", down.url(), "json", HOOK_SECRET);
    mastodon(&mut cfg, &m);
    let run = Running::start(cfg);
    let t0 = Instant::now();
    let _alice = run.go_live("alice");
    m.wait_accepted(1, WAIT).await;
    // bob's go-live follows while "down" is still waiting to retry alice's.
    let _bob = run.go_live("bob");
    let posted = m.wait_accepted(2, WAIT).await;
    let took = t0.elapsed();
    assert!(posted[1].form()["status"].contains("/watch/bob"));
    assert!(
        took < Duration::from_millis(900),
        "mastodon waited {took:?} for the failing targets"
    );
    assert_eq!(run.counts("down").1, 0);
    assert_eq!(
        down.requests().len(),
        1,
        "down is still in its first backoff"
    );
    // The 401 is final at once, for each post.
    run.wait_counts("refusing", (2, 0, 2, 0)).await;
    run.wait_counts("mastodon", (2, 2, 0, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_errors_are_retried_then_given_up() {
    // A port with nothing listening: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let mut cfg = config();
    cfg.announce.tries = 3;
    webhook(
        &mut cfg,
        "nowhere",
        format!("http://{addr}/hook"),
        "json",
        "",
    );
    mastodon(&mut cfg, &m);
    let run = Running::start(cfg);
    let _live = run.go_live("alice");
    m.wait_accepted(1, WAIT).await;
    run.wait_counts("nowhere", (3, 0, 1, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answers_times_out_without_holding_up_others() {
    // Accepts connections (the kernel completes the handshake) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let mut cfg = config();
    cfg.announce.tries = 2;
    cfg.announce.timeout_seconds = 1;
    let silent_url = format!("http://{}/hook", silent.local_addr().expect("addr"));
    webhook(&mut cfg, "silent", silent_url, "json", "");
    mastodon(&mut cfg, &m);
    let run = Running::start(cfg);
    let t0 = Instant::now();
    let _live = run.go_live("alice");
    m.wait_accepted(1, WAIT).await;
    assert!(t0.elapsed() < Duration::from_millis(900));
    run.wait_counts("silent", (2, 0, 1, 0)).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "two 1 s timeouts took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_within_grace_posts_nothing_and_ended_post_waits_for_grace() {
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    let mut cfg = config();
    cfg.announce.grace_seconds = 1;
    cfg.announce.ended = true;
    mastodon(&mut cfg, &m);
    webhook(&mut cfg, "hook", hook.url(), "json", HOOK_SECRET);
    let run = Running::start(cfg);

    let first = run.go_live("alice");
    m.wait_accepted(1, WAIT).await;
    // The broadcaster's connection drops and it reconnects at once: Offline then Live.
    drop(first);
    let second = run.go_live("alice");
    // bob goes live after that; posts are delivered in order, so once bob's arrives, a second
    // alice post would have arrived before it.
    let _bob = run.go_live("bob");
    let posted = m.wait_accepted(2, WAIT).await;
    let statuses: Vec<String> = posted.iter().map(|r| r.form()["status"].clone()).collect();
    assert!(statuses[0].contains("/watch/alice"), "{statuses:?}");
    assert!(statuses[1].contains("/watch/bob"), "{statuses:?}");

    // Now alice really ends: the "ended" post comes once the grace period has passed.
    let t_end = Instant::now();
    drop(second);
    let posted = m.wait_accepted(3, WAIT).await;
    let waited = posted[2].at - t_end;
    assert!(
        posted[2].form()["status"].contains("ended"),
        "{:?}",
        posted[2].form()
    );
    assert!(
        waited >= Duration::from_millis(950),
        "ended posted after {waited:?}"
    );
    let events: Vec<String> = hook
        .wait_accepted(3, WAIT)
        .await
        .iter()
        .map(|r: &Received| format!("{} {}", r.json()["event"], r.json()["channel"]))
        .collect();
    assert_eq!(
        events,
        [
            "\"live\" \"alice\"",
            "\"live\" \"bob\"",
            "\"ended\" \"alice\""
        ]
    );
    // Nothing more is queued: the counters settle at three posts.
    run.wait_counts("mastodon", (3, 3, 0, 0)).await;
    assert_eq!(m.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_would_show_a_stream_key_is_never_sent() {
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let mut cfg = config();
    // An admin pasted the key into the title by mistake; the template does not even show the
    // title, but the webhook payload carries it.
    cfg.channels[0].title = Some(format!("my key is {ALICE_KEY}"));
    cfg.announce.template = "{channel} is live: {url}".into();
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    webhook(&mut cfg, "hook", hook.url(), "json", HOOK_SECRET);
    mastodon(&mut cfg, &m);
    let run = Running::start(cfg);
    let _alice = run.go_live("alice");
    let _bob = run.go_live("bob");
    let posted = m.wait_accepted(1, WAIT).await;
    assert!(posted[0].form()["status"].contains("/watch/bob"));
    run.wait_counts("mastodon", (1, 1, 0, 0)).await;
    assert!(m
        .requests()
        .iter()
        .all(|(r, _)| !r.text().contains(ALICE_KEY)));
    let hooked = hook.wait_accepted(1, WAIT).await;
    assert_eq!(hooked[0].json()["channel"], "bob");
    run.wait_counts("hook", (1, 1, 0, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_titles_are_shortened_to_each_targets_limit() {
    let x = StandIn::start(stand_in::x_api(X_KEYS));
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let mut cfg = config();
    cfg.channels[0].title = Some("Alice's debate on everything, ".repeat(20));
    twitter(&mut cfg, &x);
    mastodon(&mut cfg, &m);
    let run = Running::start(cfg);
    let _live = run.go_live("alice");
    let tweet = x.wait_accepted(1, WAIT).await[0].json()["text"]
        .as_str()
        .expect("text")
        .to_string();
    let toot = m.wait_accepted(1, WAIT).await[0].form()["status"].clone();
    for (text, limit) in [(&tweet, 280), (&toot, 500)] {
        let n = stand_in::weighted_len(text);
        assert!(n <= limit && n > limit - 40, "{n} for {limit}: {text}");
        assert!(text.ends_with(&format!("… {ALICE_URL}")), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_brings_new_titles_and_channels_and_reports_announce_changes() {
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let mut cfg = config();
    cfg.rtmp.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.http.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.webrtc.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.storage.data_dir = common::temp_dir("announce-reload");
    cfg.srt.listen = "127.0.0.1:0".into();
    // Nothing is pushed, so no thumbnail comes: post at once rather than wait for one.
    cfg.announce.picture_wait_seconds = 0;
    mastodon(&mut cfg, &m);
    let server = onair::Server::start(cfg.clone())
        .await
        .expect("server starts");

    let mut new = cfg.clone();
    new.channels[0].title = Some("Alice's second debate".into());
    new.channels.push(channel(
        "carol",
        "carol-secret-key-789",
        Some("Carol's show"),
    ));
    let report = server.reload(new.clone());
    assert!(report.needs_restart.is_empty(), "{report:?}");
    assert_eq!(report.added, ["carol"]);

    let addr: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
    let alice = server
        .bus
        .get("alice")
        .expect("alice")
        .begin_publish(addr, onair::bus::Protocol::Rtmp);
    let carol = server
        .bus
        .get("carol")
        .expect("carol")
        .begin_publish(addr, onair::bus::Protocol::Rtmp);
    let posted = m.wait_accepted(2, WAIT).await;
    assert!(posted[0].form()["status"].contains("Alice's second debate"));
    assert!(posted[1].form()["status"].contains("Carol's show"));
    assert_eq!(
        server
            .announce
            .target("mastodon")
            .expect("stats")
            .snapshot()
            .1,
        2
    );
    drop((alice, carol));

    // Target settings (a rotated token included) take effect at restart, and say so.
    let mut rotated = new.clone();
    rotated.announce.mastodon.access_token = Secret::new("rotated-token");
    assert_eq!(server.reload(rotated).needs_restart, ["announce"]);
    server.shutdown(Duration::from_secs(2)).await;
}

fn hook_toml(url: &str) -> String {
    format!("[[announce.webhooks]]\nname = \"hook\"\nurl = \"{url}\"\nsecret_env = \"TEST_HOOK_SECRET\"\n")
}

#[test]
fn end_to_end_ffmpeg_push_is_announced_once_per_go_live() {
    let _media = common::media_lock();
    let x = StandIn::start(stand_in::x_api(X_KEYS));
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    let extra = format!(
        "[server]\npublic_url = \"{PUBLIC}\"\n\
         [announce]\ngrace_seconds = 60\nbackoff_base_ms = 50\n\
         [announce.twitter]\nenabled = true\napi_base = \"{}\"\nconsumer_key = \"{}\"\n\
         [announce.mastodon]\nenabled = true\ninstance_url = \"{}\"\n{}",
        x.url(),
        X_KEYS.consumer_key,
        m.url(),
        hook_toml(&hook.url()),
    );
    // Secrets from the environment, as an admin would set them.
    let srv = TestServer::start_with(
        &extra,
        &[
            (
                "ONAIR__ANNOUNCE__TWITTER__CONSUMER_SECRET",
                X_KEYS.consumer_secret,
            ),
            ("ONAIR__ANNOUNCE__TWITTER__ACCESS_TOKEN", X_KEYS.token),
            (
                "ONAIR__ANNOUNCE__TWITTER__ACCESS_TOKEN_SECRET",
                X_KEYS.token_secret,
            ),
            ("ONAIR__ANNOUNCE__MASTODON__ACCESS_TOKEN", MASTODON_TOKEN),
            ("TEST_HOOK_SECRET", HOOK_SECRET),
        ],
    );
    let t0 = Instant::now();
    let p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 2.0,
            ..Default::default()
        },
    );
    let tweet = x.wait_accepted_blocking(1, WAIT);
    // Mastodon gets the live thumbnail first, then the status that attaches it.
    let toot = m.wait_accepted_blocking(2, WAIT);
    assert_eq!(toot[0].path, "/api/v2/media");
    let toot = &toot[1..];
    let hooked = hook.wait_accepted_blocking(1, WAIT);
    eprintln!(
        "X, Mastodon and the webhook had the post {:?} after ffmpeg started",
        t0.elapsed()
    );
    assert_go_live_text(tweet[0].json()["text"].as_str().expect("text"));
    assert_go_live_text(&toot[0].form()["status"]);
    assert_eq!(hooked[0].json()["url"], ALICE_URL);
    let (ok, err) = p.wait(Duration::from_secs(20));
    assert!(ok, "ffmpeg: {err}");

    // The broadcaster comes back within the grace period: no second post.
    srv.wait_log("channel offline", Duration::from_secs(10));
    let p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 1.0,
            ..Default::default()
        },
    );
    srv.wait_log("not announced again", Duration::from_secs(10));
    let _ = p.wait(Duration::from_secs(20));
    assert_eq!(x.requests().len(), 1);
    assert_eq!(m.requests().len(), 2);
    assert_eq!(hook.requests().len(), 1);

    let logs = srv.logs();
    for secret in [
        ALICE_KEY,
        X_KEYS.consumer_secret,
        X_KEYS.token,
        X_KEYS.token_secret,
        MASTODON_TOKEN,
        HOOK_SECRET,
    ] {
        assert!(!logs.contains(secret), "a secret is in the logs:\n{logs}");
    }
    assert!(logs.contains("announcement posted"), "{logs}");
}

#[test]
fn replay_post_names_the_shows_replay_page() {
    let _media = common::media_lock();
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    let extra = format!(
        "[server]\npublic_url = \"{PUBLIC}/\"\n\
         [announce]\ngrace_seconds = 0\nreplay_post = true\nbackoff_base_ms = 50\n{}",
        hook_toml(&hook.url()),
    );
    let srv = TestServer::start_with(&extra, &[("TEST_HOOK_SECRET", HOOK_SECRET)]);
    let p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 3.0,
            ..Default::default()
        },
    );
    let (ok, err) = p.wait(Duration::from_secs(20));
    assert!(ok, "ffmpeg: {err}");
    // The go-live post, then (the grace being 0) the end-of-show post at once.
    let posts = hook.wait_accepted_blocking(2, Duration::from_secs(15));
    let id = srv.json("/api/channels/alice/recordings")["recordings"][0]["id"]
        .as_str()
        .expect("the show's recording")
        .to_string();
    let live = posts[0].json();
    assert_eq!(
        (live["event"].as_str(), live["url"].as_str()),
        (Some("live"), Some(ALICE_URL))
    );
    let ended = posts[1].json();
    let replay = format!("{PUBLIC}/replay/alice/{id}");
    assert_eq!(ended["event"], "ended", "{ended}");
    assert_eq!(ended["url"], replay.as_str(), "{ended}");
    let text = ended["text"].as_str().expect("text");
    assert!(
        text.contains(&replay) && text.contains("replay"),
        "{text:?}"
    );
    assert!(!text.contains(ALICE_KEY), "{text:?}");
    // The page it names is there.
    assert_eq!(srv.get(&format!("/replay/alice/{id}")).0, 200);
}

#[test]
fn announce_test_command_posts_and_reports_per_target() {
    let m = StandIn::start(stand_in::mastodon(MASTODON_TOKEN));
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    let dir = common::temp_dir("announce-test");
    let f = dir.join("onair.toml");
    std::fs::write(
        &f,
        format!(
            "[announce]\nbackoff_base_ms = 10\n[announce.mastodon]\nenabled = true\ninstance_url = \"{}\"\n{}",
            m.url(),
            hook_toml(&hook.url())
        ),
    )
    .expect("write config");
    let cfg = f.to_str().expect("path");
    let env = [
        ("ONAIR__ANNOUNCE__MASTODON__ACCESS_TOKEN", MASTODON_TOKEN),
        ("TEST_HOOK_SECRET", "the wrong secret"),
    ];

    let (code, out, err) = onair(
        &["announce-test", "--config", cfg, "--target", "mastodon"],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("mastodon: ok"), "{out}");
    let posted = m.wait_accepted_blocking(1, WAIT);
    assert!(posted[0].form()["status"].contains("Test post from onair"));
    assert!(
        hook.requests().is_empty(),
        "--target mastodon posted to the webhook"
    );

    // Both targets: the webhook's secret is wrong, its receiver answers 401.
    let (code, out, err) = onair(&["announce-test", "--config", cfg], &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("mastodon: ok"), "{out}");
    assert!(out.contains("hook: FAILED") && out.contains("401"), "{out}");
    assert!(err.contains("hook") && err.contains("not retried"), "{err}");
    assert_eq!(hook.requests().len(), 1, "a 401 is not retried");
    assert!(!format!("{out}{err}").contains(MASTODON_TOKEN));

    let (code, _, err) = onair(
        &["announce-test", "--config", cfg, "--target", "nope"],
        &env,
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("nope") && err.contains("mastodon, hook"),
        "{err}"
    );

    // check-config shows the targets with their secrets redacted.
    let (code, out, err) = onair(&["check-config", "--config", cfg], &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("[announce.mastodon]") && out.contains("<redacted>"),
        "{out}"
    );
    assert!(
        !out.contains(MASTODON_TOKEN) && !out.contains(&hook.url()),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

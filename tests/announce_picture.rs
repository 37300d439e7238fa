//! Go-live posts with the live thumbnail, against stand-ins that check the uploads as the real
//! APIs do (`stand_in::media`): Mastodon gets the picture through `POST /api/v2/media` (alt
//! text, processing waited for) before the status that names it, Bluesky gets the blob before
//! the post whose link card embeds it, webhooks and Discord get its URL. A missing picture, a
//! token without `write:media` or a failing upload still posts the text.
//!
//! The announcer runs through the library on a real bus (a publication going live is exactly
//! what ingest does); the thumbnail is a real JPEG put where the thumbnail maker puts its own
//! (tests/thumbnails.rs covers the maker with ffmpeg).

mod common;
mod stand_in;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ALICE_KEY, BOB_KEY};
use onair::announce::{self, AnnounceStats};
use onair::bus::{Bus, ChannelName, Publication};
use onair::config::{ChannelConfig, Config, Secret, ThumbnailConfig, WebhookConfig};
use onair::transcode::thumbnails::Thumbnails;
use stand_in::media::{blob_ref, form_all, mastodon_api, multipart, MastodonApi};
use stand_in::{Received, Reply, StandIn};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const PUBLIC: &str = "https://live.example.org";
const ALICE_URL: &str = "https://live.example.org/watch/alice";
const TOKEN: &str = "mastodon-test-token";
const HOOK_SECRET: &str = "webhook-test-secret";
const WAIT: Duration = Duration::from_secs(10);

fn jpeg() -> Bytes {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/card.jpg");
    Bytes::from(std::fs::read(path).expect("a JPEG"))
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.server.public_url = PUBLIC.into();
    let ch = |name: &str, key: &str, title: Option<&str>| ChannelConfig {
        name: name.into(),
        key: Secret::new(key),
        key_env: None,
        title: title.map(String::from),
        owners: Vec::new(),
    };
    cfg.channels = vec![
        ch("alice", ALICE_KEY, Some("Alice's debate")),
        ch("bob", BOB_KEY, None),
    ];
    let a = &mut cfg.announce;
    a.grace_seconds = 60;
    a.backoff_base_ms = 20;
    a.backoff_max_seconds = 3;
    a.timeout_seconds = 5;
    a.picture_wait_seconds = 5;
    cfg
}

fn mastodon(cfg: &mut Config, at: &StandIn) {
    let m = &mut cfg.announce.mastodon;
    m.enabled = true;
    m.instance_url = at.url();
    m.access_token = Secret::new(TOKEN);
    m.visibility = "unlisted".into();
}

fn bluesky(cfg: &mut Config, at: &StandIn) {
    let b = &mut cfg.announce.bluesky;
    b.enabled = true;
    b.service = at.url();
    b.identifier = stand_in::BSKY_HANDLE.into();
    b.app_password = Secret::new(stand_in::BSKY_PASSWORD);
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

struct Running {
    bus: Arc<Bus>,
    stats: Arc<AnnounceStats>,
    thumbs: Arc<Thumbnails>,
    cancel: CancellationToken,
}

impl Running {
    fn start(cfg: Config) -> Running {
        cfg.validate().expect("test config validates");
        let bus = Bus::new();
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let h = announce::start(&cfg, &bus, &tracker, cancel.clone()).expect("announce starts");
        let thumbs = Thumbnails::new(ThumbnailConfig::default(), None);
        h.set_thumbnails(thumbs.clone());
        Running {
            bus,
            stats: h.stats,
            thumbs,
            cancel,
        }
    }

    fn go_live(&self, channel: &str) -> Publication {
        let addr: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
        let (ch, _) = self.bus.ensure(&ChannelName::new(channel));
        ch.begin_publish(addr, onair::bus::Protocol::Rtmp)
    }

    /// The channel's first thumbnail arrives, as the maker delivers it.
    fn thumbnail(&self, channel: &str, jpeg: &Bytes) {
        self.thumbs.put(
            channel,
            jpeg.clone(),
            chrono::Utc::now(),
            1280,
            720,
            Duration::from_millis(20),
        );
    }

    /// (attempts, successes, failures, dropped)
    async fn wait_counts(&self, target: &str, want: (u64, u64, u64, u64)) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.stats.target(target).expect("target").snapshot();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{target}: {got:?}, wanted {want:?}"
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

fn paths(s: &StandIn) -> Vec<(String, String, u16)> {
    s.requests()
        .iter()
        .map(|(r, st)| (r.method.clone(), r.path.clone(), *st))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_live_posts_carry_the_picture_on_every_target() {
    let m = StandIn::start(mastodon_api(MastodonApi {
        processing_polls: 2,
        ..MastodonApi::new(TOKEN)
    }));
    let b = StandIn::start(stand_in::bluesky());
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    let disc = StandIn::start(stand_in::discord());
    let mut cfg = config();
    mastodon(&mut cfg, &m);
    bluesky(&mut cfg, &b);
    webhook(&mut cfg, "hook", hook.url(), "json", HOOK_SECRET);
    webhook(&mut cfg, "discord", disc.url(), "discord", "");
    let run = Running::start(cfg);
    let pic = jpeg();
    let _live = run.go_live("alice");
    // The first thumbnail comes a little after the go-live: the posts wait for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(m.requests().is_empty() && hook.requests().is_empty());
    let t_pic = Instant::now();
    run.thumbnail("alice", &pic);
    let etag = run.thumbs.latest("alice").expect("thumb").etag.clone();
    let image_url = format!("{PUBLIC}/thumb/alice.jpg?v={}", etag.trim_matches('"'));

    // Mastodon: upload (202), processing polled (206, 206, 200), then the status naming it.
    let posted = m.wait_accepted(5, WAIT).await;
    let upload = &posted[0];
    assert!(upload.at >= t_pic);
    let ct = upload.header("content-type").expect("content type");
    let parts = multipart(ct, &upload.body).expect("multipart body");
    let file = parts.iter().find(|p| p.name == "file").expect("file part");
    assert_eq!(file.data, pic.to_vec(), "the thumbnail itself is uploaded");
    assert_eq!(file.content_type.as_deref(), Some("image/jpeg"));
    let alt = parts
        .iter()
        .find(|p| p.name == "description")
        .map(|p| String::from_utf8_lossy(&p.data).into_owned())
        .expect("alt text");
    assert!(
        alt.contains("alice") && alt.contains("Alice's debate"),
        "{alt}"
    );
    let status = &posted[4];
    let ids = form_all(status, "media_ids[]");
    assert_eq!(ids.len(), 1, "{:?}", status.text());
    let id = ids[0].clone();
    let p = paths(&m);
    assert_eq!(
        p.iter()
            .map(|(_, path, s)| (path.as_str(), *s))
            .collect::<Vec<_>>(),
        [
            ("/api/v2/media", 202),
            (&*format!("/api/v1/media/{id}"), 206),
            (&*format!("/api/v1/media/{id}"), 206),
            (&*format!("/api/v1/media/{id}"), 200),
            ("/api/v1/statuses", 200),
        ]
    );
    assert!(status.form()["status"].contains(ALICE_URL));

    // Bluesky: session, blob, then the post whose card embeds that blob.
    let posted = b.wait_accepted(3, WAIT).await;
    let names: Vec<&str> = posted.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "/xrpc/com.atproto.server.createSession",
            "/xrpc/com.atproto.repo.uploadBlob",
            "/xrpc/com.atproto.repo.createRecord"
        ]
    );
    assert_eq!(posted[1].body, pic.to_vec());
    assert_eq!(posted[1].header("content-type"), Some("image/jpeg"));
    let ext = posted[2].json()["record"]["embed"].clone();
    assert_eq!(ext["$type"], "app.bsky.embed.external");
    assert_eq!(ext["external"]["uri"], ALICE_URL);
    assert_eq!(ext["external"]["title"], "Alice's debate");
    assert_eq!(ext["external"]["thumb"]["ref"]["$link"], blob_ref(&pic));

    // Webhooks: the picture's absolute URL.
    let posted = hook.wait_accepted(1, WAIT).await;
    assert_eq!(posted[0].json()["image_url"], image_url.as_str());
    let posted = disc.wait_accepted(1, WAIT).await;
    let embed = &posted[0].json()["embeds"][0];
    assert_eq!(embed["image"]["url"], image_url.as_str());
    assert_eq!(embed["url"], ALICE_URL);
    assert!(posted[0].json()["content"]
        .as_str()
        .is_some_and(|c| c.contains(ALICE_URL)));

    for t in ["mastodon", "bluesky", "hook", "discord"] {
        run.wait_counts(t, (1, 1, 0, 0)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_thumbnail_the_text_goes_out_after_the_wait() {
    let m = StandIn::start(stand_in::mastodon(TOKEN));
    let b = StandIn::start(stand_in::bluesky());
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    let mut cfg = config();
    cfg.announce.picture_wait_seconds = 1;
    mastodon(&mut cfg, &m);
    bluesky(&mut cfg, &b);
    webhook(&mut cfg, "hook", hook.url(), "json", HOOK_SECRET);
    let run = Running::start(cfg);
    // An old thumbnail (a previous show) is not this broadcast's picture.
    run.thumbnail("alice", &jpeg());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t0 = Instant::now();
    let _live = run.go_live("alice");
    let posted = m.wait_accepted(1, WAIT).await;
    let waited = posted[0].at - t0;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "posted after {waited:?}"
    );
    assert_eq!(posted[0].path, "/api/v1/statuses");
    assert!(form_all(&posted[0], "media_ids[]").is_empty());
    let hooked = hook.wait_accepted(1, WAIT).await;
    assert!(hooked[0].json()["image_url"].is_null());
    let posted = b.wait_accepted(2, WAIT).await;
    let ext = &posted[1].json()["record"]["embed"]["external"];
    assert_eq!(ext["uri"], ALICE_URL);
    assert!(ext["thumb"].is_null());
    run.wait_counts("mastodon", (1, 1, 0, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_write_media_posts_text_and_stops_uploading() {
    let m = StandIn::start(mastodon_api(MastodonApi {
        scopes: vec!["write:statuses"],
        ..MastodonApi::new(TOKEN)
    }));
    let mut cfg = config();
    mastodon(&mut cfg, &m);
    let run = Running::start(cfg);
    let pic = jpeg();
    let _alice = run.go_live("alice");
    run.thumbnail("alice", &pic);
    m.wait_accepted(1, WAIT).await;
    let _bob = run.go_live("bob");
    run.thumbnail("bob", &pic);
    let posted = m.wait_accepted(2, WAIT).await;
    run.wait_counts("mastodon", (2, 2, 0, 0)).await;
    assert!(posted[0].form()["status"].contains("/watch/alice"));
    assert!(posted[1].form()["status"].contains("/watch/bob"));
    assert!(posted.iter().all(|r| form_all(r, "media_ids[]").is_empty()));
    // One refused upload (403), then no more tries.
    let uploads: Vec<u16> = m
        .requests()
        .iter()
        .filter(|(r, _)| r.path == "/api/v2/media")
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(uploads, [403]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upload_still_posts_the_text() {
    let mut api = mastodon_api(MastodonApi::new(TOKEN));
    let m = StandIn::start(move |r: &Received| {
        if r.path == "/api/v2/media" {
            Reply::new(503, r#"{"error":"Service Unavailable"}"#)
        } else {
            api(r)
        }
    });
    let mut pds = stand_in::bluesky();
    let b = StandIn::start(move |r: &Received| {
        if r.path == "/xrpc/com.atproto.repo.uploadBlob" {
            Reply::new(500, r#"{"error":"InternalServerError"}"#)
        } else {
            pds(r)
        }
    });
    let mut cfg = config();
    mastodon(&mut cfg, &m);
    bluesky(&mut cfg, &b);
    let run = Running::start(cfg);
    let _live = run.go_live("alice");
    run.thumbnail("alice", &jpeg());
    let posted = m.wait_accepted(1, WAIT).await;
    assert_eq!(posted[0].path, "/api/v1/statuses");
    assert!(form_all(&posted[0], "media_ids[]").is_empty());
    let posted = b.wait_accepted(2, WAIT).await;
    let ext = &posted[1].json()["record"]["embed"]["external"];
    assert_eq!(ext["uri"], ALICE_URL);
    assert!(ext["thumb"].is_null());
    run.wait_counts("mastodon", (1, 1, 0, 0)).await;
    run.wait_counts("bluesky", (1, 1, 0, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_post_links_the_recorded_show_with_its_last_picture() {
    let m = StandIn::start(stand_in::mastodon(TOKEN));
    let hook = StandIn::start(stand_in::webhook(HOOK_SECRET));
    let mut cfg = config();
    cfg.announce.grace_seconds = 0;
    cfg.announce.replay_post = true;
    mastodon(&mut cfg, &m);
    webhook(&mut cfg, "hook", hook.url(), "json", HOOK_SECRET);
    cfg.validate().expect("valid");
    let bus = Bus::new();
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let h = announce::start(&cfg, &bus, &tracker, cancel.clone()).expect("announce starts");
    let thumbs = Thumbnails::new(ThumbnailConfig::default(), None);
    h.set_thumbnails(thumbs.clone());
    // What the recorder answers: alice's shows are recorded, bob's are not.
    h.set_replay_links(Arc::new(
        |channel: &str, started: chrono::DateTime<chrono::Utc>| {
            (channel == "alice")
                .then(|| format!("{PUBLIC}/replay/alice/{}", started.timestamp_millis()))
        },
    ));
    let addr: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
    let (alice, _) = bus.ensure(&ChannelName::new("alice"));
    let (bob, _) = bus.ensure(&ChannelName::new("bob"));
    let a = alice.begin_publish(addr, onair::bus::Protocol::Rtmp);
    let b = bob.begin_publish(addr, onair::bus::Protocol::Rtmp);
    let started = alice.publisher().expect("live").live_since;
    for c in ["alice", "bob"] {
        thumbs.put(
            c,
            jpeg(),
            chrono::Utc::now(),
            1280,
            720,
            Duration::from_millis(20),
        );
    }
    // Both go-lives posted with the picture (upload + status each), then both shows end.
    m.wait_accepted(4, WAIT).await;
    drop((a, b));
    let replay = format!("{PUBLIC}/replay/alice/{}", started.timestamp_millis());
    let hooked = hook.wait_accepted(3, WAIT).await;
    let ended: Vec<_> = hooked
        .iter()
        .map(|r| r.json())
        .filter(|v| v["event"] == "ended")
        .collect();
    assert_eq!(ended.len(), 1, "only the recorded show gets a replay post");
    assert_eq!(ended[0]["channel"], "alice");
    assert_eq!(ended[0]["url"], replay.as_str());
    assert!(ended[0]["text"]
        .as_str()
        .is_some_and(|t| t.contains("Watch the replay") && t.contains(&replay)));
    assert!(ended[0]["image_url"].is_string(), "the show's last picture");
    let statuses: Vec<String> = m
        .wait_accepted(6, WAIT)
        .await
        .iter()
        .filter(|r| r.path == "/api/v1/statuses")
        .map(|r| r.form()["status"].clone())
        .collect();
    assert!(statuses.iter().any(|s| s.contains(&replay)), "{statuses:?}");
    // Nothing for bob's unrecorded show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!m
        .requests()
        .iter()
        .any(|(r, _)| r.text().contains("/replay/bob")));
    cancel.cancel();
}

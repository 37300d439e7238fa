//! Live thumbnails and share cards, end to end: ffmpeg pushes a stream to the real binary, the
//! JPEG appears at `/thumb/{channel}.jpg`, decodes with ffprobe at the configured width and
//! 16:9 (a 4:3 source pillarboxed on black), refreshes as the stream moves, revalidates with
//! its ETag (304) and answers HEAD; a channel never seen live is 404. The watch page carries
//! the card tags with an absolute `og:image` that fetches; a crawler stampede on the page and
//! the picture is measured. Go-live posts carry the real thumbnail (Mastodon media, a webhook's
//! `image_url` that fetches), and a Mastodon token without `write:media` is said once. A
//! recording keeps the show's first thumbnail as its poster, which the replay page's card
//! names (HEAD, a stampede, from memory).

mod common;
mod stand_in;

use std::collections::HashMap;
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{push, wait_for, PushOpts, TestServer, ALICE_KEY, BOB_KEY};
use stand_in::media::{form_all, mastodon_api, multipart, MastodonApi};
use stand_in::StandIn;

const WAIT: Duration = Duration::from_secs(20);

/// One request: status, headers (lower-case names), body.
fn fetch(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(10));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let h = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| {
            resp.header(&n)
                .map(|v| (n.to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    let mut body = Vec::new();
    resp.into_reader()
        .read_to_end(&mut body)
        .expect("read body");
    (status, h, body)
}

/// (codec, width, height) of a picture, by ffprobe.
fn probe(jpeg: &[u8]) -> (String, u64, u64) {
    let dir = common::temp_dir("thumb-probe");
    let f = dir.join("t.jpg");
    std::fs::write(&f, jpeg).expect("write");
    let s = common::ffprobe_url(f.to_str().expect("path"));
    let _ = std::fs::remove_dir_all(&dir);
    let v = s.first().expect("one stream");
    (
        v.codec_name.clone(),
        v.width.unwrap_or(0),
        v.height.unwrap_or(0),
    )
}

/// The picture as 8-bit grey pixels, decoded by the ffmpeg CLI: (width, pixels).
fn grey(jpeg: &[u8]) -> (usize, Vec<u8>) {
    let dir = common::temp_dir("thumb-grey");
    let f = dir.join("t.jpg");
    std::fs::write(&f, jpeg).expect("write");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&f)
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("ffmpeg");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, w, _) = probe(jpeg);
    (w as usize, out.stdout)
}

/// Mean grey level of columns `cols` over the whole height.
fn column_mean(w: usize, px: &[u8], cols: std::ops::Range<usize>) -> f64 {
    let rows = px.len() / w;
    let mut sum = 0u64;
    for r in 0..rows {
        for c in cols.clone() {
            sum += px[r * w + c] as u64;
        }
    }
    sum as f64 / (rows * cols.len()) as f64
}

/// The `content` of a `<meta property|name="key">` tag.
fn meta(page: &str, key: &str) -> Option<String> {
    page.lines().find_map(|l| {
        let rest = l
            .strip_prefix(&format!("<meta property=\"{key}\" content=\""))
            .or_else(|| l.strip_prefix(&format!("<meta name=\"{key}\" content=\"")))?;
        rest.strip_suffix("\">")
            .map(|s| s.replace("&amp;", "&").replace("&#39;", "'"))
    })
}

fn wait_thumb(srv: &TestServer, channel: &str) -> (HashMap<String, String>, Vec<u8>) {
    wait_for(WAIT, &format!("{channel}'s thumbnail"), || {
        let (s, h, b) = fetch("GET", &srv.url(&format!("/thumb/{channel}.jpg")), &[]);
        (s == 200).then_some((h, b))
    })
}

#[test]
fn thumbnail_appears_refreshes_revalidates_and_cards_point_at_it() {
    let _media = common::media_lock();
    let srv = TestServer::start_public(
        "",
        "",
        "[thumbnail]\ninterval_seconds = 1\nwidth = 640\n",
        None,
        &[],
    );
    let public = srv.url("");
    let public = public.trim_end_matches('/');
    // Never seen live, and no such channel: 404.
    assert_eq!(fetch("GET", &srv.url("/thumb/alice.jpg"), &[]).0, 404);
    assert_eq!(fetch("GET", &srv.url("/thumb/carol.jpg"), &[]).0, 404);
    assert_eq!(fetch("HEAD", &srv.url("/thumb/alice.jpg"), &[]).0, 404);

    // Before the first show: the card names the placeholder picture, which is there.
    let (s, _, page) = fetch("GET", &srv.url("/watch/alice"), &[]);
    assert_eq!(s, 200);
    let page = String::from_utf8_lossy(&page).into_owned();
    let image = meta(&page, "og:image").expect("og:image");
    assert_eq!(image, format!("{public}/assets/card.jpg"));
    let (s, h, b) = fetch("GET", &image, &[]);
    assert_eq!((s, h["content-type"].as_str()), (200, "image/jpeg"));
    assert_eq!(probe(&b), ("mjpeg".into(), 1280, 720));

    // alice streams 16:9, bob 4:3.
    let t0 = Instant::now();
    let _alice = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 14.0,
            ..Default::default()
        },
    );
    let _bob = push(
        &srv.rtmp_url(BOB_KEY),
        PushOpts {
            seconds: 14.0,
            size: "320x240",
            ..Default::default()
        },
    );
    let (h, first) = wait_thumb(&srv, "alice");
    eprintln!("first thumbnail {:?} after ffmpeg started", t0.elapsed());
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["cache-control"], "public, max-age=1");
    assert!(h.contains_key("last-modified"), "{h:?}");
    let etag = h["etag"].clone();
    assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");
    assert_eq!(probe(&first), ("mjpeg".into(), 640, 360));

    // Revalidation: 304 without a body; HEAD: the headers and the length, no body.
    let (s, h304, b) = fetch(
        "GET",
        &srv.url("/thumb/alice.jpg"),
        &[("If-None-Match", &etag)],
    );
    // The picture may have been renewed in between; then it is a 200 with the new one.
    if s == 304 {
        assert!(b.is_empty());
        assert_eq!(h304["etag"], etag);
    } else {
        assert_eq!(s, 200);
        assert_ne!(h304["etag"], etag);
    }
    let (s, hh, b) = fetch("HEAD", &srv.url("/thumb/alice.jpg"), &[]);
    assert_eq!(s, 200);
    assert!(b.is_empty());
    assert!(hh["content-length"].parse::<usize>().expect("length") > 1000);

    // It refreshes as the stream moves (the test pattern's counter changes every second).
    let (h2, second) = wait_for(WAIT, "a new thumbnail", || {
        let (s, h, b) = fetch("GET", &srv.url("/thumb/alice.jpg"), &[]);
        (s == 200 && h["etag"] != etag).then_some((h, b))
    });
    assert_ne!(first, second);
    assert_eq!(probe(&second), ("mjpeg".into(), 640, 360));
    let (s, _, _) = fetch(
        "GET",
        &srv.url("/thumb/alice.jpg"),
        &[("If-None-Match", &h2["etag"])],
    );
    assert!(s == 304 || s == 200);

    // bob's 4:3 picture sits in the middle of a 16:9 frame with black bars left and right
    // (480 of 640 wide).
    let (_, bob) = wait_thumb(&srv, "bob");
    assert_eq!(probe(&bob), ("mjpeg".into(), 640, 360));
    let (w, px) = grey(&bob);
    let left = column_mean(w, &px, 0..76);
    let right = column_mean(w, &px, 564..640);
    let middle = column_mean(w, &px, 100..540);
    assert!(left < 8.0 && right < 8.0, "bars: {left:.1} / {right:.1}");
    assert!(middle > 40.0, "picture: {middle:.1}");

    // The watch page's card now names the live thumbnail, absolute under public_url.
    let (s, _, page) = fetch("GET", &srv.url("/watch/alice"), &[]);
    assert_eq!(s, 200);
    let page = String::from_utf8_lossy(&page).into_owned();
    let image = meta(&page, "og:image").expect("og:image");
    assert!(
        image.starts_with(&format!("{public}/thumb/alice.jpg?v=")),
        "{image}"
    );
    assert_eq!(meta(&page, "og:url"), Some(format!("{public}/watch/alice")));
    assert_eq!(
        meta(&page, "og:title").as_deref(),
        Some("Alice's debate · alice")
    );
    assert!(meta(&page, "og:description").is_some_and(|d| d.contains("live now")));
    assert_eq!(
        meta(&page, "twitter:card").as_deref(),
        Some("summary_large_image")
    );
    assert_eq!(
        meta(&page, "twitter:image").as_deref(),
        Some(image.as_str())
    );
    assert_eq!(meta(&page, "og:image:width").as_deref(), Some("640"));
    assert!(!page.contains(ALICE_KEY));
    let (s, h, b) = fetch("GET", &image, &[]);
    assert_eq!((s, h["content-type"].as_str()), (200, "image/jpeg"));
    assert_eq!(probe(&b).1, 640);
    // HEAD of the page, as crawlers probe it.
    let (s, h, b) = fetch("HEAD", &srv.url("/watch/alice"), &[]);
    assert_eq!(s, 200);
    assert!(b.is_empty() && h["content-length"].parse::<usize>().expect("len") > 500);

    // A crawler stampede (every Mastodon server fetches the card within a minute): 40 clients
    // at once, page and picture, all from memory.
    let urls = [
        ("GET", srv.url("/watch/alice")),
        ("HEAD", srv.url("/watch/alice")),
        ("GET", srv.url("/thumb/alice.jpg")),
    ];
    let (n, took, p50, p99) = stampede(&urls, 40, 50);
    eprintln!(
        "stampede: {n} requests (watch page GET/HEAD, thumbnail) from 40 clients in {took:?}: \
         {:.0}/s, p50 {p50:?}, p99 {p99:?}",
        n as f64 / took.as_secs_f64()
    );
    assert!(p99 < Duration::from_millis(750), "p99 {p99:?}");

    // After the show the last picture stays (the card keeps showing the stream).
    drop(_alice);
    srv.wait_log("channel offline", WAIT);
    assert_eq!(fetch("GET", &srv.url("/thumb/alice.jpg"), &[]).0, 200);
}

/// `clients` threads with their own keep-alive connection, `each` requests apiece, cycling
/// through `urls` (a page's GET and HEAD, its picture); every answer must be 200.
/// (requests, wall time, p50, p99).
fn stampede(
    urls: &[(&'static str, String)],
    clients: usize,
    each: usize,
) -> (usize, Duration, Duration, Duration) {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let urls = urls.to_vec();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(10))
                    .build();
                let mut lat = Vec::with_capacity(each);
                for j in 0..each {
                    let (m, u) = &urls[(i + j) % urls.len()];
                    let t = Instant::now();
                    let r = agent.request(m, u).call().expect("answer");
                    assert_eq!(r.status(), 200, "{m} {u}");
                    let mut sink = Vec::new();
                    r.into_reader().read_to_end(&mut sink).expect("body");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("client"))
        .collect();
    let took = t0.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    (all.len(), took, at(0.5), at(0.99))
}

#[test]
fn a_recording_keeps_the_first_thumbnail_as_its_poster_and_the_replay_card_names_it() {
    let _media = common::media_lock();
    let srv = TestServer::start_public(
        "",
        "",
        "[announce]\ngrace_seconds = 0\n[thumbnail]\ninterval_seconds = 1\nwidth = 640\n",
        None,
        &[],
    );
    let public = srv.url("");
    let public = public.trim_end_matches('/');
    let t0 = Instant::now();
    let show = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 8.0,
            ..Default::default()
        },
    );
    let (id, thumbnail) = wait_for(WAIT, "the recording's poster", || {
        let r = srv.json("/api/channels/alice/recordings")["recordings"][0].clone();
        let t = r["thumbnail"].as_str()?.to_string();
        Some((r["id"].as_str()?.to_string(), t))
    });
    eprintln!("poster listed {:?} after ffmpeg started", t0.elapsed());
    assert_eq!(thumbnail, format!("/vod/alice/{id}/poster.jpg"));
    let (s, h, poster) = fetch("GET", &srv.url(&thumbnail), &[]);
    assert_eq!((s, h["content-type"].as_str()), (200, "image/jpeg"));
    assert_eq!(probe(&poster), ("mjpeg".into(), 640, 360));

    // The replay page's card: the poster, absolute under public_url; HEAD answers too.
    let replay = format!("/replay/alice/{id}");
    let card = |page: &str| {
        assert_eq!(
            meta(page, "og:image"),
            Some(format!("{public}{thumbnail}")),
            "{page}"
        );
        assert_eq!(meta(page, "og:url"), Some(format!("{public}{replay}")));
        assert_eq!(
            meta(page, "twitter:card").as_deref(),
            Some("summary_large_image")
        );
        assert_eq!(
            meta(page, "twitter:image"),
            Some(format!("{public}{thumbnail}"))
        );
        assert!(meta(page, "og:title").is_some_and(|t| t.contains("Alice's debate")));
        assert!(meta(page, "og:description").is_some());
        assert!(!page.contains(ALICE_KEY));
    };
    let (s, _, page) = fetch("GET", &srv.url(&replay), &[]);
    assert_eq!(s, 200);
    card(&String::from_utf8_lossy(&page));

    let (ok, err) = show.wait(Duration::from_secs(30));
    assert!(ok, "{err}");
    wait_for(WAIT, "the recording to end", || {
        let r = srv.json("/api/channels/alice/recordings");
        (r["recordings"][0]["live"] == false).then_some(())
    });
    // The show's first picture stays its poster (the live thumbnail moved on since).
    let (_, h, later) = fetch("GET", &srv.url(&thumbnail), &[]);
    assert_eq!(later, poster, "the poster is the show's first picture");
    assert!(h["cache-control"].contains("max-age"), "{h:?}");
    let (_, _, live) = fetch("GET", &srv.url("/thumb/alice.jpg"), &[]);
    assert_ne!(live, poster, "the live thumbnail moved on");
    let (s, h, page) = fetch("GET", &srv.url(&replay), &[]);
    assert_eq!(
        (s, h["content-type"].as_str()),
        (200, "text/html; charset=utf-8")
    );
    card(&String::from_utf8_lossy(&page));
    let (s, h, b) = fetch("HEAD", &srv.url(&replay), &[]);
    assert_eq!(s, 200);
    assert!(b.is_empty() && h["content-length"].parse::<usize>().expect("len") > 500);
    assert_eq!(
        fetch("GET", &srv.url("/replay/alice/20001231T000000Z"), &[]).0,
        404
    );
    assert_eq!(
        fetch("HEAD", &srv.url("/replay/alice/20001231T000000Z"), &[]).0,
        404
    );

    // A crawler stampede on the posted replay link: page and poster from memory.
    let urls = [
        ("GET", srv.url(&replay)),
        ("HEAD", srv.url(&replay)),
        ("GET", srv.url(&thumbnail)),
    ];
    let (n, took, p50, p99) = stampede(&urls, 40, 50);
    eprintln!(
        "replay stampede: {n} requests (replay page GET/HEAD, poster) from 40 clients in \
         {took:?}: {:.0}/s, p50 {p50:?}, p99 {p99:?}",
        n as f64 / took.as_secs_f64()
    );
    assert!(p99 < Duration::from_millis(750), "p99 {p99:?}");
}

#[test]
fn go_live_posts_carry_the_real_thumbnail() {
    let _media = common::media_lock();
    let m = StandIn::start(stand_in::mastodon("mastodon-test-token"));
    let b = StandIn::start(stand_in::bluesky());
    let hook = StandIn::start(stand_in::webhook("hook-secret"));
    let extra = format!(
        "[announce]\ngrace_seconds = 60\nbackoff_base_ms = 50\n\
         [announce.mastodon]\nenabled = true\ninstance_url = \"{}\"\n\
         [announce.bluesky]\nenabled = true\nservice = \"{}\"\nidentifier = \"{}\"\n\
         [[announce.webhooks]]\nname = \"hook\"\nurl = \"{}\"\nsecret_env = \"TEST_HOOK_SECRET\"\n",
        m.url(),
        b.url(),
        stand_in::BSKY_HANDLE,
        hook.url()
    );
    let srv = TestServer::start_public(
        "",
        "",
        &extra,
        None,
        &[
            (
                "ONAIR__ANNOUNCE__MASTODON__ACCESS_TOKEN",
                "mastodon-test-token",
            ),
            (
                "ONAIR__ANNOUNCE__BLUESKY__APP_PASSWORD",
                stand_in::BSKY_PASSWORD,
            ),
            ("TEST_HOOK_SECRET", "hook-secret"),
        ],
    );
    let t0 = Instant::now();
    let _p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 6.0,
            ..Default::default()
        },
    );
    let posted = m.wait_accepted_blocking(2, WAIT);
    eprintln!(
        "Mastodon had the picture and the post {:?} after ffmpeg started",
        t0.elapsed()
    );
    assert_eq!(posted[0].path, "/api/v2/media");
    let parts = multipart(
        posted[0].header("content-type").expect("ct"),
        &posted[0].body,
    )
    .expect("multipart");
    let file = parts.iter().find(|p| p.name == "file").expect("file");
    // The default [thumbnail] width.
    assert_eq!(probe(&file.data), ("mjpeg".into(), 1280, 720));
    assert_eq!(posted[1].path, "/api/v1/statuses");
    assert_eq!(form_all(&posted[1], "media_ids[]").len(), 1);

    let posted = b.wait_accepted_blocking(3, WAIT);
    assert_eq!(posted[1].path, "/xrpc/com.atproto.repo.uploadBlob");
    assert_eq!(posted[1].body, file.data);
    assert!(posted[2].json()["record"]["embed"]["external"]["thumb"]["ref"]["$link"].is_string());

    let hooked = hook.wait_accepted_blocking(1, WAIT);
    let image_url = hooked[0].json()["image_url"]
        .as_str()
        .expect("image_url")
        .to_string();
    assert!(
        image_url.starts_with(&srv.url("/thumb/alice.jpg?v=")),
        "{image_url}"
    );
    let (s, h, body) = fetch("GET", &image_url, &[]);
    assert_eq!((s, h["content-type"].as_str()), (200, "image/jpeg"));
    assert_eq!(probe(&body).1, 1280);
    let logs = srv.logs();
    for secret in [
        ALICE_KEY,
        "mastodon-test-token",
        stand_in::BSKY_PASSWORD,
        "hook-secret",
    ] {
        assert!(!logs.contains(secret), "a secret is in the logs:\n{logs}");
    }
}

#[test]
fn a_mastodon_token_without_write_media_is_said_once_and_posts_go_out() {
    let _media = common::media_lock();
    let m = StandIn::start(mastodon_api(MastodonApi {
        scopes: vec!["write:statuses"],
        ..MastodonApi::new("mastodon-test-token")
    }));
    let extra = format!(
        "[announce]\ngrace_seconds = 0\nbackoff_base_ms = 50\n\
         [announce.mastodon]\nenabled = true\ninstance_url = \"{}\"\n",
        m.url()
    );
    let srv = TestServer::start_with(
        &extra,
        &[(
            "ONAIR__ANNOUNCE__MASTODON__ACCESS_TOKEN",
            "mastodon-test-token",
        )],
    );
    for n in 1..=2 {
        let p = push(
            &srv.rtmp_url(ALICE_KEY),
            PushOpts {
                seconds: 3.0,
                ..Default::default()
            },
        );
        let statuses = wait_for(WAIT, "the status", || {
            let s: Vec<_> = m
                .accepted()
                .into_iter()
                .filter(|r| r.path == "/api/v1/statuses")
                .collect();
            (s.len() >= n).then_some(s)
        });
        assert!(form_all(&statuses[n - 1], "media_ids[]").is_empty());
        let _ = p.wait(WAIT);
        srv.wait_log("channel offline", WAIT);
    }
    let logs = srv.logs();
    assert_eq!(
        logs.matches("lacks the write:media scope").count(),
        1,
        "{logs}"
    );
    let uploads = m
        .requests()
        .iter()
        .filter(|(r, _)| r.path == "/api/v2/media")
        .count();
    assert_eq!(uploads, 1, "no upload after the 403");
}

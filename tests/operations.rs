//! Operating onair: hot reload of channels and keys with SIGHUP while streams play.

mod common;

use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(1);

fn last_sequence(p: &str) -> u64 {
    segments(p)
        .last()
        .and_then(|(u, _)| segment_number(u))
        .unwrap_or(0)
}

#[test]
fn reload_adds_and_removes_channels_without_touching_other_streams() {
    let _g = media_lock();
    let srv = TestServer::start(TS);
    let long = || PushOpts {
        seconds: 40.0,
        ..Default::default()
    };
    let _alice = push(&srv.rtmp_url(ALICE_KEY), long());
    let mut bob = push(&srv.rtmp_url(BOB_KEY), long());
    srv.wait_segments("alice", "source", 1, 30 * SECS);
    srv.wait_segments("bob", "source", 1, 30 * SECS);

    // Add carol, drop bob, keep alice.
    let text = std::fs::read_to_string(&srv.config).expect("config");
    let bob_block = format!("[[channels]]\nname = \"bob\"\nkey = \"{BOB_KEY}\"\n");
    assert!(text.contains(&bob_block));
    let carol_key = "carol-secret-key-789";
    let new = text.replace(
        &bob_block,
        &format!("[[channels]]\nname = \"carol\"\nkey = \"{carol_key}\"\n"),
    );
    std::fs::write(&srv.config, new).expect("write config");
    let alice_before = last_sequence(&srv.get("/hls/alice/source/index.m3u8").1);
    srv.signal("HUP");
    srv.wait_log("configuration reloaded", 10 * SECS);

    // Bob's publisher is disconnected and the channel is gone.
    wait_for(15 * SECS, "bob's encoder to be disconnected", || {
        (!bob.running()).then_some(())
    });
    assert_eq!(srv.get("/api/channels/bob").0, 404, "{}", srv.logs());
    assert_eq!(srv.get("/hls/bob/master.m3u8").0, 404);
    // Carol's key now publishes.
    let _carol = push(
        &srv.rtmp_url(carol_key),
        PushOpts {
            seconds: 6.0,
            ..Default::default()
        },
    );
    srv.wait_segments("carol", "source", 1, 30 * SECS);
    // Alice never stopped: her sequence moved on without a discontinuity.
    let p = srv.get("/hls/alice/source/index.m3u8").1;
    assert!(last_sequence(&p) > alice_before);
    assert!(!p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
    assert_eq!(srv.json("/api/channels/alice")["live"], true);

    // A broken file changes nothing.
    std::fs::write(&srv.config, "[hls]\nsegment_seconds = \"soon\"\n").expect("write");
    srv.signal("HUP");
    srv.wait_log("reload refused", 10 * SECS);
    assert_eq!(srv.get("/api/channels/carol").0, 200);
    assert_eq!(srv.json("/api/channels/alice")["live"], true);
    for key in [ALICE_KEY, BOB_KEY, carol_key] {
        assert!(!srv.logs().contains(key), "key in logs");
    }
}

/// Value of the first sample of `name` whose labels contain every `labels` pair.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_move_with_a_push() {
    let _g = media_lock();
    let srv = TestServer::start("");
    let _p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 10.0,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 1, 30 * SECS);
    let (status, first) = srv.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(&first, "onair_channel_live", &[("channel", "alice")]),
        Some(1.0),
        "{first}"
    );
    assert_eq!(
        metric(&first, "onair_channel_live", &[("channel", "bob")]),
        Some(0.0)
    );
    let bytes1 =
        metric(&first, "onair_ingest_bytes_total", &[("channel", "alice")]).expect("bytes");
    assert!(bytes1 > 10_000.0);
    let segs1 = metric(
        &first,
        "onair_hls_segments_total",
        &[("channel", "alice"), ("rendition", "source")],
    )
    .expect("segments");
    assert!(segs1 >= 1.0);
    assert!(metric(&first, "onair_process_resident_memory_bytes", &[]).expect("rss") > 1e6);
    assert!(metric(&first, "onair_uptime_seconds", &[]).is_some());
    srv.wait_segments("alice", "source", 3, 30 * SECS);
    let second = srv.get("/metrics").1;
    assert!(
        metric(&second, "onair_ingest_bytes_total", &[("channel", "alice")]).expect("bytes")
            > bytes1
    );
    assert!(
        metric(
            &second,
            "onair_hls_segments_total",
            &[("channel", "alice"), ("rendition", "source")]
        )
        .expect("segments")
            > segs1
    );
    let playlist_hits = metric(
        &second,
        "onair_http_requests_total",
        &[("route", "media_playlist"), ("status", "200")],
    )
    .expect("requests");
    assert!(playlist_hits >= 2.0);
    assert!(
        second.contains("onair_http_request_duration_seconds_bucket{"),
        "histogram buckets"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let srv = TestServer::start("[log]\nformat = \"json\"\n");
    srv.wait_log("onair ready", 10 * SECS);
    let logs = srv.logs();
    let first = logs.lines().next().expect("a log line");
    let v: serde_json::Value = serde_json::from_str(first).expect("JSON log line");
    assert_eq!(v["level"], "INFO");
    assert!(v["fields"]["message"].as_str().is_some(), "{first}");
}

#[test]
fn admin_lists_streams_and_kicks_a_publisher() {
    let _g = media_lock();
    let token = "admin-token-for-tests-0123";
    let srv = TestServer::start(&format!("[server]\nadmin_token = \"{token}\"\n"));
    let mut p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 30.0,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 1, 30 * SECS);
    let call = |method: &str, path: &str, auth: Option<&str>| -> (u16, String) {
        let mut req = ureq::request(method, &srv.url(path));
        if let Some(t) = auth {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    };
    assert_eq!(call("GET", "/api/admin/streams", None).0, 401);
    assert_eq!(
        call("GET", "/api/admin/streams", Some("wrong-token")).0,
        401
    );
    assert_eq!(
        call(
            "POST",
            "/api/admin/channels/alice/kick",
            Some("wrong-token")
        )
        .0,
        401
    );
    let (status, body) = call("GET", "/api/admin/streams", Some(token));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let s = &v[0];
    assert_eq!(s["channel"], "alice");
    assert!(s["publisher"]
        .as_str()
        .expect("publisher")
        .starts_with("127.0.0.1:"));
    assert_eq!(s["protocol"], "rtmp");
    assert_eq!(s["video"]["width"], 320);
    assert_eq!(s["video"]["height"], 180);
    assert!(s["video"]["codec"]
        .as_str()
        .expect("codec")
        .starts_with("avc1."));
    assert_eq!(s["audio"]["codec"], "mp4a.40.2");
    assert!(s["uptime_seconds"].as_f64().expect("uptime") > 0.0);
    assert!(s["bitrate_bps"].as_u64().expect("bitrate") > 0);
    assert_eq!(s["renditions"][0]["name"], "source");
    assert!(!body.contains(ALICE_KEY));

    let (status, body) = call("POST", "/api/admin/channels/alice/kick", Some(token));
    assert_eq!((status, body.as_str()), (200, "{\"kicked\":true}"));
    wait_for(10 * SECS, "the kicked encoder to stop", || {
        (!p.running()).then_some(())
    });
    wait_for(10 * SECS, "ENDLIST after the kick", || {
        srv.get("/hls/alice/source/index.m3u8")
            .1
            .contains("#EXT-X-ENDLIST")
            .then_some(())
    });
    assert_eq!(srv.json("/api/channels/alice")["live"], false);
    assert_eq!(
        call("POST", "/api/admin/channels/nobody/kick", Some(token)).0,
        404
    );
    let (_, body) = call("GET", "/api/admin/streams", Some(token));
    assert_eq!(body, "[]");
    p.stop();
}

/// Sends `n` requests for /healthz over one pipelined keep-alive connection and waits for every
/// answer.
fn hammer_healthz(addr: &str, n: usize) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let batch = 200;
    let req = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".repeat(batch);
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0;
    while done < n {
        s.write_all(req.as_bytes()).expect("write");
        // Each answer ends with its 3-byte body "ok\n"; count the status lines.
        let mut seen = 0;
        let mut tail: Vec<u8> = Vec::new();
        while seen < batch {
            let k = s.read(&mut buf).expect("read");
            assert!(k > 0, "server closed the connection");
            tail.extend_from_slice(&buf[..k]);
            seen += tail.windows(9).filter(|w| *w == b"HTTP/1.1 ").count();
            // Keep the last 8 bytes: a status line may straddle two reads.
            let keep = tail.len().min(8);
            tail.drain(..tail.len() - keep);
        }
        done += batch;
    }
}

/// The Prometheus exporter keeps every histogram sample until it is folded into buckets: a
/// server that is never scraped must not grow with its request count (it did, by ~18 bytes
/// a request, until the recorder got a periodic upkeep).
#[test]
fn memory_stays_flat_over_many_requests_without_scrapes() {
    let srv = TestServer::start("");
    // Warm up to the steady state (allocator arenas, one upkeep interval's worth of samples).
    hammer_healthz(&srv.http, 100_000);
    let before = srv.rss_kib();
    hammer_healthz(&srv.http, 400_000);
    // Unbounded, 400,000 samples kept ~7 MB; folded every second, at most about a second's
    // worth is held at once (~1 MB at this rate).
    let limit = before + 3_000;
    let after = wait_for(
        Duration::from_secs(5),
        "RSS back near its steady state",
        || {
            let now = srv.rss_kib();
            (now < limit).then_some(now)
        },
    );
    eprintln!("RSS {before} KiB before, {after} KiB after 400,000 more requests");
}

//! hls.js in headless Chromium plays onair's low-latency HLS through Debian's nginx running the
//! shipped `deploy/nginx-edge.conf`: the page, hls.js and every playlist, blocking reload and
//! part come through the edge, without stalls, a few seconds at most behind the encoder (the
//! frames carry the wall-clock time they were made, scripts/latency/clock_source.py). Needs node
//! + playwright-core (npm), /usr/bin/chromium and nginx; scripts/test installs them.

mod common;

use common::edge::Edge;
use common::hlsjs::watch_clock_stream;
use common::*;

#[test]
fn hls_js_plays_low_latency_through_the_edge() {
    let _g = media_lock();
    // The built-in defaults: low-latency fMP4, 0.2 s parts.
    let srv = TestServer::start("");
    let edge = Edge::start(&srv.http);
    let r = watch_clock_stream(&srv, &edge.url("/hls/alice/master.m3u8"));
    let frames = r["frames"].as_u64().unwrap_or(0);
    let median = r["median"].as_f64().unwrap_or(f64::MAX);
    assert!(frames >= 200, "only {frames} frames shown in 10 s: {r}");
    assert_eq!(r["stalls"], 0, "playback stalled: {r}");
    assert!(median < 3.0, "glass-to-glass median {median} s: {r}");
    assert_eq!(r["errors"], serde_json::json!([]));
    // It all came through the edge: blocking reloads and parts.
    let log = edge.log();
    let blocking = log.iter().filter(|(u, ..)| u.contains("_HLS_msn=")).count();
    let parts = log
        .iter()
        .filter(|(u, s, ..)| *s == 200 && u.ends_with(".m4s"))
        .count();
    assert!(
        blocking >= 20 && parts >= 20,
        "{blocking} blocking reloads, {parts} parts through the edge"
    );
}

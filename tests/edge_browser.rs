//! hls.js in headless Chromium plays onair's low-latency HLS through Debian's nginx running the
//! shipped `deploy/nginx-edge.conf`: the page, hls.js and every playlist, blocking reload and
//! part come through the edge, without stalls, a few seconds at most behind the encoder (the
//! frames carry the wall-clock time they were made, scripts/latency/clock_source.py). Needs node
//! + playwright-core (npm), /usr/bin/chromium and nginx; scripts/test installs them.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::edge::Edge;
use common::*;

#[test]
fn hls_js_plays_low_latency_through_the_edge() {
    let _g = media_lock();
    // The built-in defaults: low-latency fMP4, 0.2 s parts.
    let srv = TestServer::start("");
    let edge = Edge::start(&srv.http);
    let root = env!("CARGO_MANIFEST_DIR");
    let pipeline = format!(
        "python3 {root}/scripts/latency/clock_source.py 640 360 30 40 | ffmpeg -hide_banner -loglevel error -nostdin \
         -f rawvideo -pix_fmt yuv420p -s 640x360 -r 30 -i - -f lavfi -i sine=sample_rate=48000 -map 0:v -map 1:a \
         -c:v libx264 -preset ultrafast -tune zerolatency -g 60 -keyint_min 60 -sc_threshold 0 -b:v 600k \
         -c:a aac -b:a 64k -shortest -flvflags no_duration_filesize -f flv {}",
        srv.rtmp_url(ALICE_KEY)
    );
    let mut encoder = Command::new("bash")
        .args(["-c", &pipeline])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("encoder pipeline");
    srv.wait_segments("alice", "source", 2, Duration::from_secs(30));
    let out = Command::new("node")
        .arg(format!("{root}/tests/browser/low_latency.mjs"))
        .arg(edge.url("/hls/alice/master.m3u8"))
        .args(["6000", "10000"])
        .output()
        .expect("node (scripts/test installs it)");
    let _ = encoder.kill();
    let _ = encoder.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
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

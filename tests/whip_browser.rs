//! Going live from a browser: headless Chromium with a fake camera and microphone publishes over
//! WHIP (RTCPeerConnection + fetch from a page on the server's origin, scripts/whip/page.html),
//! forced to H.264 (passed through) and to VP8 (re-encoded to H.264 on the transcode pool) with
//! `setCodecPreferences`. The HLS source rendition must decode as H.264 + AAC at the camera's
//! size, and DELETE must end the broadcast. Needs node + playwright-core (npm) and
//! /usr/bin/chromium; scripts/test installs them.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn publish_from_chromium(codec: &str, mime: &str) {
    let _g = media_lock();
    // MPEG-TS segments: one segment is probed on its own.
    let srv = TestServer::start(TS);
    let root = env!("CARGO_MANIFEST_DIR");
    let mut node = Command::new("node")
        .arg(format!("{root}/tests/browser/whip.mjs"))
        .arg(srv.url("/"))
        .args(["alice", ALICE_KEY, codec, "640", "360", "12"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (scripts/test installs it)");
    let stderr = node.stderr.take().expect("stderr");
    let (live_tx, live_rx) = std::sync::mpsc::channel();
    let errors = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line == "LIVE" {
                let _ = live_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if live_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = node.kill();
        let mut out = String::new();
        if let Some(mut o) = node.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        panic!(
            "Chromium did not go live: {out}\n{}\nserver:\n{}",
            errors.join().unwrap_or_default(),
            srv.logs()
        );
    }
    let playlist = srv.wait_segments("alice", "source", 2, Duration::from_secs(30));
    let (name, _) = segments(&playlist).last().cloned().expect("segment");
    let streams = ffprobe_url(&srv.url(&format!("/hls/alice/source/{name}")));
    assert!(
        streams
            .iter()
            .any(|s| s.codec_name == "h264" && s.width == Some(640) && s.height == Some(360)),
        "{codec}: {streams:?}"
    );
    assert!(streams.iter().any(|s| s.codec_name == "aac"), "{streams:?}");
    // The whole segment decodes.
    let (ok, err) = ffmpeg_decode(&srv.url(&format!("/hls/alice/source/{name}")), &[]);
    assert!(ok, "{err}");
    assert_eq!(srv.json("/api/channels/alice")["live"], true);
    let status = wait_for(Duration::from_secs(60), "node to finish", || {
        node.try_wait().ok().flatten()
    });
    let mut out = String::new();
    node.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let errs = errors.join().unwrap_or_default();
    assert!(status.success(), "{out}\n{errs}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(r["post"]["status"], 201, "{r}");
    assert_eq!(r["stats"]["video"]["codec"], mime, "the browser sent {r}");
    assert_eq!(r["delete"], 200, "{r}");
    wait_for(Duration::from_secs(10), "ENDLIST after DELETE", || {
        let (_, p) = srv.get("/hls/alice/source/index.m3u8");
        p.contains("#EXT-X-ENDLIST").then_some(())
    });
    assert_eq!(srv.json("/api/channels/alice")["live"], false);
    let logs = srv.logs();
    assert!(!logs.contains(ALICE_KEY), "the key was logged");
    assert!(
        logs.contains(&format!("video=\"{codec}\"")),
        "answered with another codec: {logs}"
    );
}

#[test]
fn chromium_h264_passes_through() {
    publish_from_chromium("H264", "video/H264");
}

#[test]
fn chromium_vp8_is_reencoded_to_h264() {
    publish_from_chromium("VP8", "video/VP8");
}

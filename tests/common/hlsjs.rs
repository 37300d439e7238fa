//! hls.js in headless Chromium watching a clock-stamped stream: one ffmpeg push of frames that
//! carry their wall-clock time (scripts/latency/clock_source.py), and tests/browser/low_latency.mjs
//! reporting frames shown, stalls and glass-to-glass delay. Used straight and through the edge.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{TestServer, ALICE_KEY};

/// Pushes 40 s of clock-stamped 360p to `alice`, plays `master_url` for 10 s (after 6 s of
/// warm-up) and returns the page's JSON report. Panics if the page script fails.
pub fn watch_clock_stream(srv: &TestServer, master_url: &str) -> serde_json::Value {
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
        .arg(master_url)
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
    serde_json::from_slice(&out.stdout).expect("probe JSON")
}

//! The watch page in a real browser: Debian's headless Chromium driven by playwright-core
//! (`tests/browser/watch.mjs`) while ffmpeg pushes. Screenshots land in `tests/artifacts/`.
//! Needs `node`, `npm install` (playwright-core) and `/usr/bin/chromium`; scripts/test installs
//! them.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SECS: Duration = Duration::from_secs(1);

#[test]
fn watch_page_plays_chats_and_follows_live_state_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("node_modules/playwright-core").exists(),
        "run `npm install` first (scripts/test does)"
    );
    let _g = media_lock();
    let srv = TestServer::start("");
    let artifacts = root.join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let control = temp_dir("browser").join("control");
    let long = || PushOpts {
        seconds: 120.0,
        ..Default::default()
    };
    let mut pusher = Some(push(&srv.rtmp_url(ALICE_KEY), long()));
    srv.wait_segments("alice", "source", 2, 30 * SECS);

    let mut node = Command::new("node")
        .arg(root.join("tests/browser/watch.mjs"))
        .arg(format!("http://{}", srv.http))
        .arg(&artifacts)
        .arg(&control)
        .current_dir(root)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    // Follow the script's requests to stop and restart the broadcast, within a deadline.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut restarted = false;
    let status = loop {
        if let Some(st) = node.try_wait().expect("node status") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            panic!("browser test did not finish in time");
        }
        match std::fs::read_to_string(&control).unwrap_or_default().trim() {
            "stop" => {
                if let Some(mut p) = pusher.take() {
                    p.stop();
                }
            }
            "start" if !restarted => {
                restarted = true;
                pusher = Some(push(&srv.rtmp_url(ALICE_KEY), long()));
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "browser test failed; server logs:\n{}",
        srv.logs()
    );
    assert!(artifacts.join("watch-live.png").exists());
}

//! Debate mode in the browser: Debian's headless Chromium (`tests/browser/questions.mjs`)
//! opens two watch pages, the OBS overlay and the studio; a question asked in one page is
//! voted in the other and pinned from the studio, and the banner must show in both pages and
//! the overlay within 1 s; the speaking timer counts down everywhere and says "Time's up"; an
//! HTML-looking question stays text with no dialog; a page whose connection drops catches up.
//! Screenshots land in `tests/artifacts/questions/`. Needs node, `npm install`
//! (playwright-core) and /usr/bin/chromium; scripts/test installs them.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

#[test]
fn two_watch_pages_the_overlay_and_the_studio_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("node_modules/playwright-core").exists(),
        "run `npm install` first (scripts/test does)"
    );
    // Both pages come from 127.0.0.1: no wait between their questions here.
    let srv = TestServer::start("[debate]\nseconds_between_questions = 0\n");
    let artifacts = root.join("tests/artifacts/questions");
    let out = Command::new("node")
        .arg(root.join("tests/browser/questions.mjs"))
        .arg(format!("http://{}", srv.http))
        .arg(ALICE_KEY)
        .arg(&artifacts)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("QUESTIONS OK"),
        "questions browser test failed:\n{stdout}\nserver logs:\n{}",
        srv.logs()
    );
    let report = stdout
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .expect("report line");
    println!("questions browser report: {report}");
    for page in ["page A", "page B", "overlay"] {
        let ms = report["banner_ms"][page].as_u64().expect("banner time");
        assert!(ms <= 1000, "{page}: banner after {ms} ms");
    }
    assert!(!srv.logs().contains(ALICE_KEY), "stream key in the logs");
}

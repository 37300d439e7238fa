//! Signing in from the watch page in a real browser (Debian's headless Chromium driven by
//! playwright-core, `tests/browser/signin.mjs`) against the Mastodon stand-in, as a new viewer
//! would: sign in with a Mastodon server, chat under that name, tick "Also post to my
//! timeline", see the exact post, and find it on the stand-in's timeline with the watch link
//! and the configured visibility; then sign out. Screenshots land in `tests/artifacts/`.

mod common;
mod stand_in;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use stand_in::mastodon_server::{MastodonOpts, MastodonServer};

#[test]
fn sign_in_chat_and_cross_post_from_the_watch_page_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("node_modules/playwright-core").exists(),
        "run `npm install` first (scripts/test does)"
    );
    let _g = media_lock();
    let m = MastodonServer::start(MastodonOpts::default());
    let srv = TestServer::start_public("", "", "[auth]\nallow_private_hosts = true\n", None, &[]);
    let base = format!("http://{}", srv.http);
    let artifacts = root.join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let mut node = Command::new("node")
        .arg(root.join("tests/browser/signin.mjs"))
        .arg(&base)
        .arg(m.url())
        .arg(&artifacts)
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let out = node.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            println!("{l}");
            lines.push(l);
        }
        lines
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(st) = node.try_wait().expect("node status") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            panic!("browser test did not finish in time; logs:\n{}", srv.logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines = reader.join().expect("reader");
    assert!(
        status.success() && lines.iter().any(|l| l == "BROWSER OK"),
        "browser test failed; server logs:\n{}",
        srv.logs()
    );
    // What the page showed before posting is exactly what reached the viewer's timeline.
    let shown: String = lines
        .iter()
        .find_map(|l| l.strip_prefix("POSTED "))
        .and_then(|j| serde_json::from_str(j).ok())
        .expect("the page printed the previewed text");
    let statuses = m.statuses();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].account, "bob");
    assert_eq!(statuses[0].status, shown);
    assert!(statuses[0].status.contains(&format!("{base}/watch/alice")));
    assert_eq!(statuses[0].visibility, "unlisted");
    assert!(artifacts.join("signin-chat.png").exists());
}

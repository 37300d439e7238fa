//! The replay page in headless Chromium (playwright-core, /usr/bin/chromium; scripts/test
//! installs them): a show is pushed with ffmpeg while two chat messages are posted some seconds
//! apart and a question is pinned between them; after it ends the page plays the recording
//! with hls.js, each message appears when the video passes its media time, the pinned question
//! is the banner over the video while the video is within its time on screen (seeks included),
//! and the offline watch page lists the show.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn the_replay_page_brings_the_chat_and_the_pinned_question_back_at_their_moments() {
    let _g = media_lock();
    let srv = TestServer::start(&format!(
        "[server]\nadmin_token = \"{}\"\n[announce]\ngrace_seconds = 0\n",
        common::api::ADMIN_TOKEN
    ));
    let p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 16.0,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 1, Duration::from_secs(20));
    let live = wait_for(Duration::from_secs(20), "a live recording", || {
        let r = srv.json("/api/channels/alice/recordings");
        r["recordings"][0]["live"]
            .as_bool()
            .filter(|l| *l)
            .map(|_| r)
    });
    let id = live["recordings"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        common::api::post_chat(&srv, "alice", "ann", "early one").status,
        202
    );
    // On screen from "early one" to "late one"; its text must stay text.
    let text = "Is <b>this</b> the banner?";
    let asked = common::api::ask(&srv, "alice", "carol", text);
    assert_eq!(asked.status, 202, "{:?}", asked.body);
    let q = asked.body["id"].as_u64().expect("question id");
    let pin = |state: &str| {
        let a = common::api::question_state(&srv, "alice", q, state);
        assert_eq!(a.status, 200, "{:?}", a.body);
    };
    pin("pinned");
    srv.wait_segments("alice", "source", 5, Duration::from_secs(20));
    assert_eq!(
        common::api::post_chat(&srv, "alice", "bob", "late one").status,
        202
    );
    pin("answered");
    let (ok, err) = p.wait(Duration::from_secs(40));
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(20), "the recording to end", || {
        let r = srv.json("/api/channels/alice/recordings");
        (r["recordings"][0]["live"] == false).then_some(())
    });
    let log = srv.json(&format!("/api/channels/alice/recordings/{id}/chat"));
    let offset = |i: usize| {
        log["messages"][i]["offset_seconds"]
            .as_f64()
            .expect("offset")
    };
    let (a, b) = (offset(0), offset(1));
    assert!(b - a > 4.0, "{log}");
    let shown = &log["questions"][0];
    assert_eq!(shown["text"], text, "{log}");
    let (from, until) = (
        shown["offset_seconds"].as_f64().expect("offset"),
        shown["until_seconds"].as_f64().expect("until"),
    );
    assert!(
        from >= a - 0.5 && until <= b + 0.5 && until - from > 3.0,
        "{log}"
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("node")
        .arg(format!("{root}/tests/browser/replay.mjs"))
        .arg(srv.url(""))
        .args([
            "alice",
            &id,
            "early one",
            &a.to_string(),
            "late one",
            &b.to_string(),
            text,
            &from.to_string(),
            &until.to_string(),
        ])
        .output()
        .expect("node (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("BROWSER OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Operating onair: hot reload of channels and keys with SIGHUP while streams play.

mod common;

use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(1);

fn last_sequence(p: &str) -> u64 {
    segments(p)
        .last()
        .and_then(|(u, _)| u.trim_end_matches(".ts").parse().ok())
        .unwrap_or(0)
}

#[test]
fn reload_adds_and_removes_channels_without_touching_other_streams() {
    let _g = media_lock();
    let srv = TestServer::start("");
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

//! Hostile and broken RTMP peers against the real server. Each test keeps channel bob live with
//! a scripted publisher looping a fixture in real time, does something nasty as or next to
//! alice, asserts what the server did (and the log line that says so, naming the peer and the
//! limit, never the key), then asserts that bob kept producing segments.
//!
//! Alice's media is sent as fast as the socket takes it: segmenting follows media time, not
//! wall time, so these tests need no real-time waits.

mod common;

use std::time::Duration;

use common::rtmp::{chunks, fixture_tags, LoopingPublisher, RtmpClient};
use common::*;

const SECS: Duration = Duration::from_secs(1);

/// Media sequence number of the last segment listed.
fn last_seq(p: &str) -> u64 {
    segments(p)
        .last()
        .and_then(|(u, _)| segment_number(u))
        .unwrap_or(0)
}

fn media_sequence(p: &str) -> u64 {
    tag_value(p, "#EXT-X-MEDIA-SEQUENCE")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A server with bob live; `env` overrides settings (`ONAIR__RTMP__...`).
fn server_with_bob(env: &[(&str, &str)]) -> (TestServer, LoopingPublisher) {
    let srv = TestServer::start_with(TS, env);
    let bob = LoopingPublisher::start(&srv.rtmp, BOB_KEY);
    srv.wait_segments("bob", "source", 1, 20 * SECS);
    (srv, bob)
}

/// Bob's playlist moves on by two more segments.
fn bob_keeps_playing(srv: &TestServer) {
    let from = last_seq(&srv.get("/hls/bob/source/index.m3u8").1);
    wait_for(20 * SECS, "bob to keep producing segments", || {
        let p = srv.get("/hls/bob/source/index.m3u8").1;
        (last_seq(&p) >= from + 2 && !p.contains("#EXT-X-ENDLIST")).then_some(())
    });
    assert_eq!(srv.json("/api/channels/bob")["live"], true);
    let logs = srv.logs();
    for key in [ALICE_KEY, BOB_KEY] {
        assert!(!logs.contains(key), "a stream key is in the logs");
    }
}

fn wait_ended(srv: &TestServer, channel: &str) -> String {
    wait_for(15 * SECS, &format!("{channel}'s playlist to end"), || {
        let (s, p) = srv.get(&format!("/hls/{channel}/source/index.m3u8"));
        (s == 200 && p.contains("#EXT-X-ENDLIST")).then_some(p)
    })
}

fn probe_segment(srv: &TestServer, channel: &str, uri: &str) -> Vec<ProbedStream> {
    let (status, data) = srv.get_bytes(&format!("/hls/{channel}/source/{uri}"));
    assert_eq!(status, 200, "{uri}");
    ffprobe_bytes(&data)
}

#[test]
fn chunk_size_of_0x7fffffff_is_refused() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[]);
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    alice
        .send_tags(&fixture_tags("testsrc-320x180.flv")[..20], 0)
        .expect("send");
    alice
        .raw_message(2, 1, 0, 0, &0x7fff_ffffu32.to_be_bytes())
        .expect("send");
    assert!(alice.closed_by_server(10 * SECS), "connection kept open");
    srv.wait_log(
        "chunk size 2147483647 is outside 1..=rtmp.max_chunk_size (1048576)",
        5 * SECS,
    );
    assert!(srv.logs().contains("peer=127.0.0.1:"), "{}", srv.logs());
    wait_for(10 * SECS, "alice offline", || {
        (srv.json("/api/channels/alice")["live"] == false).then_some(())
    });
    bob_keeps_playing(&srv);
}

#[test]
fn message_of_16_mib_is_refused_before_it_is_buffered() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[]);
    let before = srv.rss_kib();
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    // A video message declaring 16 MiB - 1 (the largest RTMP can say), then 1 MiB of it.
    let mut wire = vec![6u8, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
    wire.extend(noise(1 << 20, 3));
    let _ = std::io::Write::write_all(&mut alice.sock, &wire);
    assert!(alice.closed_by_server(10 * SECS), "connection kept open");
    srv.wait_log(
        "message of 16777215 bytes is larger than rtmp.max_message_bytes (8388608)",
        5 * SECS,
    );
    let after = srv.rss_kib();
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    drop(alice);
    // Before a publish is accepted only commands are expected: 1 MiB is already too much.
    let mut anon = RtmpClient::connect(&srv.rtmp).expect("connect");
    let mut wire = vec![3u8, 0, 0, 0, 0x10, 0x00, 0x00, 20, 0, 0, 0, 0];
    wire.extend(noise(4096, 4));
    let _ = std::io::Write::write_all(&mut anon.sock, &wire);
    assert!(anon.closed_by_server(10 * SECS), "connection kept open");
    srv.wait_log(
        "message of 1048576 bytes is larger than the limit before publishing (65536)",
        5 * SECS,
    );
    bob_keeps_playing(&srv);
}

#[test]
fn interleaved_chunk_streams_are_reassembled() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[]);
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    alice.set_chunk_size(128).expect("chunk size");
    let tags = fixture_tags("testsrc-320x180.flv");
    // Each video message's chunks alternate with the next audio message's chunks.
    let mut wire = Vec::new();
    let (video, audio): (Vec<_>, Vec<_>) = tags.iter().partition(|t| t.kind == 9);
    let mut audio = audio.into_iter();
    for v in video {
        let vc = chunks(6, 9, 1, v.timestamp_ms, &v.body, 128);
        let ac = audio
            .next()
            .map(|a| chunks(4, 8, 1, a.timestamp_ms, &a.body, 128))
            .unwrap_or_default();
        for i in 0..vc.len().max(ac.len()) {
            if let Some(c) = vc.get(i) {
                wire.extend_from_slice(c);
            }
            if let Some(c) = ac.get(i) {
                wire.extend_from_slice(c);
            }
        }
    }
    std::io::Write::write_all(&mut alice.sock, &wire).expect("send");
    drop(alice);
    let p = wait_ended(&srv, "alice");
    let segs = segments(&p);
    assert!(segs.len() >= 2, "{p}");
    let streams = probe_segment(&srv, "alice", &segs[0].0);
    assert_test_pattern(&streams);
    bob_keeps_playing(&srv);
}

#[test]
fn timestamps_that_wrap_jump_hours_and_go_backwards_are_repaired() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[]);
    let tags = fixture_tags("testsrc-320x180.flv");
    let span = tags.last().expect("tags").timestamp_ms + 33;
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    // Starts 4.5 s before the 32-bit wrap, so the second pass wraps in its middle.
    let mut offset = u32::MAX - 4500;
    alice.send_tags(&tags, offset).expect("send");
    offset = offset.wrapping_add(span);
    alice.send_tags(&tags[2..], offset).expect("send");
    // Three hours forward.
    offset = offset.wrapping_add(span + 3 * 3600 * 1000);
    alice.send_tags(&tags[2..], offset).expect("send");
    // An hour back.
    offset = offset.wrapping_add(span).wrapping_sub(3600 * 1000);
    alice.send_tags(&tags[2..], offset).expect("send");
    // Half a second back: clamped, not rebased.
    offset = offset.wrapping_add(span - 500);
    alice.send_tags(&tags[2..], offset).expect("send");
    drop(alice);
    let p = wait_ended(&srv, "alice");
    let segs = segments(&p);
    let total: f64 = segs.iter().map(|(_, d)| d).sum();
    assert!(segs.len() >= 5, "{p}");
    for (uri, d) in &segs {
        assert!(*d > 0.0 && *d < 4.5, "segment {uri} lasts {d} s:\n{p}");
    }
    assert!(
        (10.0..20.0).contains(&total),
        "{total} s of media for 15 s sent:\n{p}"
    );
    assert!(!p.contains("#EXT-X-DISCONTINUITY"), "{p}");
    srv.wait_log("timestamp jump repaired", 5 * SECS);
    let streams = probe_segment(&srv, "alice", &segs[segs.len() - 2].0);
    assert!(
        streams.iter().any(|s| s.codec_name == "h264"),
        "{streams:?}"
    );
    bob_keeps_playing(&srv);
}

#[test]
fn media_before_the_sequence_headers_is_dropped() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[]);
    let tags = fixture_tags("testsrc-320x180.flv");
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    // Frames without their configuration first, then the stream properly.
    alice.send_tags(&tags[2..40], 0).expect("send");
    alice.send_tags(&tags, 1500).expect("send");
    drop(alice);
    let p = wait_ended(&srv, "alice");
    srv.wait_log("media before its sequence header dropped", 5 * SECS);
    let streams = probe_segment(&srv, "alice", &segments(&p)[0].0);
    assert!(
        streams.iter().any(|s| s.codec_name == "h264"),
        "{streams:?}"
    );
    bob_keeps_playing(&srv);
}

fn one_track(kind: u8) {
    let (srv, _bob) = server_with_bob(&[]);
    let tags: Vec<_> = fixture_tags("testsrc-320x180.flv")
        .into_iter()
        .filter(|t| t.kind == kind)
        .collect();
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    let span = 3033;
    alice.send_tags(&tags, 0).expect("send");
    alice.send_tags(&tags[1..], span).expect("send");
    alice.send_tags(&tags[1..], 2 * span).expect("send");
    let live = srv.wait_segments("alice", "source", 2, 15 * SECS);
    let master = srv.get("/hls/alice/master.m3u8").1;
    drop(alice);
    let p = wait_ended(&srv, "alice");
    assert!(count_segments(&p) >= 3, "{p}\n{live}");
    let streams = probe_segment(&srv, "alice", &segments(&p)[0].0);
    let kinds: Vec<&str> = streams.iter().map(|s| s.codec_name.as_str()).collect();
    if kind == 8 {
        assert_eq!(kinds, vec!["aac"], "{streams:?}");
        assert!(master.contains("CODECS=\"mp4a.40.2\""), "{master}");
    } else {
        assert_eq!(kinds, vec!["h264"], "{streams:?}");
        assert!(!master.contains("mp4a"), "{master}");
    }
    bob_keeps_playing(&srv);
}

#[test]
fn audio_only_is_served() {
    let _g = media_lock();
    one_track(8);
}

#[test]
fn video_only_is_served() {
    let _g = media_lock();
    one_track(9);
}

#[test]
fn a_new_sps_with_another_resolution_starts_a_discontinuity() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[]);
    let big = fixture_tags("testsrc-320x180.flv");
    let small = fixture_tags("testsrc-160x90.flv");
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    alice.send_tags(&big, 0).expect("send");
    alice.send_tags(&small, 3033).expect("send");
    alice.send_tags(&small[2..], 3033 + 2133).expect("send");
    drop(alice);
    let p = wait_ended(&srv, "alice");
    assert!(p.contains("#EXT-X-DISCONTINUITY"), "{p}");
    let segs = segments(&p);
    let first = probe_segment(&srv, "alice", &segs[0].0);
    let last = probe_segment(&srv, "alice", &segs[segs.len() - 1].0);
    let size = |s: &[ProbedStream]| {
        s.iter()
            .find(|s| s.codec_type == "video")
            .map(|v| (v.width, v.height))
    };
    assert_eq!(size(&first), Some((Some(320), Some(180))), "{first:?}");
    assert_eq!(size(&last), Some((Some(160), Some(90))), "{last:?}");
    srv.wait_log("width=160 height=90", 5 * SECS);
    bob_keeps_playing(&srv);
}

#[test]
fn a_publisher_that_stops_sending_is_disconnected() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[("ONAIR__RTMP__NO_MEDIA_TIMEOUT_SECONDS", "1")]);
    let mut alice = RtmpClient::publishing_fixture(&srv.rtmp, ALICE_KEY);
    // Then silence, with the socket open.
    assert!(alice.closed_by_server(10 * SECS), "silent publisher kept");
    srv.wait_log("no media for 1 s (rtmp.no_media_timeout_seconds)", 5 * SECS);
    assert!(srv.logs().contains("channel=alice"), "{}", srv.logs());
    wait_ended(&srv, "alice");
    bob_keeps_playing(&srv);
}

#[test]
fn a_thousand_connections_that_never_finish_the_handshake() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[
        ("ONAIR__RTMP__MAX_CONNECTIONS", "64"),
        ("ONAIR__RTMP__HANDSHAKE_TIMEOUT_SECONDS", "1"),
    ]);
    let mut idle = Vec::new();
    for i in 0..1000 {
        match std::net::TcpStream::connect(&srv.rtmp) {
            Ok(mut s) => {
                // Half of them start a handshake and stop.
                if i % 2 == 0 {
                    let _ = std::io::Write::write_all(&mut s, &[3u8; 100]);
                }
                idle.push(s);
            }
            Err(e) => panic!("connect {i}: {e}"),
        }
    }
    srv.wait_log(
        "rtmp connection refused: rtmp.max_connections reached",
        5 * SECS,
    );
    srv.wait_log(
        "did not start publishing within 1 s (rtmp.handshake_timeout_seconds)",
        10 * SECS,
    );
    // The refusals are logged at most once a second, with a count of the others.
    let refusals = srv.logs().matches("rtmp.max_connections reached").count();
    assert!(refusals < 50, "{refusals} refusal lines for one flood");
    assert!(srv.logs().contains("also_refused="), "{}", srv.logs());
    // While the idle sockets are still open, their slots come back: alice can publish.
    let mut alice = wait_for(15 * SECS, "a slot for alice", || {
        RtmpClient::connect(&srv.rtmp).ok()
    });
    alice.publish(ALICE_KEY).expect("publish");
    alice
        .send_tags(&fixture_tags("testsrc-320x180.flv"), 0)
        .expect("send");
    srv.wait_segments("alice", "source", 1, 15 * SECS);
    drop(idle);
    bob_keeps_playing(&srv);
}

#[test]
fn a_publisher_that_drops_mid_segment_ends_the_playlist_cleanly() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[]);
    let tags = fixture_tags("testsrc-320x180.flv");
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    // 3 s of media: one 2 s segment closed, one second open, then the socket is cut.
    alice.send_tags(&tags, 0).expect("send");
    let _ = alice.sock.shutdown(std::net::Shutdown::Both);
    let p = wait_ended(&srv, "alice");
    let segs = segments(&p);
    assert_eq!(segs.len(), 2, "{p}");
    assert!((0.8..1.3).contains(&segs[1].1), "{p}");
    let streams = probe_segment(&srv, "alice", &segs[1].0);
    assert!(
        streams.iter().any(|s| s.codec_name == "h264"),
        "{streams:?}"
    );
    srv.wait_log("publisher closed the connection", 5 * SECS);
    bob_keeps_playing(&srv);
}

#[test]
fn an_obs_style_reconnect_after_3_s_continues_the_playlist() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[]);
    let tags = fixture_tags("testsrc-320x180.flv");
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    alice.send_tags(&tags, 0).expect("send");
    alice.send_tags(&tags[2..], 3033).expect("send");
    let first = srv.wait_segments("alice", "source", 2, 15 * SECS);
    let first_seq = media_sequence(&first);
    let _ = alice.sock.shutdown(std::net::Shutdown::Both);
    drop(alice);
    let ended = wait_ended(&srv, "alice");
    // OBS waits a few seconds and reconnects; the gap is the scenario, not a settling wait.
    std::thread::sleep(3 * SECS);
    assert!(media_sequence(&srv.get("/hls/alice/source/index.m3u8").1) >= first_seq);
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    // The encoder's clock restarts from zero, as after a reconnect.
    alice.send_tags(&tags, 0).expect("send");
    alice.send_tags(&tags[2..], 3033).expect("send");
    let p = wait_for(15 * SECS, "segments after the reconnect", || {
        let p = srv.get("/hls/alice/source/index.m3u8").1;
        (last_seq(&p) >= last_seq(&ended) + 2 && !p.contains("#EXT-X-ENDLIST")).then_some(p)
    });
    assert!(p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
    assert!(media_sequence(&p) >= media_sequence(&ended), "{ended}\n{p}");
    let uris: Vec<u64> = segments(&p)
        .iter()
        .filter_map(|(u, _)| segment_number(u))
        .collect();
    assert!(uris.windows(2).all(|w| w[1] == w[0] + 1), "{uris:?}");
    assert_eq!(srv.json("/api/channels/alice")["live"], true);
    drop(alice);
    bob_keeps_playing(&srv);
}

#[test]
fn an_encoder_that_unpublishes_and_lingers_is_not_a_handshake_timeout() {
    let _g = media_lock();
    let (srv, _bob) = server_with_bob(&[
        ("ONAIR__RTMP__HANDSHAKE_TIMEOUT_SECONDS", "1"),
        ("ONAIR__RTMP__NO_MEDIA_TIMEOUT_SECONDS", "2"),
    ]);
    let mut alice = RtmpClient::publisher(&srv.rtmp, ALICE_KEY);
    let tags = fixture_tags("testsrc-320x180.flv");
    alice.send_tags(&tags, 0).expect("send");
    // Publishing for longer than the handshake allowance, then unpublishing without closing.
    let start = std::time::Instant::now();
    let mut offset = 3033;
    while start.elapsed() < 2 * SECS {
        alice.send_tags(&tags[2..], offset).expect("send");
        offset += 3033;
        std::thread::sleep(Duration::from_millis(300));
    }
    alice.stop_publishing().expect("unpublish");
    srv.wait_log("publish finished", 5 * SECS);
    assert!(
        alice.closed_by_server(10 * SECS),
        "lingering connection kept"
    );
    // The log reader runs apart from the socket: wait for the line, then look at the rest.
    srv.wait_log("no media for 2 s", 5 * SECS);
    let logs = srv.logs();
    assert!(!logs.contains("did not start publishing"), "{logs}");
    bob_keeps_playing(&srv);
}

//! WHIP ingest, black box: the real server, a str0m-based WHIP client shaped as OBS 30+
//! (tests/common/whip.rs) sending H.264 + Opus that ffmpeg encoded, ffprobe as the player.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::whip::{header, media_file, post, request, WhipClient, WhipOpts};
use common::*;

fn server() -> TestServer {
    TestServer::start_with("", &[("ONAIR__RTMP__NO_MEDIA_TIMEOUT_SECONDS", "3")])
}

fn opts(seconds: f64) -> WhipOpts {
    WhipOpts {
        media: media_file("pattern", 6, None, None),
        seconds,
        trickle: false,
    }
}

const OFFER_HEAD: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

#[test]
fn refusals_are_clear_and_answered_with_json() {
    let srv = server();
    let sdp = "application/sdp";
    let video = format!(
        "{OFFER_HEAD}a=fingerprint:sha-256 00:11\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:0\r\na=sendonly\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
a=rtpmap:96 H264/90000\r\n"
    );
    let cases: Vec<(&str, Option<&str>, &str, String, u16)> = vec![
        ("wrong key", Some("nope"), sdp, video.clone(), 401),
        ("no key", None, sdp, video.clone(), 401),
        ("bob's key on alice", Some(BOB_KEY), sdp, video.clone(), 401),
        ("not SDP", Some(ALICE_KEY), sdp, "hello".into(), 400),
        ("no media sections", Some(ALICE_KEY), sdp, OFFER_HEAD.into(), 406),
        (
            "only a data channel",
            Some(ALICE_KEY),
            sdp,
            format!("{OFFER_HEAD}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"),
            406,
        ),
        (
            "no usable video codec",
            Some(ALICE_KEY),
            sdp,
            video.replace("H264", "H265"),
            406,
        ),
        (
            "hundreds of media sections",
            Some(ALICE_KEY),
            sdp,
            format!(
                "{video}{}",
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n".repeat(300)
            ),
            406,
        ),
        (
            "huge",
            Some(ALICE_KEY),
            sdp,
            format!("{video}{}", "a=x-junk:0123456789\r\n".repeat(10_000)),
            413,
        ),
        // Parses as a screen but str0m finds no fingerprint / credentials.
        (
            "no DTLS fingerprint",
            Some(ALICE_KEY),
            sdp,
            video.replace("a=fingerprint:sha-256 00:11\r\n", ""),
            400,
        ),
        ("wrong content type", Some(ALICE_KEY), "text/plain", video.clone(), 415),
    ];
    for (what, key, ct, body, want) in cases {
        let (status, headers, text) = post(&srv, "/whip/alice", key, ct, &body);
        assert_eq!(status, want, "{what}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json body");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {text}");
        assert!(
            header(&headers, "access-control-expose-headers").is_some(),
            "{what}"
        );
    }
    let (status, _, _) = post(&srv, "/whip/nobody", Some(ALICE_KEY), sdp, &video);
    assert_eq!(status, 404);
    // Sessions that do not exist.
    let fake = format!("/whip/alice/{}", "ab".repeat(16));
    let auth = format!("Bearer {ALICE_KEY}");
    let (s, _, _) = request(&srv, "DELETE", &fake, &[("Authorization", &auth)], "");
    assert_eq!(s, 404);
    let (s, _, _) = request(&srv, "DELETE", "/whip/alice/x", &[("Authorization", &auth)], "");
    assert_eq!(s, 404);
    // CORS preflight of the endpoint: Location is exposed, POST allowed.
    let (s, h, _) = request(&srv, "OPTIONS", "/whip/alice", &[], "");
    assert_eq!(s, 204);
    assert!(header(&h, "access-control-expose-headers").is_some_and(|v| v.contains("Location")));
    assert!(header(&h, "access-control-allow-methods").is_some_and(|v| v.contains("POST")));
    assert!(header(&h, "access-control-allow-headers")
        .is_some_and(|v| v.to_ascii_lowercase().contains("authorization")));
    let logs = srv.logs();
    assert!(logs.contains("WHIP offer refused"), "{logs}");
    assert!(!logs.contains(ALICE_KEY) && !logs.contains(BOB_KEY), "a key was logged");
    // The server serves on.
    assert_eq!(srv.get("/healthz").0, 200);
}

#[test]
fn obs_shaped_publish_plays_as_h264_and_aac_and_delete_ends_it() {
    let _m = media_lock();
    let srv = server();
    let mut o = opts(30.0);
    o.trickle = true;
    let client = WhipClient::publish(&srv, "alice", ALICE_KEY, o).expect("201");
    assert!(client.location.starts_with("/whip/alice/"), "{}", client.location);
    assert!(client.etag.starts_with('"'));
    assert!(client.answer.contains("a=ice-lite"), "{}", client.answer);
    assert!(client.answer.contains("127.0.0.1"), "{}", client.answer);
    client.wait_connected(Duration::from_secs(10));
    let playlist = srv.wait_segments("alice", "source", 2, Duration::from_secs(20));
    let (name, _) = segments(&playlist).last().cloned().expect("segment");
    let streams = ffprobe_url(&srv.url(&format!("/hls/alice/source/{name}")));
    if std::env::var("WHIP_DEBUG").is_ok() {
        eprintln!("{}", srv.logs());
    }
    assert_test_pattern(&streams);
    let ch = srv.json("/api/channels/alice");
    assert_eq!(ch["live"], true, "{ch}");
    srv.wait_log("WHIP publish started", Duration::from_secs(1));
    assert_eq!(client.stop(), 200);
    wait_for(Duration::from_secs(10), "ENDLIST after DELETE", || {
        let (_, p) = srv.get("/hls/alice/source/index.m3u8");
        p.contains("#EXT-X-ENDLIST").then_some(())
    });
    assert_eq!(srv.json("/api/channels/alice")["live"], false);
    srv.wait_log("WHIP publish ended", Duration::from_secs(5));
}

#[test]
fn a_peer_that_vanishes_ends_its_publish_within_the_timeout() {
    let _m = media_lock();
    let srv = server();
    let client = WhipClient::publish(&srv, "alice", ALICE_KEY, opts(60.0)).expect("201");
    client.wait_connected(Duration::from_secs(10));
    srv.wait_segments("alice", "source", 1, Duration::from_secs(20));
    let t = std::time::Instant::now();
    client.vanish();
    wait_for(Duration::from_secs(10), "publish to end", || {
        (srv.json("/api/channels/alice")["live"] == false).then_some(())
    });
    // rtmp.no_media_timeout_seconds = 3 (ICE consent may notice first).
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    srv.wait_log("WHIP publish ended", Duration::from_secs(2));
}

#[test]
fn an_offer_that_never_connects_is_dropped_after_the_handshake_timeout() {
    let srv = TestServer::start_with(
        "",
        &[("ONAIR__RTMP__HANDSHAKE_TIMEOUT_SECONDS", "2")],
    );
    // A real offer, then silence: no STUN, no DTLS.
    let offer = {
        let mut rtc = str0m::RtcConfig::new().build(std::time::Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(
            str0m::media::MediaKind::Video,
            str0m::media::Direction::SendOnly,
            None,
            None,
            None,
        );
        api.apply().expect("offer").0.to_sdp_string()
    };
    let (s, _, b) = post(&srv, "/whip/alice", Some(ALICE_KEY), "application/sdp", &offer);
    assert_eq!(s, 201, "{b}");
    srv.wait_log("WHIP session ended before it went live", Duration::from_secs(6));
    assert_eq!(srv.json("/api/channels/alice")["live"], false);
}

#[test]
fn garbage_on_the_udp_port_does_not_disturb_a_live_channel() {
    let _m = media_lock();
    let srv = server();
    let client = WhipClient::publish(&srv, "bob", BOB_KEY, opts(40.0)).expect("201");
    client.wait_connected(Duration::from_secs(10));
    let before = srv.wait_segments("bob", "source", 1, Duration::from_secs(20));
    let port = srv.webrtc.clone().expect("webrtc= in the address line");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    // Noise, RTP-looking and DTLS-looking junk, and STUN binding requests for an unknown ufrag.
    let mut stun = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[9; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x07]);
    stun.extend_from_slice(b"nope:me\0");
    for i in 0..2000u64 {
        let d = match i % 4 {
            0 => noise(100 + (i as usize % 1100), i),
            1 => [vec![0x80, 0x60], noise(200, i)].concat(),
            2 => [vec![22, 0xfe, 0xfd], noise(60, i)].concat(),
            _ => stun.clone(),
        };
        let _ = sock.send_to(&d, &port);
    }
    // bob goes on: new segments appear after the flood.
    let last = segments(&before).last().cloned().expect("segment").0;
    wait_for(Duration::from_secs(15), "new segments after the flood", || {
        let (_, p) = srv.get("/hls/bob/source/index.m3u8");
        (segments(&p).last().map(|s| s.0.clone()) != Some(last.clone())
            && count_segments(&p) >= 2)
            .then_some(())
    });
    assert_eq!(srv.json("/api/channels/bob")["live"], true);
    let logs = srv.logs();
    assert!(logs.contains("unknown ufrag"), "{logs}");
    assert!(logs.contains("datagram from an address with no session"), "{logs}");
    // Rate-limited: a handful of lines, not thousands.
    assert!(logs.matches("WebRTC port:").count() < 50, "{logs}");
    assert_eq!(client.stop(), 200);
}

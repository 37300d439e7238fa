//! SRT ingest with real callers: Debian's ffmpeg (libsrt 1.5, as OBS) pushes H.264/AAC in
//! MPEG-TS to `srt://…?streamid=…` in each stream id form of the contract, and `srt-live-transmit`
//! (Debian `srt-tools`) relays a TS as a second kind of caller; ffprobe plays the HLS. Wrong keys,
//! wrong passphrases and garbage datagrams are refused while another channel plays; a caller
//! that vanishes ends its publish; SRT and RTMP take over from each other. FFmpeg 9 (the
//! imageio-ffmpeg binary in `.venv`, libx265) pushes HEVC in MPEG-TS: the source rendition is
//! passed through, the ladder is H.264, in both containers.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::ertmp::{self, check_source_and_ladder, first_segment, Audio, EnhancedPush, Video};
use common::*;

/// The default container (fMP4, LL-HLS): SRT's MPEG-TS sends its first video PES before the
/// first audio one, and the stream must still start with both tracks (`ingest::srt::StartGate`).
const SRT_CONFIG: &str = "[transcode]\nladder = []\n";
/// MPEG-TS segments, for the test that relays through srt-live-transmit (both containers covered).
const SRT_TS_CONFIG: &str = "[hls]\ncontainer = \"ts\"\n[transcode]\nladder = []\n";

const SECS: Duration = Duration::from_secs(1);

fn live(srv: &TestServer, channel: &str) -> bool {
    srv.json(&format!("/api/channels/{channel}"))["live"] == serde_json::Value::Bool(true)
}

/// The stream plays: the source rendition has segments and ffprobe reads H.264 and AAC from the
/// multivariant playlist.
fn assert_plays(srv: &TestServer, channel: &str) {
    srv.wait_segments(channel, "source", 2, 30 * SECS);
    let streams = ffprobe_url(&srv.url(&format!("/hls/{channel}/master.m3u8")));
    assert_test_pattern(&streams);
}

fn short() -> PushOpts {
    PushOpts {
        seconds: 30.0,
        ..Default::default()
    }
}

#[test]
fn ffmpeg_publishes_in_each_streamid_form() {
    let _g = media_lock();
    let srv = TestServer::start(SRT_CONFIG);
    let forms = [
        format!("#!::r=live/{ALICE_KEY},m=publish"),
        format!("publish:{ALICE_KEY}"),
        ALICE_KEY.to_string(),
    ];
    for (i, sid) in forms.iter().enumerate() {
        let mut pusher = push_srt(&srv.srt_url(sid, ""), short());
        wait_for(20 * SECS, "a publish in this form", || {
            (srv.logs().matches("publish started").count() == i + 1 && live(&srv, "alice"))
                .then_some(())
        });
        assert_plays(&srv, "alice");
        pusher.stop();
        wait_for(20 * SECS, "the channel to go offline", || {
            (!live(&srv, "alice")).then_some(())
        });
    }
    let logs = srv.logs();
    assert!(logs.contains("protocol=srt"), "{logs}");
    assert!(
        !logs.contains(ALICE_KEY),
        "the key leaked into the log:\n{logs}"
    );
}

#[test]
fn srt_live_transmit_is_a_second_caller() {
    let _g = media_lock();
    let srv = TestServer::start(SRT_TS_CONFIG);
    // ffmpeg writes MPEG-TS to a pipe; srt-live-transmit reads it and calls onair.
    let mut encoder = Command::new("ffmpeg");
    encoder
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(test_pattern_args(&short()))
        .args(["-f", "mpegts", "pipe:1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut encoder = encoder.spawn().expect("ffmpeg");
    let ts = encoder.stdout.take().expect("ffmpeg stdout");
    let addr = srv.srt.clone().expect("srt=");
    let mut relay = Command::new("srt-live-transmit")
        .args([
            "-q",
            "file://con",
            &format!("srt://{addr}?streamid=publish:{BOB_KEY}"),
        ])
        .stdin(ts)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("srt-live-transmit (Debian srt-tools; scripts/test installs it)");
    assert_plays(&srv, "bob");
    let _ = relay.kill();
    let _ = encoder.kill();
    let _ = (relay.wait(), encoder.wait());
}

#[test]
fn wrong_key_and_garbage_are_refused_while_another_channel_plays() {
    let _g = media_lock();
    let srv = TestServer::start(SRT_CONFIG);
    let _alice = push_srt(&srv.srt_url(&format!("publish:{ALICE_KEY}"), ""), short());
    assert_plays(&srv, "alice");

    // A wrong key is refused at handshake: ffmpeg cannot connect and gives up.
    let wrong = "not-the-key-987";
    let (ok, _) = push_srt(&srv.srt_url(&format!("publish:{wrong}"), ""), short()).wait(30 * SECS);
    assert!(!ok, "a wrong key was let in");
    srv.wait_log(
        "srt connection refused at handshake: unknown stream key",
        5 * SECS,
    );
    // A play request and a stream id with no key are refused as well.
    for sid in [format!("#!::r=live/{ALICE_KEY},m=request"), String::new()] {
        let (ok, _) = push_srt(&srv.srt_url(&sid, ""), short()).wait(30 * SECS);
        assert!(!ok, "{sid:?} was let in");
    }
    srv.wait_log("playback is offered over HLS only", 5 * SECS);

    // Garbage datagrams: random bytes, truncated and forged SRT control packets.
    let addr = srv.srt.clone().expect("srt=");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    for i in 0..300u64 {
        let mut d = noise(1 + (i as usize * 37) % 1500, i);
        if i % 3 == 0 {
            // Control bit set, handshake type: looks like an SRT handshake to a first glance.
            d.splice(0..0, [0x80, 0x00, 0x00, 0x00]);
        }
        let _ = udp.send_to(&d, &addr);
    }

    // Alice plays on: new segments keep coming, and the server answers.
    let before = count_segments(&srv.get("/hls/alice/source/index.m3u8").1);
    wait_for(15 * SECS, "new segments after the garbage", || {
        let n = count_segments(&srv.get("/hls/alice/source/index.m3u8").1);
        let (status, _) = srv.get("/healthz");
        (status == 200 && n > before.min(n.saturating_sub(1)) && live(&srv, "alice")).then_some(())
    });
    assert!(live(&srv, "alice"));
    let logs = srv.logs();
    assert!(
        !logs.contains(wrong) && !logs.contains(ALICE_KEY),
        "a key leaked:\n{logs}"
    );
}

#[test]
fn passphrase_mismatch_is_refused() {
    let _g = media_lock();
    let pass = "correct-horse-battery";
    let srv = TestServer::start_with(SRT_CONFIG, &[("ONAIR__SRT__PASSPHRASE", pass)]);
    let sid = format!("publish:{ALICE_KEY}");
    for params in ["&passphrase=wrong-horse-battery", ""] {
        let (ok, _) = push_srt(&srv.srt_url(&sid, params), short()).wait(30 * SECS);
        assert!(!ok, "connected with {params:?}");
    }
    srv.wait_log("rejecting per enforced encryption", 5 * SECS);
    assert!(!live(&srv, "alice"));
    let _alice = push_srt(&srv.srt_url(&sid, &format!("&passphrase={pass}")), short());
    assert_plays(&srv, "alice");
    assert!(!srv.logs().contains(pass), "the passphrase leaked");
}

#[test]
fn a_caller_that_vanishes_ends_the_publish() {
    let _g = media_lock();
    let srv = TestServer::start_with(SRT_CONFIG, &[("ONAIR__SRT__NO_MEDIA_TIMEOUT_SECONDS", "3")]);
    let mut pusher = push_srt(&srv.srt_url(&format!("publish:{ALICE_KEY}"), ""), short());
    assert_plays(&srv, "alice");
    // SIGKILL: no SRT shutdown message, the caller is just gone.
    pusher.stop();
    let t = std::time::Instant::now();
    wait_for(10 * SECS, "the publish to end", || {
        (!live(&srv, "alice")).then_some(())
    });
    assert!(t.elapsed() <= 8 * SECS, "took {:?}", t.elapsed());
}

#[test]
fn srt_and_rtmp_take_over_from_each_other() {
    let _g = media_lock();
    let srv = TestServer::start(SRT_CONFIG);
    let srt_url = srv.srt_url(&format!("publish:{ALICE_KEY}"), "");
    let mut first = push_srt(&srt_url, short());
    assert_plays(&srv, "alice");

    // RTMP takes over from SRT: the SRT session ends, the channel never goes offline.
    let mut second = push(&srv.rtmp_url(ALICE_KEY), short());
    srv.wait_log("protocol=rtmp channel=alice takeover=true", 15 * SECS);
    srv.wait_log("replaced by a new publish", 10 * SECS);
    assert!(live(&srv, "alice"));
    first.stop();

    // And SRT takes over from RTMP.
    let _third = push_srt(&srt_url, short());
    srv.wait_log("protocol=srt channel=alice takeover=true", 15 * SECS);
    wait_for(15 * SECS, "the RTMP publisher to be dropped", || {
        (srv.logs().matches("replaced by a new publish").count() >= 2).then_some(())
    });
    second.stop();
    assert!(live(&srv, "alice"));
    assert_plays(&srv, "alice");
}

#[test]
fn connection_limit_and_handshake_timeout() {
    let _g = media_lock();
    let srv = TestServer::start_with(
        SRT_CONFIG,
        &[
            ("ONAIR__SRT__MAX_CONNECTIONS", "1"),
            ("ONAIR__SRT__HANDSHAKE_TIMEOUT_SECONDS", "2"),
        ],
    );
    // A caller that connects and sends nothing holds the only slot...
    let addr = srv.srt.clone().expect("srt=");
    // (its standard input stays open and empty).
    let mut silent = Command::new("srt-live-transmit")
        .args([
            "-q",
            "file://con",
            &format!("srt://{addr}?streamid=publish:{BOB_KEY}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("srt-live-transmit");
    srv.wait_log("publish started", 10 * SECS);
    // ...so the next one is refused at handshake,
    let (ok, _) =
        push_srt(&srv.srt_url(&format!("publish:{ALICE_KEY}"), ""), short()).wait(30 * SECS);
    assert!(!ok, "a second connection was let in");
    srv.wait_log(
        "srt connection refused: srt.max_connections reached",
        5 * SECS,
    );
    // until the silent one is closed for sending no media.
    srv.wait_log("srt.handshake_timeout_seconds", 10 * SECS);
    let _alice = push_srt(&srv.srt_url(&format!("publish:{ALICE_KEY}"), ""), short());
    assert_plays(&srv, "alice");
    let _ = silent.kill();
    let _ = silent.wait();
}

/// HEVC in MPEG-TS (stream type 0x24) over SRT from FFmpeg 9 with libx265: the configuration
/// comes from the in-band VPS/SPS/PPS; the `source` rendition passes HEVC through (fMP4 `hvc1`,
/// or HEVC in TS segments) with its AAC, the ladder is H.264, and ffmpeg plays the master.
#[test]
fn hevc_over_srt_passes_through_with_an_h264_ladder() {
    let _g = media_lock();
    for container in ["fmp4", "ts"] {
        let srv = TestServer::start(&ertmp::config(container));
        let url = srv.srt_url(&format!("publish:{ALICE_KEY}"), "");
        let _push = EnhancedPush::new(Video::Hevc, Audio::Aac).push_srt(&url);
        let codecs = check_source_and_ladder(&srv, "hevc", "hvc1.1.6.L");
        let source = first_segment(&srv, "source");
        assert_eq!(source[0] == 0x47, container == "ts", "{container} segments");
        let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/master.m3u8"), &["-t", "2"]);
        assert!(ok, "{container}: ffmpeg plays the master playlist: {err}");
        let logs = srv.logs();
        assert!(logs.contains("protocol=srt"), "{logs}");
        assert!(
            !logs.contains("track ignored") && !logs.contains("srt input dropped"),
            "{container} ({codecs}):\n{logs}"
        );
    }
}

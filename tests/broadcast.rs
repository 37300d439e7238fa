//! The broadcast slice end to end: real encoders (ffmpeg CLI, GStreamer rtmp2sink) push RTMP to
//! the real onair binary; ffprobe and ffmpeg read the HLS as players do.

mod common;

use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(1);

#[test]
fn ffmpeg_push_is_served_as_hls_and_ends_with_endlist() {
    let _g = media_lock();
    let srv = TestServer::start(TS);
    let pusher = push(&srv.rtmp_url(ALICE_KEY), PushOpts::default());

    let playlist = srv.wait_segments("alice", "source", 3, 30 * SECS);
    assert_eq!(
        tag_value(&playlist, "#EXT-X-TARGETDURATION").as_deref(),
        Some("2")
    );
    assert!(playlist.contains("#EXT-X-INDEPENDENT-SEGMENTS"));
    assert!(playlist.contains("#EXT-X-PROGRAM-DATE-TIME:"));
    assert!(!playlist.contains("#EXT-X-ENDLIST"));

    let (status, master) = srv.get("/hls/alice/master.m3u8");
    assert_eq!(status, 200);
    assert!(master.contains("RESOLUTION=320x180"), "{master}");
    assert!(
        master.contains("CODECS=\"avc1.42c00d,mp4a.40.2\"") || master.contains("CODECS=\"avc1."),
        "{master}"
    );
    assert!(master.contains("mp4a.40.2"), "{master}");
    assert!(master.contains("FRAME-RATE=30"), "{master}");
    assert!(master.contains("source/index.m3u8"));
    let bw: u64 = master
        .split("BANDWIDTH=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("BANDWIDTH");
    assert!(
        (100_000..2_000_000).contains(&bw),
        "measured bandwidth {bw}"
    );

    // A player reads the live stream through the multivariant playlist.
    let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/master.m3u8"), &["-t", "3"]);
    assert!(ok, "ffmpeg could not play the live master playlist: {err}");

    let (ok, err) = pusher.wait(30 * SECS);
    assert!(ok, "push failed: {err}");
    let ended = wait_for(10 * SECS, "ENDLIST", || {
        let (_, p) = srv.get("/hls/alice/source/index.m3u8");
        p.contains("#EXT-X-ENDLIST").then_some(p)
    });

    // Every segment decodes as H.264 + AAC at the pushed size; EXTINF follows the 2 s GOP.
    let segs = segments(&ended);
    assert!(segs.len() >= 3, "{ended}");
    for (i, (uri, dur)) in segs.iter().enumerate() {
        let (status, data) = srv.get_bytes(&format!("/hls/alice/source/{uri}"));
        assert_eq!(status, 200, "{uri}");
        let streams = ffprobe_bytes(&data);
        let v = streams
            .iter()
            .find(|s| s.codec_type == "video")
            .expect("video stream");
        assert_eq!(v.codec_name, "h264");
        assert_eq!((v.width, v.height), (Some(320), Some(180)));
        let a = streams
            .iter()
            .find(|s| s.codec_type == "audio")
            .expect("audio stream");
        assert_eq!(a.codec_name, "aac");
        if i + 1 < segs.len() {
            assert!((dur - 2.0).abs() <= 0.1, "segment {uri} lasts {dur}");
        }
    }
    // The whole ended playlist plays as VOD.
    let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/source/index.m3u8"), &[]);
    assert!(ok, "{err}");

    // The key is nowhere public, nor in the info logs.
    let api = srv.get("/api/channels").1;
    for text in [&ended, &master, &api, &srv.logs()] {
        assert!(!text.contains(ALICE_KEY), "stream key leaked: {text}");
    }
    let ch = srv.json("/api/channels/alice");
    assert_eq!(ch["name"], "alice");
    assert_eq!(ch["live"], false);
    assert_eq!(ch["renditions"][0], "source");
}

#[test]
fn unknown_key_is_refused_while_another_channel_plays() {
    let _g = media_lock();
    let srv = TestServer::start(TS);
    let _alice = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 12.0,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 1, 30 * SECS);

    let wrong = "not-a-real-key-999";
    let intruder = push(
        &srv.rtmp_url(wrong),
        PushOpts {
            seconds: 3.0,
            ..Default::default()
        },
    );
    let (ok, _) = intruder.wait(20 * SECS);
    assert!(!ok, "ffmpeg with an unknown key must fail");
    srv.wait_log("publish refused: unknown stream key", 5 * SECS);
    assert!(
        !srv.logs().contains(wrong),
        "refused key must not be logged"
    );

    // Garbage on the RTMP port: random bytes, an HTTP request, a truncated handshake.
    tcp_garbage(&srv.rtmp, &noise(5000, 7));
    tcp_garbage(&srv.rtmp, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut hs = vec![3u8];
    hs.extend(noise(1536, 9));
    hs.extend(noise(3000, 11));
    tcp_garbage(&srv.rtmp, &hs);

    // Alice keeps going: new segments keep arriving.
    let before = count_segments(&srv.get("/hls/alice/source/index.m3u8").1);
    let seq = |p: &str| {
        tag_value(p, "#EXT-X-MEDIA-SEQUENCE")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let start = srv.get("/hls/alice/source/index.m3u8").1;
    let last = |p: &str| seq(p) + count_segments(p) as u64;
    let first_last = last(&start);
    wait_for(15 * SECS, "alice to keep producing segments", || {
        let p = srv.get("/hls/alice/source/index.m3u8").1;
        (last(&p) >= first_last + 2).then_some(())
    });
    assert!(before >= 1);
    assert_eq!(srv.get("/healthz").0, 200);
    assert_eq!(srv.get("/hls/bob/master.m3u8").0, 404);
}

#[test]
fn reconnect_continues_the_same_playlist_with_a_discontinuity() {
    let _g = media_lock();
    let srv = TestServer::start(TS);
    let short = || PushOpts {
        seconds: 5.0,
        ..Default::default()
    };
    let (ok, err) = push(&srv.rtmp_url(ALICE_KEY), short()).wait(30 * SECS);
    assert!(ok, "{err}");
    let first = wait_for(10 * SECS, "ENDLIST", || {
        let (_, p) = srv.get("/hls/alice/source/index.m3u8");
        p.contains("#EXT-X-ENDLIST").then_some(p)
    });
    let first_count = count_segments(&first);

    // The broadcaster comes back (as OBS does after a network drop).
    let _again = push(&srv.rtmp_url(ALICE_KEY), short());
    let p = wait_for(30 * SECS, "new segments after the reconnect", || {
        let (_, p) = srv.get("/hls/alice/source/index.m3u8");
        (count_segments(&p) >= first_count + 2 && !p.contains("#EXT-X-ENDLIST")).then_some(p)
    });
    assert!(p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
    // The sequence numbers carry on from the first session.
    let uris: Vec<u64> = segments(&p)
        .iter()
        .filter_map(|(u, _)| segment_number(u))
        .collect();
    assert!(uris.windows(2).all(|w| w[1] == w[0] + 1), "{uris:?}");
}

#[test]
fn a_second_publish_on_a_live_key_takes_over() {
    let _g = media_lock();
    let srv = TestServer::start(TS);
    let long = || PushOpts {
        seconds: 20.0,
        ..Default::default()
    };
    let mut old = push(&srv.rtmp_url(ALICE_KEY), long());
    srv.wait_segments("alice", "source", 1, 30 * SECS);
    let mut new = push(&srv.rtmp_url(ALICE_KEY), long());
    srv.wait_log("takeover=true", 20 * SECS);
    // The old encoder is disconnected; the new one keeps publishing.
    wait_for(15 * SECS, "the old publisher to be disconnected", || {
        (!old.running()).then_some(())
    });
    assert!(new.running());
    let n = count_segments(&srv.get("/hls/alice/source/index.m3u8").1);
    wait_for(15 * SECS, "segments from the new publisher", || {
        let p = srv.get("/hls/alice/source/index.m3u8").1;
        (count_segments(&p) > n && p.contains("#EXT-X-DISCONTINUITY")).then_some(())
    });
    let ch = srv.json("/api/channels/alice");
    assert_eq!(ch["live"], true);
    new.stop();
}

#[test]
fn gstreamer_rtmp2sink_is_served_too() {
    let _g = media_lock();
    let srv = TestServer::start(TS);
    let pipeline = format!(
        "videotestsrc num-buffers=180 is-live=true ! video/x-raw,format=I420,width=320,height=180,framerate=30/1 \
         ! x264enc key-int-max=60 tune=zerolatency speed-preset=ultrafast bitrate=400 ! h264parse \
         ! flvmux name=mux streamable=true ! rtmp2sink location={} \
         audiotestsrc is-live=true num-buffers=260 ! audio/x-raw,rate=44100,channels=2 ! avenc_aac ! aacparse ! mux.",
        srv.rtmp_url(BOB_KEY)
    );
    let mut child = std::process::Command::new("gst-launch-1.0")
        .args(["-q", "-e"])
        .args(pipeline.split_whitespace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (scripts/test installs GStreamer)");
    let p = srv.wait_segments("bob", "source", 2, 40 * SECS);
    let first = &segments(&p)[0].0;
    let data = srv.get_bytes(&format!("/hls/bob/source/{first}")).1;
    let streams = ffprobe_bytes(&data);
    assert_test_pattern(&streams);
    // rtmp2sink closes the socket without deleteStream: the publish must still end.
    wait_for(40 * SECS, "gstreamer to finish", || {
        child.try_wait().ok().flatten()
    });
    wait_for(15 * SECS, "ENDLIST after rtmp2sink left", || {
        srv.get("/hls/bob/source/index.m3u8")
            .1
            .contains("#EXT-X-ENDLIST")
            .then_some(())
    });
}

#[test]
fn sigterm_ends_playlists_and_exits_quickly() {
    let _g = media_lock();
    let mut srv = TestServer::start(TS);
    let _p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 30.0,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 1, 30 * SECS);
    let (status, took) = srv.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < 5 * SECS, "shutdown took {took:?}");
    assert!(srv.logs().contains("stopped"));
}

#[test]
fn an_encoder_without_a_sequence_header_still_gets_its_video_served() {
    let _g = media_lock();
    let srv = TestServer::start(TS);
    // ffmpeg's tee muxer does not ask x264 for global headers: the FLV stream then carries no
    // AVC sequence header, only SPS/PPS inside the keyframes.
    run_ok(
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(test_pattern_args(&PushOpts {
                seconds: 5.0,
                ..Default::default()
            }))
            // The tee muxer picks no streams by itself.
            .args(["-map", "0:v", "-map", "1:a", "-f", "tee"])
            .arg(format!("[f=flv]{}", srv.rtmp_url(ALICE_KEY))),
    );
    let p = srv.wait_segments("alice", "source", 2, 30 * SECS);
    // The first segment may hold only the audio that came before the first keyframe.
    let listed = segments(&p);
    let last = &listed.last().expect("segments").0;
    let streams = ffprobe_bytes(&srv.get_bytes(&format!("/hls/alice/source/{last}")).1);
    assert!(
        streams
            .iter()
            .any(|s| s.codec_name == "h264" && s.height == Some(180)),
        "{streams:?}"
    );
    srv.wait_log("taken from the keyframe's SPS/PPS", 5 * SECS);
}

//! Real players read onair's playlists: ffmpeg, mpv, GStreamer (playbin) and VLC, for the
//! low-latency fMP4 playlists (which they play as plain HLS) and for MPEG-TS.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(1);

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("player");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `container` is set in `[hls]`, or left to the built-in default when `None`.
fn players_play(container: Option<&str>) {
    let _g = media_lock();
    let srv = TestServer::start(
        &container
            .map(|c| format!("[hls]\ncontainer = \"{c}\"\n"))
            .unwrap_or_default(),
    );
    let container = container.unwrap_or("the default");
    let _p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 40.0,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 2, 30 * SECS);
    let url = srv.url("/hls/alice/master.m3u8");

    let (ok, log) = ffmpeg_decode(&url, &["-t", "2"]);
    assert!(ok, "ffmpeg ({container}): {log}");

    let (ok, log) = run(Command::new("timeout")
        .args([
            "20",
            "mpv",
            "--no-config",
            "--vo=null",
            "--ao=null",
            "--length=2",
            "--msg-level=all=info",
        ])
        .arg(&url));
    assert!(ok, "mpv ({container}): {log}");
    assert!(
        log.contains("Video --vid=1") && log.contains("(h264"),
        "mpv ({container}) saw no H.264: {log}"
    );

    // uridecodebin3 picks GStreamer's HLS demuxer and the decoders as playbin3 does; the first
    // decoded stream ends the run after 30 buffers.
    let (ok, log) = run(Command::new("timeout").args([
        "40",
        "gst-launch-1.0",
        "uridecodebin3",
        &format!("uri={url}"),
        "name=d",
        "d.",
        "!",
        "queue",
        "!",
        "fakesink",
        "num-buffers=30",
    ]));
    assert!(
        ok && log.contains("Got EOS"),
        "GStreamer ({container}): {log}"
    );

    // VLC refuses to run as root: run it as nobody.
    let (_, log) = run(Command::new("timeout")
        .args([
            "20",
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "env",
            "HOME=/tmp",
            "cvlc",
            "-I",
            "dummy",
            "--play-and-exit",
            "--run-time=3",
            "--vout=dummy",
            "--aout=dummy",
            "--verbose=2",
        ])
        .arg(&url));
    assert!(
        log.contains("codec (h264) started"),
        "VLC ({container}) did not decode H.264: {log}"
    );
    assert!(
        !log.contains("adaptive demux error"),
        "VLC ({container}): {log}"
    );
}

/// What a newcomer gets: the built-in defaults serve low-latency fMP4, and every player plays
/// it (those without low-latency support as plain HLS).
#[test]
fn players_play_the_default_config() {
    // The shipped file says the same as the built-in defaults the server below runs on.
    let (code, out, err) = onair(&["check-config"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("container = \"fmp4\""), "{out}");
    players_play(None);
}

#[test]
fn players_play_low_latency_fmp4_as_plain_hls() {
    players_play(Some("fmp4"));
}

#[test]
fn players_play_mpeg_ts() {
    players_play(Some("ts"));
}

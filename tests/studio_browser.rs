//! Going live from the browser: Debian's headless Chromium with a fake camera opens the studio
//! page (`tests/browser/studio.mjs`), enters the stream key, presses Go live (WHIP), and a
//! second page watches and chats with it; End broadcast ends the stream. Then ffprobe/ffmpeg
//! read what the server made of it: H.264 + AAC at the size chosen in the page, for both codec
//! paths (the browser forced to send H.264, passed through, and VP8, converted). Another encoder
//! takes over in each run (a second studio page; an ffmpeg RTMP push) and the replaced page
//! must say so and stay off.
//! Screenshots land in `tests/artifacts/`. Needs node, `npm install` (playwright-core) and
//! /usr/bin/chromium; scripts/test installs them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// What the page run reported.
struct Run {
    srv: TestServer,
    report: serde_json::Value,
}

/// Who takes the channel over from the studio.
#[derive(Clone, Copy)]
enum Takeover {
    /// A second studio page, which then ends the broadcast.
    Studio,
    /// An ffmpeg RTMP push, started when the script asks; the studio then takes the channel
    /// back and ends the broadcast.
    Rtmp,
}

/// Starts a server, runs the studio script with `codec` and `size`, and returns the finished
/// server (playlists linger after the end) with the script's report. `relay`: the server
/// advertises 127.0.0.2 in its ICE candidates and the script relays that to the real socket
/// (which it can cut, as a network drop would).
fn run_studio(codec: &str, size: u32, relay: bool, takeover: Takeover) -> Run {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("node_modules/playwright-core").exists(),
        "run `npm install` first (scripts/test does)"
    );
    // With the relay, ICE candidates name 127.0.0.2 (the relay, on the same port), which
    // forwards to the real socket on 127.0.0.1.
    let env: &[(&str, &str)] = if relay {
        &[("ONAIR__WEBRTC__PUBLIC_ADDRESSES", "127.0.0.2")]
    } else {
        &[]
    };
    let srv = TestServer::start_with("", env);
    let artifacts = root.join("tests/artifacts").join(codec);
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let mut cmd = Command::new("node");
    cmd.arg(root.join("tests/browser/studio.mjs"))
        .arg(format!("http://{}", srv.http))
        .arg(codec)
        .arg(size.to_string())
        .arg(&artifacts)
        .arg(match takeover {
            Takeover::Studio => "takeover=studio",
            Takeover::Rtmp => "takeover=rtmp",
        })
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if relay {
        let udp = srv.webrtc.clone().expect("webrtc= on the address line");
        let port = udp.rsplit(':').next().expect("port");
        cmd.arg(format!("relay=127.0.0.2:{port},{udp}"));
    }
    let mut node = cmd.spawn().expect("node");
    let mut stdout = String::new();
    // Held until the script ends (Drop stops ffmpeg on every path).
    let mut rtmp: Option<Push> = None;
    let lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    for line in lines.map_while(Result::ok) {
        if line == "RTMP TAKEOVER" {
            let opts = PushOpts {
                seconds: 120.0,
                size: "640x360",
                ..PushOpts::default()
            };
            rtmp = Some(push(&srv.rtmp_url(ALICE_KEY), opts));
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = node.wait().expect("node");
    drop(rtmp);
    assert!(
        status.success() && stdout.contains("STUDIO OK"),
        "studio page test failed:\n{stdout}\nserver logs:\n{}",
        srv.logs()
    );
    let report = stdout
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .expect("report line");
    Run { srv, report }
}

/// The finished broadcast as a player reads it: ENDLIST, h264 at `size` and AAC, decodable.
fn assert_broadcast(run: &Run, width: u64, height: u64) {
    let srv = &run.srv;
    let (status, media) = srv.get("/hls/alice/source/index.m3u8");
    assert_eq!(status, 200, "{media}");
    assert!(media.contains("#EXT-X-ENDLIST"), "{media}");
    assert!(count_segments(&media) >= 2, "{media}");
    // Media time follows the clock: the playlist cannot hold more media than the broadcast
    // lasted (from Go live to End broadcast, plus the last segment still being cut).
    let listed: f64 = segments(&media).iter().map(|(_, d)| d).sum();
    let lasted = run.report["live_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    assert!(
        listed <= lasted * 1.2 + 3.0,
        "{listed:.1} s of media from a {lasted:.1} s broadcast:\n{media}"
    );
    let playlist = srv.url("/hls/alice/source/index.m3u8");
    let streams = ffprobe_url(&playlist);
    assert!(
        streams
            .iter()
            .any(|s| s.codec_name == "h264" && s.width == Some(width) && s.height == Some(height)),
        "want h264 {width}x{height}: {streams:?}"
    );
    assert!(streams.iter().any(|s| s.codec_name == "aac"), "{streams:?}");
    let (ok, err) = ffmpeg_decode(&playlist, &[]);
    assert!(ok, "the broadcast does not decode: {err}");
    // The key reached the server only in headers: never in a log line.
    assert!(!srv.logs().contains(ALICE_KEY), "stream key in the logs");
}

#[test]
fn studio_goes_live_with_h264_passthrough_and_yields_to_a_takeover() {
    let _g = media_lock();
    let run = run_studio("h264", 360, false, Takeover::Studio);
    assert!(
        run.report["status"]
            .as_str()
            .unwrap_or("")
            .contains("H.264"),
        "{}",
        run.report
    );
    assert_eq!(run.report["took_over"], "studio", "{}", run.report);
    assert_broadcast(&run, 640, 360);
}

#[test]
fn studio_goes_live_with_vp8_converted_reconnects_after_a_drop_and_yields_to_rtmp() {
    let _g = media_lock();
    let run = run_studio("vp8", 360, true, Takeover::Rtmp);
    assert!(
        run.report["status"].as_str().unwrap_or("").contains("VP8"),
        "{}",
        run.report
    );
    assert_eq!(run.report["reconnected"], true, "{}", run.report);
    assert_eq!(run.report["took_over"], "rtmp", "{}", run.report);
    assert_broadcast(&run, 640, 360);
}

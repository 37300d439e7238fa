//! The adaptive ladder end to end: ffmpeg pushes RTMP to the real onair binary with a
//! `[transcode]` ladder; ffprobe and ffmpeg read every rendition as players do and check that
//! the renditions line up with the source, that nothing is upscaled, that an overloaded pool
//! sheds renditions without hurting ingest, and that audio stays with video.
//!
//! Timing: media tests take `media_lock()` and poll with deadlines. Deadlines are generous
//! (other builds share the 2-core machine); the assertions are about what the output is, not
//! how fast it came, except where keeping real time is the point.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SECS: Duration = Duration::from_secs(1);
const FRAME: f64 = 1.0 / 30.0;

/// A ladder config. `max_lag_seconds = 60` keeps admission control out of tests that are
/// about output correctness: under CPU contention renditions may lag, but must not be shed.
fn ladder(workers: usize, max_lag: f64, preset: &str, rungs: &[(&str, u32, u32, u32)]) -> String {
    // MPEG-TS: these tests probe single segments and their packets as TS files.
    let mut s = format!("{TS}[transcode]\nworkers = {workers}\nmax_lag_seconds = {max_lag}\n");
    for (name, height, vk, ak) in rungs {
        s.push_str(&format!(
            "[[transcode.ladder]]\nname = \"{name}\"\nheight = {height}\nvideo_kbps = {vk}\n\
             audio_kbps = {ak}\npreset = \"{preset}\"\n"
        ));
    }
    s
}

/// Waits until a rendition's playlist has ENDLIST; returns it.
fn wait_ended(srv: &TestServer, channel: &str, rendition: &str, within: Duration) -> String {
    let path = format!("/hls/{channel}/{rendition}/index.m3u8");
    wait_for(within, &format!("ENDLIST in {path}"), || {
        let (s, p) = srv.get(&path);
        (s == 200 && p.contains("#EXT-X-ENDLIST")).then_some(p)
    })
}

/// Encodes `seconds` of test pattern at `size` (30 fps, 2 s GOP, AAC) into an FLV file, as
/// fast as the machine allows, so that pushes can replay it without encoding in real time.
fn make_source(size: &'static str, seconds: f64) -> std::path::PathBuf {
    let dir = temp_dir("src");
    let path = dir.join("source.flv");
    let opts = PushOpts {
        seconds,
        size,
        // As much as the pattern takes (x264 ultrafast reaches about 1.5 Mb/s at 1080p and
        // 1.25 Mb/s at 720p on testsrc): test ladders stay below what their source reaches,
        // since a rendition with more bits than the source is skipped.
        video_kbps: 4000,
        ..Default::default()
    };
    run_ok(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(test_pattern_args(&opts))
            .args(["-f", "flv"])
            .arg(&path),
    );
    path
}

/// Replays a file to onair in real time without re-encoding (`-re -c copy`), so the pusher
/// costs next to no CPU and "ingest keeps up" measures onair alone.
fn push_file(url: &str, path: &std::path::Path) -> Push {
    let child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(path)
        .args(["-c", "copy", "-f", "flv", url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    Push { child }
}

/// A log line without terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `#EXT-X-MEDIA-SEQUENCE` of a playlist.
fn media_sequence(playlist: &str) -> u64 {
    tag_value(playlist, "#EXT-X-MEDIA-SEQUENCE")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (codec_type, pts_time, duration_time) of every packet of a media file.
fn probe_packets(data: &[u8]) -> Vec<(String, f64, f64)> {
    let dir = temp_dir("pkts");
    let f = dir.join("seg.ts");
    std::fs::write(&f, data).expect("write segment");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts_time,duration_time",
            "-of",
            "json",
        ])
        .arg(&f)
        .output()
        .expect("ffprobe");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let num = |x: &serde_json::Value| x.as_str().and_then(|s| s.parse::<f64>().ok());
    v["packets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some((
                p["codec_type"].as_str()?.to_string(),
                num(&p["pts_time"])?,
                num(&p["duration_time"]).unwrap_or(0.0),
            ))
        })
        .collect()
}

/// The programs (variants) ffprobe sees in a multivariant playlist: video height per program.
fn program_heights(url: &str) -> Vec<u64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_programs", "-of", "json", url])
        .output()
        .expect("ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["programs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            p["streams"]
                .as_array()?
                .iter()
                .find(|s| s["codec_type"] == "video")?["height"]
                .as_u64()
        })
        .collect()
}

#[test]
fn ladder_renditions_line_up_with_the_source_and_play() {
    let _g = media_lock();
    let srv = TestServer::start(&ladder(
        2,
        60.0,
        "veryfast",
        &[("480p", 480, 900, 96), ("360p", 360, 600, 64)],
    ));
    let pusher = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            size: "1280x720",
            seconds: 9.0,
            video_kbps: 2500,
            ..Default::default()
        },
    );
    // While live, every rendition appears in the multivariant playlist.
    srv.wait_segments("alice", "360p", 1, 60 * SECS);
    srv.wait_segments("alice", "480p", 1, 60 * SECS);
    let (_, master) = srv.get("/hls/alice/master.m3u8");
    for (uri, res) in [
        ("source/index.m3u8", "1280x720"),
        ("480p/index.m3u8", "854x480"),
        ("360p/index.m3u8", "640x360"),
    ] {
        let inf = master
            .lines()
            .zip(master.lines().skip(1))
            .find(|(_, u)| *u == uri)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("{uri} missing from\n{master}"));
        assert!(inf.contains(&format!("RESOLUTION={res}")), "{inf}");
        assert!(inf.contains("AVERAGE-BANDWIDTH="), "{inf}");
        assert!(inf.contains("FRAME-RATE=30"), "{inf}");
        assert!(inf.contains("CODECS=\"avc1."), "{inf}");
        assert!(inf.contains("mp4a.40.2"), "{inf}");
    }
    let (ok, err) = pusher.wait(60 * SECS);
    assert!(ok, "push failed: {err}");

    let source = wait_ended(&srv, "alice", "source", 30 * SECS);
    let renditions = [("480p", 480u64), ("360p", 360u64)];
    let src_segs = segments(&source);
    assert!(src_segs.len() >= 4, "{source}");
    let probe = |rendition: &str, uri: &str| {
        let (status, data) = srv.get_bytes(&format!("/hls/alice/{rendition}/{uri}"));
        assert_eq!(status, 200, "{rendition}/{uri}");
        (ffprobe_bytes(&data), data)
    };
    let start_of = |streams: &[ProbedStream], kind: &str| {
        streams
            .iter()
            .find(|s| s.codec_type == kind)
            .and_then(|s| s.start_time)
            .unwrap_or_else(|| panic!("no {kind} start time in {streams:?}"))
    };
    let mut src_starts = Vec::new();
    for (uri, _) in &src_segs {
        let (streams, _) = probe("source", uri);
        src_starts.push(start_of(&streams, "video"));
    }
    for (name, height) in renditions {
        let playlist = wait_ended(&srv, "alice", name, 60 * SECS);
        let segs = segments(&playlist);
        // Same cuts: same number of segments, same EXTINF, same MEDIA-SEQUENCE.
        assert_eq!(
            media_sequence(&playlist),
            media_sequence(&source),
            "{name}:\n{playlist}\nsource:\n{source}"
        );
        assert_eq!(
            segs.iter().map(|s| s.1).collect::<Vec<_>>(),
            src_segs.iter().map(|s| s.1).collect::<Vec<_>>(),
            "{name} EXTINF differ:\n{playlist}\nsource:\n{source}"
        );
        for (i, (uri, _)) in segs.iter().enumerate() {
            let (streams, _) = probe(name, uri);
            let v = streams
                .iter()
                .find(|s| s.codec_type == "video")
                .unwrap_or_else(|| panic!("{name}/{uri}: no video in {streams:?}"));
            assert_eq!(v.codec_name, "h264", "{name}/{uri}");
            assert_eq!(v.height, Some(height), "{name}/{uri}");
            let a = streams
                .iter()
                .find(|s| s.codec_type == "audio")
                .unwrap_or_else(|| panic!("{name}/{uri}: no audio in {streams:?}"));
            assert_eq!(a.codec_name, "aac", "{name}/{uri}");
            let start = start_of(&streams, "video");
            assert!(
                (start - src_starts[i]).abs() < FRAME,
                "{name}/{uri} starts at {start}, source segment at {}",
                src_starts[i]
            );
        }
    }

    // A player: the multivariant playlist offers every variant and each one decodes.
    let master_url = srv.url("/hls/alice/master.m3u8");
    let mut heights = program_heights(&master_url);
    heights.sort_unstable();
    assert_eq!(heights, vec![360, 480, 720]);
    for program in 0..3 {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-nostdin", "-i", &master_url])
            .args(["-map", &format!("0:p:{program}"), "-f", "null", "-"])
            .output()
            .expect("ffmpeg");
        assert!(
            out.status.success(),
            "variant {program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// No work for nothing: a 360p source at 600 kb/s gets no 720p or 480p (upscales), no 360p
/// (a re-encode next to the passthrough of the same height) and no 180p at 800 kb/s (more bits
/// than the source has); the 240p rendition is made, and the API says what was skipped, why,
/// and that the source serves those viewers.
#[test]
fn a_source_gets_no_rendition_at_or_above_its_height_or_bitrate() {
    let _g = media_lock();
    let srv = TestServer::start(&ladder(
        2,
        60.0,
        "veryfast",
        &[
            ("720p", 720, 2800, 128),
            ("480p", 480, 1400, 96),
            ("360p", 360, 500, 64),
            ("240p", 240, 300, 64),
            ("180p", 180, 800, 48),
        ],
    ));
    let pusher = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            size: "640x360",
            seconds: 8.0,
            video_kbps: 600,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "240p", 1, 60 * SECS);
    let ch = srv.json("/api/channels/alice");
    assert_eq!(
        ch["renditions"],
        serde_json::json!(["source", "240p"]),
        "{ch}"
    );
    let skipped = ch["skipped"].as_array().cloned().unwrap_or_default();
    let reasons: Vec<(String, String, String)> = skipped
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["reason"].as_str().unwrap_or("").to_string(),
                s["instead"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = |n: &str, r: &str| (n.to_string(), r.to_string(), "source".to_string());
    assert_eq!(
        reasons,
        vec![
            want("720p", "height"),
            want("480p", "height"),
            want("360p", "height"),
            want("180p", "bitrate"),
        ],
        "{ch}"
    );
    assert!(
        skipped.iter().take(3).all(|s| s["source_height"] == 360),
        "{ch}"
    );
    // The measured bitrate is the source's, near what the encoder was asked for.
    let measured = skipped[3]["source_video_kbps"].as_u64().unwrap_or(0);
    assert!((300..800).contains(&measured), "{ch}");
    let (ok, err) = pusher.wait(60 * SECS);
    assert!(ok, "push failed: {err}");
    wait_ended(&srv, "alice", "source", 30 * SECS);
    let p240 = wait_ended(&srv, "alice", "240p", 60 * SECS);
    assert!(count_segments(&p240) >= 2, "{p240}");
    let (_, master) = srv.get("/hls/alice/master.m3u8");
    assert!(master.contains("source/index.m3u8"), "{master}");
    assert!(master.contains("240p/index.m3u8"), "{master}");
    for r in ["720p", "480p", "360p", "180p"] {
        assert!(
            !master.contains(&format!("{r}/")),
            "{r} listed:
{master}"
        );
        let (status, _) = srv.get(&format!("/hls/alice/{r}/index.m3u8"));
        assert_eq!(status, 404, "{r} exists for a 360p source at 600 kb/s");
    }
    assert!(srv.logs().contains("transcoding"), "{}", srv.logs());
}

#[test]
fn an_overloaded_pool_sheds_the_newest_stream_first_and_ingest_keeps_up() {
    let _g = media_lock();
    const CAROL_KEY: &str = "carol-secret-key-789";
    // One worker cannot run three 1080p-source ladders (720p + 480p + 360p: about three cores'
    // worth at veryfast). The source is 1080p so that 720p is not skipped as the source's height.
    let mut extra = ladder(
        1,
        2.0,
        "veryfast",
        &[
            ("720p", 720, 1200, 128),
            ("480p", 480, 800, 96),
            ("360p", 360, 500, 64),
        ],
    );
    extra.push_str(&format!(
        "[[channels]]\nname = \"carol\"\nkey = \"{CAROL_KEY}\"\n"
    ));
    let srv = TestServer::start(&extra);
    let seconds = 24.0;
    let source = make_source("1920x1080", seconds);
    let t0 = Instant::now();
    let mut pushes = Vec::new();
    for (channel, key) in [("alice", ALICE_KEY), ("bob", BOB_KEY), ("carol", CAROL_KEY)] {
        pushes.push((
            channel,
            Instant::now(),
            push_file(&srv.rtmp_url(key), &source),
        ));
        // Staggered starts so that "newest" is well defined.
        srv.wait_segments(channel, "source", 1, 30 * SECS);
    }

    // Degradation shows in the API.
    wait_for(40 * SECS, "a degraded rendition in /api/channels", || {
        let all = srv.json("/api/channels");
        all.as_array()?
            .iter()
            .any(|c| c["degraded"].as_array().is_some_and(|d| !d.is_empty()))
            .then_some(())
    });
    // The first rendition shed is the most expensive of the newest stream at that moment
    // (which stream that is depends on how fast this machine is: two may already overload
    // one worker before the third starts).
    let logs = srv.logs();
    let line = strip_ansi(
        logs.lines()
            .find(|l| l.contains("rendition shed"))
            .expect("a shed log line"),
    );
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .to_string()
    };
    let shed_at = line
        .split_whitespace()
        .next()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no timestamp in {line}"));
    assert_eq!(field("rendition"), "720p", "{line}");
    // The transcoder plans a stream's ladder once it has measured the source's bitrate over
    // its first GOP (2 s here) from the first keyframe, a moment after the publish that
    // `started_at` records: a stream published less than 3.5 s before the decision may not
    // have been in the running.
    let all = srv.json("/api/channels");
    let started = |c: &serde_json::Value| {
        c["started_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let channels = all.as_array().expect("channels");
    let victim = channels
        .iter()
        .find(|c| c["name"] == field("channel").as_str())
        .and_then(started)
        .expect("shed channel is live");
    let newer: Vec<_> = channels
        .iter()
        .filter(|c| {
            started(c)
                .is_some_and(|t| t > victim && t < shed_at - chrono::Duration::milliseconds(3500))
        })
        .collect();
    assert!(
        newer.is_empty(),
        "a newer stream was running: {line}\n{all}"
    );
    let shed_log = srv.logs();
    assert!(shed_log.contains("rendition shed"), "{shed_log}");
    assert!(!shed_log.contains(CAROL_KEY), "stream key in the logs");

    // Ingest was never blocked: every encoder finished in about real time, and every source
    // rendition holds the whole stream.
    for (channel, started, p) in pushes {
        let (ok, err) = p.wait(Duration::from_secs_f64(seconds) + 30 * SECS);
        assert!(ok, "{channel} push failed: {err}");
        let took = started.elapsed().as_secs_f64();
        assert!(
            took < seconds * 1.5 + 5.0,
            "{channel}'s push took {took:.1}s for {seconds}s of media"
        );
    }
    for channel in ["alice", "bob", "carol"] {
        let p = wait_ended(&srv, channel, "source", 30 * SECS);
        // The window lists the last segments; MEDIA-SEQUENCE counts those that slid out.
        let made = media_sequence(&p) as usize + count_segments(&p);
        assert!(
            made as f64 >= seconds / 2.0 - 1.0,
            "{channel} source made {made} 2 s segments for {seconds}s:\n{p}"
        );
        assert!(!p.contains("#EXT-X-DISCONTINUITY"), "{channel}:\n{p}");
    }
    // Within each stream, the most expensive renditions went first (until anything came back).
    let mut shed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in srv.logs().lines().map(strip_ansi) {
        if l.contains("rendition restored") {
            break;
        }
        if !l.contains("rendition shed") {
            continue;
        }
        let get = |name: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or("")
                .to_string()
        };
        shed.entry(get("channel"))
            .or_default()
            .push(get("rendition"));
    }
    for (channel, order) in &shed {
        let want = ["720p", "480p", "360p"];
        assert_eq!(
            order[..],
            want[..order.len().min(3)],
            "{channel} shed in this order: {order:?}"
        );
    }
    let logs = srv.logs();
    for l in logs
        .lines()
        .filter(|l| l.contains("rendition shed") || l.contains("restored"))
    {
        eprintln!("{l}");
    }
    eprintln!("overload test: {:.1}s", t0.elapsed().as_secs_f64());
    if let Some(dir) = source.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn audio_stays_with_video_over_a_minute() {
    let _g = media_lock();
    // A small source keeps this long test cheap; the timestamps path is the same at any size.
    let srv = TestServer::start(&ladder(
        2,
        60.0,
        "veryfast",
        &[("180p", 180, 250, 48), ("144p", 144, 150, 48)],
    ));
    let seconds = 60.0;
    let pusher = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            size: "426x240",
            seconds,
            ..Default::default()
        },
    );
    let (ok, err) = pusher.wait(Duration::from_secs_f64(seconds) + 60 * SECS);
    assert!(ok, "push failed: {err}");
    let source = wait_ended(&srv, "alice", "source", 30 * SECS);
    // A/V offset of the last segment: where audio ends relative to where video ends.
    let offset = |rendition: &str, playlist: &str| {
        let segs = segments(playlist);
        let (uri, _) = segs.last().expect("segments");
        let (status, data) = srv.get_bytes(&format!("/hls/alice/{rendition}/{uri}"));
        assert_eq!(status, 200);
        let pkts = probe_packets(&data);
        let end = |kind: &str| {
            pkts.iter()
                .filter(|p| p.0 == kind)
                .map(|p| p.1 + p.2)
                .fold(f64::MIN, f64::max)
        };
        let start = |kind: &str| {
            pkts.iter()
                .filter(|p| p.0 == kind)
                .map(|p| p.1)
                .fold(f64::MAX, f64::min)
        };
        (
            end("audio") - end("video"),
            start("audio") - start("video"),
            end("video"),
        )
    };
    let (src_end_off, src_start_off, src_end) = offset("source", &source);
    let mut seen = BTreeMap::new();
    for r in ["180p", "144p"] {
        let p = wait_ended(&srv, "alice", r, 60 * SECS);
        assert_eq!(media_sequence(&p), media_sequence(&source), "{r}:\n{p}");
        let made = media_sequence(&p) as usize + count_segments(&p);
        assert!(
            made as f64 >= seconds / 2.0 - 1.0,
            "{r} made {made} segments:\n{p}"
        );
        let (end_off, start_off, end) = offset(r, &p);
        assert!(
            (end - src_end).abs() < FRAME,
            "{r} video ends at {end}, source at {src_end}"
        );
        assert!(
            (end_off - src_end_off).abs() < FRAME,
            "{r}: A/V offset at the end {end_off:.4}s, source {src_end_off:.4}s"
        );
        assert!(
            (start_off - src_start_off).abs() < FRAME,
            "{r}: A/V offset at the last cut {start_off:.4}s, source {src_start_off:.4}s"
        );
        seen.insert(r, (end_off, start_off));
    }
    eprintln!("A/V offsets at the end (audio - video, s): source {src_end_off:.4}, {seen:?}");
}

#[test]
fn a_new_publisher_with_another_resolution_restarts_the_ladder_in_line() {
    let _g = media_lock();
    let srv = TestServer::start(&ladder(
        2,
        60.0,
        "veryfast",
        &[("480p", 480, 900, 96), ("360p", 360, 600, 64)],
    ));
    let mut first = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            size: "1280x720",
            seconds: 60.0,
            video_kbps: 2500,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "480p", 2, 60 * SECS);
    srv.wait_segments("alice", "360p", 2, 60 * SECS);
    // OBS reconnecting with a smaller canvas: a takeover on the same key.
    let second = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            size: "854x480",
            seconds: 8.0,
            video_kbps: 1500,
            ..Default::default()
        },
    );
    // The 480p rendition would now be a re-encode at the source's own height: it leaves the
    // multivariant playlist (the source serves its viewers).
    wait_for(30 * SECS, "480p to leave the master playlist", || {
        let (_, m) = srv.get("/hls/alice/master.m3u8");
        (!m.contains("480p")).then_some(())
    });
    let (ok, err) = second.wait(60 * SECS);
    assert!(ok, "second push failed: {err}");
    first.stop();
    let source = wait_ended(&srv, "alice", "source", 30 * SECS);
    let p360 = wait_ended(&srv, "alice", "360p", 60 * SECS);
    assert!(p360.contains("DISCONTINUITY"), "{p360}");
    assert_eq!(
        media_sequence(&p360) + count_segments(&p360) as u64,
        media_sequence(&source) + count_segments(&source) as u64,
        "360p and source end at different sequence numbers:\n{p360}\nsource:\n{source}"
    );
    // Whatever both list is the same moment: same number, same duration (names differ by
    // each rendition's epoch, the number after it is the media sequence number).
    let src: BTreeMap<u64, f64> = segments(&source)
        .into_iter()
        .filter_map(|(uri, d)| Some((segment_number(&uri)?, d)))
        .collect();
    let common: Vec<_> = segments(&p360)
        .into_iter()
        .filter_map(|(uri, d)| src.get(&segment_number(&uri)?).map(|s| (uri, d, *s)))
        .collect();
    assert!(common.len() >= 3, "{p360}\nsource:\n{source}");
    for (uri, d, s) in common {
        assert_eq!(d, s, "{uri}:\n{p360}\nsource:\n{source}");
    }
    let (_, data) = srv.get_bytes(&format!(
        "/hls/alice/360p/{}",
        segments(&p360).last().expect("segments").0
    ));
    let v = ffprobe_bytes(&data)
        .into_iter()
        .find(|s| s.codec_type == "video")
        .expect("video");
    // 854x480 scaled to 360 lines keeps its aspect: 640.5, rounded up to an even 642.
    assert_eq!((v.width, v.height), (Some(642), Some(360)));
}

//! Recordings end to end: ffmpeg pushes RTMP as OBS does, the real server records, ffprobe and
//! ffmpeg play the VOD as players do. Covers EVENT while live and VOD + ENDLIST after, the
//! duration, a reconnect continuing the same recording with a discontinuity, the chat log's
//! and the pinned questions' offsets, the poster, Range and caching, retention, the admin delete, SIGKILL mid-show (the recording
//! survives up to its last complete segment, the index rebuilt from the files), and disks
//! that cannot be written (the live stream goes on).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::api::{self, ADMIN_TOKEN};
use common::*;
use serde_json::Value;

fn config(grace: u64, record: &str) -> String {
    format!(
        "[server]\nadmin_token = \"{ADMIN_TOKEN}\"\n[announce]\ngrace_seconds = {grace}\n\
         [debate]\nseconds_between_questions = 0\n[record]\n{record}\n"
    )
}

/// Asks a question on alice and moves it to `state`; its id.
fn question(srv: &TestServer, text: &str, state: &str) -> u64 {
    let a = api::ask(srv, "alice", "carol", text);
    assert_eq!(a.status, 202, "{:?}", a.body);
    let id = a.body["id"].as_u64().expect("question id");
    move_question(srv, id, state);
    id
}

fn move_question(srv: &TestServer, id: u64, state: &str) {
    let a = api::question_state(srv, "alice", id, state);
    assert_eq!(a.status, 200, "{:?}", a.body);
}

fn recordings(srv: &TestServer) -> Vec<Value> {
    srv.json("/api/channels/alice/recordings")["recordings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits for the only recording of alice to satisfy `f`.
fn wait_recording(srv: &TestServer, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    wait_for(Duration::from_secs(30), what, || {
        let all = recordings(srv);
        all.first().filter(|r| f(r)).cloned()
    })
}

fn media_playlist(srv: &TestServer, id: &str) -> String {
    let (s, body) = srv.get(&format!("/vod/alice/{id}/source/index.m3u8"));
    assert_eq!(s, 200, "{body}");
    body
}

fn header(srv: &TestServer, path: &str, range: Option<&str>) -> (u16, ureq::Response) {
    let mut req = ureq::get(&srv.url(path)).timeout(Duration::from_secs(10));
    if let Some(r) = range {
        req = req.set("Range", r);
    }
    match req.call() {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(c, r)) => (c, r),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

fn segment_files(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| l.ends_with(".m4s"))
        .map(String::from)
        .collect()
}

#[test]
fn a_show_is_recorded_as_it_happens_and_plays_back_whole_with_its_chat() {
    let _g = media_lock();
    let srv = TestServer::start(&config(0, ""));
    // Pinned before the show: on screen from the recording's start.
    question(&srv, "Opening question?", "pinned");
    let push = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 20.0,
            ..Default::default()
        },
    );
    // While live: listed as live, the playlist is an EVENT that grows, without ENDLIST.
    let rec = wait_recording(&srv, "a live recording", |r| r["live"] == true);
    let id = rec["id"].as_str().expect("id").to_string();
    assert_eq!(rec["playlist"], format!("/vod/alice/{id}/master.m3u8"));
    assert_eq!(rec["replay"], format!("/replay/alice/{id}"));
    assert_eq!(rec["title"], "Alice's debate");
    let live = wait_for(Duration::from_secs(20), "2 recorded segments", || {
        let p = media_playlist(&srv, &id);
        (segment_files(&p).len() >= 2).then_some(p)
    });
    assert!(live.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{live}");
    assert!(!live.contains("#EXT-X-ENDLIST"), "{live}");
    assert!(live.contains("#EXT-X-MAP:URI=\"init-"), "{live}");
    assert!(live.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{live}");
    let (s, r) = header(&srv, &format!("/vod/alice/{id}/master.m3u8"), None);
    assert_eq!(s, 200);
    assert_eq!(
        r.header("cache-control"),
        Some("no-cache"),
        "live: not cached"
    );
    let first = Instant::now();
    assert_eq!(api::post_chat(&srv, "alice", "ann", "first!").status, 202);
    // A question pinned during the show replaces the opening one, then is answered.
    let budget = question(&srv, "What about the budget?", "pinned");
    // A late viewer can start from the beginning while the show is on.
    let streams = ffprobe_url(&srv.url(&format!("/vod/alice/{id}/master.m3u8")));
    assert_test_pattern(&streams);
    wait_for(Duration::from_secs(20), "6 recorded segments", || {
        (segment_files(&media_playlist(&srv, &id)).len() >= 6).then_some(())
    });
    let gap = first.elapsed().as_secs_f64();
    assert_eq!(api::post_chat(&srv, "alice", "bob", "later").status, 202);
    move_question(&srv, budget, "answered");

    let (ok, err) = push.wait(Duration::from_secs(40));
    assert!(ok, "push failed: {err}");
    // After: VOD with ENDLIST, 20 ± 2 s, plays to the end.
    let done = wait_recording(&srv, "the recording to end", |r| r["live"] == false);
    assert_eq!(done["id"], id.as_str());
    assert_eq!(recordings(&srv).len(), 1, "one show, one recording");
    let d = done["duration_seconds"].as_f64().expect("duration");
    assert!((18.0..=22.0).contains(&d), "duration {d}");
    assert!(done["bytes"].as_u64().unwrap_or(0) > 100_000, "{done}");
    // The show's first live thumbnail is its poster.
    assert_eq!(done["thumbnail"], format!("/vod/alice/{id}/poster.jpg"));
    let (s, r) = header(&srv, &format!("/vod/alice/{id}/poster.jpg"), None);
    assert_eq!((s, r.header("content-type")), (200, Some("image/jpeg")));
    let vod = media_playlist(&srv, &id);
    assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{vod}");
    assert!(vod.trim_end().ends_with("#EXT-X-ENDLIST"), "{vod}");
    assert!(!vod.contains("#EXT-X-DISCONTINUITY"), "{vod}");
    let played = decoded_seconds(&srv, &id);
    assert!((18.0..=22.0).contains(&played), "decoded {played} s");
    let (s, r) = header(&srv, &format!("/vod/alice/{id}/source/index.m3u8"), None);
    assert_eq!(s, 200);
    assert!(
        r.header("cache-control")
            .is_some_and(|c| c.contains("max-age=86400")),
        "final playlists are cached"
    );

    // Segments from disk, with Range and a long cache life.
    let seg = segment_files(&vod)[0].clone();
    let path = format!("/vod/alice/{id}/source/{seg}");
    let (s, whole) = srv.get_bytes(&path);
    assert_eq!(s, 200);
    let (s, r) = header(&srv, &path, Some("bytes=100-199"));
    assert_eq!(s, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{}", whole.len()).as_str())
    );
    assert!(r
        .header("cache-control")
        .is_some_and(|c| c.contains("immutable")));
    let mut part = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut part).expect("body");
    assert_eq!(part, whole[100..200]);
    let (s, _) = header(&srv, &path, Some(&format!("bytes={}-", whole.len() + 10)));
    assert_eq!(s, 416);
    assert_eq!(
        srv.get(&format!("/vod/alice/{id}/source/999999.m4s")).0,
        404
    );
    assert_eq!(srv.get("/vod/alice/nope/master.m3u8").0, 404);

    // The chat came back with its media times, in order and the right distance apart.
    let log = srv.json(&format!("/api/channels/alice/recordings/{id}/chat"));
    let msgs = log["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2, "{log}");
    assert_eq!(msgs[0]["text"], "first!");
    assert_eq!(msgs[1]["nick"], "bob");
    let (a, b) = (
        msgs[0]["offset_seconds"].as_f64().expect("offset"),
        msgs[1]["offset_seconds"].as_f64().expect("offset"),
    );
    assert!(a > 0.5 && b <= d, "{a} {b} of {d}");
    assert!(
        ((b - a) - gap).abs() < 2.5,
        "{a} → {b}, posted {gap:.1} s apart"
    );
    // The pinned questions came back with their time on screen: the opening one from the
    // start until the budget one replaced it (as "first!" was posted), that one until it was
    // answered (as "later" was).
    let qs = log["questions"].as_array().expect("questions");
    assert_eq!(qs.len(), 2, "{log}");
    let at = |q: &Value, k: &str| q[k].as_f64().unwrap_or_else(|| panic!("{k}: {q}"));
    assert_eq!(qs[0]["text"], "Opening question?");
    assert_eq!(qs[0]["state"], "pinned");
    assert!(at(&qs[0], "offset_seconds") < 1.5, "{log}");
    assert!((at(&qs[0], "until_seconds") - a).abs() < 1.0, "{log}");
    assert_eq!(qs[1]["text"], "What about the budget?");
    assert_eq!(qs[1]["id"], budget);
    assert_eq!(
        at(&qs[1], "offset_seconds"),
        at(&qs[0], "until_seconds"),
        "replaced at once"
    );
    assert!((at(&qs[1], "until_seconds") - b).abs() < 1.0, "{log}");
    // The replay page is there.
    let (s, page) = srv.get(&format!("/replay/alice/{id}"));
    assert_eq!(s, 200);
    assert!(page.contains(&format!("data-recording=\"{id}\"")), "{page}");
}

#[test]
fn a_reconnect_within_the_grace_period_continues_the_recording_with_a_discontinuity() {
    let _g = media_lock();
    let srv = TestServer::start(&config(30, ""));
    for _ in 0..2 {
        let p = push(
            &srv.rtmp_url(ALICE_KEY),
            PushOpts {
                seconds: 6.0,
                ..Default::default()
            },
        );
        let (ok, err) = p.wait(Duration::from_secs(30));
        assert!(ok, "{err}");
        wait_recording(&srv, "the session to end", |r| r["live"] == false);
    }
    let all = recordings(&srv);
    assert_eq!(all.len(), 1, "one recording: {all:?}");
    let id = all[0]["id"].as_str().expect("id");
    let d = all[0]["duration_seconds"].as_f64().expect("duration");
    assert!((10.0..=14.0).contains(&d), "duration {d}");
    let vod = media_playlist(&srv, id);
    assert_eq!(vod.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{vod}");
    assert!(vod.trim_end().ends_with("#EXT-X-ENDLIST"));
    let played = decoded_seconds(&srv, id);
    assert!((10.0..=14.0).contains(&played), "decoded {played} s");
    assert!(srv.logs().contains("the recording goes on"));
}

#[test]
fn sigkill_mid_show_keeps_the_recording_up_to_its_last_complete_segment() {
    let _g = media_lock();
    let data = temp_dir("rec-kill");
    let mut srv = TestServer::start_in(&data, &config(0, ""));
    let mut p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 60.0,
            ..Default::default()
        },
    );
    let rec = wait_recording(&srv, "a live recording", |r| r["live"] == true);
    let id = rec["id"].as_str().expect("id").to_string();
    wait_for(Duration::from_secs(30), "4 recorded segments", || {
        (segment_files(&media_playlist(&srv, &id)).len() >= 4).then_some(())
    });
    srv.signal("KILL");
    wait_for(Duration::from_secs(10), "onair to die", || {
        (!srv.running()).then_some(())
    });
    p.stop();
    let on_disk = std::fs::read_to_string(
        data.join("recordings/alice")
            .join(&id)
            .join("source/segments.log"),
    )
    .expect("segments.log");
    let logged = on_disk.lines().count();
    assert!(logged >= 4, "{on_disk}");
    drop(srv);

    // Restart on the same data: the recording is there, ended, and plays to its last segment.
    let srv = TestServer::start_in(&data, &config(0, ""));
    let r = wait_recording(&srv, "the recording after restart", |r| r["live"] == false);
    assert_eq!(r["id"], id.as_str());
    let vod = media_playlist(&srv, &id);
    assert!(vod.trim_end().ends_with("#EXT-X-ENDLIST"), "{vod}");
    assert_eq!(
        segment_files(&vod).len(),
        logged,
        "every logged segment listed"
    );
    let played = decoded_seconds(&srv, &id);
    let d = r["duration_seconds"].as_f64().expect("duration");
    assert!(played >= 7.0 && (played - d).abs() < 1.5, "{played} vs {d}");
    drop(srv);

    // Even without the database the index comes back from the files.
    for f in ["onair.sqlite3", "onair.sqlite3-wal", "onair.sqlite3-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let srv = TestServer::start_in(&data, &config(0, ""));
    let r = wait_recording(&srv, "the rebuilt recording", |r| r["live"] == false);
    assert_eq!(r["id"], id.as_str());
    assert_eq!(segment_files(&media_playlist(&srv, &id)).len(), logged);
    assert!((r["duration_seconds"].as_f64().unwrap_or(0.0) - d).abs() < 0.01);
    drop(srv);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn retention_removes_the_oldest_and_admins_delete_files_and_index() {
    let _g = media_lock();
    let data = temp_dir("rec-retention");
    let show = |srv: &TestServer| {
        let p = push(
            &srv.rtmp_url(ALICE_KEY),
            PushOpts {
                seconds: 4.0,
                ..Default::default()
            },
        );
        let (ok, err) = p.wait(Duration::from_secs(30));
        assert!(ok, "{err}");
        wait_recording(srv, "the show to end", |r| r["live"] == false)
    };
    let srv = TestServer::start_in(&data, &config(0, ""));
    let first = show(&srv);
    let bytes = first["bytes"].as_f64().expect("bytes");
    drop(srv);
    // Room for one and a half shows like it: the next one pushes the first out.
    let limit = bytes * 1.5 / 1e9;
    let srv = TestServer::start_in(&data, &config(0, &format!("max_gb = {limit}")));
    assert_eq!(recordings(&srv).len(), 1, "fits: kept at start");
    show(&srv);
    let second = wait_for(Duration::from_secs(30), "the first recording to go", || {
        let all = recordings(&srv);
        (all.len() == 1 && all[0]["id"] != first["id"]).then(|| all[0].clone())
    });
    let first_dir = data
        .join("recordings/alice")
        .join(first["id"].as_str().expect("id"));
    assert!(!first_dir.exists(), "the oldest is gone from disk");
    srv.wait_log("recording removed by retention", Duration::from_secs(5));

    // The admin delete: 401 without the token, then files and index go.
    let id = second["id"].as_str().expect("id");
    let path = format!("/api/admin/channels/alice/recordings/{id}");
    assert_eq!(api::request(&srv, "DELETE", &path, None, &[]).status, 401);
    assert_eq!(api::admin(&srv, "DELETE", &path, None).status, 200);
    assert!(recordings(&srv).is_empty());
    assert!(!data.join("recordings/alice").join(id).exists());
    assert_eq!(srv.get(&format!("/vod/alice/{id}/master.m3u8")).0, 404);
    assert_eq!(api::admin(&srv, "DELETE", &path, None).status, 404);
    // A stream key deletes its own channel's recordings only.
    let other = format!("/api/admin/channels/bob/recordings/{id}");
    assert_eq!(
        api::bearer(&srv, ALICE_KEY, "DELETE", &other, None).status,
        403
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&data);
}

/// Pushes and checks the live HLS plays, whatever the recorder does.
fn live_stream_plays(srv: &TestServer, seconds: f64) -> Push {
    let p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 3, Duration::from_secs(20));
    let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/master.m3u8"), &["-t", "2"]);
    assert!(ok, "live stream broken: {err}");
    p
}

#[test]
fn a_recordings_dir_that_cannot_be_written_does_not_hurt_the_live_stream() {
    let _g = media_lock();
    let data = temp_dir("rec-unwritable");
    // `recordings` is a file: no directory can be made under it (even as root).
    std::fs::write(data.join("recordings"), b"not a directory").expect("file");
    let srv = TestServer::start_in(&data, &config(0, ""));
    let p = live_stream_plays(&srv, 8.0);
    srv.wait_log(
        "recording stopped: cannot write it",
        Duration::from_secs(10),
    );
    let (ok, err) = p.wait(Duration::from_secs(30));
    assert!(ok, "{err}");
    assert!(recordings(&srv).is_empty());
    let (_, metrics) = srv.get("/metrics");
    assert!(
        metrics.contains("onair_record_dropped_total{reason=\"write_error\"}"),
        "{metrics}"
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&data);
}

fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    std::fs::create_dir_all(dir).expect("dir");
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn a_disk_that_fills_up_mid_show_ends_the_recording_cleanly_while_viewers_watch() {
    let _g = media_lock();
    let data = temp_dir("rec-full");
    let rec_dir = data.join("recordings");
    if !mount_tmpfs(&rec_dir, "400k") {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    let srv = TestServer::start_in(&data, &config(0, ""));
    let mut p = live_stream_plays(&srv, 20.0);
    srv.wait_log(
        "recording stopped: cannot write it",
        Duration::from_secs(30),
    );
    // Viewers keep watching after the disk is full.
    let before = srv.get("/hls/alice/source/index.m3u8").1;
    wait_for(
        Duration::from_secs(10),
        "the live playlist to move on",
        || (srv.get("/hls/alice/source/index.m3u8").1 != before).then_some(()),
    );
    assert!(p.running(), "the publisher was not disturbed");
    let r = wait_recording(&srv, "the truncated recording to be ended", |r| {
        r["live"] == false
    });
    let id = r["id"].as_str().expect("id").to_string();
    let vod = media_playlist(&srv, &id);
    assert!(vod.trim_end().ends_with("#EXT-X-ENDLIST"), "{vod}");
    assert!(!segment_files(&vod).is_empty(), "{vod}");
    let (ok, err) = ffmpeg_decode(&srv.url(&format!("/vod/alice/{id}/master.m3u8")), &[]);
    assert!(ok, "the part recorded plays: {err}");
    p.stop();
    drop(srv);
    let _ = Command::new("umount").arg(&rec_dir).status();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn with_renditions_all_the_ladder_is_recorded_next_to_the_source() {
    let _g = media_lock();
    let ladder = "[[transcode.ladder]]\nname = \"90p\"\nheight = 90\nvideo_kbps = 150\n\
                  audio_kbps = 64\npreset = \"ultrafast\"\n";
    let srv = TestServer::start(&format!("{}{ladder}", config(0, "renditions = \"all\"")));
    let p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 8.0,
            ..Default::default()
        },
    );
    let (ok, err) = p.wait(Duration::from_secs(40));
    assert!(ok, "{err}");
    let r = wait_recording(&srv, "the recording to end", |r| r["live"] == false);
    let id = r["id"].as_str().expect("id");
    let master = wait_for(Duration::from_secs(10), "two variants", || {
        let (_, m) = srv.get(&format!("/vod/alice/{id}/master.m3u8"));
        (m.contains("source/index.m3u8") && m.contains("90p/index.m3u8")).then_some(m)
    });
    assert!(master.contains("RESOLUTION=160x90"), "{master}");
    let (s, ladder) = srv.get(&format!("/vod/alice/{id}/90p/index.m3u8"));
    assert_eq!(s, 200);
    assert!(ladder.trim_end().ends_with("#EXT-X-ENDLIST"), "{ladder}");
    let url = srv.url(&format!("/vod/alice/{id}/90p/index.m3u8"));
    let streams = ffprobe_url(&url);
    assert!(
        streams
            .iter()
            .any(|s| s.codec_name == "h264" && s.height == Some(90)),
        "{streams:?}"
    );
    let (ok, err) = ffmpeg_decode(&url, &[]);
    assert!(ok, "{err}");
}

//! Low-latency HLS (fMP4/CMAF parts, blocking playlist reload, preload hints, delta updates)
//! against the real binary with ffmpeg pushing and ffmpeg/ffprobe reading.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SECS: Duration = Duration::from_secs(1);
const LL: &str = "[hls]\ncontainer = \"fmp4\"\nsegment_seconds = 1.0\npart_seconds = 0.333\nplaylist_window = 10\n";

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(',')
        .find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| k.ends_with(name))
                .map(|(_, v)| v)
        })
        .map(|v| v.trim_matches('"'))
}

/// (epoch, msn, part) of the preload hint (`{epoch}-{msn}.{part}.m4s`).
fn hint(p: &str) -> (String, u64, u64) {
    let line = p
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .unwrap_or_else(|| panic!("no preload hint in {p}"));
    let uri = attr(line, "URI").expect("URI");
    let (epoch, rest) = uri.split_once('-').expect("epoch-msn.part.m4s");
    let (m, part) = rest
        .trim_end_matches(".m4s")
        .split_once('.')
        .expect("msn.part");
    (
        epoch.to_string(),
        m.parse().expect("msn"),
        part.parse().expect("part"),
    )
}

#[test]
fn low_latency_playlists_parts_and_blocking_reload() {
    let _g = media_lock();
    let srv = TestServer::start(LL);
    let _p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 14.0,
            gop: 30,
            ..Default::default()
        },
    );
    let pl = srv.wait_segments("alice", "source", 2, 30 * SECS);

    // Conformance of the low-latency tags.
    assert!(pl.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n"), "{pl}");
    let target: f64 = tag_value(&pl, "#EXT-X-PART-INF")
        .and_then(|v| attr(&v, "PART-TARGET").map(String::from))
        .and_then(|v| v.parse().ok())
        .expect("PART-TARGET");
    let control = tag_value(&pl, "#EXT-X-SERVER-CONTROL").expect("SERVER-CONTROL");
    assert_eq!(attr(&control, "CAN-BLOCK-RELOAD"), Some("YES"));
    let hold: f64 = attr(&control, "PART-HOLD-BACK")
        .and_then(|v| v.parse().ok())
        .expect("PART-HOLD-BACK");
    assert!(hold >= 3.0 * target, "PART-HOLD-BACK {hold} < 3 x {target}");
    let skip_until: f64 = attr(&control, "CAN-SKIP-UNTIL")
        .and_then(|v| v.parse().ok())
        .expect("CAN-SKIP-UNTIL");
    assert!(skip_until >= 6.0, "{control}");
    let map = tag_value(&pl, "#EXT-X-MAP").expect("EXT-X-MAP");
    let init_uri = attr(&map, "URI").expect("map URI").to_string();
    let parts: Vec<&str> = pl
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .collect();
    assert!(parts.len() >= 4, "{pl}");
    for p in &parts {
        let d: f64 = attr(p, "DURATION")
            .and_then(|v| v.parse().ok())
            .expect("DURATION");
        assert!(
            d <= target + 1e-9,
            "part of {d} s exceeds PART-TARGET {target}"
        );
    }
    // The first part of every listed segment starts with a keyframe.
    for seg in pl.split("#EXTINF").skip(1) {
        if let Some(first) = seg.lines().find(|l| l.starts_with("#EXT-X-PART:")) {
            assert!(
                first.contains("INDEPENDENT=YES") || !first.contains(".0.m4s"),
                "{first}"
            );
        }
    }
    assert!(pl.contains(".0.m4s\",INDEPENDENT=YES"));

    // Init + one part decode as H.264 + AAC.
    let init = srv.get_bytes(&format!("/hls/alice/source/{init_uri}")).1;
    let first_part = attr(parts[0], "URI").expect("part URI");
    let part = srv.get_bytes(&format!("/hls/alice/source/{first_part}")).1;
    assert_eq!(&part[4..8], b"moof");
    let streams = ffprobe_bytes(&[init.clone(), part].concat());
    assert_test_pattern(&streams);

    // Blocking reload: ask for the hinted (not yet existing) part; the answer comes only once
    // it is listed, and within a part duration or so.
    let now = srv.get("/hls/alice/source/index.m3u8").1;
    let (epoch, msn, part_no) = hint(&now);
    let want = format!("{epoch}-{msn}.{part_no}.m4s");
    let listed = |p: &str| {
        p.lines()
            .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&format!("URI=\"{want}\"")))
    };
    assert!(!listed(&now), "the hinted part is not listed yet");
    let t = Instant::now();
    let (status, blocked) = srv.get(&format!(
        "/hls/alice/source/index.m3u8?_HLS_msn={msn}&_HLS_part={part_no}"
    ));
    let waited = t.elapsed();
    assert_eq!(status, 200);
    assert!(listed(&blocked), "{blocked}");
    assert!(
        waited < Duration::from_secs(2),
        "blocking reload took {waited:?}"
    );

    // The preload-hinted part: a request for it waits and then gets the bytes.
    let (epoch, msn, part_no) = hint(&blocked);
    let (status, bytes) = srv.get_bytes(&format!("/hls/alice/source/{epoch}-{msn}.{part_no}.m4s"));
    assert_eq!(status, 200);
    assert_eq!(&bytes[4..8], b"moof");

    // Too far ahead is refused at once; a part that is neither there nor next is 404.
    let (status, _) = srv.get(&format!(
        "/hls/alice/source/index.m3u8?_HLS_msn={}",
        msn + 5
    ));
    assert_eq!(status, 400);
    assert_eq!(
        srv.get(&format!("/hls/alice/source/{epoch}-{}.0.m4s", msn + 3))
            .0,
        404
    );
    assert_eq!(srv.get("/hls/alice/source/index.m3u8?_HLS_part=1").0, 400);

    // Delta update once the playlist is longer than CAN-SKIP-UNTIL.
    let delta = wait_for(20 * SECS, "a delta update", || {
        let (_, d) = srv.get("/hls/alice/source/index.m3u8?_HLS_skip=YES");
        d.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=").then_some(d)
    });
    assert!(
        delta.contains("#EXT-X-MAP:"),
        "a delta update repeats the map: {delta}"
    );
    let full = srv.get("/hls/alice/source/index.m3u8").1;
    assert!(count_segments(&delta) < count_segments(&full));

    // Players without low-latency support play the same playlists.
    let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/master.m3u8"), &["-t", "2"]);
    assert!(ok, "{err}");
}

/// Part lines (`DURATION`, `URI`) per segment number in a media playlist.
fn parts_by_msn(p: &str) -> std::collections::BTreeMap<u64, Vec<String>> {
    let mut out: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    for l in p.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
        let uri = attr(l, "URI").expect("URI");
        let msn: u64 = segment_number(uri).expect("msn");
        let dur = attr(l, "DURATION").expect("DURATION").to_string();
        out.entry(msn).or_default().push(dur);
    }
    out
}

#[test]
fn abr_renditions_carry_aligned_parts_and_rendition_reports() {
    let _g = media_lock();
    let srv = TestServer::start(
        "[hls]\ncontainer = \"fmp4\"\n[transcode]\nworkers = 1\n\
         [[transcode.ladder]]\nname = \"144p\"\nheight = 144\nvideo_kbps = 200\naudio_kbps = 64\npreset = \"ultrafast\"\n",
    );
    let _p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 14.0,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "144p", 3, 40 * SECS);
    let source = srv.get("/hls/alice/source/index.m3u8").1;
    let low = srv.get("/hls/alice/144p/index.m3u8").1;
    assert!(
        source.contains("#EXT-X-RENDITION-REPORT:URI=\"../144p/index.m3u8\",LAST-MSN="),
        "{source}"
    );
    assert!(
        low.contains("#EXT-X-RENDITION-REPORT:URI=\"../source/index.m3u8\",LAST-MSN="),
        "{low}"
    );
    // Complete segments listed in both carry the same parts (same count, same durations).
    let (a, b) = (parts_by_msn(&source), parts_by_msn(&low));
    let mut compared = 0;
    for (msn, durs) in &b {
        let complete = |p: &str| {
            p.lines()
                .any(|l| l.ends_with(&format!("-{msn}.m4s")) && !l.starts_with('#'))
        };
        if complete(&source) && complete(&low) {
            assert_eq!(a.get(msn), Some(durs), "parts of segment {msn} differ");
            compared += 1;
        }
    }
    assert!(
        compared >= 1,
        "no complete segment with parts in both:\n{source}\n{low}"
    );
    let master = srv.get("/hls/alice/master.m3u8").1;
    assert!(
        master.contains("144p/index.m3u8") && master.contains("RESOLUTION=256x144"),
        "{master}"
    );
}

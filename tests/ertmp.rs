//! Enhanced RTMP end to end: FFmpeg 9 (imageio-ffmpeg, in `.venv`) pushes HEVC (libx265) and
//! AV1 (SVT-AV1) with `-rtmp_enhanced_codecs` to the real onair binary; ffprobe and ffmpeg read
//! what viewers get. The `source` rendition passes the stream through (fMP4 `hvc1` / `av01`,
//! or HEVC in MPEG-TS), its `CODECS` match the stream's profile and level as ffprobe reads them,
//! the H.264 ladder is transcoded from it, and ffmpeg plays the master playlist. An AV1 source
//! with the `ts` container has only its H.264 renditions.

mod common;

use std::process::Command;
use std::time::Duration;

use common::ertmp::{
    check_source_and_ladder, config, first_segment, profile_level, variant, Audio, EnhancedPush,
    Video,
};
use common::*;

const SECS: Duration = Duration::from_secs(1);

/// HEVC over Enhanced RTMP with fMP4: the source rendition is `hvc1` with the stream's own
/// profile and level in CODECS (checked against ffprobe), low-latency parts as for H.264, and
/// the H.264 ladder next to it; ffmpeg plays the master playlist to the end.
#[test]
fn hevc_passes_through_in_fmp4_with_an_h264_ladder() {
    let _g = media_lock();
    let srv = TestServer::start(&config("fmp4"));
    let push = EnhancedPush::new(Video::Hevc, Audio::Aac).push(&srv.rtmp_url(ALICE_KEY));
    let codecs = check_source_and_ladder(&srv, "hevc", "hvc1.1.6.L");
    // Main profile is general_profile_idc 1; the level is general_level_idc, as ffprobe reads
    // it from the parameter sets in the hvcC.
    let (profile, level) = profile_level(&first_segment(&srv, "source"));
    assert_eq!(profile, "Main");
    assert!(
        codecs.starts_with(&format!("hvc1.1.6.L{level}.")),
        "{codecs} vs level {level}"
    );
    let (_, playlist) = srv.get("/hls/alice/source/index.m3u8");
    assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
    assert!(
        srv.logs().contains("Enhanced RTMP"),
        "connect's fourCcList logged"
    );
    let (ok, err) = push.wait(60 * SECS);
    assert!(ok, "FFmpeg 9 push failed: {err}");
    for r in ["source", "low"] {
        wait_for(60 * SECS, &format!("{r} ENDLIST"), || {
            let (s, p) = srv.get(&format!("/hls/alice/{r}/index.m3u8"));
            (s == 200 && p.contains("#EXT-X-ENDLIST")).then_some(())
        });
    }
    let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/master.m3u8"), &[]);
    assert!(ok, "ffmpeg plays the master playlist: {err}");
}

/// HEVC Main 10: CODECS say profile 2 (compatible with Main 10 only), and the ladder is 8-bit
/// H.264 that browsers decode.
#[test]
fn hevc_main10_codecs_and_an_8_bit_ladder() {
    let _g = media_lock();
    let srv = TestServer::start(&config("fmp4"));
    let _push = EnhancedPush::new(Video::Hevc10, Audio::Aac).push(&srv.rtmp_url(ALICE_KEY));
    let codecs = check_source_and_ladder(&srv, "hevc", "hvc1.2.4.L");
    let (profile, level) = profile_level(&first_segment(&srv, "source"));
    assert_eq!(profile, "Main 10");
    assert!(
        codecs.starts_with(&format!("hvc1.2.4.L{level}.")),
        "{codecs}"
    );
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=pix_fmt",
            "-of",
            "csv=p=0",
        ])
        .arg(srv.url("/hls/alice/low/index.m3u8"))
        .output()
        .expect("ffprobe");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("yuv420p")
    );
}

/// AV1 over Enhanced RTMP with fMP4: `av01` source (ffprobe decodes it with libdav1d) with
/// CODECS from the sequence header, and the H.264 ladder.
#[test]
fn av1_passes_through_in_fmp4_with_an_h264_ladder() {
    let _g = media_lock();
    let srv = TestServer::start(&config("fmp4"));
    let push = EnhancedPush::new(Video::Av1, Audio::Aac).push(&srv.rtmp_url(ALICE_KEY));
    let codecs = check_source_and_ladder(&srv, "av1", "av01.0.");
    let (profile, level) = profile_level(&first_segment(&srv, "source"));
    assert_eq!(profile, "Main");
    // seq_level_idx as two digits, main tier, 8 bits.
    assert!(
        codecs.starts_with(&format!("av01.0.{level:02}M.08")),
        "{codecs} vs level {level}"
    );
    let (ok, err) = push.wait(60 * SECS);
    assert!(ok, "FFmpeg 9 push failed: {err}");
    wait_for(60 * SECS, "ladder ENDLIST", || {
        let (s, p) = srv.get("/hls/alice/low/index.m3u8");
        (s == 200 && p.contains("#EXT-X-ENDLIST")).then_some(())
    });
    let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/master.m3u8"), &[]);
    assert!(ok, "ffmpeg plays the master playlist: {err}");
}

/// HEVC with `hls.container = "ts"`: the source rendition is HEVC in MPEG-TS (stream type
/// 0x24), next to the H.264 ladder.
#[test]
fn hevc_in_mpeg_ts() {
    let _g = media_lock();
    let srv = TestServer::start(&config("ts"));
    let _push = EnhancedPush::new(Video::Hevc, Audio::Aac).push(&srv.rtmp_url(ALICE_KEY));
    let source = first_segment(&srv, "source");
    assert_eq!(source[0], 0x47, "MPEG-TS");
    let streams = ffprobe_bytes(&source);
    assert!(
        streams
            .iter()
            .any(|s| s.codec_name == "hevc" && s.height == Some(180)),
        "{streams:?}"
    );
    assert!(streams.iter().any(|s| s.codec_name == "aac"), "{streams:?}");
    let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/source/index.m3u8"), &["-t", "2"]);
    assert!(ok, "{err}");
    let low = ffprobe_bytes(&first_segment(&srv, "low"));
    assert!(low.iter().any(|s| s.codec_name == "h264"), "{low:?}");
    let (_, master) = srv.get("/hls/alice/master.m3u8");
    let (codecs, _) = variant(&master, "source").expect("source variant");
    assert!(codecs.starts_with("hvc1.1.6.L"), "{codecs}");
}

/// AV1 with `hls.container = "ts"`: MPEG-TS cannot carry it, so the master lists only the
/// H.264 ladder, and the log says why.
#[test]
fn av1_with_ts_offers_only_the_h264_ladder() {
    let _g = media_lock();
    let srv = TestServer::start(&config("ts"));
    let _push = EnhancedPush::new(Video::Av1, Audio::Aac).push(&srv.rtmp_url(ALICE_KEY));
    srv.wait_segments("alice", "low", 2, 60 * SECS);
    let (_, master) = srv.get("/hls/alice/master.m3u8");
    assert!(variant(&master, "low").is_some(), "{master}");
    assert!(variant(&master, "source").is_none(), "{master}");
    let (status, _) = srv.get("/hls/alice/source/index.m3u8");
    assert_eq!(status, 404);
    srv.wait_log("cannot be carried in MPEG-TS", 10 * SECS);
    let (ok, err) = ffmpeg_decode(&srv.url("/hls/alice/master.m3u8"), &["-t", "2"]);
    assert!(ok, "{err}");
}

/// hls.js in headless Chromium plays the H.264 ladder of an HEVC source (Debian's Chromium has
/// no HEVC decoder; the CODECS attribute is how hls.js knows to skip the source).
#[test]
fn hls_js_plays_the_ladder_of_an_hevc_source() {
    let _g = media_lock();
    let srv = TestServer::start(&config("fmp4"));
    let mut p = EnhancedPush::new(Video::Hevc, Audio::Aac);
    p.seconds = 30.0;
    let _push = p.push(&srv.rtmp_url(ALICE_KEY));
    srv.wait_segments("alice", "low", 2, 60 * SECS);
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("node")
        .arg(format!("{root}/tests/browser/ertmp.mjs"))
        .arg(srv.url("/hls/alice/master.m3u8"))
        .arg("8000")
        .output()
        .expect("node (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(r["played"].as_f64().unwrap_or(0.0) >= 3.0, "{r}");
    assert!(
        r["level_codecs"]
            .as_str()
            .is_some_and(|c| c.starts_with("avc1.")),
        "{r}"
    );
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
}

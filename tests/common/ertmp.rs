//! The Enhanced RTMP broadcaster: the static FFmpeg 9 of the PyPI package `imageio-ffmpeg`
//! (libx265, SVT-AV1, libopus, `-rtmp_enhanced_codecs`), which scripts/setup installs into the
//! repository's `.venv/`. Debian's FFmpeg 5.1 cannot put HEVC or AV1 in FLV.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;

/// The FFmpeg 9 binary: `$ONAIR_FFMPEG9`, else what `.venv/bin/python` says imageio-ffmpeg ships.
pub fn ffmpeg9() -> PathBuf {
    if let Some(p) = std::env::var_os("ONAIR_FFMPEG9") {
        return PathBuf::from(p);
    }
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let out = Command::new(python)
        .args([
            "-c",
            "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("{python}: {e}: run scripts/setup --test (it makes .venv with imageio-ffmpeg)")
        });
    assert!(
        out.status.success(),
        "imageio-ffmpeg missing from .venv (scripts/setup --test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Video {
    /// libx265 Main, ultrafast (B-frames: composition times on the wire).
    Hevc,
    /// libx265 Main 10.
    Hevc10,
    /// SVT-AV1, fastest preset.
    Av1,
    /// libx264 (legacy FLV video tags), for Enhanced RTMP audio with plain H.264.
    H264,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audio {
    Aac,
    Opus,
    None,
}

/// What to push: a 320x180 test pattern at 30 fps with a 2 s GOP unless changed.
#[derive(Debug, Clone)]
pub struct EnhancedPush {
    pub video: Video,
    pub audio: Audio,
    pub seconds: f64,
    pub size: &'static str,
    /// Extra output options (after the codecs, before `-f flv`).
    pub extra: Vec<String>,
}

impl EnhancedPush {
    pub fn new(video: Video, audio: Audio) -> Self {
        Self {
            video,
            audio,
            seconds: 8.0,
            size: "320x180",
            extra: Vec::new(),
        }
    }

    /// ffmpeg arguments up to, not including, the output.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut add = |xs: &[&str]| a.extend(xs.iter().map(|x| x.to_string()));
        add(&[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=size={}:rate=30", self.size),
        ]);
        if self.audio != Audio::None {
            add(&["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
        }
        add(&["-t", &self.seconds.to_string()]);
        match self.video {
            Video::Hevc | Video::Hevc10 => add(&[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "keyint=60:min-keyint=60:scenecut=0:log-level=error",
                "-b:v",
                "300k",
                "-pix_fmt",
                if self.video == Video::Hevc10 {
                    "yuv420p10le"
                } else {
                    "yuv420p"
                },
            ]),
            Video::H264 => add(&[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "60",
                "-b:v",
                "300k",
                "-pix_fmt",
                "yuv420p",
            ]),
            Video::Av1 => add(&[
                "-c:v",
                "libsvtav1",
                "-preset",
                "12",
                "-g",
                "60",
                "-svtav1-params",
                "scd=0",
                "-b:v",
                "300k",
                "-pix_fmt",
                "yuv420p",
            ]),
        }
        match self.audio {
            Audio::Aac => add(&["-c:a", "aac", "-b:a", "64k", "-ac", "2"]),
            Audio::Opus => add(&["-c:a", "libopus", "-b:a", "64k", "-ac", "2"]),
            Audio::None => {}
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Pushes in real time to `url` over Enhanced RTMP.
    pub fn push(&self, url: &str) -> Push {
        self.push_as(
            &[
                "-rtmp_enhanced_codecs",
                "hvc1,av01,Opus,mp4a",
                "-flvflags",
                "no_duration_filesize",
                "-f",
                "flv",
            ],
            url,
        )
    }

    /// Pushes in real time to an `srt://` URL, in MPEG-TS (HEVC: stream type 0x24).
    pub fn push_srt(&self, url: &str) -> Push {
        self.push_as(&["-f", "mpegts"], url)
    }

    fn push_as(&self, format: &[&str], url: &str) -> Push {
        let child = Command::new(ffmpeg9())
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(self.args())
            .args(format)
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("FFmpeg 9 (scripts/setup --test)");
        Push { child }
    }
}

// What viewers get from an HEVC or AV1 source: shared by tests/ertmp.rs and tests/srt.rs.

pub const TOKEN: &str = "ertmp-admin-token-0123456789";

/// One H.264 rung below the 320x180 source; `max_lag_seconds` high so that a loaded machine
/// never sheds it mid-test.
pub fn config(container: &str) -> String {
    format!(
        "[server]\nadmin_token = \"{TOKEN}\"\n[hls]\ncontainer = \"{container}\"\n\
         [transcode]\nworkers = 2\nmax_lag_seconds = 60\n\
         [[transcode.ladder]]\nname = \"low\"\nheight = 144\nvideo_kbps = 200\naudio_kbps = 48\npreset = \"ultrafast\"\n"
    )
}

/// The `CODECS` value the master playlist gives a rendition, and its `RESOLUTION`.
pub fn variant(master: &str, rendition: &str) -> Option<(String, String)> {
    let mut lines = master.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(attrs) = l.strip_prefix("#EXT-X-STREAM-INF:") {
            let uri = lines.peek().copied().unwrap_or("");
            if uri.starts_with(&format!("{rendition}/")) {
                let attr = |name: &str| {
                    attrs
                        .split(&format!("{name}="))
                        .nth(1)
                        .map(|v| {
                            let v = v.trim_start_matches('"');
                            v.split(['"', ',']).next().unwrap_or("").to_string()
                        })
                        .unwrap_or_default()
                };
                let codecs = attrs
                    .split("CODECS=\"")
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .unwrap_or("")
                    .to_string();
                return Some((codecs, attr("RESOLUTION")));
            }
        }
    }
    None
}

/// The first media segment of a rendition, with its init segment in front for fMP4: a file
/// ffprobe reads as a player would.
pub fn first_segment(srv: &TestServer, rendition: &str) -> Vec<u8> {
    let playlist = srv.wait_segments("alice", rendition, 1, Duration::from_secs(60));
    let mut out = Vec::new();
    if let Some(map) = tag_value(&playlist, "#EXT-X-MAP") {
        let uri = map
            .split("URI=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .expect("EXT-X-MAP URI");
        let (s, init) = srv.get_bytes(&format!("/hls/alice/{rendition}/{uri}"));
        assert_eq!(s, 200, "init segment");
        out.extend_from_slice(&init);
    }
    let (name, _) = segments(&playlist).into_iter().next().expect("a segment");
    let (s, seg) = srv.get_bytes(&format!("/hls/alice/{rendition}/{name}"));
    assert_eq!(s, 200, "segment {name}");
    out.extend_from_slice(&seg);
    out
}

/// ffprobe's `profile` and `level` of the video stream of a file.
pub fn profile_level(data: &[u8]) -> (String, i64) {
    let dir = temp_dir("pl");
    let f = dir.join("seg.mp4");
    std::fs::write(&f, data).expect("write");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=profile,level",
            "-of",
            "json",
        ])
        .arg(&f)
        .output()
        .expect("ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let s = &v["streams"][0];
    (
        s["profile"].as_str().unwrap_or("").to_string(),
        s["level"].as_i64().unwrap_or(-1),
    )
}

/// What `/api/admin/streams` says about alice's source video.
pub fn admin_video(srv: &TestServer) -> serde_json::Value {
    let out = ureq::get(&srv.url("/api/admin/streams"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .expect("admin streams")
        .into_json::<serde_json::Value>()
        .expect("json");
    out.as_array()
        .and_then(|a| a.iter().find(|s| s["channel"] == "alice"))
        .map(|s| s["video"].clone())
        .unwrap_or(serde_json::Value::Null)
}

/// The checks every HEVC or AV1 push shares, once the push is under way: the source passes
/// through in `codec_name` with CODECS `prefix`..., the ladder is H.264 with audio, the master
/// lists both.
pub fn check_source_and_ladder(srv: &TestServer, codec_name: &str, codecs_prefix: &str) -> String {
    let source = first_segment(srv, "source");
    let streams = ffprobe_bytes(&source);
    assert!(
        streams
            .iter()
            .any(|s| s.codec_name == codec_name && s.width == Some(320) && s.height == Some(180)),
        "source rendition: {streams:?}"
    );
    assert!(
        streams.iter().any(|s| s.codec_name == "aac"),
        "source rendition: {streams:?}"
    );
    let low = first_segment(srv, "low");
    let streams = ffprobe_bytes(&low);
    assert!(
        streams
            .iter()
            .any(|s| s.codec_name == "h264" && s.height == Some(144)),
        "ladder rendition: {streams:?}"
    );
    assert!(streams.iter().any(|s| s.codec_name == "aac"), "{streams:?}");
    let (status, master) = srv.get("/hls/alice/master.m3u8");
    assert_eq!(status, 200);
    let (codecs, res) = variant(&master, "source").expect("source variant");
    assert!(codecs.starts_with(codecs_prefix), "{codecs} in\n{master}");
    assert_eq!(res, "320x180");
    let (low_codecs, low_res) = variant(&master, "low").expect("ladder variant");
    assert!(low_codecs.starts_with("avc1."), "{low_codecs}");
    assert!(low_codecs.contains("mp4a.40.2"), "{low_codecs}");
    assert_eq!(low_res, "256x144");
    let video = admin_video(srv);
    assert_eq!(video["codec_name"], codec_name, "{video}");
    assert!(
        video["codec"]
            .as_str()
            .is_some_and(|c| c.starts_with(codecs_prefix)),
        "{video}"
    );
    codecs
}

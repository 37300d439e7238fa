//! The Enhanced RTMP broadcaster: the static FFmpeg 9 of the PyPI package `imageio-ffmpeg`
//! (libx265, SVT-AV1, libopus, `-rtmp_enhanced_codecs`), which scripts/setup installs into the
//! repository's `.venv/`. Debian's FFmpeg 5.1 cannot put HEVC or AV1 in FLV.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::Push;

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
        let child = Command::new(ffmpeg9())
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(self.args())
            .args([
                "-rtmp_enhanced_codecs",
                "hvc1,av01",
                "-flvflags",
                "no_duration_filesize",
                "-f",
                "flv",
                url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("FFmpeg 9 (scripts/setup --test)");
        Push { child }
    }
}

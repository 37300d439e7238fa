//! The `[thumbnail]` section: how often the live thumbnail (`/thumb/{channel}.jpg`, the share
//! cards' `og:image`, the picture of go-live posts) is made, and how wide it is. Read by
//! `transcode::thumbnails` and validated from `Config::validate`.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ThumbnailConfig {
    /// Seconds between two thumbnails of a live channel (the latest source keyframe is
    /// decoded each time); the first comes at the stream's first keyframe.
    pub interval_seconds: u64,
    /// Width in pixels; the height is 9/16 of it and the picture is letterboxed to 16:9.
    pub width: u32,
}

impl Default for ThumbnailConfig {
    fn default() -> Self {
        Self {
            interval_seconds: 10,
            width: 1280,
        }
    }
}

impl ThumbnailConfig {
    /// The height of a thumbnail: 16:9, rounded down to an even number (4:2:0 chroma).
    pub fn height(&self) -> u32 {
        (self.width * 9 / 16) & !1
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.interval_seconds) {
            return Err(invalid(
                "thumbnail.interval_seconds",
                self.interval_seconds.to_string(),
                "1 to 3600",
            ));
        }
        // X cards want at least 300x157; 3840 keeps one JPEG well under Bluesky's 1 MB.
        if !(320..=3840).contains(&self.width) || !self.width.is_multiple_of(2) {
            return Err(invalid(
                "thumbnail.width",
                self.width.to_string(),
                "an even number of pixels from 320 to 3840",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        let c = ThumbnailConfig::default();
        assert_eq!((c.interval_seconds, c.width, c.height()), (10, 1280, 720));
        assert!(c.validate().is_ok());
        let h = |width| ThumbnailConfig { width, ..c.clone() }.height();
        assert_eq!((h(1920), h(640), h(322)), (1080, 360, 180));
        for bad in [
            ThumbnailConfig {
                interval_seconds: 0,
                ..c.clone()
            },
            ThumbnailConfig {
                width: 319,
                ..c.clone()
            },
            ThumbnailConfig {
                width: 1281,
                ..c.clone()
            },
            ThumbnailConfig {
                width: 4000,
                ..c.clone()
            },
        ] {
            let e = bad.validate().expect_err("refused").to_string();
            assert!(e.contains("thumbnail."), "{e}");
        }
    }
}

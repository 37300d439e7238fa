//! The `[record]` section: recordings of every broadcast under
//! `{storage.data_dir}/recordings/`, their retention, and (later) an object store. Read by
//! `record/` (the recorder and retention) and validated from `Config::validate`.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Which renditions a recording keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordRenditions {
    /// The untouched input only (no re-encoding, the smallest files).
    Source,
    /// The source and every `[transcode]` ladder rendition.
    All,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RecordConfig {
    /// Record every broadcast.
    pub enabled: bool,
    pub renditions: RecordRenditions,
    /// Recordings older than this many days are deleted (0: kept forever). Fractions allowed.
    pub keep_days: f64,
    /// When all recordings together pass this many gigabytes (10^9 bytes), the oldest finished
    /// ones are deleted until they fit (0: no limit). Fractions allowed.
    pub max_gb: f64,
    /// Segments waiting for the disk before a recording is given up (a slow or full disk
    /// never holds up the live stream).
    pub queue_segments: usize,
    /// `s3://bucket/prefix` to copy finished recordings to; empty: local disk only.
    /// (Parsed and validated; uploading is not implemented yet.)
    pub object_store_url: String,
    /// An S3-compatible endpoint (MinIO, SeaweedFS, R2); empty: AWS.
    pub object_store_endpoint: String,
    pub object_store_region: String,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            renditions: RecordRenditions::Source,
            keep_days: 30.0,
            max_gb: 0.0,
            queue_segments: 16,
            object_store_url: String::new(),
            object_store_endpoint: String::new(),
            object_store_region: String::new(),
        }
    }
}

impl RecordConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.keep_days.is_finite() && self.keep_days >= 0.0) {
            return Err(invalid(
                "record.keep_days",
                self.keep_days.to_string(),
                "a number of days, 0 or more (0 keeps recordings forever)",
            ));
        }
        if !(self.max_gb.is_finite() && self.max_gb >= 0.0) {
            return Err(invalid(
                "record.max_gb",
                self.max_gb.to_string(),
                "a number of gigabytes, 0 or more (0: no limit)",
            ));
        }
        if self.queue_segments == 0 || self.queue_segments > 1024 {
            return Err(invalid(
                "record.queue_segments",
                self.queue_segments.to_string(),
                "1 to 1024",
            ));
        }
        let url = self.object_store_url.trim();
        if !url.is_empty() && !url.starts_with("s3://") {
            return Err(invalid(
                "record.object_store_url",
                format!("{url:?}"),
                "empty, or s3://bucket/prefix",
            ));
        }
        Ok(())
    }

    /// Seconds a recording is kept, if limited.
    pub fn keep_seconds(&self) -> Option<f64> {
        (self.keep_days > 0.0).then_some(self.keep_days * 86_400.0)
    }

    /// Bytes all recordings may take, if limited.
    pub fn max_bytes(&self) -> Option<u64> {
        (self.max_gb > 0.0).then_some((self.max_gb * 1e9) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        let c = RecordConfig::default();
        assert!(c.enabled && c.renditions == RecordRenditions::Source);
        assert!(c.validate().is_ok());
        assert_eq!(c.max_bytes(), None);
        let bad = RecordConfig {
            keep_days: -1.0,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("record.keep_days"));
        let bad = RecordConfig {
            object_store_url: "http://x".into(),
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("record.object_store_url"));
        let small = RecordConfig {
            max_gb: 0.5,
            ..Default::default()
        };
        assert_eq!(small.max_bytes(), Some(500_000_000));
    }
}

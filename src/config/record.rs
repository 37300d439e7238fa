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
    /// `s3://bucket/prefix` to upload every recording to, segment by segment as each is
    /// fsynced; empty: local disk only. Credentials come from `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), never from this file.
    pub object_store_url: String,
    /// An S3-compatible endpoint (MinIO, SeaweedFS, Garage, R2), addressed path-style;
    /// empty: AWS itself. `http://` is allowed because it is written here explicitly.
    pub object_store_endpoint: String,
    /// The region to sign for; empty: `us-east-1`.
    pub object_store_region: String,
    /// Keep the local copy of a recording once it is all in the object store (the default);
    /// false: its media files are removed locally after the upload (the index files stay) and
    /// VOD is served from the store.
    pub object_store_keep_local: bool,
    /// Uploads at once.
    pub object_store_concurrency: usize,
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
            object_store_keep_local: true,
            object_store_concurrency: 4,
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
        if !url.is_empty() && parse_store_url(url).is_none() {
            return Err(invalid(
                "record.object_store_url",
                format!("{url:?}"),
                "empty, or s3://bucket/prefix (a bucket name of lowercase letters, digits, dots and dashes)",
            ));
        }
        let ep = self.object_store_endpoint.trim();
        let ep_ok = ep.is_empty()
            || url::Url::parse(ep).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
            });
        if !ep_ok {
            return Err(invalid(
                "record.object_store_endpoint",
                format!("{ep:?}"),
                "empty (AWS), or an https:// (or explicitly http://) URL without credentials",
            ));
        }
        if self.object_store_concurrency == 0 || self.object_store_concurrency > 64 {
            return Err(invalid(
                "record.object_store_concurrency",
                self.object_store_concurrency.to_string(),
                "1 to 64",
            ));
        }
        Ok(())
    }

    /// The object store's bucket and key prefix, when one is configured (and valid).
    pub fn object_store(&self) -> Option<(String, String)> {
        parse_store_url(self.object_store_url.trim())
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

/// `s3://bucket` or `s3://bucket/some/prefix` into the bucket and the prefix (no slashes at its
/// ends; empty for none).
pub fn parse_store_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let prefix = prefix.trim_matches('/');
    let prefix_ok = prefix.split('/').all(|p| {
        prefix.is_empty()
            || (!p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'))
    });
    (bucket_ok && prefix_ok).then(|| (bucket.to_string(), prefix.to_string()))
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
        let bad = RecordConfig {
            object_store_endpoint: "ftp://x".into(),
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("record.object_store_endpoint"));
        let bad = RecordConfig {
            object_store_endpoint: "https://user:pw@x".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let ok = RecordConfig {
            object_store_url: "s3://rec/onair".into(),
            object_store_endpoint: "http://127.0.0.1:8333".into(),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let small = RecordConfig {
            max_gb: 0.5,
            ..Default::default()
        };
        assert_eq!(small.max_bytes(), Some(500_000_000));
    }

    #[test]
    fn store_urls() {
        let p = |u: &str| parse_store_url(u);
        assert_eq!(p("s3://rec"), Some(("rec".into(), "".into())));
        assert_eq!(p("s3://rec/"), Some(("rec".into(), "".into())));
        assert_eq!(
            p("s3://my.rec-1/a/b/"),
            Some(("my.rec-1".into(), "a/b".into()))
        );
        for bad in [
            "s3://",
            "s3://A",
            "s3://ab",
            "http://rec/x",
            "s3://rec/a//b",
            "s3://rec/../x",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}

//! The S3-compatible object store of recordings (`record.object_store_*`), through the
//! `object_store` crate: building the client, the key of each file, and reading a file back
//! (whole, or the part a `Range` asks for, streamed).
//!
//! **Layout.** A recording's files keep their relative paths under
//! `{prefix}/{channel}/{id}/`: `meta.json`, `poster.jpg`, and per rendition `init-N.mp4`,
//! `NNNNNN.m4s` and `segments.log`; a recording wholly uploaded also has `uploaded` (written
//! last), so a node that has no local copy knows it is final. Who writes: [`super::upload`];
//! who reads: `http::vod` (through [`RecordStore::open`]) and the index rebuild.
//!
//! **Addressing.** Path-style (`{endpoint}/{bucket}/{key}`), which every S3-compatible server
//! accepts; `http://` only when the endpoint says so. Credentials come from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and are never logged:
//! the client is never printed, and errors are logged through their `Display`, which names
//! the key, not the signature.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, RetryConfig};

use crate::config::RecordConfig;

/// The marker object of a wholly uploaded recording.
pub const UPLOADED: &str = "uploaded";

/// Why the object store could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record.object_store_url is not s3://bucket/prefix")]
    BadUrl,
    #[error("object store client: {0}")]
    Client(#[source] object_store::Error),
    #[error("object not found")]
    NotFound,
    #[error("object store request failed: {0}")]
    Request(#[source] object_store::Error),
}

impl From<object_store::Error> for StoreError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound,
            e => StoreError::Request(e),
        }
    }
}

/// The bucket, its key prefix and the client.
pub struct RecordStore {
    pub store: Arc<dyn ObjectStore>,
    /// Key parts before `{channel}/{id}` (may be empty).
    prefix: Vec<String>,
    /// `s3://bucket/prefix`, for log lines (no credentials in it).
    pub url: String,
}

/// A file read from the store: its total size and the bytes asked for.
pub struct StoredFile {
    pub size: u64,
    /// `first..end` of the body (the whole file without a range).
    pub range: std::ops::Range<u64>,
    pub body: BoxStream<'static, object_store::Result<Bytes>>,
}

impl RecordStore {
    /// The client for `record.object_store_*`, `None` when no store is configured. Requests
    /// give up quickly (a few seconds) so that an outage is noticed: the uploader retries on
    /// its own with a longer backoff.
    pub fn from_config(cfg: &RecordConfig) -> Result<Option<RecordStore>, StoreError> {
        if cfg.object_store_url.trim().is_empty() {
            return Ok(None);
        }
        let (bucket, prefix) = cfg.object_store().ok_or(StoreError::BadUrl)?;
        let region = match cfg.object_store_region.trim() {
            "" => "us-east-1",
            r => r,
        };
        let endpoint = cfg.object_store_endpoint.trim();
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(region)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..Default::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(30))
                    .with_allow_http(endpoint.starts_with("http://")),
            );
        if !endpoint.is_empty() {
            b = b.with_endpoint(endpoint);
        }
        for (var, set) in [
            ("AWS_ACCESS_KEY_ID", 0),
            ("AWS_SECRET_ACCESS_KEY", 1),
            ("AWS_SESSION_TOKEN", 2),
        ] {
            if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                b = match set {
                    0 => b.with_access_key_id(v),
                    1 => b.with_secret_access_key(v),
                    _ => b.with_token(v),
                };
            }
        }
        let store = b.build().map_err(StoreError::Client)?;
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(Some(RecordStore {
            store: Arc::new(store),
            prefix: prefix
                .split('/')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
            url,
        }))
    }

    /// A store over any `ObjectStore` (tests).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> RecordStore {
        RecordStore {
            store,
            prefix: prefix
                .split('/')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
            url: format!("store:{prefix}"),
        }
    }

    /// The key of a recording's directory.
    pub fn dir_key(&self, channel: &str, id: &str) -> ObjectPath {
        self.prefix
            .iter()
            .map(String::as_str)
            .chain([channel, id])
            .collect()
    }

    /// The key of a file of a recording, `rel` as on disk (`source/000001.m4s`, `meta.json`).
    pub fn key(&self, channel: &str, id: &str, rel: &str) -> ObjectPath {
        self.prefix
            .iter()
            .map(String::as_str)
            .chain([channel, id])
            .chain(rel.split('/'))
            .collect()
    }

    /// `rel` of a key under a recording's directory.
    pub fn rel_of(&self, dir: &ObjectPath, key: &ObjectPath) -> Option<String> {
        let parts: Vec<String> = key
            .prefix_match(dir)?
            .map(|p| p.as_ref().to_string())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    /// A whole small file (index files).
    pub async fn read_all(&self, channel: &str, id: &str, rel: &str) -> Result<Bytes, StoreError> {
        let r = self.store.get(&self.key(channel, id, rel)).await?;
        Ok(r.bytes().await?)
    }

    /// A file, or the bytes `first..=last` of it (`last` beyond the end: to the end), streamed.
    pub async fn open(
        &self,
        channel: &str,
        id: &str,
        rel: &str,
        range: Option<(u64, u64)>,
    ) -> Result<StoredFile, StoreError> {
        let opts = GetOptions {
            range: range.map(|(a, b)| GetRange::Bounded(a..b.saturating_add(1))),
            ..Default::default()
        };
        let r = self
            .store
            .get_opts(&self.key(channel, id, rel), opts)
            .await?;
        Ok(StoredFile {
            size: r.meta.size,
            range: r.range.clone(),
            body: r.into_stream(),
        })
    }

    /// The size of a file, if it is there.
    pub async fn size(&self, channel: &str, id: &str, rel: &str) -> Result<u64, StoreError> {
        Ok(self.store.head(&self.key(channel, id, rel)).await?.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn keys_keep_the_disk_layout_under_the_prefix() {
        let s = RecordStore::new(Arc::new(InMemory::new()), "a/b/");
        assert_eq!(
            s.key("alice", "20261202T170000Z", "source/000001.m4s")
                .as_ref(),
            "a/b/alice/20261202T170000Z/source/000001.m4s"
        );
        let dir = s.dir_key("alice", "x");
        assert_eq!(dir.as_ref(), "a/b/alice/x");
        let k = s.key("alice", "x", "source/init-1.mp4");
        assert_eq!(s.rel_of(&dir, &k).as_deref(), Some("source/init-1.mp4"));
        let none = RecordStore::new(Arc::new(InMemory::new()), "");
        assert_eq!(none.key("c", "i", "meta.json").as_ref(), "c/i/meta.json");
    }

    #[tokio::test]
    async fn ranges_come_back_as_asked() {
        let s = RecordStore::new(Arc::new(InMemory::new()), "p");
        s.store
            .put(
                &s.key("c", "i", "source/000001.m4s"),
                Bytes::from_static(b"0123456789").into(),
            )
            .await
            .unwrap();
        let f = s
            .open("c", "i", "source/000001.m4s", Some((2, 4)))
            .await
            .unwrap();
        assert_eq!((f.size, f.range.clone()), (10, 2..5));
        let f = s.open("c", "i", "source/000001.m4s", None).await.unwrap();
        assert_eq!(f.range, 0..10);
        assert!(matches!(
            s.open("c", "i", "source/000002.m4s", None).await,
            Err(StoreError::NotFound)
        ));
    }
}

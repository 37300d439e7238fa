//! The Mastodon target: the picture first (`POST {instance_url}/api/v2/media`, multipart
//! `file` + `description` as alt text; a 202 means the server is still processing it, so
//! `GET /api/v1/media/{id}` is polled until 200, as Mastodon's own clients do), then
//! `POST /api/v1/statuses` with `Authorization: Bearer`, form fields `status`, `visibility`
//! and `media_ids[]`, and an `Idempotency-Key` that is the same for every try of one go-live,
//! so a retry after a lost answer cannot post twice (Mastodon keeps keys for an hour). The
//! uploaded media is kept across tries of the same post.
//!
//! A failed upload never stops the post: the text goes out alone. A token without the
//! `write:media` scope (403 on the upload) is said once in the log, and later posts skip the
//! upload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tracing::{info, warn};

use super::message::{length_with_links, Announcement};
use super::picture::Picture;
use super::queue::{check, snippet, AttemptError};
use crate::config::MastodonConfig;

/// How long an upload may stay "processing" before the post goes out without it.
const PROCESSING_WAIT: Duration = Duration::from_secs(20);
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Mastodon's limit on a media description.
const ALT_MAX_CHARS: usize = 1500;

pub struct MastodonTarget {
    cfg: MastodonConfig,
    /// The token lacks `write:media` (learnt from a 403): no more uploads, said once.
    no_media_scope: AtomicBool,
    /// The media uploaded for a post (its id), reused by that post's retries. Std mutex:
    /// never held across an await.
    uploaded: Mutex<Option<(String, String)>>,
}

impl MastodonTarget {
    pub fn new(cfg: MastodonConfig) -> Self {
        Self {
            cfg,
            no_media_scope: AtomicBool::new(false),
            uploaded: Mutex::new(None),
        }
    }

    fn base(&self) -> &str {
        self.cfg.instance_url.trim_end_matches('/')
    }

    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        a: &Announcement,
        picture: Option<&Picture>,
    ) -> Result<(), AttemptError> {
        let media = match picture {
            Some(p) if !self.no_media_scope.load(Ordering::Relaxed) => {
                self.media_for(client, a, p).await
            }
            _ => None,
        };
        let media_ids: Vec<String> = media.into_iter().collect();
        let resp = status_request(
            client,
            &self.cfg.instance_url,
            self.cfg.access_token.expose(),
            a,
            &self.cfg.visibility,
            &media_ids,
        )
        .send()
        .await
        .map_err(AttemptError::network)?;
        check(resp).await?;
        Ok(())
    }

    /// The id of `a`'s uploaded picture, uploading it if this post has none yet; `None` (the
    /// post goes out without it) when the upload fails.
    async fn media_for(
        &self,
        client: &reqwest::Client,
        a: &Announcement,
        p: &Picture,
    ) -> Option<String> {
        let kept = self
            .uploaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((post, id)) = kept {
            if post == a.id {
                return Some(id);
            }
        }
        match self.upload(client, p).await {
            Ok(id) => {
                *self.uploaded.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((a.id.clone(), id.clone()));
                Some(id)
            }
            Err(AttemptError::Status { status, .. }) if status.as_u16() == 403 => {
                if !self.no_media_scope.swap(true, Ordering::Relaxed) {
                    warn!(
                        target = "mastodon",
                        "announce.mastodon.access_token lacks the write:media scope: posting without the picture (make a token with write:statuses and write:media to attach it)"
                    );
                }
                None
            }
            Err(e) => {
                warn!(target = "mastodon", channel = %a.channel, error = %e,
                    "picture upload failed; posting the text alone");
                None
            }
        }
    }

    /// Uploads the picture and waits until Mastodon has processed it; its media id.
    async fn upload(&self, client: &reqwest::Client, p: &Picture) -> Result<String, AttemptError> {
        let form = Multipart::new()
            .file("file", "thumbnail.jpg", "image/jpeg", &p.jpeg)
            .text(
                "description",
                &p.alt.chars().take(ALT_MAX_CHARS).collect::<String>(),
            );
        let resp = client
            .post(format!("{}/api/v2/media", self.base()))
            .bearer_auth(self.cfg.access_token.expose())
            .header(reqwest::header::CONTENT_TYPE, form.content_type())
            .body(form.finish())
            .send()
            .await
            .map_err(AttemptError::network)?;
        let resp = check(resp).await?;
        let processing = resp.status().as_u16() == 202;
        let body = resp.text().await.map_err(AttemptError::network)?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|_| AttemptError::fatal(format!("media answer: {}", snippet(&body))))?;
        let Some(id) = v["id"].as_str().map(String::from) else {
            return Err(AttemptError::fatal(format!(
                "media answer lacks an id: {}",
                snippet(&body)
            )));
        };
        if processing {
            self.wait_processed(client, &id).await?;
        }
        info!(target = "mastodon", media = %id, bytes = p.jpeg.len(), "picture uploaded");
        Ok(id)
    }

    /// Polls `GET /api/v1/media/{id}` until 200 (206 while processing).
    async fn wait_processed(&self, client: &reqwest::Client, id: &str) -> Result<(), AttemptError> {
        let deadline = tokio::time::Instant::now() + PROCESSING_WAIT;
        loop {
            tokio::time::sleep(POLL_EVERY).await;
            let resp = client
                .get(format!("{}/api/v1/media/{id}", self.base()))
                .bearer_auth(self.cfg.access_token.expose())
                .send()
                .await
                .map_err(AttemptError::network)?;
            let resp = check(resp).await?;
            if resp.status().as_u16() == 200 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AttemptError::fatal(format!(
                    "media {id} still processing after {PROCESSING_WAIT:?}"
                )));
            }
        }
    }
}

/// The post's text within Mastodon's default 500 characters (a link counts as 23).
pub fn text(a: &Announcement) -> String {
    a.fit(500, |t, u| length_with_links(t, u, 23))
}

/// `POST {instance}/api/v1/statuses` of `a` as the token's account, with `media_ids` attached:
/// the go-live post, and a viewer's cross-post (`identity::crosspost`, no media).
pub fn status_request(
    client: &reqwest::Client,
    instance: &str,
    token: &str,
    a: &Announcement,
    visibility: &str,
    media_ids: &[String],
) -> reqwest::RequestBuilder {
    let text = text(a);
    let mut form: Vec<(&str, &str)> = vec![("status", &text), ("visibility", visibility)];
    form.extend(media_ids.iter().map(|id| ("media_ids[]", id.as_str())));
    client
        .post(format!(
            "{}/api/v1/statuses",
            instance.trim_end_matches('/')
        ))
        .bearer_auth(token)
        .header("Idempotency-Key", &a.id)
        .form(&form)
}

/// A `multipart/form-data` body (RFC 7578), enough for one file and a few text fields.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Default for Multipart {
    fn default() -> Self {
        Self::new()
    }
}

impl Multipart {
    pub fn new() -> Self {
        // Random, so that no picture or text can contain it by chance.
        let boundary = format!("onair-{:032x}", rand::random::<u128>());
        Self {
            boundary,
            body: Vec::new(),
        }
    }

    fn part(mut self, disposition: &str, content_type: Option<&str>, data: &[u8]) -> Self {
        self.body
            .extend_from_slice(format!("--{}\r\n", self.boundary).as_bytes());
        self.body.extend_from_slice(
            format!("Content-Disposition: form-data; {disposition}\r\n").as_bytes(),
        );
        if let Some(ct) = content_type {
            self.body
                .extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        self.body.extend_from_slice(b"\r\n");
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// A text field (UTF-8). Names are ours, plain ASCII.
    pub fn text(self, name: &str, value: &str) -> Self {
        self.part(&format!("name=\"{name}\""), None, value.as_bytes())
    }

    /// A file field.
    pub fn file(self, name: &str, filename: &str, content_type: &str, data: &[u8]) -> Self {
        self.part(
            &format!("name=\"{name}\"; filename=\"{filename}\""),
            Some(content_type),
            data,
        )
    }

    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_body_has_each_part_and_the_closing_boundary() {
        let m = Multipart::new()
            .file(
                "file",
                "t.jpg",
                "image/jpeg",
                &[0xff, 0xd8, 0x00, 0xff, 0xd9],
            )
            .text("description", "A frame: ünï");
        let ct = m.content_type();
        let boundary = ct
            .strip_prefix("multipart/form-data; boundary=")
            .expect("ct");
        let body = m.finish();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains(
            "Content-Disposition: form-data; name=\"file\"; filename=\"t.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        ));
        assert!(text.contains("name=\"description\"\r\n\r\nA frame: ünï\r\n"));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        let jpeg = [0xff, 0xd8, 0x00, 0xff, 0xd9];
        assert!(body.windows(5).any(|w| w == jpeg));
    }
}

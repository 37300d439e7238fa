//! The Bluesky target: `com.atproto.server.createSession` with the handle and an app password,
//! then the picture as a blob (`com.atproto.repo.uploadBlob`, the raw JPEG with its
//! `Content-Type`), then `com.atproto.repo.createRecord` of an `app.bsky.feed.post` whose watch
//! link is a rich-text facet (Bluesky does not linkify plain text; facet offsets count UTF-8
//! bytes, not characters) and whose `app.bsky.embed.external` is the link card, with the blob
//! as its `thumb` (Bluesky makes no card by itself). A failed upload still posts, with a card
//! without picture. A session is made per post: go-lives are rare, sessions are rate limited
//! far above that, and nothing has to be refreshed or kept.

use chrono::Utc;

use tracing::warn;

use super::message::Announcement;
use super::picture::Picture;
use super::queue::{check, AttemptError};
use crate::config::BlueskyConfig;

pub struct BlueskyTarget {
    cfg: BlueskyConfig,
}

/// `app.bsky.embed.external`'s limit on its thumb blob.
pub const THUMB_MAX_BYTES: usize = 1_000_000;

/// The link facets of `text`: every occurrence of `url`, as UTF-8 byte ranges.
pub fn link_facets(text: &str, url: &str) -> Vec<serde_json::Value> {
    if url.is_empty() {
        return Vec::new();
    }
    text.match_indices(url)
        .map(|(start, _)| {
            serde_json::json!({
                "index": { "byteStart": start, "byteEnd": start + url.len() },
                "features": [{ "$type": "app.bsky.richtext.facet#link", "uri": url }],
            })
        })
        .collect()
}

/// An `app.bsky.feed.post` of `a`: its text within Bluesky's 300 graphemes (characters are a
/// close, never smaller, count), the link as a facet, and with `card` (title, description) an
/// external embed, the link card Bluesky does not make by itself.
pub fn post_record(a: &Announcement, card: Option<(&str, &str)>) -> serde_json::Value {
    let text = a.fit(300, |t, _| t.chars().count());
    let mut rec = serde_json::json!({
        "$type": "app.bsky.feed.post",
        "createdAt": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "facets": link_facets(&text, &a.url),
        "text": text,
    });
    if let Some((title, description)) = card {
        rec["embed"] = serde_json::json!({
            "$type": "app.bsky.embed.external",
            "external": { "uri": a.url, "title": title, "description": description },
        });
    }
    rec
}

impl BlueskyTarget {
    pub fn new(cfg: BlueskyConfig) -> Self {
        Self { cfg }
    }

    /// The record to create: the post with its link card, `thumb` the uploaded picture's blob.
    pub fn record(a: &Announcement, thumb: Option<serde_json::Value>) -> serde_json::Value {
        let (title, description) = (a.card_title(), a.card_description());
        let mut rec = post_record(a, Some((&title, &description)));
        if let Some(blob) = thumb {
            rec["embed"]["external"]["thumb"] = blob;
        }
        rec
    }

    /// Uploads the picture as a blob; the blob object the record refers to.
    async fn upload(
        &self,
        client: &reqwest::Client,
        base: &str,
        jwt: &str,
        p: &Picture,
    ) -> Result<serde_json::Value, AttemptError> {
        if p.jpeg.len() > THUMB_MAX_BYTES {
            return Err(AttemptError::fatal(format!(
                "picture of {} bytes is over the {THUMB_MAX_BYTES} a link card takes",
                p.jpeg.len()
            )));
        }
        let resp = client
            .post(format!("{base}/xrpc/com.atproto.repo.uploadBlob"))
            .bearer_auth(jwt)
            .header(reqwest::header::CONTENT_TYPE, "image/jpeg")
            .body(p.jpeg.clone())
            .send()
            .await
            .map_err(AttemptError::network)?;
        let v: serde_json::Value =
            check(resp).await?.json().await.map_err(|e| {
                AttemptError::fatal(format!("uploadBlob answer: {}", e.without_url()))
            })?;
        match &v["blob"] {
            b if b["ref"]["$link"].is_string() => Ok(b.clone()),
            _ => Err(AttemptError::fatal("uploadBlob answer lacks blob.ref")),
        }
    }

    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        a: &Announcement,
        picture: Option<&Picture>,
    ) -> Result<(), AttemptError> {
        let base = self.cfg.service.trim_end_matches('/');
        let resp = client
            .post(format!("{base}/xrpc/com.atproto.server.createSession"))
            .json(&serde_json::json!({
                "identifier": self.cfg.identifier,
                "password": self.cfg.app_password.expose(),
            }))
            .send()
            .await
            .map_err(AttemptError::network)?;
        let session: serde_json::Value = check(resp).await?.json().await.map_err(|e| {
            AttemptError::fatal(format!("createSession answer: {}", e.without_url()))
        })?;
        let (Some(jwt), Some(did)) = (session["accessJwt"].as_str(), session["did"].as_str())
        else {
            return Err(AttemptError::fatal(
                "createSession answer lacks accessJwt or did",
            ));
        };
        let thumb = match picture {
            Some(p) => match self.upload(client, base, jwt, p).await {
                Ok(blob) => Some(blob),
                Err(e) => {
                    warn!(target = "bluesky", channel = %a.channel, error = %e,
                        "picture upload failed; posting the card without it");
                    None
                }
            },
            None => None,
        };
        let resp = client
            .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
            .bearer_auth(jwt)
            .json(&serde_json::json!({
                "repo": did,
                "collection": "app.bsky.feed.post",
                "record": Self::record(a, thumb),
            }))
            .send()
            .await
            .map_err(AttemptError::network)?;
        check(resp).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facets_count_bytes_not_characters() {
        let url = "https://live.example.org/watch/zoë";
        let text = format!("Zoë ☃ is live: {url}");
        let f = link_facets(&text, url);
        assert_eq!(f.len(), 1);
        let start = f[0]["index"]["byteStart"].as_u64().expect("start") as usize;
        let end = f[0]["index"]["byteEnd"].as_u64().expect("end") as usize;
        assert_eq!(&text.as_bytes()[start..end], url.as_bytes());
        assert_ne!(start, text.chars().take_while(|c| *c != 'h').count());
        assert!(link_facets("no link", url).is_empty());
    }
}

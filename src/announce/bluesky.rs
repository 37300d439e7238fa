//! The Bluesky target: `com.atproto.server.createSession` with the handle and an app password,
//! then `com.atproto.repo.createRecord` of an `app.bsky.feed.post` whose watch link is a
//! rich-text facet (Bluesky does not linkify plain text; facet offsets count UTF-8 bytes, not
//! characters). A session is made per post: go-lives are rare, sessions are rate limited far
//! above that, and nothing has to be refreshed or kept.

use chrono::Utc;

use super::message::Announcement;
use super::queue::{check, AttemptError};
use crate::config::BlueskyConfig;

pub struct BlueskyTarget {
    cfg: BlueskyConfig,
}

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

    /// The record to create.
    pub fn record(a: &Announcement) -> serde_json::Value {
        post_record(a, None)
    }

    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        a: &Announcement,
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
        let resp = client
            .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
            .bearer_auth(jwt)
            .json(&serde_json::json!({
                "repo": did,
                "collection": "app.bsky.feed.post",
                "record": Self::record(a),
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

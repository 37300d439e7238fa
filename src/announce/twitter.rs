//! The X (Twitter) target: `POST {api_base}/2/tweets` with JSON `{"text": ...}`, signed with
//! OAuth 1.0a user context (see `oauth1.rs`). Each try is signed afresh (new nonce and
//! timestamp), as X refuses a replayed nonce. Posts with links are billed by X: the target is
//! optional and off by default.

use reqwest::header::AUTHORIZATION;
use reqwest::Url;

use super::message::{length_with_links, Announcement};
use super::oauth1::{self, OAuth1Keys};
use super::queue::{check, AttemptError};
use crate::config::TwitterConfig;

pub struct TwitterTarget {
    cfg: TwitterConfig,
}

impl TwitterTarget {
    pub fn new(cfg: TwitterConfig) -> Self {
        Self { cfg }
    }

    /// Where posts go.
    pub fn endpoint(&self) -> String {
        format!("{}/2/tweets", self.cfg.api_base.trim_end_matches('/'))
    }

    /// The post's text within X's 280 characters (a link counts as 23).
    pub fn text(a: &Announcement) -> String {
        a.fit(280, |t, u| length_with_links(t, u, 23))
    }

    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        a: &Announcement,
    ) -> Result<(), AttemptError> {
        let url = Url::parse(&self.endpoint()).map_err(|e| {
            AttemptError::fatal(format!("announce.twitter.api_base is not a URL: {e}"))
        })?;
        let keys = OAuth1Keys {
            consumer_key: self.cfg.consumer_key.expose(),
            consumer_secret: self.cfg.consumer_secret.expose(),
            token: self.cfg.access_token.expose(),
            token_secret: self.cfg.access_token_secret.expose(),
        };
        let timestamp = chrono::Utc::now().timestamp().max(0) as u64;
        // JSON body: nothing from it enters the signature.
        let auth =
            oauth1::authorization_header("POST", &url, &[], keys, &oauth1::nonce(), timestamp);
        let resp = client
            .post(url)
            .header(AUTHORIZATION, auth)
            .json(&serde_json::json!({ "text": Self::text(a) }))
            .send()
            .await
            .map_err(AttemptError::network)?;
        let resp = check(resp).await?;
        // X answers 201 {"data": {"id", "text"}}; anything else is worth a warning only.
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if body["data"]["id"].as_str().is_none() {
            tracing::warn!(
                target = "twitter",
                "X accepted the post but its answer has no data.id"
            );
        }
        Ok(())
    }
}

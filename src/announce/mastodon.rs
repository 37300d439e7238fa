//! The Mastodon target: `POST {instance_url}/api/v1/statuses` with `Authorization: Bearer`,
//! form fields `status` and `visibility`, and an `Idempotency-Key` that is the same for every
//! try of one go-live, so a retry after a lost answer cannot post twice (Mastodon keeps keys
//! for an hour).

use super::message::{length_with_links, Announcement};
use super::queue::{check, AttemptError};
use crate::config::MastodonConfig;

pub struct MastodonTarget {
    cfg: MastodonConfig,
}

impl MastodonTarget {
    pub fn new(cfg: MastodonConfig) -> Self {
        Self { cfg }
    }

    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        a: &Announcement,
    ) -> Result<(), AttemptError> {
        let url = format!(
            "{}/api/v1/statuses",
            self.cfg.instance_url.trim_end_matches('/')
        );
        // Mastodon's default limit: 500 characters, a link counting as 23.
        let text = a.fit(500, |t, u| length_with_links(t, u, 23));
        let resp = client
            .post(url)
            .bearer_auth(self.cfg.access_token.expose())
            .header("Idempotency-Key", &a.id)
            .form(&[
                ("status", text.as_str()),
                ("visibility", self.cfg.visibility.as_str()),
            ])
            .send()
            .await
            .map_err(AttemptError::network)?;
        check(resp).await?;
        Ok(())
    }
}

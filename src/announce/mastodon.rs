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
        let resp = status_request(
            client,
            &self.cfg.instance_url,
            self.cfg.access_token.expose(),
            a,
            &self.cfg.visibility,
        )
        .send()
        .await
        .map_err(AttemptError::network)?;
        check(resp).await?;
        Ok(())
    }
}

/// The post's text within Mastodon's default 500 characters (a link counts as 23).
pub fn text(a: &Announcement) -> String {
    a.fit(500, |t, u| length_with_links(t, u, 23))
}

/// `POST {instance}/api/v1/statuses` of `a` as the token's account: the go-live post, and a
/// viewer's cross-post (`identity::crosspost`).
pub fn status_request(
    client: &reqwest::Client,
    instance: &str,
    token: &str,
    a: &Announcement,
    visibility: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!(
            "{}/api/v1/statuses",
            instance.trim_end_matches('/')
        ))
        .bearer_auth(token)
        .header("Idempotency-Key", &a.id)
        .form(&[("status", text(a).as_str()), ("visibility", visibility)])
}

//! Webhook targets (`[[announce.webhooks]]`). Format `json` POSTs
//! `{"event", "channel", "title", "url", "started_at", "text", "image_url"}` (`image_url`: the
//! live thumbnail's absolute URL, or null) with
//! `X-Onair-Signature: sha256=<hex HMAC-SHA256 of the body>` when a secret is set, plus
//! `X-Onair-Event` and `X-Onair-Delivery` (stable across retries, for de-duplication).
//! Format `discord` POSTs `{"content": text}` as Discord's (and compatible) incoming webhooks
//! expect, with mentions disabled so that a title cannot ping `@everyone`, and with a picture
//! an embed (title, link, description, image URL) that Discord shows as the card.
//!
//! The URL is a secret (Discord's carries its token): it is never logged.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::message::Announcement;
use super::picture::Picture;
use super::queue::{check, AttemptError};
use crate::config::WebhookConfig;

pub struct WebhookTarget {
    pub name: String,
    cfg: WebhookConfig,
}

/// HMAC-SHA256 of `body` keyed with `secret`, as the `X-Onair-Signature` header value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

impl WebhookTarget {
    pub fn new(name: String, cfg: WebhookConfig) -> Self {
        Self { name, cfg }
    }

    /// The exact bytes sent.
    pub fn body(&self, a: &Announcement, picture: Option<&Picture>) -> Vec<u8> {
        let v = if self.cfg.format == "discord" {
            let mut v = serde_json::json!({
                // Discord's limit is 2000 characters.
                "content": a.fit(2000, |t, _| t.chars().count()),
                "allowed_mentions": { "parse": [] },
            });
            if let Some(p) = picture {
                v["embeds"] = serde_json::json!([{
                    // Discord's limits: title 256, description 4096 characters.
                    "title": a.card_title().chars().take(256).collect::<String>(),
                    "url": a.url,
                    "description": a.card_description(),
                    "image": { "url": p.url },
                }]);
            }
            v
        } else {
            serde_json::json!({
                "event": a.kind.as_str(),
                "channel": a.channel,
                "title": a.title,
                "url": a.url,
                "started_at": a.started_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                "text": a.text,
                "image_url": picture.map(|p| p.url.as_str()),
            })
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }

    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        a: &Announcement,
        picture: Option<&Picture>,
    ) -> Result<(), AttemptError> {
        let body = self.body(a, picture);
        let mut req = client
            .post(self.cfg.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Onair-Event", a.kind.as_str())
            .header("X-Onair-Delivery", &a.id);
        if !self.cfg.secret.is_empty() {
            req = req.header(
                "X-Onair-Signature",
                signature(self.cfg.secret.expose().as_bytes(), &body),
            );
        }
        let resp = req.body(body).send().await.map_err(AttemptError::network)?;
        check(resp).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_known_answer() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

//! A channel owner's go-live post from their own account: the owner, signed in with the
//! posting permission, turns it on for their channel (`PUT /api/admin/channels/{c}/
//! owner-announce`, from the studio); it is kept with their session (`db::identity`
//! `owner_announce`) and ends with it. When the announcer announces that channel's go-live
//! (after its grace filter), [`Auth::owner_go_live`] queues the same text on the owner's
//! account through the cross-post queue, besides the server-wide targets.

use std::sync::Mutex;

use chrono::Utc;
use tracing::{info, warn};

use super::crosspost::{CrossPost, Refusal};
use super::service::{rfc3339, Auth, Session};
use super::Identity;
use crate::announce::Announcement;
use crate::db;

impl Auth {
    /// Turns the owner's go-live post for `channel` on or off (`s` must be an owner: the caller
    /// checked). Refused without the posting permission.
    pub async fn set_owner_announce(
        &self,
        channel: &str,
        s: &Session,
        enabled: bool,
    ) -> Result<(), OwnerAnnounceError> {
        if enabled && (!s.can_cross_post || !self.provider_posts(s.identity.provider)) {
            return Err(OwnerAnnounceError::Refused(Refusal::NoScope));
        }
        let (c, h) = (channel.to_string(), s.id_hash.clone());
        self.db
            .call(move |conn| {
                db::identity::set_owner_announce(conn, &c, enabled.then_some(h.as_str()))
            })
            .await
            .map_err(|e| {
                warn!(error = %e, "owner go-live setting not saved");
                OwnerAnnounceError::Unsaved
            })?;
        info!(channel, enabled, provider = %s.identity.provider, "owner's go-live post set");
        Ok(())
    }

    /// Whose account posts `channel`'s go-live, if anyone's.
    pub async fn owner_announce(&self, channel: &str) -> Option<Identity> {
        let (c, now) = (channel.to_string(), rfc3339(Utc::now()));
        self.db
            .call(move |conn| db::identity::owner_announce(conn, &c, &now))
            .await
            .ok()
            .flatten()
            .map(|row| row.identity)
    }

    /// Queues an announced go-live on the channel owner's account, when they asked for it.
    pub async fn owner_go_live(&self, a: &Announcement) {
        let (c, now) = (a.channel.clone(), rfc3339(Utc::now()));
        let row = match self
            .db
            .call(move |conn| db::identity::owner_announce(conn, &c, &now))
            .await
        {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                warn!(channel = %a.channel, error = %e, "owner's go-live post: database");
                return;
            }
        };
        let s = Session {
            id_hash: row.id_hash,
            identity: row.identity,
            can_cross_post: row.can_cross_post,
            expires_at: row.expires_at,
        };
        let Some(grant) = self.grant(&s).await else {
            warn!(channel = %a.channel, "owner's go-live post: the stored grant does not open");
            return;
        };
        let item = std::sync::Arc::new(CrossPost {
            session: s.id_hash.clone(),
            provider: s.identity.provider,
            message_id: 0,
            card_title: format!("{} live on onair", a.channel),
            visibility: Some("public".into()),
            post: a.clone(),
            grant: Mutex::new(grant),
        });
        match self.cross_tx.try_send(item) {
            Ok(()) => {
                info!(channel = %a.channel, provider = %s.identity.provider, "owner's go-live post queued")
            }
            Err(_) => {
                warn!(channel = %a.channel, "cross-post queue full: owner's go-live post dropped")
            }
        }
    }
}

/// Why the owner's go-live setting did not change.
#[derive(Debug, thiserror::Error)]
pub enum OwnerAnnounceError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("the setting could not be saved; try again")]
    Unsaved,
}

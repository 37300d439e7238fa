//! Signing in with Mastodon, X or Bluesky, sessions, and posting on a viewer's own account.
//!
//! `http/auth.rs` drives the flows: `start` (build the provider's authorization URL, keep the
//! PKCE verifier and endpoints in [`pending`] under a fresh `state`), `callback` (take that
//! entry once, exchange the code, read the account), then a session row in the database with
//! the provider's tokens sealed ([`crypto`]). Chat asks for a request's [`Identity`]; the
//! cross-post queue reads the sealed grant back when it posts. One module per provider
//! (`mastodon`, `x`, `bluesky` and its OAuth in `atproto`/`dpop`); every request to a host a
//! viewer named goes through [`net`], which refuses private addresses and never follows a
//! redirect. Nothing here logs a token: [`Grant`] redacts itself.

pub mod atproto;
pub mod bluesky;
pub mod crosspost;
pub mod crypto;
pub mod dpop;
pub mod gate;
pub mod mastodon;
pub mod net;
pub mod oauth;
pub mod owner;
pub mod pending;
pub mod service;
pub mod signin;
pub mod web;
pub mod x;

use serde::{Deserialize, Serialize};

use net::NetError;
pub use pending::PendingError;
pub use service::{Auth, Session};

/// A sign-in provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Mastodon,
    X,
    Bluesky,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Mastodon => "mastodon",
            Provider::X => "x",
            Provider::Bluesky => "bluesky",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        match s {
            "mastodon" => Some(Provider::Mastodon),
            "x" => Some(Provider::X),
            "bluesky" => Some(Provider::Bluesky),
            _ => None,
        }
    }

    /// The name people know it by, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Provider::Mastodon => "Mastodon",
            Provider::X => "X",
            Provider::Bluesky => "Bluesky",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a signed-in viewer is, as the provider vouched: the `author` of their chat messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub provider: Provider,
    /// Stable id: the account URL (Mastodon), the user id (X), the DID (Bluesky).
    pub id: String,
    /// `@name@host`, `@name`, `@name.bsky.social`.
    pub handle: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub profile_url: String,
}

impl Identity {
    /// The form of `channels[].owners` and `server.admin_identities`: `provider:id`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.provider, self.id)
    }
}

/// What a provider granted: tokens and where to use them. Sealed before it is stored; its
/// `Debug` shows no secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Grant {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds; `None` for tokens that do not expire (Mastodon).
    pub expires_at: Option<i64>,
    pub scopes: Vec<String>,
    /// The API this grant is for: the Mastodon server, X's API base, the Bluesky PDS.
    pub api_base: String,
    /// Bluesky OAuth: the DPoP key (PKCS#8, base64) the tokens are bound to.
    pub dpop_key: Option<String>,
    /// Bluesky OAuth: the authorization server's token endpoint (for refreshing).
    pub token_endpoint: Option<String>,
    /// Bluesky: the account's DID (the repo posts go to).
    pub did: Option<String>,
    /// Bluesky OAuth: the client id the grant was made for (refreshes name it).
    pub client_id: Option<String>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("scopes", &self.scopes)
            .field("api_base", &self.api_base)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Grant {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a sign-in (or a call made for a signed-in viewer) failed. Messages are shown to the
/// viewer: they name the provider and what to do, never a token.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("signing in with {} is not enabled on this server", provider.label())]
    Disabled { provider: Provider },
    #[error("{reason}")]
    BadInstance { reason: String },
    #[error("{0}")]
    Pending(#[from] PendingError),
    #[error("this sign-in was started in another browser; start again here")]
    WrongBrowser,
    #[error("you declined the sign-in at {}", provider.label())]
    Declined { provider: Provider },
    #[error("{source}")]
    Net {
        #[from]
        source: NetError,
    },
    #[error("{} refused: {detail}", provider.label())]
    Refused { provider: Provider, detail: String },
    #[error("{} answered unexpectedly: {detail}", provider.label())]
    Provider { provider: Provider, detail: String },
    #[error("{detail}")]
    Internal { detail: String },
}

impl IdentityError {
    /// A request that could not even be built (a bad URL from a provider's document).
    pub fn request(e: reqwest::Error) -> Self {
        IdentityError::Internal {
            detail: format!("cannot build the request: {}", e.without_url()),
        }
    }
}

/// An `oauth2` token request's failure, in our words (the provider's error code kept, since
/// `invalid_grant` tells a replayed code or a wrong verifier).
pub fn oauth_error<T: oauth2::ErrorResponse + 'static>(
    provider: Provider,
    e: oauth2::RequestTokenError<NetError, T>,
) -> IdentityError {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => IdentityError::Refused {
            provider,
            detail: crate::announce::queue::snippet(&r.to_string()),
        },
        oauth2::RequestTokenError::Request(n) => IdentityError::Net { source: n },
        oauth2::RequestTokenError::Parse(err, body) => IdentityError::Provider {
            provider,
            detail: format!(
                "token answer not understood ({err}): {}",
                crate::announce::queue::snippet(&String::from_utf8_lossy(&body))
            ),
        },
        oauth2::RequestTokenError::Other(s) => IdentityError::Provider {
            provider,
            detail: s,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_debug_hides_tokens() {
        let g = Grant {
            access_token: "AT-secret".into(),
            refresh_token: Some("RT-secret".into()),
            dpop_key: Some("KEY-secret".into()),
            ..Grant::default()
        };
        let d = format!("{g:?}");
        assert!(!d.contains("secret"), "{d}");
    }

    #[test]
    fn identity_keys_match_the_owner_form() {
        let i = Identity {
            provider: Provider::Mastodon,
            id: "https://m.example/@alice".into(),
            handle: "@alice@m.example".into(),
            display_name: "Alice".into(),
            avatar_url: None,
            profile_url: "https://m.example/@alice".into(),
        };
        assert_eq!(i.key(), "mastodon:https://m.example/@alice");
        assert!(crate::config::identity_string_ok(&i.key()));
        assert_eq!(Provider::parse("bluesky"), Some(Provider::Bluesky));
        assert_eq!(Provider::parse("github"), None);
    }
}

//! The OAuth 2.0 authorization code flow with PKCE S256 that Mastodon and X share, over the
//! `oauth2` crate: the authorization URL with a fresh 256-bit `state` and verifier (both kept
//! server-side by the caller), and the code exchange through [`Net`] (no redirects, the
//! address rules of its [`Reach`]). Providers differ only in endpoints and in how the client
//! authenticates (Mastodon in the form body, X's confidential client with HTTP Basic).

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use url::Url;

use super::net::{Net, Reach};
use super::{oauth_error, IdentityError, Provider};

/// One provider's OAuth client.
pub struct CodeClient<'a> {
    pub provider: Provider,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub authorize_url: &'a str,
    pub token_url: &'a str,
    pub redirect_uri: &'a str,
    /// Client secret in the body (`RequestBody`) or as HTTP Basic (`BasicAuth`).
    pub auth_type: AuthType,
}

type Configured =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// What the token endpoint gave.
pub struct Tokens {
    pub access_token: String,
    /// Granted scopes (the asked ones when the answer does not say).
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
}

impl CodeClient<'_> {
    fn client(&self) -> Result<Configured, IdentityError> {
        let bad = |what: &str| IdentityError::Provider {
            provider: self.provider,
            detail: format!("bad {what} URL"),
        };
        Ok(BasicClient::new(ClientId::new(self.client_id.to_string()))
            .set_client_secret(ClientSecret::new(self.client_secret.to_string()))
            .set_auth_uri(
                AuthUrl::new(self.authorize_url.to_string()).map_err(|_| bad("authorize"))?,
            )
            .set_token_uri(TokenUrl::new(self.token_url.to_string()).map_err(|_| bad("token"))?)
            .set_redirect_uri(
                RedirectUrl::new(self.redirect_uri.to_string()).map_err(|_| bad("redirect"))?,
            )
            .set_auth_type(self.auth_type.clone()))
    }

    /// The URL to send the viewer to, with a fresh `state` and PKCE verifier.
    pub fn authorize_url(
        &self,
        scopes: &[String],
    ) -> Result<(Url, CsrfToken, PkceCodeVerifier), IdentityError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(32);
        let state = CsrfToken::new(super::crypto::random_token(32));
        let st = state.clone();
        let (url, state) = self
            .client()?
            .authorize_url(move || st)
            .add_scopes(scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        Ok((url, state, verifier))
    }

    /// Exchanges the code (with the verifier and the same redirect_uri) for tokens.
    pub async fn exchange(
        &self,
        net: &Net,
        reach: Reach,
        code: String,
        verifier: PkceCodeVerifier,
        asked: &[String],
    ) -> Result<Tokens, IdentityError> {
        let http = net.oauth_client(reach);
        let token = self
            .client()?
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .map_err(|e| oauth_error(self.provider, e))?;
        Ok(Tokens {
            access_token: token.access_token().secret().clone(),
            scopes: match token.scopes() {
                Some(s) => s.iter().map(|s| s.to_string()).collect(),
                None => asked.to_vec(),
            },
            expires_at: token
                .expires_in()
                .map(|d| chrono::Utc::now().timestamp() + d.as_secs() as i64),
        })
    }
}

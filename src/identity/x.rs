//! X as a sign-in provider: OAuth 2.0 authorization code with PKCE S256 as a confidential
//! client (`auth.x.client_id` / `client_secret`, sent with HTTP Basic to
//! `{api_base}/2/oauth2/token`), scopes `users.read tweet.read` (+ `tweet.write` to
//! cross-post, + `follows.read` for followers-only chat), then `GET /2/users/me`. Endpoints come
//! from the configuration, so tests point them at a stand-in. Access tokens last two hours and
//! are not refreshed (no `offline.access`): an X session can cross-post for that long.

use oauth2::{AuthType, CsrfToken, PkceCodeVerifier};
use url::Url;

use super::net::{Net, Reach};
use super::oauth::CodeClient;
use super::{Grant, Identity, IdentityError, Provider};
use crate::config::AuthXConfig;

/// Pages of followed accounts read at most when checking a follow (1000 per page).
const MAX_FOLLOWING_PAGES: usize = 5;

/// Which scopes a sign-in asks for.
pub fn scopes(cross_post: bool, followers: bool) -> Vec<String> {
    let mut s = vec!["users.read".to_string(), "tweet.read".to_string()];
    if cross_post {
        s.push("tweet.write".into());
    }
    if followers {
        s.push("follows.read".into());
    }
    s
}

fn api(cfg: &AuthXConfig) -> &str {
    cfg.api_base.trim_end_matches('/')
}

/// The token endpoint.
pub fn token_url(cfg: &AuthXConfig) -> String {
    format!("{}/2/oauth2/token", api(cfg))
}

fn client<'a>(cfg: &'a AuthXConfig, redirect_uri: &'a str, token_url: &'a str) -> CodeClient<'a> {
    CodeClient {
        provider: Provider::X,
        client_id: &cfg.client_id,
        client_secret: cfg.client_secret.expose(),
        authorize_url: &cfg.authorize_url,
        token_url,
        redirect_uri,
        auth_type: AuthType::BasicAuth,
    }
}

/// The URL to send the viewer to, with a fresh `state` and PKCE verifier.
pub fn authorize_url(
    cfg: &AuthXConfig,
    redirect_uri: &str,
    scopes: &[String],
) -> Result<(Url, CsrfToken, PkceCodeVerifier), IdentityError> {
    client(cfg, redirect_uri, &token_url(cfg)).authorize_url(scopes)
}

/// Exchanges the code and reads the account.
pub async fn finish(
    net: &Net,
    cfg: &AuthXConfig,
    redirect_uri: &str,
    code: String,
    verifier: PkceCodeVerifier,
    asked: &[String],
) -> Result<(Identity, Grant), IdentityError> {
    let t = client(cfg, redirect_uri, &token_url(cfg))
        .exchange(net, Reach::Configured, code, verifier, asked)
        .await?;
    let identity = me(net, cfg, &t.access_token).await?;
    Ok((
        identity,
        Grant {
            access_token: t.access_token,
            expires_at: t.expires_at,
            scopes: t.scopes,
            api_base: api(cfg).to_string(),
            ..Grant::default()
        },
    ))
}

/// `GET /2/users/me`.
pub async fn me(net: &Net, cfg: &AuthXConfig, token: &str) -> Result<Identity, IdentityError> {
    let req = net
        .client(Reach::Configured)
        .get(format!("{}/2/users/me", api(cfg)))
        .query(&[("user.fields", "profile_image_url")])
        .bearer_auth(token)
        .build()
        .map_err(IdentityError::request)?;
    let v = net.execute(Reach::Configured, req).await?.json()?;
    let d = &v["data"];
    let (Some(id), Some(username)) = (d["id"].as_str(), d["username"].as_str()) else {
        return Err(IdentityError::Provider {
            provider: Provider::X,
            detail: "users/me answer lacks data.id or data.username".into(),
        });
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdentityError::Provider {
            provider: Provider::X,
            detail: "users/me gave a user id that is not a number".into(),
        });
    }
    let name = d["name"].as_str().unwrap_or(username);
    Ok(Identity {
        provider: Provider::X,
        id: id.to_string(),
        handle: format!("@{username}"),
        display_name: name.to_string(),
        avatar_url: super::mastodon::https_or_none(d["profile_image_url"].as_str()),
        profile_url: format!("https://x.com/{username}"),
    })
}

/// Whether the viewer follows the user `owner_id`: pages through the viewer's followed
/// accounts (X has no "does A follow B" call in API v2), up to [`MAX_FOLLOWING_PAGES`].
pub async fn follows(
    net: &Net,
    grant: &Grant,
    viewer_id: &str,
    owner_id: &str,
) -> Result<bool, IdentityError> {
    let base = grant.api_base.trim_end_matches('/');
    let mut page: Option<String> = None;
    for _ in 0..MAX_FOLLOWING_PAGES {
        let mut q = vec![("max_results", "1000".to_string())];
        if let Some(p) = &page {
            q.push(("pagination_token", p.clone()));
        }
        let req = net
            .client(Reach::Configured)
            .get(format!("{base}/2/users/{viewer_id}/following"))
            .query(&q)
            .bearer_auth(&grant.access_token)
            .build()
            .map_err(IdentityError::request)?;
        let v = net.execute(Reach::Configured, req).await?.json()?;
        if v["data"]
            .as_array()
            .is_some_and(|a| a.iter().any(|u| u["id"].as_str() == Some(owner_id)))
        {
            return Ok(true);
        }
        match v["meta"]["next_token"].as_str() {
            Some(t) => page = Some(t.to_string()),
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// The free alternative to cross-posting: x.com's compose intent with the text and link.
pub fn share_intent(text: &str, url: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("text", text)
        .append_pair("url", url)
        .finish();
    format!("https://x.com/intent/tweet?{q}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AuthXConfig {
        AuthXConfig {
            enabled: true,
            client_id: "x-client".into(),
            client_secret: crate::config::Secret::new("x-secret"),
            ..AuthXConfig::default()
        }
    }

    #[test]
    fn authorize_url_shape() {
        let (url, state, _) = authorize_url(
            &cfg(),
            "https://live.example/auth/x/callback",
            &scopes(true, false),
        )
        .expect("url");
        assert!(url
            .as_str()
            .starts_with("https://x.com/i/oauth2/authorize?"));
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["scope"], "users.read tweet.read tweet.write");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["state"], *state.secret());
        assert_eq!(q["client_id"], "x-client");
        assert!(!url.as_str().contains("x-secret"));
    }

    #[test]
    fn intent_link() {
        let l = share_intent("hello & bye", "https://live.example/watch/a");
        assert!(l.starts_with("https://x.com/intent/tweet?text=hello+%26+bye&url=https%3A%2F%2F"));
    }
}

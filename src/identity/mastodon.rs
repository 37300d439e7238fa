//! Mastodon (and compatible servers) as a sign-in provider. The viewer names a server (a
//! handle, a host or a URL: [`parse_instance`]); onair reads its OAuth metadata
//! (`/.well-known/oauth-authorization-server`, Mastodon 4.3+) or falls back to the classic
//! `/oauth/authorize` and `/oauth/token`, registers itself once per server with
//! `POST /api/v1/apps` (the caller keeps the app in the database), then runs the
//! authorization code flow with PKCE S256 (the token request still carries the client secret
//! and the same `redirect_uri`). `verify_credentials` gives the account; its URL, which must be
//! on the server that vouched for it, is the identity's stable id.
//!
//! Scopes: `profile` (or `read:accounts` on servers without the metadata), `write:statuses`
//! only when the viewer asks to cross-post, and `read:follows read:search` when the chat is
//! for followers (to look the owner up and read the relationship).

use oauth2::{AuthType, CsrfToken, PkceCodeVerifier};
use serde::{Deserialize, Serialize};
use url::Url;

use super::net::{Net, NetError, Reach};
use super::oauth::CodeClient;
use super::{Grant, Identity, IdentityError, Provider};

/// A server as the viewer named it: where it is, and the account name if a handle was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `https://host[:port]` (no path).
    pub origin: Url,
    pub user: Option<String>,
}

/// Reads the `instance` parameter: `@name@host`, `name@host`, `host[:port]` or an
/// `https://` URL (`http://` only when `allow_http`, i.e. `auth.allow_private_hosts`).
pub fn parse_instance(input: &str, allow_http: bool) -> Result<Instance, IdentityError> {
    let bad = |reason: &str| IdentityError::BadInstance {
        reason: reason.to_string(),
    };
    let s = input.trim();
    if s.is_empty() || s.len() > 300 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "type your handle (@name@server) or your server's address",
        ));
    }
    let (user, rest) = if s.contains("://") {
        (None, s.to_string())
    } else {
        let h = s.strip_prefix('@').unwrap_or(s);
        if s.starts_with('@') && !h.contains('@') {
            return Err(bad("a handle looks like @name@server.example"));
        }
        match h.split_once('@') {
            Some((name, host)) if !name.is_empty() && !host.contains('@') => {
                (Some(name.to_string()), format!("https://{host}"))
            }
            Some(_) => return Err(bad("a handle looks like @name@server.example")),
            None => (None, format!("https://{h}")),
        }
    };
    let url = Url::parse(&rest).map_err(|_| bad("not a server address"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(bad("the server's address must start with https://")),
    }
    if url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(bad("not a server address"));
    }
    if let Some(u) = &user {
        if !u
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(bad("a handle looks like @name@server.example"));
        }
    }
    let origin =
        Url::parse(&url.origin().ascii_serialization()).map_err(|_| bad("not a server address"))?;
    Ok(Instance { origin, user })
}

/// Where a server's OAuth endpoints are and which identity scope it knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    pub apps: String,
    /// `profile` on servers that publish their metadata, `read:accounts` before.
    pub identity_scope: String,
}

/// onair's registration on one server, as kept in the database.
#[derive(Clone, PartialEq, Eq)]
pub struct App {
    pub client_id: String,
    pub client_secret: String,
    /// Space-separated scopes it was registered with.
    pub scopes: String,
    pub redirect_uri: String,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Whether this registration covers `scopes`.
    pub fn covers(&self, scopes: &[String]) -> bool {
        scopes
            .iter()
            .all(|s| self.scopes.split(' ').any(|have| have == s))
    }
}

/// Which scopes a sign-in asks for.
pub fn scopes(ep: &Endpoints, cross_post: bool, followers: bool) -> Vec<String> {
    let mut s = vec![ep.identity_scope.clone()];
    if cross_post {
        s.push("write:statuses".into());
    }
    if followers {
        s.push("read:follows".into());
        s.push("read:search".into());
    }
    s
}

/// Reads the server's OAuth metadata, or falls back to the classic endpoints when it has none
/// (a 404 or a non-JSON answer). Endpoints must be on the server itself.
pub async fn discover(net: &Net, origin: &Url) -> Result<Endpoints, IdentityError> {
    let base = origin.as_str().trim_end_matches('/');
    let classic = || Endpoints {
        authorize: format!("{base}/oauth/authorize"),
        token: format!("{base}/oauth/token"),
        apps: format!("{base}/api/v1/apps"),
        identity_scope: "read:accounts".into(),
    };
    let meta = match net
        .get_json(
            Reach::Viewer,
            &format!("{base}/.well-known/oauth-authorization-server"),
        )
        .await
    {
        Ok(m) => m,
        Err(NetError::Status { status, .. }) if status.is_client_error() => return Ok(classic()),
        Err(NetError::Unexpected { .. }) => return Ok(classic()),
        Err(e) => return Err(e.into()),
    };
    let same_origin = |key: &str| -> Result<String, IdentityError> {
        let v = meta[key].as_str().unwrap_or_default();
        match Url::parse(v) {
            Ok(u) if u.origin() == origin.origin() => Ok(v.to_string()),
            _ => Err(IdentityError::Provider {
                provider: Provider::Mastodon,
                detail: format!("its OAuth metadata gives {key} {v:?}, not on the server itself"),
            }),
        }
    };
    let scopes_supported: Vec<&str> = meta["scopes_supported"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    let methods: Vec<&str> = meta["code_challenge_methods_supported"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    if !methods.is_empty() && !methods.contains(&"S256") {
        return Err(IdentityError::Provider {
            provider: Provider::Mastodon,
            detail: "the server does not offer PKCE S256".into(),
        });
    }
    Ok(Endpoints {
        authorize: same_origin("authorization_endpoint")?,
        token: same_origin("token_endpoint")?,
        apps: if meta["app_registration_endpoint"].is_string() {
            same_origin("app_registration_endpoint")?
        } else {
            format!("{base}/api/v1/apps")
        },
        identity_scope: if scopes_supported.contains(&"profile") {
            "profile".into()
        } else {
            "read:accounts".into()
        },
    })
}

/// Registers onair on a server: `POST /api/v1/apps`.
pub async fn register(
    net: &Net,
    ep: &Endpoints,
    redirect_uri: &str,
    scopes: &[String],
    website: &str,
) -> Result<App, IdentityError> {
    let scope = scopes.join(" ");
    let req = net
        .client(Reach::Viewer)
        .post(&ep.apps)
        .form(&[
            ("client_name", "onair"),
            ("redirect_uris", redirect_uri),
            ("scopes", scope.as_str()),
            ("website", website),
        ])
        .build()
        .map_err(IdentityError::request)?;
    let v = net.execute(Reach::Viewer, req).await?.json()?;
    match (v["client_id"].as_str(), v["client_secret"].as_str()) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(App {
            client_id: id.to_string(),
            client_secret: secret.to_string(),
            scopes: scope,
            redirect_uri: redirect_uri.to_string(),
        }),
        _ => Err(IdentityError::Provider {
            provider: Provider::Mastodon,
            detail: "app registration answer lacks client_id or client_secret".into(),
        }),
    }
}

fn client<'a>(ep: &'a Endpoints, app: &'a App) -> CodeClient<'a> {
    CodeClient {
        provider: Provider::Mastodon,
        client_id: &app.client_id,
        client_secret: &app.client_secret,
        authorize_url: &ep.authorize,
        token_url: &ep.token,
        redirect_uri: &app.redirect_uri,
        auth_type: AuthType::RequestBody,
    }
}

/// The URL to send the viewer to, with a fresh `state` and PKCE verifier (both returned, to
/// keep server-side).
pub fn authorize_url(
    ep: &Endpoints,
    app: &App,
    scopes: &[String],
) -> Result<(Url, CsrfToken, PkceCodeVerifier), IdentityError> {
    client(ep, app).authorize_url(scopes)
}

/// Exchanges the code and reads the account.
pub async fn finish(
    net: &Net,
    origin: &Url,
    ep: &Endpoints,
    app: &App,
    code: String,
    verifier: PkceCodeVerifier,
    asked: &[String],
) -> Result<(Identity, Grant), IdentityError> {
    let t = client(ep, app)
        .exchange(net, Reach::Viewer, code, verifier, asked)
        .await?;
    let identity = verify_credentials(net, origin, &t.access_token).await?;
    Ok((
        identity,
        Grant {
            access_token: t.access_token,
            scopes: t.scopes,
            api_base: origin.as_str().trim_end_matches('/').to_string(),
            ..Grant::default()
        },
    ))
}

/// `GET /api/v1/accounts/verify_credentials`: the signed-in account. Its URL must be on the
/// server that answered, or a hostile server could claim anyone's account (an owner's).
pub async fn verify_credentials(
    net: &Net,
    origin: &Url,
    token: &str,
) -> Result<Identity, IdentityError> {
    let base = origin.as_str().trim_end_matches('/');
    let req = net
        .client(Reach::Viewer)
        .get(format!("{base}/api/v1/accounts/verify_credentials"))
        .bearer_auth(token)
        .build()
        .map_err(IdentityError::request)?;
    let v = net.execute(Reach::Viewer, req).await?.json()?;
    let unexpected = |detail: &str| IdentityError::Provider {
        provider: Provider::Mastodon,
        detail: detail.to_string(),
    };
    let url = v["url"].as_str().unwrap_or_default();
    let username = v["username"].as_str().unwrap_or_default();
    let account = Url::parse(url).map_err(|_| unexpected("the account has no URL"))?;
    if account.origin() != origin.origin() {
        return Err(unexpected(
            "the server vouched for an account that is not on it",
        ));
    }
    if username.is_empty() {
        return Err(unexpected("the account has no username"));
    }
    let host = account.host_str().unwrap_or_default();
    let display = v["display_name"].as_str().unwrap_or_default();
    Ok(Identity {
        provider: Provider::Mastodon,
        id: url.to_string(),
        handle: format!("@{username}@{host}"),
        display_name: if display.trim().is_empty() {
            username.to_string()
        } else {
            display.to_string()
        },
        avatar_url: https_or_none(v["avatar"].as_str()),
        profile_url: url.to_string(),
    })
}

/// A URL from a provider shown on our pages: http(s) only (no `javascript:`).
pub fn https_or_none(u: Option<&str>) -> Option<String> {
    let u = u?;
    let parsed = Url::parse(u).ok()?;
    matches!(parsed.scheme(), "https" | "http").then(|| u.to_string())
}

/// Whether the viewer (whose grant this is) follows the account at `owner_url`: resolve the
/// owner on the viewer's server (`/api/v2/search?resolve=true`), then read the relationship.
pub async fn follows(net: &Net, grant: &Grant, owner_url: &str) -> Result<bool, IdentityError> {
    let base = grant.api_base.trim_end_matches('/');
    let req = net
        .client(Reach::Viewer)
        .get(format!("{base}/api/v2/search"))
        .query(&[
            ("q", owner_url),
            ("resolve", "true"),
            ("type", "accounts"),
            ("limit", "1"),
        ])
        .bearer_auth(&grant.access_token)
        .build()
        .map_err(IdentityError::request)?;
    let v = net.execute(Reach::Viewer, req).await?.json()?;
    let Some(id) = v["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|acc| acc["url"].as_str() == Some(owner_url)))
        .and_then(|acc| acc["id"].as_str())
    else {
        return Ok(false);
    };
    let req = net
        .client(Reach::Viewer)
        .get(format!("{base}/api/v1/accounts/relationships"))
        .query(&[("id[]", id)])
        .bearer_auth(&grant.access_token)
        .build()
        .map_err(IdentityError::request)?;
    let v = net.execute(Reach::Viewer, req).await?.json()?;
    Ok(v.as_array()
        .and_then(|a| a.iter().find(|r| r["id"].as_str() == Some(id)))
        .is_some_and(|r| r["following"].as_bool() == Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances() {
        let ok = |s: &str, origin: &str, user: Option<&str>| {
            let i = parse_instance(s, false).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(i.origin.as_str(), origin, "{s}");
            assert_eq!(i.user.as_deref(), user, "{s}");
        };
        ok(
            "@alice@mastodon.social",
            "https://mastodon.social/",
            Some("alice"),
        );
        ok(
            "alice@mastodon.social",
            "https://mastodon.social/",
            Some("alice"),
        );
        ok("mastodon.social", "https://mastodon.social/", None);
        ok(
            "Mastodon.Social:8443",
            "https://mastodon.social:8443/",
            None,
        );
        ok(
            "https://mastodon.social/about",
            "https://mastodon.social/",
            None,
        );
        for bad in [
            "",
            "   ",
            "@alice",
            "@@host",
            "a@b@c",
            "http://mastodon.social",
            "ftp://mastodon.social",
            "https://u:p@mastodon.social",
            "https://mastodon.social/?x=1",
            "mastodon social",
            "@al<ice@host",
        ] {
            assert!(parse_instance(bad, false).is_err(), "{bad}");
        }
        assert_eq!(
            parse_instance("http://127.0.0.1:3000", true)
                .expect("http with private hosts")
                .origin
                .as_str(),
            "http://127.0.0.1:3000/"
        );
    }

    #[test]
    fn scope_sets() {
        let ep = Endpoints {
            authorize: String::new(),
            token: String::new(),
            apps: String::new(),
            identity_scope: "profile".into(),
        };
        assert_eq!(scopes(&ep, false, false), ["profile"]);
        assert_eq!(scopes(&ep, true, false), ["profile", "write:statuses"]);
        let app = App {
            client_id: "c".into(),
            client_secret: "s".into(),
            scopes: "profile write:statuses".into(),
            redirect_uri: "r".into(),
        };
        assert!(app.covers(&scopes(&ep, true, false)));
        assert!(!app.covers(&scopes(&ep, true, true)));
        assert!(!format!("{app:?}").contains("\"s\""));
    }

    #[test]
    fn authorize_url_has_pkce_and_state() {
        let ep = Endpoints {
            authorize: "https://m.example/oauth/authorize".into(),
            token: "https://m.example/oauth/token".into(),
            apps: "https://m.example/api/v1/apps".into(),
            identity_scope: "profile".into(),
        };
        let app = App {
            client_id: "cid".into(),
            client_secret: "csecret".into(),
            scopes: "profile".into(),
            redirect_uri: "https://live.example/auth/mastodon/callback".into(),
        };
        let (url, state, verifier) = authorize_url(&ep, &app, &["profile".into()]).expect("url");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["state"], *state.secret());
        assert!(state.secret().len() >= 43, "256-bit state");
        assert_eq!(q["scope"], "profile");
        assert_eq!(
            q["redirect_uri"],
            "https://live.example/auth/mastodon/callback"
        );
        assert!(!url.as_str().contains("csecret"));
        assert!(!url.as_str().contains(verifier.secret()));
    }
}

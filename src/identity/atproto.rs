//! atproto OAuth, the way Bluesky signs in third-party sites: onair is a public web client
//! whose client id is the URL of its metadata document (`{public_url}/auth/bluesky/
//! client-metadata.json`, served by `http/auth.rs`), which is why this needs an https
//! `server.public_url`. From the account's PDS onair finds its authorization server
//! (`/.well-known/oauth-protected-resource`, then that server's
//! `/.well-known/oauth-authorization-server`), pushes the authorization request (PAR, with
//! PKCE S256 and `login_hint`), sends the viewer to the authorization endpoint with the
//! returned `request_uri`, and exchanges the code for DPoP-bound tokens (`dpop.rs`). Every
//! step checks what atproto requires: the issuer matches the server's origin, the callback's
//! `iss` is that issuer, and the token's `sub` is the DID that was resolved.

use oauth2::{PkceCodeChallenge, PkceCodeVerifier};
use url::Url;

use super::bluesky::DidDoc;
use super::dpop::{is_nonce_error, DpopKey};
use super::net::{Net, Reach};
use super::{Grant, IdentityError, Provider};

/// Scope for signing in only, and for posting too.
pub fn scope(cross_post: bool) -> &'static str {
    if cross_post {
        "atproto transition:generic"
    } else {
        "atproto"
    }
}

pub fn client_id(public_url: &str) -> String {
    format!(
        "{}/auth/bluesky/client-metadata.json",
        public_url.trim_end_matches('/')
    )
}

pub fn redirect_uri(public_url: &str) -> String {
    format!("{}/auth/bluesky/callback", public_url.trim_end_matches('/'))
}

/// The client metadata document.
pub fn client_metadata(public_url: &str) -> serde_json::Value {
    let base = public_url.trim_end_matches('/');
    serde_json::json!({
        "client_id": client_id(public_url),
        "client_name": "onair",
        "client_uri": base,
        "redirect_uris": [redirect_uri(public_url)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": scope(true),
        "application_type": "web",
        "token_endpoint_auth_method": "none",
        "dpop_bound_access_tokens": true,
    })
}

/// An account's authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthServer {
    pub issuer: String,
    pub par: String,
    pub authorize: String,
    pub token: String,
}

fn unexpected(detail: impl Into<String>) -> IdentityError {
    IdentityError::Provider {
        provider: Provider::Bluesky,
        detail: detail.into(),
    }
}

/// Finds and checks the authorization server of a PDS.
pub async fn discover(net: &Net, pds: &Url) -> Result<AuthServer, IdentityError> {
    let base = pds.as_str().trim_end_matches('/');
    let pr = net
        .get_json(
            Reach::Viewer,
            &format!("{base}/.well-known/oauth-protected-resource"),
        )
        .await?;
    let issuer = pr["authorization_servers"][0]
        .as_str()
        .ok_or_else(|| unexpected("the PDS names no authorization server"))?
        .trim_end_matches('/')
        .to_string();
    let iss_url = Url::parse(&issuer).map_err(|_| unexpected("bad authorization server URL"))?;
    let m = net
        .get_json(
            Reach::Viewer,
            &format!("{issuer}/.well-known/oauth-authorization-server"),
        )
        .await?;
    if m["issuer"].as_str().map(|s| s.trim_end_matches('/')) != Some(issuer.as_str()) {
        return Err(unexpected(
            "the authorization server's issuer does not match",
        ));
    }
    let list = |k: &str| -> Vec<String> {
        m[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    if !list("dpop_signing_alg_values_supported").contains(&"ES256".to_string()) {
        return Err(unexpected(
            "the authorization server does not take ES256 DPoP",
        ));
    }
    if !list("code_challenge_methods_supported").contains(&"S256".to_string()) {
        return Err(unexpected(
            "the authorization server does not take PKCE S256",
        ));
    }
    if !list("scopes_supported").contains(&"atproto".to_string()) {
        return Err(unexpected(
            "the authorization server does not offer atproto",
        ));
    }
    let endpoint = |k: &str| -> Result<String, IdentityError> {
        let v = m[k].as_str().unwrap_or_default();
        match Url::parse(v) {
            Ok(u) if u.origin() == iss_url.origin() => Ok(v.to_string()),
            _ => Err(unexpected(format!("{k} {v:?} is not on the issuer"))),
        }
    };
    Ok(AuthServer {
        issuer,
        par: endpoint("pushed_authorization_request_endpoint")?,
        authorize: endpoint("authorization_endpoint")?,
        token: endpoint("token_endpoint")?,
    })
}

/// POSTs a form with a DPoP proof, retrying once with the nonce the server asks for; the
/// nonce in force is kept in `nonce` for the next request to the same server.
async fn post_dpop(
    net: &Net,
    url: &str,
    key: &DpopKey,
    nonce: &mut Option<String>,
    form: &[(&str, &str)],
) -> Result<serde_json::Value, IdentityError> {
    for _ in 0..2 {
        let req = net
            .client(Reach::Viewer)
            .post(url)
            .header("DPoP", key.proof("POST", url, nonce.as_deref(), None))
            .form(form)
            .build()
            .map_err(IdentityError::request)?;
        let answer = net.execute(Reach::Viewer, req).await?;
        if let Some(n) = answer
            .headers
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
        {
            *nonce = Some(n.to_string());
        }
        match answer.json() {
            Ok(v) => return Ok(v),
            Err(e) => match is_nonce_error(&e) {
                Some(n) => *nonce = Some(n),
                None => {
                    return Err(IdentityError::Refused {
                        provider: Provider::Bluesky,
                        detail: e.to_string(),
                    })
                }
            },
        }
    }
    Err(unexpected(
        "the authorization server kept asking for a new DPoP nonce",
    ))
}

/// A sign-in pushed to the authorization server, waiting for the viewer to approve.
pub struct Started {
    pub redirect: Url,
    pub state: String,
    pub verifier: PkceCodeVerifier,
    pub key: DpopKey,
    pub nonce: Option<String>,
    pub server: AuthServer,
}

/// Pushes the authorization request (PAR) and returns where to send the viewer.
pub async fn start(
    net: &Net,
    public_url: &str,
    doc: &DidDoc,
    handle: &str,
    cross_post: bool,
) -> Result<Started, IdentityError> {
    let server = discover(net, &doc.pds).await?;
    let key = DpopKey::generate();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(32);
    let state = super::crypto::random_token(32);
    let mut nonce = None;
    let cid = client_id(public_url);
    let redirect = redirect_uri(public_url);
    let v = post_dpop(
        net,
        &server.par,
        &key,
        &mut nonce,
        &[
            ("client_id", cid.as_str()),
            ("response_type", "code"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", state.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", scope(cross_post)),
            ("login_hint", handle),
        ],
    )
    .await?;
    let request_uri = v["request_uri"]
        .as_str()
        .ok_or_else(|| unexpected("the PAR answer has no request_uri"))?;
    let mut url =
        Url::parse(&server.authorize).map_err(|_| unexpected("bad authorization endpoint"))?;
    url.query_pairs_mut()
        .append_pair("client_id", &cid)
        .append_pair("request_uri", request_uri);
    Ok(Started {
        redirect: url,
        state,
        verifier,
        key,
        nonce,
        server,
    })
}

/// What the callback needs from the sign-in's start.
pub struct Waiting {
    pub did: String,
    pub pds: Url,
    pub verifier: PkceCodeVerifier,
    pub key: DpopKey,
    pub nonce: Option<String>,
    pub server: AuthServer,
}

fn grant_from(
    v: &serde_json::Value,
    w_pds: &str,
    key: &DpopKey,
    token_url: &str,
) -> Result<Grant, IdentityError> {
    if !v["token_type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop"))
    {
        return Err(unexpected("the tokens are not DPoP-bound"));
    }
    let access = v["access_token"]
        .as_str()
        .ok_or_else(|| unexpected("no access_token"))?;
    let scopes: Vec<String> = v["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if !scopes.iter().any(|s| s == "atproto") {
        return Err(unexpected("the grant lacks the atproto scope"));
    }
    Ok(Grant {
        access_token: access.to_string(),
        refresh_token: v["refresh_token"].as_str().map(String::from),
        expires_at: v["expires_in"]
            .as_i64()
            .map(|s| chrono::Utc::now().timestamp() + s),
        scopes,
        api_base: w_pds.trim_end_matches('/').to_string(),
        dpop_key: Some(key.to_secret()),
        token_endpoint: Some(token_url.to_string()),
        did: v["sub"].as_str().map(String::from),
        client_id: None,
    })
}

/// Exchanges the code (after checking the callback's `iss`) for DPoP-bound tokens of `did`.
pub async fn finish(
    net: &Net,
    public_url: &str,
    mut w: Waiting,
    code: &str,
    iss: Option<&str>,
) -> Result<Grant, IdentityError> {
    if iss.map(|s| s.trim_end_matches('/')) != Some(w.server.issuer.as_str()) {
        return Err(unexpected(
            "the callback's issuer is not the account's authorization server",
        ));
    }
    let cid = client_id(public_url);
    let redirect = redirect_uri(public_url);
    let v = post_dpop(
        net,
        &w.server.token,
        &w.key,
        &mut w.nonce,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", w.verifier.secret().as_str()),
            ("client_id", cid.as_str()),
        ],
    )
    .await?;
    if v["sub"].as_str() != Some(w.did.as_str()) {
        return Err(unexpected("the tokens are for another account"));
    }
    let mut g = grant_from(&v, w.pds.as_str(), &w.key, &w.server.token)?;
    g.client_id = Some(cid);
    Ok(g)
}

/// Refreshes an OAuth grant at its token endpoint (same DPoP key).
pub async fn refresh(net: &Net, grant: &Grant) -> Result<Grant, IdentityError> {
    let (Some(k), Some(token_url), Some(rt)) =
        (&grant.dpop_key, &grant.token_endpoint, &grant.refresh_token)
    else {
        return Err(unexpected("the session cannot be refreshed"));
    };
    let key = DpopKey::from_secret(k).ok_or_else(|| unexpected("bad stored key"))?;
    // Public clients name themselves in every token request.
    let cid = grant.client_id.clone().unwrap_or_default();
    let mut nonce = None;
    let v = post_dpop(
        net,
        token_url,
        &key,
        &mut nonce,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("client_id", cid.as_str()),
        ],
    )
    .await?;
    let mut g = grant_from(&v, &grant.api_base, &key, token_url)?;
    if g.did != grant.did {
        return Err(unexpected("the refreshed tokens are for another account"));
    }
    g.client_id = grant.client_id.clone();
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_document() {
        let m = client_metadata("https://live.example.org/");
        assert_eq!(
            m["client_id"],
            "https://live.example.org/auth/bluesky/client-metadata.json"
        );
        assert_eq!(
            m["redirect_uris"][0],
            "https://live.example.org/auth/bluesky/callback"
        );
        assert_eq!(m["dpop_bound_access_tokens"], true);
        assert_eq!(m["token_endpoint_auth_method"], "none");
        assert!(m["scope"].as_str().expect("scope").contains("atproto"));
    }
}

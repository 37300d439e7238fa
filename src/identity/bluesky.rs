//! Bluesky (atproto) identities: a handle resolves to a DID (`resolveHandle` at
//! `auth.bluesky.service`), the DID document (`auth.bluesky.plc_directory` for `did:plc`,
//! `https://host/.well-known/did.json` for `did:web`) names the account's PDS and must list
//! the handle back (`alsoKnownAs`), or anyone could claim a handle. Profiles and follows come
//! from the public AppView (`auth.bluesky.appview`).
//!
//! Two ways to sign in: atproto OAuth (`atproto.rs`) when `server.public_url` is https, and
//! otherwise an app password, used once here for `com.atproto.server.createSession` at the
//! account's PDS and never stored: the session keeps the PDS's access and refresh JWTs,
//! sealed, and refreshes them when the access one has expired.

use base64::Engine;
use url::Url;

use super::dpop::DpopKey;
use super::net::{Net, Reach};
use super::{Grant, Identity, IdentityError, Provider};
use crate::config::AuthBlueskyConfig;

/// A handle or a DID as typed: `@alice.bsky.social`, `alice.bsky.social`, `did:plc:…`.
pub fn normalize_handle(input: &str) -> Result<String, IdentityError> {
    let h = input.trim().trim_start_matches('@').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let handle_ok = h.len() <= 253 && h.split('.').count() >= 2 && h.split('.').all(label_ok);
    let did_ok = (h.starts_with("did:plc:") || h.starts_with("did:web:"))
        && h.len() <= 2048
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":._-%".contains(&b));
    if handle_ok || did_ok {
        Ok(h)
    } else {
        Err(IdentityError::BadInstance {
            reason: "type your Bluesky handle, e.g. alice.bsky.social".into(),
        })
    }
}

/// What a DID document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidDoc {
    pub did: String,
    pub pds: Url,
    /// Handles from `alsoKnownAs` (`at://handle`).
    pub handles: Vec<String>,
}

fn unexpected(detail: impl Into<String>) -> IdentityError {
    IdentityError::Provider {
        provider: Provider::Bluesky,
        detail: detail.into(),
    }
}

/// Handle to DID through the configured service.
pub async fn resolve_handle(
    net: &Net,
    cfg: &AuthBlueskyConfig,
    handle: &str,
) -> Result<String, IdentityError> {
    if handle.starts_with("did:") {
        return Ok(handle.to_string());
    }
    let req = net
        .client(Reach::Configured)
        .get(format!(
            "{}/xrpc/com.atproto.identity.resolveHandle",
            cfg.service.trim_end_matches('/')
        ))
        .query(&[("handle", handle)])
        .build()
        .map_err(IdentityError::request)?;
    let v = match net.execute(Reach::Configured, req).await?.json() {
        Ok(v) => v,
        Err(e) if e.status().is_some_and(|s| s.as_u16() == 400) => {
            return Err(IdentityError::BadInstance {
                reason: format!("no Bluesky account has the handle {handle}"),
            })
        }
        Err(e) => return Err(e.into()),
    };
    match v["did"].as_str() {
        Some(d) if d.starts_with("did:") => Ok(d.to_string()),
        _ => Err(unexpected("resolveHandle gave no DID")),
    }
}

/// The DID document, reduced to what sign-in needs.
pub async fn did_document(
    net: &Net,
    cfg: &AuthBlueskyConfig,
    did: &str,
) -> Result<DidDoc, IdentityError> {
    let v = if let Some(host) = did.strip_prefix("did:web:") {
        if host.contains(':') || host.contains('/') {
            return Err(unexpected("did:web with a port or path is not supported"));
        }
        net.get_json(
            Reach::Viewer,
            &format!("https://{host}/.well-known/did.json"),
        )
        .await?
    } else if did.starts_with("did:plc:") {
        net.get_json(
            Reach::Configured,
            &format!("{}/{did}", cfg.plc_directory.trim_end_matches('/')),
        )
        .await?
    } else {
        return Err(unexpected("only did:plc and did:web are supported"));
    };
    if v["id"].as_str() != Some(did) {
        return Err(unexpected("the DID document is for another DID"));
    }
    let pds = v["service"]
        .as_array()
        .and_then(|s| {
            s.iter().find(|e| {
                e["id"]
                    .as_str()
                    .is_some_and(|id| id.ends_with("#atproto_pds"))
                    && e["type"] == "AtprotoPersonalDataServer"
            })
        })
        .and_then(|e| e["serviceEndpoint"].as_str())
        .and_then(|u| Url::parse(u).ok())
        .ok_or_else(|| unexpected("the DID document names no PDS"))?;
    let handles = v["alsoKnownAs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str()?.strip_prefix("at://"))
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    Ok(DidDoc {
        did: did.to_string(),
        pds,
        handles,
    })
}

/// Handle (or DID) to a checked DID document: the document must claim the handle back.
pub async fn resolve(
    net: &Net,
    cfg: &AuthBlueskyConfig,
    handle: &str,
) -> Result<(DidDoc, String), IdentityError> {
    let did = resolve_handle(net, cfg, handle).await?;
    let doc = did_document(net, cfg, &did).await?;
    let handle = if handle.starts_with("did:") {
        doc.handles.first().cloned().unwrap_or_else(|| did.clone())
    } else {
        if !doc.handles.iter().any(|h| h == handle) {
            return Err(unexpected(format!(
                "{did} does not claim the handle {handle}"
            )));
        }
        handle.to_string()
    };
    Ok((doc, handle))
}

/// The identity of a DID, with the profile from the AppView (its display name and avatar; the
/// handle alone if the AppView does not answer).
pub async fn identity(net: &Net, cfg: &AuthBlueskyConfig, did: &str, handle: &str) -> Identity {
    let profile = async {
        let req = net
            .client(Reach::Configured)
            .get(format!(
                "{}/xrpc/app.bsky.actor.getProfile",
                cfg.appview.trim_end_matches('/')
            ))
            .query(&[("actor", did)])
            .build()
            .ok()?;
        net.execute(Reach::Configured, req).await.ok()?.json().ok()
    }
    .await;
    let p = profile.unwrap_or(serde_json::Value::Null);
    if p.is_null() {
        tracing::warn!(did, "Bluesky profile not available; using the handle alone");
    }
    let display = p["displayName"].as_str().unwrap_or_default().trim();
    Identity {
        provider: Provider::Bluesky,
        id: did.to_string(),
        handle: format!("@{handle}"),
        display_name: if display.is_empty() {
            handle.to_string()
        } else {
            display.to_string()
        },
        avatar_url: super::mastodon::https_or_none(p["avatar"].as_str()),
        profile_url: format!("https://bsky.app/profile/{did}"),
    }
}

/// The `exp` claim of a JWT, read without checking it (only to know when to refresh).
fn jwt_expiry(jwt: &str) -> Option<i64> {
    let payload = jwt.split('.').nth(1)?;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&b).ok()?["exp"].as_i64()
}

fn session_grant(v: &serde_json::Value, pds: &Url) -> Result<Grant, IdentityError> {
    let (Some(access), Some(refresh), Some(did)) = (
        v["accessJwt"].as_str(),
        v["refreshJwt"].as_str(),
        v["did"].as_str(),
    ) else {
        return Err(unexpected("the session answer lacks its tokens"));
    };
    Ok(Grant {
        access_token: access.to_string(),
        refresh_token: Some(refresh.to_string()),
        expires_at: jwt_expiry(access),
        scopes: vec!["atproto".into(), "transition:generic".into()],
        api_base: pds.as_str().trim_end_matches('/').to_string(),
        did: Some(did.to_string()),
        ..Grant::default()
    })
}

/// Signs in with an app password: `createSession` at the account's own PDS. The password is
/// not kept anywhere.
pub async fn app_password(
    net: &Net,
    cfg: &AuthBlueskyConfig,
    handle: &str,
    password: &str,
) -> Result<(Identity, Grant), IdentityError> {
    let handle = normalize_handle(handle)?;
    let (doc, handle) = resolve(net, cfg, &handle).await?;
    let req = net
        .client(Reach::Viewer)
        .post(format!(
            "{}/xrpc/com.atproto.server.createSession",
            doc.pds.as_str().trim_end_matches('/')
        ))
        .json(&serde_json::json!({"identifier": doc.did, "password": password}))
        .build()
        .map_err(IdentityError::request)?;
    let v = match net.execute(Reach::Viewer, req).await?.json() {
        Ok(v) => v,
        Err(e) if e.status().is_some_and(|s| s.as_u16() == 401) => {
            return Err(IdentityError::Refused {
                provider: Provider::Bluesky,
                detail: "the handle or app password is wrong".into(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    if v["did"].as_str() != Some(doc.did.as_str()) {
        return Err(unexpected("the PDS signed in another account"));
    }
    let grant = session_grant(&v, &doc.pds)?;
    Ok((identity(net, cfg, &doc.did, &handle).await, grant))
}

/// A grant whose access token is still good: app-password sessions are refreshed with
/// `refreshSession`, OAuth ones at the authorization server (`atproto::refresh`). Returns
/// `Some` when it changed (to be sealed and stored again).
pub async fn fresh(net: &Net, grant: &Grant) -> Result<Option<Grant>, IdentityError> {
    let now = chrono::Utc::now().timestamp();
    if grant.expires_at.is_none_or(|e| e > now + 30) {
        return Ok(None);
    }
    if grant.dpop_key.is_some() {
        return super::atproto::refresh(net, grant).await.map(Some);
    }
    let Some(refresh) = &grant.refresh_token else {
        return Ok(None);
    };
    let pds = Url::parse(&grant.api_base).map_err(|_| unexpected("bad PDS URL"))?;
    let req = net
        .client(Reach::Viewer)
        .post(format!(
            "{}/xrpc/com.atproto.server.refreshSession",
            grant.api_base
        ))
        .bearer_auth(refresh)
        .build()
        .map_err(IdentityError::request)?;
    let v = net.execute(Reach::Viewer, req).await?.json()?;
    let mut g = session_grant(&v, &pds)?;
    if g.did != grant.did {
        return Err(unexpected("the PDS refreshed another account's session"));
    }
    g.scopes = grant.scopes.clone();
    Ok(Some(g))
}

/// Calls an XRPC procedure on the viewer's PDS as the viewer: Bearer for app-password
/// sessions, DPoP-bound (with the PDS's nonce, retried once) for OAuth ones.
pub async fn call_pds(
    net: &Net,
    grant: &Grant,
    method: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, IdentityError> {
    let url = format!("{}/xrpc/{method}", grant.api_base.trim_end_matches('/'));
    let key = match &grant.dpop_key {
        Some(k) => Some(DpopKey::from_secret(k).ok_or_else(|| unexpected("bad stored key"))?),
        None => None,
    };
    let mut nonce: Option<String> = None;
    for _ in 0..2 {
        let mut req = net.client(Reach::Viewer).post(&url).json(body);
        req = match &key {
            Some(k) => req
                .header("Authorization", format!("DPoP {}", grant.access_token))
                .header(
                    "DPoP",
                    k.proof("POST", &url, nonce.as_deref(), Some(&grant.access_token)),
                ),
            None => req.bearer_auth(&grant.access_token),
        };
        let req = req.build().map_err(IdentityError::request)?;
        match net.execute(Reach::Viewer, req).await?.json() {
            Ok(v) => return Ok(v),
            Err(e) => match (key.is_some(), super::dpop::is_nonce_error(&e)) {
                (true, Some(n)) if nonce.as_deref() != Some(&n) => nonce = Some(n),
                _ => return Err(e.into()),
            },
        }
    }
    Err(unexpected("the PDS kept asking for a new DPoP nonce"))
}

/// Whether `viewer` follows `owner`: `app.bsky.graph.getRelationships` at the AppView, from
/// the owner's side (`followedBy` is set when the other account follows the actor).
pub async fn follows(
    net: &Net,
    cfg: &AuthBlueskyConfig,
    viewer: &str,
    owner: &str,
) -> Result<bool, IdentityError> {
    let req = net
        .client(Reach::Configured)
        .get(format!(
            "{}/xrpc/app.bsky.graph.getRelationships",
            cfg.appview.trim_end_matches('/')
        ))
        .query(&[("actor", owner), ("others", viewer)])
        .build()
        .map_err(IdentityError::request)?;
    let v = net.execute(Reach::Configured, req).await?.json()?;
    Ok(v["relationships"].as_array().is_some_and(|a| {
        a.iter()
            .any(|r| r["did"].as_str() == Some(viewer) && r["followedBy"].is_string())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        assert_eq!(
            normalize_handle("@Alice.bsky.social").expect("ok"),
            "alice.bsky.social"
        );
        assert_eq!(
            normalize_handle("did:plc:abc123").expect("did"),
            "did:plc:abc123"
        );
        for bad in ["", "alice", "@", "a..b", "-a.b", "a b.c", "did:key:z"] {
            assert!(normalize_handle(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jwt_exp() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!("{}.{}.sig", b64("{}"), b64(r#"{"exp":1700000000}"#));
        assert_eq!(jwt_expiry(&jwt), Some(1_700_000_000));
        assert_eq!(jwt_expiry("garbage"), None);
    }
}

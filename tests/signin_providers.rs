//! The sign-in providers of `onair::identity` against the local stand-ins, flow by flow, with
//! the checks a real server makes: PKCE, state, registered redirect_uri, client credentials,
//! single-use codes, scopes. The HTTP routes around them are tested in `tests/signin.rs`.

mod stand_in;

use std::time::Duration;

use onair::config::{AuthBlueskyConfig, AuthXConfig, Secret};
use onair::identity::net::Net;
use onair::identity::{bluesky, mastodon, x, IdentityError, Provider};
use stand_in::bluesky_server::{BlueskyServer, BSKY_APP_PASSWORD, BSKY_VIEWER};
use stand_in::mastodon_server::{MastodonOpts, MastodonServer};
use stand_in::oauth::{approve, query};
use stand_in::x_server::{XServer, X_CLIENT_ID, X_CLIENT_SECRET};

const REDIRECT: &str = "http://127.0.0.1:9/auth/mastodon/callback";

fn net() -> Net {
    Net::new(true, Duration::from_secs(5)).expect("net")
}

fn code_of(callback: &str) -> (String, String) {
    let q = query(callback);
    (
        q.get("code").cloned().unwrap_or_default(),
        q.get("state").cloned().unwrap_or_default(),
    )
}

async fn mastodon_sign_in(
    server: &MastodonServer,
    cross_post: bool,
) -> (mastodon::Endpoints, mastodon::App, String) {
    let net = net();
    let inst = mastodon::parse_instance(&server.url(), true).expect("instance");
    let ep = mastodon::discover(&net, &inst.origin)
        .await
        .expect("discover");
    let scopes = mastodon::scopes(&ep, cross_post, false);
    let app = mastodon::register(&net, &ep, REDIRECT, &scopes, "http://127.0.0.1:9")
        .await
        .expect("register");
    let (url, state, verifier) = mastodon::authorize_url(&ep, &app, &scopes).expect("url");
    let url = url.to_string();
    let back = tokio::task::spawn_blocking(move || approve(&url, "alice", "approve"))
        .await
        .expect("join")
        .expect("approved");
    assert!(back.starts_with(REDIRECT), "{back}");
    let (code, got_state) = code_of(&back);
    assert_eq!(&got_state, state.secret(), "state comes back unchanged");
    let (identity, grant) = mastodon::finish(
        &net,
        &inst.origin,
        &ep,
        &app,
        code.clone(),
        verifier,
        &scopes,
    )
    .await
    .expect("finish");
    assert_eq!(identity.provider, Provider::Mastodon);
    assert_eq!(identity.id, server.account_url("alice"));
    assert_eq!(grant.has_scope("write:statuses"), cross_post);
    (ep, app, code)
}

#[tokio::test]
async fn mastodon_modern_and_classic_servers() {
    let modern = MastodonServer::start(MastodonOpts::default());
    let (ep, _, _) = mastodon_sign_in(&modern, true).await;
    assert_eq!(ep.identity_scope, "profile");
    let classic = MastodonServer::start(MastodonOpts {
        classic: true,
        ..MastodonOpts::default()
    });
    let (ep, _, _) = mastodon_sign_in(&classic, false).await;
    assert_eq!(
        ep.identity_scope, "read:accounts",
        "fallback without metadata"
    );
    assert!(ep.authorize.ends_with("/oauth/authorize"));
}

#[tokio::test]
async fn mastodon_refuses_replayed_code_and_wrong_verifier() {
    let server = MastodonServer::start(MastodonOpts::default());
    let net = net();
    let (ep, app, used_code) = mastodon_sign_in(&server, false).await;
    let inst = mastodon::parse_instance(&server.url(), true).expect("instance");
    let scopes = mastodon::scopes(&ep, false, false);
    // The same code again, even with a verifier that matched the first time, is refused.
    let (_, _, verifier) = mastodon::authorize_url(&ep, &app, &scopes).expect("url");
    let e = mastodon::finish(&net, &inst.origin, &ep, &app, used_code, verifier, &scopes)
        .await
        .expect_err("replayed code");
    assert!(
        matches!(&e, IdentityError::Refused { detail, .. } if detail.contains("invalid_grant")),
        "{e}"
    );
    // A fresh code with the verifier of another sign-in is refused.
    let (url, _, _mine) = mastodon::authorize_url(&ep, &app, &scopes).expect("url");
    let (_, _, other) = mastodon::authorize_url(&ep, &app, &scopes).expect("url");
    let url = url.to_string();
    let back = tokio::task::spawn_blocking(move || approve(&url, "alice", "approve"))
        .await
        .expect("join")
        .expect("approved");
    let (code, _) = code_of(&back);
    let e = mastodon::finish(&net, &inst.origin, &ep, &app, code, other, &scopes)
        .await
        .expect_err("wrong verifier");
    assert!(e.to_string().contains("invalid_grant"), "{e}");
    // A fresh code without a verifier (a callback forged without the sign-in's start) is
    // refused too.
    let (url, _, _mine) = mastodon::authorize_url(&ep, &app, &scopes).expect("url");
    let url = url.to_string();
    let back = tokio::task::spawn_blocking(move || approve(&url, "alice", "approve"))
        .await
        .expect("join")
        .expect("approved");
    let (code, _) = code_of(&back);
    let none = oauth2::PkceCodeVerifier::new(String::new());
    let e = mastodon::finish(&net, &inst.origin, &ep, &app, code, none, &scopes)
        .await
        .expect_err("no verifier");
    assert!(e.to_string().contains("invalid_grant"), "{e}");
    // A redirect_uri other than the registered one is refused at the consent page.
    let mut bad = app.clone();
    bad.redirect_uri = "http://127.0.0.1:9/elsewhere".into();
    let (url, _, _) = mastodon::authorize_url(&ep, &bad, &scopes).expect("url");
    let url = url.to_string();
    let refused = tokio::task::spawn_blocking(move || approve(&url, "alice", "approve"))
        .await
        .expect("join");
    assert!(refused.is_err_and(|e| e.contains("invalid_redirect_uri")));
}

#[tokio::test]
async fn mastodon_server_cannot_vouch_for_another_servers_account() {
    let server = MastodonServer::start(MastodonOpts {
        claim_url: Some("https://mastodon.social/@Gargron".into()),
        ..MastodonOpts::default()
    });
    let net = net();
    let inst = mastodon::parse_instance(&server.url(), true).expect("instance");
    let ep = mastodon::discover(&net, &inst.origin)
        .await
        .expect("discover");
    let scopes = mastodon::scopes(&ep, false, false);
    let app = mastodon::register(&net, &ep, REDIRECT, &scopes, "http://x")
        .await
        .expect("register");
    let (url, _, verifier) = mastodon::authorize_url(&ep, &app, &scopes).expect("url");
    let url = url.to_string();
    let back = tokio::task::spawn_blocking(move || approve(&url, "alice", "approve"))
        .await
        .expect("join")
        .expect("approved");
    let e = mastodon::finish(
        &net,
        &inst.origin,
        &ep,
        &app,
        code_of(&back).0,
        verifier,
        &scopes,
    )
    .await
    .expect_err("impersonation");
    assert!(e.to_string().contains("not on it"), "{e}");
}

#[tokio::test]
async fn x_confidential_client_with_pkce() {
    let redirect = "http://127.0.0.1:9/auth/x/callback";
    let server = XServer::start(redirect);
    let cfg = AuthXConfig {
        enabled: true,
        client_id: X_CLIENT_ID.into(),
        client_secret: Secret::new(X_CLIENT_SECRET),
        authorize_url: format!("{}/i/oauth2/authorize", server.url()),
        api_base: server.url(),
        cross_post: true,
    };
    let net = net();
    let scopes = x::scopes(true, false);
    let (url, state, verifier) = x::authorize_url(&cfg, redirect, &scopes).expect("url");
    let url = url.to_string();
    let back = tokio::task::spawn_blocking(move || approve(&url, "carol", "approve"))
        .await
        .expect("join")
        .expect("approved");
    let (code, got) = code_of(&back);
    assert_eq!(&got, state.secret());
    let (identity, grant) = x::finish(&net, &cfg, redirect, code, verifier, &scopes)
        .await
        .expect("finish");
    assert_eq!(identity.id, "2244994945");
    assert_eq!(identity.handle, "@carol");
    assert!(grant.has_scope("tweet.write"));
    assert!(grant.expires_at.is_some(), "X tokens expire");
    // A wrong client secret is refused at the token endpoint.
    let mut wrong = cfg.clone();
    wrong.client_secret = Secret::new("nope");
    let (url, _, verifier) = x::authorize_url(&wrong, redirect, &scopes).expect("url");
    let url = url.to_string();
    let back = tokio::task::spawn_blocking(move || approve(&url, "carol", "approve"))
        .await
        .expect("join")
        .expect("approved");
    let e = x::finish(&net, &wrong, redirect, code_of(&back).0, verifier, &scopes)
        .await
        .expect_err("bad secret");
    assert!(e.to_string().contains("unauthorized_client"), "{e}");
    // Declining comes back as access_denied.
    let (url, _, _) = x::authorize_url(&cfg, redirect, &scopes).expect("url");
    let url = url.to_string();
    let back = tokio::task::spawn_blocking(move || approve(&url, "carol", "deny"))
        .await
        .expect("join")
        .expect("redirected");
    assert_eq!(query(&back)["error"], "access_denied");
}

#[tokio::test]
async fn bluesky_app_password_session() {
    let server = BlueskyServer::start();
    let cfg = AuthBlueskyConfig {
        enabled: true,
        service: server.url(),
        plc_directory: server.url(),
        appview: server.url(),
    };
    let net = net();
    let (identity, grant) = bluesky::app_password(&net, &cfg, "@Viewer.test", BSKY_APP_PASSWORD)
        .await
        .expect("signed in");
    assert_eq!(identity.id, server.did(BSKY_VIEWER));
    assert_eq!(identity.handle, "@viewer.test");
    assert_eq!(identity.display_name, "Vera Viewer");
    assert_eq!(grant.did.as_deref(), Some(identity.id.as_str()));
    assert!(grant.refresh_token.is_some());
    let e = bluesky::app_password(&net, &cfg, BSKY_VIEWER, "wrong-pass-word-xxxx")
        .await
        .expect_err("wrong password");
    assert!(e.to_string().contains("wrong"), "{e}");
    let e = bluesky::app_password(&net, &cfg, "nobody.test", BSKY_APP_PASSWORD)
        .await
        .expect_err("unknown handle");
    assert!(e.to_string().contains("nobody.test"), "{e}");
    // Follows, from the public AppView.
    let owner = server.did("owner.test");
    assert!(!bluesky::follows(&net, &cfg, &identity.id, &owner)
        .await
        .expect("asked"));
    server.follow(BSKY_VIEWER, "owner.test");
    assert!(bluesky::follows(&net, &cfg, &identity.id, &owner)
        .await
        .expect("asked"));
}

#[tokio::test]
async fn private_hosts_refused_and_nothing_sent() {
    let server = MastodonServer::start(MastodonOpts::default());
    let strict = Net::new(false, Duration::from_secs(5)).expect("net");
    let port = server.http.addr.port();
    for host in [
        format!("https://127.0.0.1:{port}"),
        format!("https://localhost:{port}"),
        format!("https://[::1]:{port}"),
    ] {
        let origin = url::Url::parse(&host).expect("url");
        let e = mastodon::discover(&strict, &origin)
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("private"), "{host}: {e}");
    }
    assert!(server.http.requests().is_empty(), "nothing reached it");
    // http:// is refused outright without auth.allow_private_hosts.
    assert!(mastodon::parse_instance(&server.url(), false).is_err());
}

//! The sign-in surface: `/auth/{provider}/start` and `/callback`, the Bluesky app-password
//! sign-in, the atproto client metadata document, `/auth/logout`, `/api/me` (and the viewer's
//! cross-post outcomes), plus [`session_of`], which every surface uses to learn who a request
//! is: it reads the session cookie and, for state-changing methods, refuses a cookie that
//! comes with a foreign `Origin` (a cross-site form or script riding the viewer's session).
//!
//! Sign-in pages are navigations, so their failures are small HTML pages saying what went
//! wrong and linking back; the API routes answer JSON. Nothing here logs a code, a token or a
//! cookie.

use std::collections::HashMap;

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use tracing::{info, warn};

use super::request::{read_json, Req};
use super::response::{html, json, json_error, not_found};
use super::router::Route;
use super::{Body, HttpState};
use crate::identity::signin::StartParams;
use crate::identity::web::{same_origin, CookieKind};
use crate::identity::{atproto, IdentityError, Provider, Session};

/// How long the login cookie lives: as long as a sign-in may take.
const LOGIN_COOKIE_SECONDS: i64 = 600;

/// The request's session, if it has a valid one. A state-changing request (anything but GET
/// and HEAD) that carries the cookie must come from our own origin: otherwise it is refused
/// with 403 (the caller returns the response as it is).
pub async fn session_of(
    state: &HttpState,
    parts: &http::request::Parts,
) -> Result<Option<Session>, Response<Body>> {
    let Some(cookie) = state.auth.cookies.read(&parts.headers, CookieKind::Session) else {
        return Ok(None);
    };
    let safe = parts.method == Method::GET || parts.method == Method::HEAD;
    if !safe && !same_origin(&parts.headers, &state.public_url) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "cross-origin request with a session cookie refused",
        ));
    }
    Ok(state.auth.session(cookie).await)
}

/// The query string, percent-decoded.
fn query(req: &Req) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn set_cookie(r: &mut Response<Body>, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn redirect(to: &str) -> Response<Body> {
    let mut r =
        super::response::bytes_response(StatusCode::FOUND, "text/plain", bytes::Bytes::new());
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The provider's URL carries the state: do not leak it onwards.
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn status_of(e: &IdentityError) -> StatusCode {
    match e {
        IdentityError::Disabled { .. } => StatusCode::NOT_FOUND,
        IdentityError::BadInstance { .. }
        | IdentityError::Pending(_)
        | IdentityError::WrongBrowser
        | IdentityError::Declined { .. } => StatusCode::BAD_REQUEST,
        IdentityError::Net { source } => match source {
            crate::identity::net::NetError::Refused { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        },
        IdentityError::Refused { .. } => StatusCode::UNAUTHORIZED,
        IdentityError::Provider { .. } => StatusCode::BAD_GATEWAY,
        IdentityError::Internal { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The page a failed sign-in lands on.
fn failure_page(e: &IdentityError, back: &str) -> Response<Body> {
    let msg = super::pages::html_escape(&e.to_string());
    let back = super::pages::html_escape(back);
    html(
        status_of(e),
        format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Sign-in failed · onair</title>\
<link rel=\"stylesheet\" href=\"/assets/style.css\"><main class=\"list\"><h1>Sign-in failed</h1>\
<p role=\"alert\">{msg}</p><p><a href=\"{back}\">Back</a></p></main></html>"
        ),
    )
}

#[derive(Deserialize)]
struct AppPasswordBody {
    handle: String,
    app_password: String,
    #[serde(default)]
    cross_post: bool,
}

/// `/auth/*`, `/api/me`, `/api/me/cross-posts`.
pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    let auth = &state.auth;
    match route {
        Route::AuthStart(p) => {
            let q = query(&req);
            let params = StartParams {
                return_to: q.get("return").cloned(),
                instance: q.get("instance").cloned(),
                handle: q.get("handle").cloned(),
                cross_post: q.get("cross_post").is_some_and(|v| v == "1" || v == "true"),
            };
            let back = crate::identity::web::safe_return(params.return_to.as_deref());
            match auth.start(p, params).await {
                Ok(s) => {
                    let mut r = redirect(&s.location);
                    set_cookie(
                        &mut r,
                        auth.cookies
                            .set(CookieKind::Login, &s.login_cookie, LOGIN_COOKIE_SECONDS),
                    );
                    r
                }
                Err(e) => {
                    info!(provider = %p, error = %e, "sign-in not started");
                    failure_page(&e, &back)
                }
            }
        }
        Route::AuthCallback(p) => {
            let q = query(&req);
            let login = auth.cookies.read(&req.parts.headers, CookieKind::Login);
            match auth.callback(p, &q, login).await {
                Ok(done) => {
                    let mut r = redirect(&done.return_to);
                    set_cookie(
                        &mut r,
                        auth.cookies
                            .set(CookieKind::Session, &done.cookie, auth.session_seconds()),
                    );
                    set_cookie(&mut r, auth.cookies.clear(CookieKind::Login));
                    r
                }
                Err(e) => {
                    warn!(provider = %p, error = %e, "sign-in failed");
                    let mut r = failure_page(&e, "/");
                    set_cookie(&mut r, auth.cookies.clear(CookieKind::Login));
                    r
                }
            }
        }
        Route::AuthAppPassword => {
            // It sets a session cookie: only our own pages may ask (no login CSRF).
            if !same_origin(&req.parts.headers, &state.public_url) {
                return json_error(StatusCode::FORBIDDEN, "cross-origin request refused");
            }
            let b = match read_json::<AppPasswordBody>(req.body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match auth
                .app_password(&b.handle, &b.app_password, b.cross_post)
                .await
            {
                Ok(done) => {
                    let me = match auth.session(&done.cookie).await {
                        Some(s) => auth.me(&s),
                        None => serde_json::json!({}),
                    };
                    let mut r = json(StatusCode::OK, &me);
                    set_cookie(
                        &mut r,
                        auth.cookies
                            .set(CookieKind::Session, &done.cookie, auth.session_seconds()),
                    );
                    r
                }
                Err(e) => {
                    info!(provider = "bluesky", error = %e, "app-password sign-in failed");
                    json_error(status_of(&e), &e.to_string())
                }
            }
        }
        Route::AuthClientMetadata => {
            if !auth.offer()["bluesky"].is_string() {
                return not_found();
            }
            json(StatusCode::OK, &atproto::client_metadata(&state.public_url))
        }
        Route::AuthLogout => {
            let cookie = auth.cookies.read(&req.parts.headers, CookieKind::Session);
            if let Some(c) = cookie {
                if !same_origin(&req.parts.headers, &state.public_url) {
                    return json_error(
                        StatusCode::FORBIDDEN,
                        "cross-origin request with a session cookie refused",
                    );
                }
                auth.logout(c).await;
            }
            let mut r = json(StatusCode::OK, &serde_json::json!({"signed_out": true}));
            set_cookie(&mut r, auth.cookies.clear(CookieKind::Session));
            r
        }
        Route::Me => match session_of(state, &req.parts).await {
            Err(r) => r,
            Ok(Some(s)) => {
                let mut me = auth.me(&s);
                me["owner_of"] = state
                    .bus
                    .all()
                    .iter()
                    .map(|c| c.name.to_string())
                    .filter(|c| auth.is_owner(c, &s.identity))
                    .collect::<Vec<_>>()
                    .into();
                me["admin"] = auth.is_admin(&s.identity).into();
                json(StatusCode::OK, &me)
            }
            Ok(None) => json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "not signed in", "sign_in": auth.offer()}),
            ),
        },
        Route::MeCrossPosts => match session_of(state, &req.parts).await {
            Err(r) => r,
            Ok(Some(s)) => json(
                StatusCode::OK,
                &serde_json::json!({"cross_posts": auth.outcomes.of(&s.id_hash)}),
            ),
            Ok(None) => json_error(StatusCode::UNAUTHORIZED, "not signed in"),
        },
        _ => not_found(),
    }
}

/// A provider segment of `/auth/{provider}/...`.
pub fn provider(s: &str) -> Option<Provider> {
    Provider::parse(s)
}

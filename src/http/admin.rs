//! Admin authorization: `Authorization: Bearer {server.admin_token}`, compared in constant time.
//! Every `/api/admin/` handler calls [`authorize`] first and answers with
//! [`AdminDenied::response`] when it fails.
//!
//! No token configured means the admin API is off: 404 with a JSON reason (the routes do not
//! exist), so a default install cannot be administered by guessing an empty token. A missing or
//! wrong token is 401 with `WWW-Authenticate: Bearer`.

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::{json_error, Body};
use crate::config::Secret;

/// Why an admin request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdminDenied {
    #[error("the admin API is off (set server.admin_token)")]
    Disabled,
    #[error("missing bearer token")]
    Missing,
    #[error("wrong bearer token")]
    Wrong,
}

impl AdminDenied {
    pub fn response(self) -> Response<Body> {
        match self {
            AdminDenied::Disabled => json_error(StatusCode::NOT_FOUND, &self.to_string()),
            AdminDenied::Missing | AdminDenied::Wrong => {
                let mut r = json_error(StatusCode::UNAUTHORIZED, &self.to_string());
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"onair admin\""),
                );
                r
            }
        }
    }
}

/// Checks the request's bearer token against the configured one.
pub fn authorize(headers: &HeaderMap, token: &Secret) -> Result<(), AdminDenied> {
    if token.is_empty() {
        return Err(AdminDenied::Disabled);
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or(AdminDenied::Missing)?;
    // `ct_eq` on slices of different lengths returns false at once: that reveals the token's
    // length, not its content, which is the usual trade-off.
    if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
        Ok(())
    } else {
        Err(AdminDenied::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn bearer_token_rules() {
        let t = Secret::new("s3cret-token");
        let cases = [
            (None, Err(AdminDenied::Missing)),
            (Some("Bearer s3cret-token"), Ok(())),
            (Some("bearer   s3cret-token "), Ok(())),
            (Some("Bearer s3cret-tokeN"), Err(AdminDenied::Wrong)),
            (Some("Bearer s3cret"), Err(AdminDenied::Wrong)),
            (Some("Bearer "), Err(AdminDenied::Missing)),
            (Some("Basic czNjcmV0"), Err(AdminDenied::Missing)),
            (Some("s3cret-token"), Err(AdminDenied::Missing)),
        ];
        for (auth, want) in cases {
            assert_eq!(authorize(&headers(auth), &t), want, "{auth:?}");
        }
        assert_eq!(
            authorize(&headers(Some("Bearer ")), &Secret::default()),
            Err(AdminDenied::Disabled)
        );
        assert_eq!(AdminDenied::Wrong.response().status(), 401);
        assert_eq!(AdminDenied::Disabled.response().status(), 404);
    }
}

//! The browser side of sessions, as pure functions: cookie names and attributes, reading the
//! `Cookie` header, the `Origin` check for state-changing requests, and the `return=` path
//! (same-origin paths only: no open redirect). `http/auth.rs` and every surface that reads a
//! session call these.

use cookie::{Cookie, SameSite};
use http::HeaderMap;

/// The session cookie, and the one that ties a sign-in's callback to the browser that started
/// it (so nobody can sign a victim into the attacker's account by sending a callback link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieKind {
    Session,
    Login,
}

/// How cookies are set: `__Host-` prefixed and `Secure` when `server.public_url` is https.
#[derive(Debug, Clone)]
pub struct CookieRules {
    secure: bool,
}

impl CookieRules {
    pub fn new(public_url: &str) -> Self {
        Self {
            secure: public_url.starts_with("https://"),
        }
    }

    pub fn secure(&self) -> bool {
        self.secure
    }

    pub fn name(&self, kind: CookieKind) -> &'static str {
        match (kind, self.secure) {
            (CookieKind::Session, true) => "__Host-onair_session",
            (CookieKind::Session, false) => "onair_session",
            (CookieKind::Login, true) => "__Host-onair_login",
            (CookieKind::Login, false) => "onair_login",
        }
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, and Secure over https.
    pub fn set(&self, kind: CookieKind, value: &str, max_age_seconds: i64) -> String {
        Cookie::build((self.name(kind), value.to_string()))
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.secure)
            .max_age(cookie::time::Duration::seconds(max_age_seconds))
            .build()
            .to_string()
    }

    /// A `Set-Cookie` value that removes the cookie.
    pub fn clear(&self, kind: CookieKind) -> String {
        self.set(kind, "", 0)
    }

    /// The cookie's value in the request, if any.
    pub fn read<'a>(&self, headers: &'a HeaderMap, kind: CookieKind) -> Option<&'a str> {
        let name = self.name(kind);
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim_matches('"'))
            .filter(|v| !v.is_empty())
    }
}

/// Whether a state-changing request comes from our own pages: its `Origin` is the origin of
/// `server.public_url`, or names the host the request was sent to (`Host`), as a browser does
/// for a same-origin request. A missing `Origin` is refused: browsers send it on every POST,
/// PUT, PATCH and DELETE, and scripts can send it too.
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let Some(origin) = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Ok(o) = url::Url::parse(origin) else {
        return false;
    };
    if o.origin().is_tuple() {
        if let Ok(p) = url::Url::parse(public_url) {
            if p.origin() == o.origin() {
                return true;
            }
        }
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Host is `name[:port]` (IPv6 in brackets); a missing port is the scheme's default.
    let (Some(oh), Some(op)) = (o.host_str(), o.port_or_known_default()) else {
        return false;
    };
    let (hh, hp) = match host.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().ok()),
        _ => (host, Some(op)),
    };
    !host.is_empty() && hh.eq_ignore_ascii_case(oh) && hp == Some(op)
}

/// The path to go back to after signing in: a path on this server, or `/`. Refuses absolute
/// and scheme-relative URLs (`//evil.example`, `/\evil.example`), control characters and
/// anything that is not a plain path.
pub fn safe_return(ret: Option<&str>) -> String {
    let Some(r) = ret else { return "/".into() };
    let ok = r.starts_with('/')
        && !r.starts_with("//")
        && !r.contains('\\')
        && r.len() <= 512
        && !r.chars().any(|c| c.is_control() || c.is_whitespace())
        && !r.contains("/..")
        && url::Url::parse("http://h.invalid")
            .and_then(|b| b.join(r))
            .is_ok_and(|u| u.host_str() == Some("h.invalid"));
    if ok {
        r.to_string()
    } else {
        "/".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn cookies_over_http_and_https() {
        let plain = CookieRules::new("http://localhost:8080");
        let c = plain.set(CookieKind::Session, "abc", 3600);
        assert!(c.starts_with("onair_session=abc"), "{c}");
        for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!c.contains("Secure"), "{c}");
        let tls = CookieRules::new("https://live.example.org");
        let c = tls.set(CookieKind::Session, "abc", 60);
        assert!(c.starts_with("__Host-onair_session=abc"), "{c}");
        assert!(c.contains("Secure") && c.contains("Path=/") && !c.contains("Domain"));
        assert!(tls.clear(CookieKind::Login).contains("Max-Age=0"));
    }

    #[test]
    fn reads_the_right_cookie() {
        let r = CookieRules::new("http://x");
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; onair_session=s3cr3t; onair_login=l"),
        );
        assert_eq!(r.read(&h, CookieKind::Session), Some("s3cr3t"));
        assert_eq!(r.read(&h, CookieKind::Login), Some("l"));
        let tls = CookieRules::new("https://x");
        assert_eq!(tls.read(&h, CookieKind::Session), None, "prefix required");
        assert_eq!(r.read(&HeaderMap::new(), CookieKind::Session), None);
    }

    #[test]
    fn origin_check() {
        let h = |origin: Option<&'static str>, host: &'static str| {
            let mut h = HeaderMap::new();
            if let Some(o) = origin {
                h.insert(http::header::ORIGIN, HeaderValue::from_static(o));
            }
            h.insert(http::header::HOST, HeaderValue::from_static(host));
            h
        };
        let pub_url = "https://live.example.org";
        assert!(same_origin(
            &h(Some("https://live.example.org"), "10.0.0.5:8080"),
            pub_url
        ));
        assert!(same_origin(
            &h(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            pub_url
        ));
        assert!(same_origin(
            &h(Some("http://[::1]:80"), "[::1]:80"),
            pub_url
        ));
        assert!(same_origin(&h(Some("http://[::1]"), "[::1]"), pub_url));
        assert!(same_origin(
            &h(Some("http://[::1]:8080"), "[::1]:8080"),
            pub_url
        ));
        assert!(!same_origin(
            &h(Some("http://[::1]:8081"), "[::1]:8080"),
            pub_url
        ));
        assert!(!same_origin(
            &h(Some("http://127.0.0.1:8081"), "127.0.0.1:8080"),
            pub_url
        ));
        assert!(!same_origin(
            &h(Some("https://evil.example"), "live.example.org"),
            pub_url
        ));
        assert!(!same_origin(&h(Some("null"), "live.example.org"), pub_url));
        assert!(!same_origin(&h(None, "live.example.org"), pub_url));
        assert!(!same_origin(
            &h(Some("https://live.example.org.evil.example"), "x"),
            pub_url
        ));
    }

    #[test]
    fn return_paths() {
        for (input, want) in [
            (None, "/"),
            (Some("/watch/alice"), "/watch/alice"),
            (Some("/watch/alice?x=1#chat"), "/watch/alice?x=1#chat"),
            (Some("https://evil.example/"), "/"),
            (Some("//evil.example/"), "/"),
            (Some("/\\evil.example/"), "/"),
            (Some("/%2F%2Fevil"), "/%2F%2Fevil"),
            (Some("javascript:alert(1)"), "/"),
            (Some("/a\r\nSet-Cookie: x"), "/"),
            (Some("/ watch"), "/"),
            (Some(""), "/"),
            (Some("watch/alice"), "/"),
            (Some("/../etc"), "/"),
        ] {
            assert_eq!(safe_return(input), want, "{input:?}");
        }
    }
}

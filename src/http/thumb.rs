//! `GET`/`HEAD /thumb/{channel}.jpg`: the channel's live thumbnail, from memory
//! (`crate::transcode::thumbnails`). A short `max-age` (one thumbnail interval) and a strong
//! `ETag`, so caches and crawlers revalidate cheaply (`If-None-Match` gets 304); 404 for a
//! channel never seen live. The picture stays after the stream ends (share cards keep it).

use chrono::{DateTime, Utc};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::request::Req;
use super::response::{bytes_response, not_found, text};
use super::router::Route;
use super::{Body, HttpState};

pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    let Route::Thumb(channel) = route else {
        return not_found();
    };
    let Some(t) = state.thumbnails.latest(channel) else {
        return not_found();
    };
    let max_age = state.thumbnails.config().interval_seconds;
    let fresh = req
        .header(header::IF_NONE_MATCH)
        .is_some_and(|v| etag_matches(v, &t.etag));
    let mut r = if fresh {
        text(StatusCode::NOT_MODIFIED, "image/jpeg", "")
    } else {
        bytes_response(StatusCode::OK, "image/jpeg", t.jpeg.clone())
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&t.etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(t.taken_at)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    r
}

/// Whether an `If-None-Match` value names `etag` (a list, weak forms and `*` included: RFC
/// 9110 compares weakly for this header).
pub fn etag_matches(header: &str, etag: &str) -> bool {
    let strip = |s: &str| s.trim().trim_start_matches("W/").to_string();
    header
        .split(',')
        .any(|v| v.trim() == "*" || strip(v) == strip(etag))
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let e = "\"0123456789abcdef\"";
        assert!(etag_matches(e, e));
        assert!(etag_matches("W/\"0123456789abcdef\"", e));
        assert!(etag_matches("\"x\", \"0123456789abcdef\"", e));
        assert!(etag_matches("*", e));
        assert!(!etag_matches("\"0123\"", e));
        assert!(!etag_matches("", e));
        let t = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        assert_eq!(http_date(t), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}

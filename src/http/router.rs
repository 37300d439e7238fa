//! The pure router: method and path in, a [`Route`] out, with its table test. No IO and no
//! state: `super::HttpState::handle` matches the route to a surface module. A new route is a
//! variant here, a line in [`route`] (and in the method check below it), and a line in the
//! dispatch of `mod.rs`. Names must be `[A-Za-z0-9_-]{1,64}` and segment names what the HLS
//! store makes, so there is no file path anywhere and nothing to traverse.

use http::Method;

use super::pages::ASSETS;
use crate::config::is_name;
use crate::identity::Provider;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Index,
    Watch(&'a str),
    /// `GET /studio/{c}`: the broadcaster's page.
    Studio(&'a str),
    /// `GET /overlay/{c}`: pinned question and timer for an OBS Browser Source.
    Overlay(&'a str),
    /// `GET`/`POST /api/channels/{c}/questions`
    Questions(&'a str),
    /// `POST`/`DELETE /api/channels/{c}/questions/{id}/vote`
    QuestionVote(&'a str, u64),
    /// `PUT /api/admin/channels/{c}/questions/{id}`
    AdminQuestion(&'a str, u64),
    /// `PUT /api/admin/channels/{c}/timer`
    AdminTimer(&'a str),
    Master(&'a str),
    MediaPlaylist(&'a str, &'a str),
    Segment(&'a str, &'a str, &'a str),
    Channels,
    Channel(&'a str),
    /// `POST /api/channels/{c}/chat`
    ChatPost(&'a str),
    /// `GET /api/channels/{c}/events`
    Events(&'a str),
    /// `POST`/`DELETE /api/admin/channels/{c}/bans`
    AdminBans(&'a str),
    /// `DELETE /api/admin/channels/{c}/chat/{id}`
    AdminDeleteMessage(&'a str, u64),
    /// `GET`/`PUT /api/admin/channels/{c}/slow-mode`
    AdminSlowMode(&'a str),
    /// `GET`/`PUT /api/admin/channels/{c}/owner-announce`: the signed-in owner's go-live post
    AdminOwnerAnnounce(&'a str),
    /// `GET /api/admin/streams`
    AdminStreams,
    /// `POST /api/admin/channels/{c}/kick`
    AdminKick(&'a str),
    /// `POST /api/channels/{c}/chat/preview`: the exact cross-post text.
    ChatPreview(&'a str),
    /// `GET /auth/{provider}/start`
    AuthStart(Provider),
    /// `GET /auth/{provider}/callback`
    AuthCallback(Provider),
    /// `POST /auth/bluesky/app-password`
    AuthAppPassword,
    /// `GET /auth/bluesky/client-metadata.json` (atproto OAuth client id)
    AuthClientMetadata,
    /// `POST /auth/logout`
    AuthLogout,
    /// `GET /api/me`
    Me,
    /// `GET /api/me/cross-posts`
    MeCrossPosts,
    /// An embedded file, by index in [`ASSETS`].
    Asset(usize),
    /// `GET /thumb/{c}.jpg`: the live thumbnail.
    Thumb(&'a str),
    Healthz,
    Metrics,
    /// `GET /api/channels/{c}/recordings`
    Recordings(&'a str),
    /// `GET /api/channels/{c}/recordings/{id}/chat`
    RecordingChat(&'a str, &'a str),
    /// `GET /replay/{c}/{id}`
    Replay(&'a str, &'a str),
    /// `GET /vod/{c}/{id}/master.m3u8`
    VodMaster(&'a str, &'a str),
    /// `GET /vod/{c}/{id}/{rendition}/index.m3u8`
    VodPlaylist(&'a str, &'a str, &'a str),
    /// `GET /vod/{c}/{id}/{rendition}/{file}` or `/vod/{c}/{id}/poster.jpg` (no rendition)
    VodFile(&'a str, &'a str, Option<&'a str>, &'a str),
    /// `DELETE /api/admin/channels/{c}/recordings/{id}`
    AdminDeleteRecording(&'a str, &'a str),
    /// `POST /whip/{c}`: a WHIP offer.
    WhipPublish(&'a str),
    /// `PATCH`/`DELETE /whip/{c}/{session}`
    WhipSession(&'a str, &'a str),
    /// `OPTIONS` on a WHIP URL (true: a session's).
    WhipOptions(bool),
    /// CORS preflight for any path.
    Preflight,
    NotFound,
    MethodNotAllowed,
}

impl Route<'_> {
    /// A low-cardinality name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Index => "index",
            Route::Watch(_) => "watch",
            Route::Studio(_) => "studio",
            Route::Overlay(_) => "overlay",
            Route::Questions(_) | Route::QuestionVote(..) => "questions",
            Route::AdminQuestion(..) | Route::AdminTimer(_) => "admin_questions",
            Route::Master(_) => "master_playlist",
            Route::MediaPlaylist(..) => "media_playlist",
            Route::Segment(..) => "segment",
            Route::Channels | Route::Channel(_) => "api_channels",
            Route::Healthz => "healthz",
            Route::Metrics => "metrics",
            Route::ChatPost(_) => "chat_post",
            Route::Events(_) => "chat_events",
            Route::AdminBans(_) | Route::AdminDeleteMessage(..) | Route::AdminSlowMode(_) => {
                "admin_chat"
            }
            Route::AdminStreams | Route::AdminKick(_) => "admin_streams",
            Route::AdminOwnerAnnounce(_) => "admin_owner",
            Route::ChatPreview(_) => "chat_post",
            Route::AuthStart(_)
            | Route::AuthCallback(_)
            | Route::AuthAppPassword
            | Route::AuthClientMetadata
            | Route::AuthLogout => "auth",
            Route::Me | Route::MeCrossPosts => "me",
            Route::Asset(_) => "asset",
            Route::Thumb(_) => "thumb",
            Route::WhipPublish(_) | Route::WhipSession(..) | Route::WhipOptions(_) => "whip",
            Route::Recordings(_) | Route::RecordingChat(..) => "api_recordings",
            Route::Replay(..) => "replay",
            Route::VodMaster(..) | Route::VodPlaylist(..) => "vod_playlist",
            Route::VodFile(..) => "vod_segment",
            Route::AdminDeleteRecording(..) => "admin_recordings",
            Route::Preflight => "preflight",
            Route::NotFound => "not_found",
            Route::MethodNotAllowed => "method_not_allowed",
        }
    }
}

/// The most segments any route's path has (`/api/channels/{c}/questions/{id}/vote`).
const MAX_SEGMENTS: usize = 6;

/// Maps a method and path to a route. Names must be `[A-Za-z0-9_-]{1,64}`; anything else
/// (encoded characters, dots, empty segments) is not found.
pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    // The path's segments on the stack (no allocation per request); no route has more than
    // `MAX_SEGMENTS`, so a longer path is not found (a preflight still answers for any path).
    let mut buf = [""; MAX_SEGMENTS];
    let mut n = 0;
    let mut too_long = false;
    match path.strip_prefix('/') {
        Some("") => {}
        Some(rest) => {
            for seg in rest.split('/') {
                if n == MAX_SEGMENTS {
                    too_long = true;
                    break;
                }
                buf[n] = seg;
                n += 1;
            }
        }
        None => return Route::NotFound,
    }
    let parts: &[&'a str] = if too_long { &[] } else { &buf[..n] };
    if method == Method::OPTIONS {
        if too_long {
            return Route::Preflight;
        }
        return match parts {
            ["whip", c] if is_name(c) => Route::WhipOptions(false),
            ["whip", c, _] if is_name(c) => Route::WhipOptions(true),
            _ => Route::Preflight,
        };
    }
    if too_long {
        return Route::NotFound;
    }
    let r = match parts {
        [] => Route::Index,
        ["healthz"] => Route::Healthz,
        ["metrics"] => Route::Metrics,
        ["watch", c] if is_name(c) => Route::Watch(c),
        ["studio", c] if is_name(c) => Route::Studio(c),
        ["overlay", c] if is_name(c) => Route::Overlay(c),
        ["api", "channels", c, "questions"] if is_name(c) => Route::Questions(c),
        ["api", "channels", c, "questions", id, "vote"] if is_name(c) => match parse_id(id) {
            Some(id) => Route::QuestionVote(c, id),
            None => return Route::NotFound,
        },
        ["api", "admin", "channels", c, "questions", id] if is_name(c) => match parse_id(id) {
            Some(id) => Route::AdminQuestion(c, id),
            None => return Route::NotFound,
        },
        ["api", "admin", "channels", c, "timer"] if is_name(c) => Route::AdminTimer(c),
        ["hls", c, "master.m3u8"] if is_name(c) => Route::Master(c),
        ["hls", c, r, "index.m3u8"] if is_name(c) && is_name(r) => Route::MediaPlaylist(c, r),
        ["hls", c, r, s] if is_name(c) && is_name(r) && is_segment_name(s) => {
            Route::Segment(c, r, s)
        }
        ["api", "channels"] => Route::Channels,
        ["api", "channels", c] if is_name(c) => Route::Channel(c),
        ["api", "channels", c, "chat"] if is_name(c) => Route::ChatPost(c),
        ["api", "channels", c, "events"] if is_name(c) => Route::Events(c),
        ["api", "channels", c, "chat", "preview"] if is_name(c) => Route::ChatPreview(c),
        ["api", "me"] => Route::Me,
        ["api", "me", "cross-posts"] => Route::MeCrossPosts,
        ["auth", "logout"] => Route::AuthLogout,
        ["auth", "bluesky", "app-password"] => Route::AuthAppPassword,
        ["auth", "bluesky", "client-metadata.json"] => Route::AuthClientMetadata,
        ["auth", p, "start"] => match Provider::parse(p) {
            Some(p) => Route::AuthStart(p),
            None => return Route::NotFound,
        },
        ["auth", p, "callback"] => match Provider::parse(p) {
            Some(p) => Route::AuthCallback(p),
            None => return Route::NotFound,
        },
        ["api", "admin", "channels", c, "bans"] if is_name(c) => Route::AdminBans(c),
        ["api", "admin", "channels", c, "chat", id] if is_name(c) => match parse_id(id) {
            Some(id) => Route::AdminDeleteMessage(c, id),
            None => return Route::NotFound,
        },
        ["api", "admin", "channels", c, "slow-mode"] if is_name(c) => Route::AdminSlowMode(c),
        ["api", "admin", "streams"] => Route::AdminStreams,
        ["api", "admin", "channels", c, "owner-announce"] if is_name(c) => {
            Route::AdminOwnerAnnounce(c)
        }
        ["api", "admin", "channels", c, "kick"] if is_name(c) => Route::AdminKick(c),
        ["api", "channels", c, "recordings"] if is_name(c) => Route::Recordings(c),
        ["api", "channels", c, "recordings", id, "chat"] if is_name(c) && is_id(id) => {
            Route::RecordingChat(c, id)
        }
        ["api", "admin", "channels", c, "recordings", id] if is_name(c) && is_id(id) => {
            Route::AdminDeleteRecording(c, id)
        }
        ["replay", c, id] if is_name(c) && is_id(id) => Route::Replay(c, id),
        ["vod", c, id, "master.m3u8"] if is_name(c) && is_id(id) => Route::VodMaster(c, id),
        ["vod", c, id, "poster.jpg"] if is_name(c) && is_id(id) => {
            Route::VodFile(c, id, None, "poster.jpg")
        }
        ["vod", c, id, r, "index.m3u8"] if is_name(c) && is_id(id) && is_name(r) => {
            Route::VodPlaylist(c, id, r)
        }
        ["vod", c, id, r, f] if is_name(c) && is_id(id) && is_name(r) && is_vod_file(f) => {
            Route::VodFile(c, id, Some(r), f)
        }
        ["whip", c] if is_name(c) => Route::WhipPublish(c),
        ["whip", c, s] if is_name(c) => Route::WhipSession(c, s),
        ["thumb", file] => match file.strip_suffix(".jpg") {
            Some(c) if is_name(c) => Route::Thumb(c),
            _ => return Route::NotFound,
        },
        ["assets", name] => match ASSETS.iter().position(|a| a.name == *name) {
            Some(i) => Route::Asset(i),
            None => return Route::NotFound,
        },
        _ => return Route::NotFound,
    };
    let allowed = match r {
        Route::ChatPost(_) | Route::ChatPreview(_) | Route::AuthAppPassword | Route::AuthLogout => {
            method == Method::POST
        }
        Route::AdminBans(_) => {
            method == Method::GET || method == Method::POST || method == Method::DELETE
        }
        Route::AdminDeleteMessage(..) | Route::AdminDeleteRecording(..) => method == Method::DELETE,
        Route::Questions(_) => {
            method == Method::GET || method == Method::HEAD || method == Method::POST
        }
        Route::QuestionVote(..) => method == Method::POST || method == Method::DELETE,
        Route::AdminQuestion(..) | Route::AdminTimer(_) => method == Method::PUT,
        Route::AdminSlowMode(_) => method == Method::GET || method == Method::PUT,
        Route::AdminKick(_) => method == Method::POST,
        Route::AdminOwnerAnnounce(_) => method == Method::GET || method == Method::PUT,
        Route::WhipPublish(_) => method == Method::POST,
        Route::WhipSession(..) => method == Method::PATCH || method == Method::DELETE,
        _ => method == Method::GET || method == Method::HEAD,
    };
    if allowed {
        r
    } else {
        Route::MethodNotAllowed
    }
}

/// A message id: decimal digits that fit a u64.
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn is_id(s: &str) -> bool {
    crate::record::is_id(s)
}

/// A recording's segment or init segment (the poster has its own route).
fn is_vod_file(s: &str) -> bool {
    s != "poster.jpg" && crate::record::is_file_name(s)
}

fn is_segment_name(s: &str) -> bool {
    crate::hls::MediaName::parse(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let get = Method::GET;
        let cases: Vec<(Method, &str, Route)> = vec![
            (get.clone(), "/api/me", Route::Me),
            // Longer than any route: not found, but a preflight answers for any path.
            (
                get.clone(),
                "/api/channels/c/questions/1/vote/x",
                Route::NotFound,
            ),
            (get.clone(), "/hls/c/source/a/b/c/d/e/f", Route::NotFound),
            (Method::OPTIONS, "/a/b/c/d/e/f/g/h", Route::Preflight),
            (
                Method::POST,
                "/api/channels/c/questions/1/vote",
                Route::QuestionVote("c", 1),
            ),
            (get.clone(), "/api/me/cross-posts", Route::MeCrossPosts),
            (Method::POST, "/api/me", Route::MethodNotAllowed),
            (
                get.clone(),
                "/auth/mastodon/start",
                Route::AuthStart(Provider::Mastodon),
            ),
            (
                get.clone(),
                "/auth/x/callback",
                Route::AuthCallback(Provider::X),
            ),
            (get.clone(), "/auth/github/start", Route::NotFound),
            (Method::POST, "/auth/logout", Route::AuthLogout),
            (get.clone(), "/auth/logout", Route::MethodNotAllowed),
            (
                Method::POST,
                "/auth/bluesky/app-password",
                Route::AuthAppPassword,
            ),
            (
                get.clone(),
                "/auth/bluesky/client-metadata.json",
                Route::AuthClientMetadata,
            ),
            (
                Method::POST,
                "/api/channels/alice/chat/preview",
                Route::ChatPreview("alice"),
            ),
            (get.clone(), "/", Route::Index),
            (get.clone(), "/healthz", Route::Healthz),
            (get.clone(), "/watch/alice", Route::Watch("alice")),
            (get.clone(), "/studio/alice", Route::Studio("alice")),
            (Method::POST, "/studio/alice", Route::MethodNotAllowed),
            (get.clone(), "/studio/alice/x", Route::NotFound),
            (get.clone(), "/overlay/alice", Route::Overlay("alice")),
            (
                Method::POST,
                "/api/channels/alice/questions",
                Route::Questions("alice"),
            ),
            (
                Method::DELETE,
                "/api/channels/alice/questions/7/vote",
                Route::QuestionVote("alice", 7),
            ),
            (
                get.clone(),
                "/api/channels/alice/questions/7/vote",
                Route::MethodNotAllowed,
            ),
            (
                Method::PUT,
                "/api/admin/channels/alice/questions/7",
                Route::AdminQuestion("alice", 7),
            ),
            (
                Method::PUT,
                "/api/admin/channels/alice/questions/x7",
                Route::NotFound,
            ),
            (
                Method::PUT,
                "/api/admin/channels/alice/timer",
                Route::AdminTimer("alice"),
            ),
            (
                get.clone(),
                "/hls/alice/master.m3u8",
                Route::Master("alice"),
            ),
            (
                get.clone(),
                "/hls/alice/source/index.m3u8",
                Route::MediaPlaylist("alice", "source"),
            ),
            (
                get.clone(),
                "/hls/alice/360p/0a1b2c3d4e5f-12.ts",
                Route::Segment("alice", "360p", "0a1b2c3d4e5f-12.ts"),
            ),
            (
                Method::HEAD,
                "/hls/alice/360p/0a1b2c3d4e5f-12.ts",
                Route::Segment("alice", "360p", "0a1b2c3d4e5f-12.ts"),
            ),
            (get.clone(), "/api/channels", Route::Channels),
            (get.clone(), "/api/channels/alice", Route::Channel("alice")),
            (Method::OPTIONS, "/anything", Route::Preflight),
            (Method::OPTIONS, "/whip/alice", Route::WhipOptions(false)),
            (
                Method::OPTIONS,
                "/whip/alice/0123",
                Route::WhipOptions(true),
            ),
            (Method::POST, "/whip/alice", Route::WhipPublish("alice")),
            (get.clone(), "/whip/alice", Route::MethodNotAllowed),
            (
                Method::PATCH,
                "/whip/alice/ab12",
                Route::WhipSession("alice", "ab12"),
            ),
            (
                Method::DELETE,
                "/whip/alice/ab12",
                Route::WhipSession("alice", "ab12"),
            ),
            (Method::POST, "/whip/alice/ab12", Route::MethodNotAllowed),
            (Method::POST, "/whip/../x", Route::NotFound),
            (
                Method::POST,
                "/hls/alice/master.m3u8",
                Route::MethodNotAllowed,
            ),
            (get.clone(), "/hls/../etc/passwd", Route::NotFound),
            (
                get.clone(),
                "/hls/alice/source/..%2f..%2fx.ts",
                Route::NotFound,
            ),
            (
                get.clone(),
                "/hls/alice%2fsource/index.m3u8",
                Route::NotFound,
            ),
            (
                get.clone(),
                "/hls/alice/source/0a1b2c3d4e5f-1.ts/",
                Route::NotFound,
            ),
            (get.clone(), "/hls/alice/source/x.ts", Route::NotFound),
            (get.clone(), "/hls/alice/source/.ts", Route::NotFound),
            (
                get.clone(),
                "/hls//source/0a1b2c3d4e5f-1.ts",
                Route::NotFound,
            ),
            (get.clone(), "//", Route::NotFound),
            (get.clone(), "", Route::NotFound),
            (
                get.clone(),
                "/watch/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                Route::NotFound,
            ),
            (
                Method::POST,
                "/api/channels/alice/chat",
                Route::ChatPost("alice"),
            ),
            (
                get.clone(),
                "/api/channels/alice/chat",
                Route::MethodNotAllowed,
            ),
            (
                get.clone(),
                "/api/channels/alice/events",
                Route::Events("alice"),
            ),
            (
                Method::POST,
                "/api/channels/alice/events",
                Route::MethodNotAllowed,
            ),
            (Method::POST, "/api/channels/al.ce/chat", Route::NotFound),
            (
                Method::POST,
                "/api/admin/channels/alice/bans",
                Route::AdminBans("alice"),
            ),
            (
                Method::DELETE,
                "/api/admin/channels/alice/bans",
                Route::AdminBans("alice"),
            ),
            (
                get.clone(),
                "/api/admin/channels/alice/bans",
                Route::AdminBans("alice"),
            ),
            (
                Method::PUT,
                "/api/admin/channels/alice/bans",
                Route::MethodNotAllowed,
            ),
            (
                Method::DELETE,
                "/api/admin/channels/alice/chat/1764000000000001",
                Route::AdminDeleteMessage("alice", 1764000000000001),
            ),
            (
                Method::DELETE,
                "/api/admin/channels/alice/chat/-1",
                Route::NotFound,
            ),
            (
                Method::DELETE,
                "/api/admin/channels/alice/chat/99999999999999999999999",
                Route::NotFound,
            ),
            (
                Method::PUT,
                "/api/admin/channels/alice/slow-mode",
                Route::AdminSlowMode("alice"),
            ),
            (
                get.clone(),
                "/api/admin/channels/alice/slow-mode",
                Route::AdminSlowMode("alice"),
            ),
            (get.clone(), "/api/admin/streams", Route::AdminStreams),
            (
                Method::POST,
                "/api/admin/channels/alice/kick",
                Route::AdminKick("alice"),
            ),
            (
                get.clone(),
                "/api/admin/channels/alice/kick",
                Route::MethodNotAllowed,
            ),
            (
                Method::POST,
                "/api/admin/channels/alice/slow-mode",
                Route::MethodNotAllowed,
            ),
            (
                get.clone(),
                "/api/channels/alice/recordings",
                Route::Recordings("alice"),
            ),
            (
                get.clone(),
                "/api/channels/alice/recordings/20261202T170000Z/chat",
                Route::RecordingChat("alice", "20261202T170000Z"),
            ),
            (
                Method::DELETE,
                "/api/admin/channels/alice/recordings/20261202T170000Z-2",
                Route::AdminDeleteRecording("alice", "20261202T170000Z-2"),
            ),
            (
                get.clone(),
                "/api/admin/channels/alice/recordings/x",
                Route::MethodNotAllowed,
            ),
            (
                get.clone(),
                "/replay/alice/20261202T170000Z",
                Route::Replay("alice", "20261202T170000Z"),
            ),
            (
                get.clone(),
                "/vod/alice/r1/master.m3u8",
                Route::VodMaster("alice", "r1"),
            ),
            (
                get.clone(),
                "/vod/alice/r1/source/index.m3u8",
                Route::VodPlaylist("alice", "r1", "source"),
            ),
            (
                get.clone(),
                "/vod/alice/r1/source/000001.m4s",
                Route::VodFile("alice", "r1", Some("source"), "000001.m4s"),
            ),
            (
                get.clone(),
                "/vod/alice/r1/source/init-1.mp4",
                Route::VodFile("alice", "r1", Some("source"), "init-1.mp4"),
            ),
            (
                get.clone(),
                "/vod/alice/r1/poster.jpg",
                Route::VodFile("alice", "r1", None, "poster.jpg"),
            ),
            (
                get.clone(),
                "/vod/alice/r1/source/segments.log",
                Route::NotFound,
            ),
            (
                get.clone(),
                "/vod/alice/r1/source/poster.jpg",
                Route::NotFound,
            ),
            (
                get.clone(),
                "/vod/alice/../source/000001.m4s",
                Route::NotFound,
            ),
            (get.clone(), "/vod/alice/r1/meta.json", Route::NotFound),
            (get.clone(), "/thumb/alice.jpg", Route::Thumb("alice")),
            (Method::HEAD, "/thumb/alice.jpg", Route::Thumb("alice")),
            (Method::POST, "/thumb/alice.jpg", Route::MethodNotAllowed),
            (get.clone(), "/thumb/alice.png", Route::NotFound),
            (get.clone(), "/thumb/.jpg", Route::NotFound),
            (get.clone(), "/thumb/a.b.jpg", Route::NotFound),
            (get.clone(), "/assets/hls.min.js", Route::Asset(0)),
            (get.clone(), "/assets/watch.js", Route::Asset(1)),
            (get.clone(), "/assets/../Cargo.toml", Route::NotFound),
            (get.clone(), "/assets/nope.js", Route::NotFound),
        ];
        for (m, p, want) in cases {
            assert_eq!(route(&m, p), want, "{m} {p}");
        }
    }
}

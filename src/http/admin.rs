//! The admin surface: everything under `/api/admin/`: live streams with their publishers
//! (`GET streams`), kicking a publisher, chat bans, deleting a message, slow mode. Every
//! request passes a check first, answered with [`AdminDenied::response`] when it fails:
//! server-wide routes ([`authorize`]) need `Authorization: Bearer {server.admin_token}`;
//! channel-scoped ones (`/api/admin/channels/{channel}/...`, [`authorize_channel`]) also take
//! that channel's stream key, which is what the studio page moderates with, and both take the
//! session of a signed-in owner of the channel or server admin ([`by_session`]; the cookie of a
//! state-changing request must come with our `Origin`). Tokens and keys are
//! compared in constant time (keys through the ingest key table); another channel's key is 403
//! there, and no stream key opens a server-wide route.
//!
//! No token configured means the server-wide admin API is off: 404 with a JSON reason (the
//! routes do not exist), so a default install cannot be administered by guessing an empty
//! token; channel-scoped routes still take the channel's key. A missing or wrong token is 401
//! with `WWW-Authenticate: Bearer`.

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::chat::chat_error;
use super::request::{parse_forwarded_ip, read_json, Req};
use super::response::{json, json_error, not_found};
use super::router::Route;
use super::{Body, HttpState};
use crate::bus::Bus;
use crate::chat::BanTarget;
use crate::config::Secret;
use crate::hls::{HlsStore, RenditionSummary};
use crate::ingest::Ingest;

/// Why an admin request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdminDenied {
    #[error("the admin API is off (set server.admin_token)")]
    Disabled,
    #[error("missing bearer token")]
    Missing,
    #[error("wrong bearer token")]
    Wrong,
    #[error("this stream key is for another channel")]
    OtherChannel,
}

impl AdminDenied {
    pub fn response(self) -> Response<Body> {
        match self {
            AdminDenied::Disabled => json_error(StatusCode::NOT_FOUND, &self.to_string()),
            AdminDenied::OtherChannel => json_error(StatusCode::FORBIDDEN, &self.to_string()),
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

/// The token of an `Authorization: Bearer ...` header, if there is a non-empty one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty())
}

/// `given` equals the configured admin token (never when none is configured).
fn is_admin_token(given: &str, token: &Secret) -> bool {
    // `ct_eq` on slices of different lengths returns false at once: that reveals the token's
    // length, not its content, which is the usual trade-off.
    !token.is_empty() && bool::from(given.as_bytes().ct_eq(token.expose().as_bytes()))
}

/// Checks the request's bearer token against the configured one (server-wide routes).
pub fn authorize(headers: &HeaderMap, token: &Secret) -> Result<(), AdminDenied> {
    if token.is_empty() {
        return Err(AdminDenied::Disabled);
    }
    let given = bearer(headers).ok_or(AdminDenied::Missing)?;
    if is_admin_token(given, token) {
        Ok(())
    } else {
        Err(AdminDenied::Wrong)
    }
}

/// Who a channel-scoped admin request acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `server.admin_token`.
    Admin,
    /// The channel's own stream key.
    ChannelKey,
    /// A signed-in owner of the channel or server admin (session cookie, `Origin` checked).
    Session,
}

/// Checks the bearer token of a request to `/api/admin/channels/{channel}/...`: the admin
/// token, or `channel`'s stream key.
pub fn authorize_channel(
    headers: &HeaderMap,
    token: &Secret,
    ingest: &Ingest,
    channel: &str,
) -> Result<Grant, AdminDenied> {
    let given = bearer(headers).ok_or(AdminDenied::Missing)?;
    // Both comparisons always run, so the time taken says nothing about which one matched.
    let admin = is_admin_token(given, token);
    let owner = ingest.lookup(given);
    match (admin, owner) {
        (true, _) => Ok(Grant::Admin),
        (false, Some(c)) if c.as_str() == channel => Ok(Grant::ChannelKey),
        (false, Some(_)) => Err(AdminDenied::OtherChannel),
        (false, None) => Err(AdminDenied::Wrong),
    }
}

/// One live stream as `GET /api/admin/streams` shows it.
#[derive(Debug, Serialize)]
pub struct StreamView {
    pub channel: String,
    /// The publisher's address (the encoder, or the proxy in front of it).
    pub publisher: String,
    /// How it publishes: `rtmp`, `rtmps`, `whip` or `srt`.
    pub protocol: &'static str,
    pub started_at: String,
    pub uptime_seconds: f64,
    pub video: Option<VideoView>,
    pub audio: Option<AudioView>,
    /// Average bitrate of the source rendition over the playlist window.
    pub bitrate_bps: u64,
    pub bytes_in: u64,
    pub renditions: Vec<RenditionSummary>,
}

#[derive(Debug, Serialize)]
pub struct VideoView {
    /// RFC 6381 codec string of the source (`avc1.64001f`, `hvc1.1.6.L93.B0`, `av01.0.08M.08`).
    pub codec: String,
    /// The codec's name as ffprobe gives it: `h264`, `hevc` or `av1`.
    pub codec_name: &'static str,
    pub width: u32,
    pub height: u32,
    pub frame_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct AudioView {
    pub codec: String,
    pub codec_name: &'static str,
    pub sample_rate: u32,
    pub channels: u8,
}

/// Every live stream with its publisher and codecs.
pub fn streams(bus: &Bus, store: &HlsStore) -> Vec<StreamView> {
    let now = chrono::Utc::now();
    bus.all()
        .iter()
        .filter_map(|ch| {
            let p = ch.publisher()?;
            let info = ch.info();
            let name = ch.name.to_string();
            let renditions = store.renditions(&name);
            let source = renditions.iter().find(|r| r.name == crate::hls::SOURCE);
            Some(StreamView {
                publisher: p.addr.to_string(),
                protocol: p.protocol.as_str(),
                started_at: p.live_since.to_rfc3339(),
                uptime_seconds: (now - p.live_since).num_milliseconds() as f64 / 1000.0,
                video: info.video.as_ref().map(|v| VideoView {
                    codec: v.codec_string(),
                    codec_name: v.codec().name(),
                    width: v.width(),
                    height: v.height(),
                    frame_rate: source.and_then(|s| s.frame_rate).or(v.fps()),
                }),
                audio: info.audio.as_ref().map(|a| AudioView {
                    codec: a.codec_string(),
                    codec_name: crate::proto::media::AudioCodec::Aac.name(),
                    sample_rate: a.sample_rate,
                    channels: a.channels,
                }),
                bitrate_bps: source.map(|s| s.average_bandwidth).unwrap_or(0),
                bytes_in: ch.stats.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
                renditions,
                channel: name,
            })
        })
        .collect()
}

/// `POST`/`DELETE /api/admin/channels/{c}/bans`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBody {
    nick: Option<String>,
    address: Option<String>,
    /// `provider:id` of a signed-in viewer.
    identity: Option<String>,
}

/// `PUT /api/admin/channels/{c}/slow-mode`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlowModeBody {
    seconds: u64,
}

/// The channel a route is scoped to, if it is channel-scoped.
fn scope<'a>(route: &Route<'a>) -> Option<&'a str> {
    match *route {
        Route::AdminBans(c)
        | Route::AdminDeleteMessage(c, _)
        | Route::AdminSlowMode(c)
        | Route::AdminKick(c)
        | Route::AdminDeleteRecording(c, _) => Some(c),
        _ => None,
    }
}

/// Every `/api/admin/` route, once the bearer token is checked.
pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    if let Route::AdminOwnerAnnounce(c) = route {
        return owner_announce(state, c, req).await;
    }
    let headers = &req.parts.headers;
    let checked = match scope(&route) {
        Some(c) => authorize_channel(headers, &state.admin_token, &state.ingest, c),
        None => authorize(headers, &state.admin_token).map(|()| Grant::Admin),
    };
    let grant = match checked {
        Ok(g) => g,
        Err(denied) => match by_session(state, &req.parts, scope(&route)).await {
            Ok(true) => Grant::Session,
            Ok(false) => return denied.response(),
            Err(r) => return r,
        },
    };
    let method = &req.parts.method;
    match route {
        Route::AdminBans(c) if method == Method::GET => match state.chat.bans(c) {
            Ok(bans) => json(StatusCode::OK, &bans),
            Err(e) => chat_error(&e),
        },
        Route::AdminBans(c) => match read_json::<BanBody>(req.body).await {
            Ok(b) => ban(state, c, method == Method::POST, b).await,
            Err(r) => r,
        },
        Route::AdminDeleteRecording(c, id) => super::vod::delete(state, c, id).await,
        Route::AdminDeleteMessage(c, id) => match state.chat.delete_shared(c, id).await {
            Ok(()) => {
                state.recorder.chat_deleted(c, id);
                json(StatusCode::OK, &serde_json::json!({ "deleted": id }))
            }
            Err(e) => chat_error(&e),
        },
        Route::AdminStreams => json(StatusCode::OK, &streams(&state.bus, &state.store)),
        Route::AdminKick(c) => match state.bus.get(c) {
            None => json_error(StatusCode::NOT_FOUND, "no such channel"),
            Some(ch) => {
                let kicked = ch.kick();
                if kicked {
                    tracing::info!(channel = %c, by = ?grant, "publisher kicked");
                }
                json(StatusCode::OK, &serde_json::json!({ "kicked": kicked }))
            }
        },
        Route::AdminSlowMode(c) if method == Method::GET => match state.chat.slow_mode(c) {
            Ok(seconds) => json(StatusCode::OK, &serde_json::json!({ "seconds": seconds })),
            Err(e) => chat_error(&e),
        },
        Route::AdminSlowMode(c) => match read_json::<SlowModeBody>(req.body).await {
            Ok(b) => match state.chat.set_slow_mode_shared(c, b.seconds).await {
                Ok(()) => json(StatusCode::OK, &serde_json::json!({ "seconds": b.seconds })),
                Err(e) => chat_error(&e),
            },
            Err(r) => r,
        },
        _ => not_found(),
    }
}

#[derive(Debug, Deserialize)]
struct OwnerAnnounceBody {
    enabled: bool,
}

/// The owner's go-live post from their own account: only a signed-in owner of the channel
/// may see or change it (it posts on their account, so no token stands in for them).
async fn owner_announce(state: &HttpState, channel: &str, req: Req) -> Response<Body> {
    let s = match super::auth::session_of(state, &req.parts).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "sign in as an owner of this channel",
            )
        }
        Err(r) => return r,
    };
    if state.bus.get(channel).is_none() {
        return not_found();
    }
    if !state.auth.is_owner(channel, &s.identity) {
        return json_error(StatusCode::FORBIDDEN, "not an owner of this channel");
    }
    if req.parts.method == Method::PUT {
        let b = match read_json::<OwnerAnnounceBody>(req.body).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        if let Err(e) = state.auth.set_owner_announce(channel, &s, b.enabled).await {
            let status = match e {
                crate::identity::owner::OwnerAnnounceError::Refused(_) => StatusCode::FORBIDDEN,
                crate::identity::owner::OwnerAnnounceError::Unsaved => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            return json_error(status, &e.to_string());
        }
    }
    let by = state.auth.owner_announce(channel).await;
    json(
        StatusCode::OK,
        &serde_json::json!({"enabled": by.is_some(), "account": by.map(|i| i.handle)}),
    )
}

/// The check of a channel-scoped admin route served by another surface (questions, timer):
/// the admin token, `channel`'s stream key, or a signed-in owner's session (`Origin` checked).
pub async fn authorize_channel_request(
    state: &HttpState,
    parts: &http::request::Parts,
    channel: &str,
) -> Result<Grant, Response<Body>> {
    match authorize_channel(&parts.headers, &state.admin_token, &state.ingest, channel) {
        Ok(g) => Ok(g),
        Err(denied) => match by_session(state, parts, Some(channel)).await {
            Ok(true) => Ok(Grant::Session),
            Ok(false) => Err(denied.response()),
            Err(r) => Err(r),
        },
    }
}

/// Whether a request without the admin token is a signed-in admin (`server.admin_identities`)
/// or, on a channel-scoped route, an owner of that channel (`channels[].owners`). The session
/// cookie of a state-changing request must come with our own `Origin` (else 403); a signed-in
/// viewer who is neither is told so (403).
async fn by_session(
    state: &HttpState,
    parts: &http::request::Parts,
    channel: Option<&str>,
) -> Result<bool, Response<Body>> {
    let Some(s) = super::auth::session_of(state, parts).await? else {
        return Ok(false);
    };
    let me = &s.identity;
    if state.auth.is_admin(me) || channel.is_some_and(|c| state.auth.is_owner(c, me)) {
        tracing::debug!(identity = %me.key(), ?channel, "admin request by a signed-in owner or admin");
        return Ok(true);
    }
    Err(json_error(
        StatusCode::FORBIDDEN,
        match channel {
            Some(_) => "signed in, but not an owner of this channel",
            None => "signed in, but not a server admin",
        },
    ))
}

async fn ban(state: &HttpState, channel: &str, add: bool, b: BanBody) -> Response<Body> {
    let target = match (b.nick, b.address, b.identity) {
        (Some(n), None, None) if !n.trim().is_empty() => BanTarget::Nick(n.trim().to_string()),
        (None, Some(a), None) => match parse_forwarded_ip(&a) {
            Some(ip) => BanTarget::Address(ip),
            None => return json_error(StatusCode::BAD_REQUEST, "address is not an IP address"),
        },
        (None, None, Some(i)) if crate::config::identity_string_ok(i.trim()) => {
            BanTarget::Identity(i.trim().to_string())
        }
        (None, None, Some(_)) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "identity is \"mastodon:https://host/@name\", \"x:USER_ID\" or \"bluesky:did:...\" (a chat message's author.provider and author.id)",
            )
        }
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "give exactly one of \"nick\", \"address\" or \"identity\"",
            )
        }
    };
    let shown = match &target {
        BanTarget::Nick(n) => serde_json::json!({ "nick": n }),
        BanTarget::Address(a) => serde_json::json!({ "address": a.to_string() }),
        BanTarget::Identity(i) => serde_json::json!({ "identity": i }),
    };
    if add {
        match state.chat.ban(channel, &target).await {
            Ok(deleted) => json(
                StatusCode::OK,
                &serde_json::json!({ "banned": shown, "deleted_messages": deleted }),
            ),
            Err(e) => chat_error(&e),
        }
    } else {
        match state.chat.unban(channel, &target).await {
            Ok(true) => json(StatusCode::OK, &serde_json::json!({ "unbanned": shown })),
            Ok(false) => json_error(StatusCode::NOT_FOUND, "not banned"),
            Err(e) => chat_error(&e),
        }
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
        assert_eq!(AdminDenied::OtherChannel.response().status(), 403);
    }

    #[test]
    fn channel_routes_take_the_channel_key() {
        let channels: Vec<crate::config::ChannelConfig> = ["alice", "bob"]
            .iter()
            .map(|n| {
                // From JSON, as the config file would give it (fields added later default).
                serde_json::from_value(
                    serde_json::json!({"name": n, "key": format!("{n}-key-123456")}),
                )
                .unwrap()
            })
            .collect();
        let ingest = Ingest::new(crate::ingest::KeyTable::new(&channels), Bus::new());
        let admin = Secret::new("admin-token");
        let off = Secret::default();
        let cases = [
            (&admin, Some("Bearer admin-token"), Ok(Grant::Admin)),
            (
                &admin,
                Some("Bearer alice-key-123456"),
                Ok(Grant::ChannelKey),
            ),
            (&off, Some("Bearer alice-key-123456"), Ok(Grant::ChannelKey)),
            (
                &admin,
                Some("Bearer bob-key-123456"),
                Err(AdminDenied::OtherChannel),
            ),
            (
                &admin,
                Some("Bearer alice-key-12345"),
                Err(AdminDenied::Wrong),
            ),
            (&off, Some("Bearer "), Err(AdminDenied::Missing)),
            (&off, None, Err(AdminDenied::Missing)),
            (&off, Some("Bearer anything"), Err(AdminDenied::Wrong)),
        ];
        for (token, auth, want) in cases {
            assert_eq!(
                authorize_channel(&headers(auth), token, &ingest, "alice"),
                want,
                "{auth:?}"
            );
        }
        // A channel key opens no server-wide route.
        assert_eq!(
            authorize(&headers(Some("Bearer alice-key-123456")), &admin),
            Err(AdminDenied::Wrong)
        );
    }
}

//! One WHIP session: a str0m `Rtc` (ICE-lite, DTLS-SRTP, one answered video codec and Opus)
//! and its media router. The socket task owns every session and drives it: input in, then
//! `poll_output` until the next deadline (str0m's single-mutation rule), transmitting on the
//! shared socket. DTLS up starts the publication on the channel (taking over whoever was
//! live); the session ends on DELETE, a vanished peer, silence, a DTLS that never completes, a
//! takeover or a kick.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::feed::Feed;
use super::media::MediaRouter;
use crate::bus::ChannelBus;
use crate::config::Secret;
use crate::ingest::{Ingest, Protocol};

/// What a session needs to publish once DTLS is up: the shared publish, and the stream key
/// the offer carried (checked then; kept in memory only until the publish).
pub struct Publisher {
    pub ingest: Arc<Ingest>,
    pub key: Secret,
}

/// A session's id: the last part of its resource URL (128 random bits, hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub u128);

impl SessionId {
    pub fn random() -> Self {
        SessionId(rand::random())
    }

    /// Parses the hex form of a resource URL.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u128::from_str_radix(s, 16).ok().map(SessionId))
            .flatten()
    }

    /// A short form for log lines (the full id is the resource's capability).
    pub fn short(&self) -> String {
        format!("{:08x}", (self.0 >> 96) as u32)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Why a session ended (its log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `DELETE` on its resource.
    Deleted,
    /// ICE disconnected or DTLS closed: the peer left.
    PeerLeft,
    /// No media for `rtmp.no_media_timeout_seconds`.
    Idle {
        seconds: u64,
    },
    /// DTLS not up within `rtmp.handshake_timeout_seconds`.
    HandshakeTimeout {
        seconds: u64,
    },
    /// Another publish took the channel, or an admin kicked it.
    Replaced,
    /// str0m refused the peer's input.
    Failed,
    Shutdown,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Deleted => f.write_str("ended by DELETE"),
            Ended::PeerLeft => f.write_str("the peer left"),
            Ended::Idle { seconds } => {
                write!(
                    f,
                    "no media for {seconds} s (rtmp.no_media_timeout_seconds)"
                )
            }
            Ended::HandshakeTimeout { seconds } => write!(
                f,
                "connection not established within {seconds} s (rtmp.handshake_timeout_seconds)"
            ),
            Ended::Replaced => f.write_str("replaced by another publish or kicked"),
            Ended::Failed => f.write_str("WebRTC error"),
            Ended::Shutdown => f.write_str("server shutting down"),
        }
    }
}

/// One session, owned by the socket task.
pub struct Session {
    pub id: SessionId,
    pub bus: Arc<ChannelBus>,
    publisher: Option<Publisher>,
    pub peer_ip: IpAddr,
    pub rtc: Rtc,
    /// Our ICE ufrag (STUN from the peer names it).
    pub ufrag: String,
    /// Host candidates put in the answer; datagrams are attributed to one of them.
    pub candidates: Vec<SocketAddr>,
    pub created: Instant,
    /// The next deadline str0m asked for.
    pub deadline: Instant,
    /// Cancelled when another publish takes over or an admin kicks it.
    pub cancel: Option<CancellationToken>,
    pub media: MediaRouter,
    video_mid: Option<Mid>,
    pub ended: Option<Ended>,
    /// Remote addresses routed to this session (from its STUN checks).
    pub addrs: Vec<SocketAddr>,
    /// Where str0m last sent to: the remote of the candidate pair ICE selected, once it did.
    remote: Option<SocketAddr>,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: SessionId,
        bus: Arc<ChannelBus>,
        publisher: Publisher,
        peer_ip: IpAddr,
        rtc: Rtc,
        ufrag: String,
        candidates: Vec<SocketAddr>,
        media: MediaRouter,
        now: Instant,
    ) -> Self {
        Self {
            id,
            bus,
            publisher: Some(publisher),
            peer_ip,
            rtc,
            ufrag,
            candidates,
            created: now,
            deadline: now,
            cancel: None,
            media,
            video_mid: None,
            ended: None,
            addrs: Vec::new(),
            remote: None,
        }
    }

    pub fn channel(&self) -> &str {
        self.bus.name.as_str()
    }

    /// The local candidate a datagram from `source` is attributed to. The socket is bound to a
    /// wildcard address and cannot tell which of this host's addresses the peer sent to; str0m
    /// only needs one of the answered candidates (ICE-lite never starts checks of its own, and
    /// replies leave by the kernel's route whatever candidate str0m thinks it used). Same
    /// family first, loopback for loopback peers.
    pub fn local_for(&self, source: SocketAddr) -> SocketAddr {
        let fits = |c: &&SocketAddr| {
            c.is_ipv4() == source.is_ipv4() && c.ip().is_loopback() == source.ip().is_loopback()
        };
        let family = |c: &&SocketAddr| c.is_ipv4() == source.is_ipv4();
        self.candidates
            .iter()
            .find(fits)
            .or_else(|| self.candidates.iter().find(family))
            .or(self.candidates.first())
            .copied()
            .unwrap_or(source)
    }

    /// Feeds one input, then drains output. Returns false when the session should end.
    pub fn input(&mut self, input: Input, socket: &UdpSocket) {
        if self.ended.is_some() {
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            debug!(channel = %self.channel(), session = %self.id.short(), error = %e, "WebRTC input refused");
            self.ended = Some(Ended::Failed);
            return;
        }
        self.drain(socket);
    }

    /// `poll_output` until the next deadline: transmit, handle events; then a keyframe
    /// request if one is due (a mutation, so drained again).
    pub fn drain(&mut self, socket: &UdpSocket) {
        for _ in 0..2 {
            loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        self.deadline = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        self.remote = Some(t.destination);
                        if let Err(e) = socket.try_send_to(&t.contents, t.destination) {
                            debug!(error = %e, to = %t.destination, "WebRTC datagram not sent");
                        }
                    }
                    Ok(Output::Event(e)) => self.event(e),
                    Err(e) => {
                        debug!(channel = %self.channel(), session = %self.id.short(), error = %e, "WebRTC session failed");
                        self.ended.get_or_insert(Ended::Failed);
                        return;
                    }
                }
            }
            if !self.request_keyframe() {
                return;
            }
        }
    }

    fn request_keyframe(&mut self) -> bool {
        let Some(mid) = self.video_mid else {
            return false;
        };
        if !self.media.keyframe_due(Instant::now()) {
            return false;
        }
        let Some(mut w) = self.rtc.writer(mid) else {
            return false;
        };
        if !w.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
            return false;
        }
        match w.request_keyframe(None, KeyframeRequestKind::Pli) {
            Ok(()) => true,
            // No RTP seen on the track yet: nothing to ask.
            Err(e) => {
                debug!(error = %e, "keyframe request not sent");
                false
            }
        }
    }

    fn event(&mut self, e: Event) {
        let now = Instant::now();
        match e {
            Event::Connected => self.connected(now),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.ended.get_or_insert(Ended::PeerLeft);
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Video && self.video_mid.is_none() => {
                self.video_mid = Some(m.mid);
            }
            Event::MediaData(d) => self.media.frame(&d, now),
            Event::Closed => {
                self.ended.get_or_insert(Ended::PeerLeft);
            }
            _ => {}
        }
    }

    /// DTLS is up: this session becomes the channel's publisher.
    fn connected(&mut self, now: Instant) {
        if self.media.is_publishing() {
            return;
        }
        // The publisher's address is where the media comes from: the selected candidate pair's
        // remote (DTLS just finished over it). A browser on the server's own machine sends from
        // one of the machine's addresses even when its page is on localhost; the HTTP peer
        // (the offer's sender) is logged beside it.
        let addr = self
            .remote
            .or_else(|| self.addrs.first().copied())
            .unwrap_or(SocketAddr::new(self.peer_ip, 0));
        let Some(p) = self.publisher.take() else {
            return;
        };
        // The shared publish: takes over whatever is live on the channel (any protocol).
        let publication =
            match p
                .ingest
                .publish_to(self.bus.name.as_str(), p.key.expose(), Protocol::Whip, addr)
            {
                Ok(publication) => publication,
                Err(_) => {
                    // Logged by the publish (the key was rotated or the channel removed since
                    // the offer).
                    self.ended = Some(Ended::Failed);
                    return;
                }
            };
        self.cancel = Some(publication.cancelled().clone());
        info!(
            channel = %self.channel(),
            session = %self.id.short(),
            peer = %addr,
            http_peer = %self.peer_ip,
            after_ms = now.saturating_duration_since(self.created).as_millis() as u64,
            "WHIP publish started"
        );
        self.media.start(Feed::new(publication), now);
    }

    /// Applies the timeouts and the takeover check; sets `ended` when one fires.
    pub fn check(&mut self, now: Instant, handshake: Duration, no_media: Duration) {
        if self.ended.is_some() {
            return;
        }
        if !self.rtc.is_alive() {
            self.ended = Some(Ended::PeerLeft);
        } else if self.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            self.ended = Some(Ended::Replaced);
        } else if !self.media.is_publishing() {
            if now.saturating_duration_since(self.created) > handshake {
                self.ended = Some(Ended::HandshakeTimeout {
                    seconds: handshake.as_secs(),
                });
            }
        } else if now.saturating_duration_since(self.media.last_media) > no_media {
            self.ended = Some(Ended::Idle {
                seconds: no_media.as_secs(),
            });
        }
    }

    /// Ends the session: the peer is told (DTLS close), conversions drain, and the publication
    /// ends when they let go of it (unless another publish took over).
    pub fn close(&mut self, socket: &UdpSocket) {
        let why = self.ended.unwrap_or(Ended::Shutdown);
        let _ = self.rtc.close();
        // Drain the close (RTCP BYE, DTLS close_notify) so that the peer learns at once; time
        // is moved to each deadline str0m names, as this session gets no more input.
        let mut now = Instant::now();
        for _ in 0..32 {
            if !self.rtc.is_alive() {
                break;
            }
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(t)) => {
                    now = now.max(t);
                    if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let was_live = self.media.is_publishing();
        self.media.finish();
        let line = |replaced| {
            if replaced {
                info!(channel = %self.channel(), session = %self.id.short(), "WHIP publish replaced")
            } else if was_live {
                info!(channel = %self.channel(), session = %self.id.short(), reason = %why, "WHIP publish ended")
            } else {
                warn!(channel = %self.channel(), session = %self.id.short(), peer = %self.peer_ip, reason = %why, "WHIP session ended before it went live")
            }
        };
        line(why == Ended::Replaced);
    }
}

//! The socket task: the one owner of the WebRTC UDP socket and of every session. A datagram is
//! routed by the ICE ufrag its STUN `USERNAME` names (our half, from the answer), anything
//! else by the source address a session's STUN checks came from; what matches no session is
//! dropped with a rate-limited log line. Sessions are driven by their `poll_output` deadlines;
//! a housekeeping tick applies the timeouts and notices takeovers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::session::{Ended, Session, SessionId};
use super::WhipIngest;
use crate::proto::stun;

/// What the HTTP side asks of the socket task.
pub enum Command {
    Add(Box<Session>),
    /// Trickled candidates (PATCH); the reply says whether the session exists.
    Candidates {
        id: SessionId,
        candidates: Vec<Candidate>,
        reply: oneshot::Sender<bool>,
    },
    /// DELETE: end it; the reply says whether it existed.
    End {
        id: SessionId,
        reply: oneshot::Sender<bool>,
    },
}

/// Remote addresses one session may be reached from (its candidate pairs).
const MAX_ADDRS_PER_SESSION: usize = 8;
const TICK: Duration = Duration::from_millis(200);

/// At most one log line a second for a kind of dropped datagram, with the count not logged.
#[derive(Default)]
struct Dropped {
    last: Option<Instant>,
    unlogged: u64,
}

impl Dropped {
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged) - 1)
    }
}

struct Driver {
    socket: UdpSocket,
    shared: Arc<WhipIngest>,
    sessions: HashMap<SessionId, Session>,
    by_ufrag: HashMap<String, SessionId>,
    by_addr: HashMap<SocketAddr, SessionId>,
    unknown_stun: Dropped,
    garbage: Dropped,
}

pub async fn run(
    socket: UdpSocket,
    shared: Arc<WhipIngest>,
    mut commands: mpsc::Receiver<Command>,
    cancel: CancellationToken,
) {
    let mut d = Driver {
        socket,
        shared,
        sessions: HashMap::new(),
        by_ufrag: HashMap::new(),
        by_addr: HashMap::new(),
        unknown_stun: Dropped::default(),
        garbage: Dropped::default(),
    };
    let mut buf = vec![0u8; 2048];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = d
            .sessions
            .values()
            .map(|s| s.deadline)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            cmd = commands.recv() => match cmd {
                Some(c) => d.command(c),
                None => break,
            },
            r = d.socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => d.datagram(&buf[..n], source),
                Err(e) => {
                    // ICMP port unreachable from a vanished peer shows up here on Linux.
                    debug!(error = %e, "WebRTC socket receive error");
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => d.timeouts(),
            _ = tick.tick() => d.housekeeping(),
        }
    }
    let ids: Vec<SessionId> = d.sessions.keys().copied().collect();
    for id in ids {
        d.end(id, Ended::Shutdown);
    }
}

impl Driver {
    fn command(&mut self, c: Command) {
        match c {
            Command::Add(s) => {
                let mut s = *s;
                s.drain(&self.socket);
                self.by_ufrag.insert(s.ufrag.clone(), s.id);
                self.sessions.insert(s.id, s);
            }
            Command::Candidates {
                id,
                candidates,
                reply,
            } => {
                let found = match self.sessions.get_mut(&id) {
                    Some(s) => {
                        for c in candidates {
                            s.rtc.add_remote_candidate(c);
                            s.drain(&self.socket);
                        }
                        true
                    }
                    None => false,
                };
                let _ = reply.send(found);
            }
            Command::End { id, reply } => {
                let found = self.sessions.contains_key(&id);
                self.end(id, Ended::Deleted);
                let _ = reply.send(found);
            }
        }
    }

    fn datagram(&mut self, data: &[u8], source: SocketAddr) {
        let now = Instant::now();
        let is_stun = stun::is_stun(data);
        let id = if is_stun {
            stun::local_ufrag(data).and_then(|u| self.by_ufrag.get(u).copied())
        } else {
            self.by_addr.get(&source).copied()
        };
        let Some(session) = id.and_then(|id| self.sessions.get_mut(&id)) else {
            let (what, counter) = if is_stun {
                (
                    "STUN for no session (unknown ufrag)",
                    &mut self.unknown_stun,
                )
            } else {
                (
                    "datagram from an address with no session",
                    &mut self.garbage,
                )
            };
            if let Some(also) = counter.note(now) {
                warn!(peer = %source, also_dropped = also, "WebRTC port: {what} dropped");
            }
            return;
        };
        let Ok(contents) = data.try_into() else {
            if let Some(also) = self.garbage.note(now) {
                warn!(peer = %source, also_dropped = also, "WebRTC port: unparseable datagram dropped");
            }
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: session.local_for(source),
                contents,
            },
        );
        if !session.rtc.accepts(&input) {
            if let Some(also) = self.garbage.note(now) {
                warn!(peer = %source, also_dropped = also, "WebRTC port: datagram the session does not accept dropped");
            }
            return;
        }
        let id = session.id;
        if is_stun
            && !session.addrs.contains(&source)
            && session.addrs.len() < MAX_ADDRS_PER_SESSION
        {
            session.addrs.push(source);
            self.by_addr.insert(source, id);
        }
        session.input(input, &self.socket);
        if let Some(why) = session.ended {
            self.end(id, why);
        }
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        let mut ended = Vec::new();
        for s in self.sessions.values_mut() {
            if s.deadline <= now {
                s.input(Input::Timeout(now), &self.socket);
                if let Some(why) = s.ended {
                    ended.push((s.id, why));
                }
            }
        }
        for (id, why) in ended {
            self.end(id, why);
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        let handshake = Duration::from_secs(self.shared.handshake_timeout_seconds);
        let no_media = Duration::from_secs(self.shared.no_media_timeout_seconds);
        let mut ended = Vec::new();
        for s in self.sessions.values_mut() {
            s.check(now, handshake, no_media);
            match s.ended {
                Some(why) => ended.push((s.id, why)),
                // Periodic keyframe requests are due on time, not only on input.
                None => s.drain(&self.socket),
            }
        }
        for (id, why) in ended {
            self.end(id, why);
        }
    }

    fn end(&mut self, id: SessionId, why: Ended) {
        let Some(mut s) = self.sessions.remove(&id) else {
            return;
        };
        s.ended.get_or_insert(why);
        self.by_ufrag.remove(&s.ufrag);
        for a in &s.addrs {
            if self.by_addr.get(a) == Some(&id) {
                self.by_addr.remove(a);
            }
        }
        s.close(&self.socket);
        self.shared.forget(id);
    }
}

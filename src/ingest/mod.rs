//! Ingest: everything a broadcaster's connection goes through before its media reaches the bus,
//! whatever the protocol. Each protocol is one file here (`rtmp` for RTMP and RTMPS; WHIP and
//! SRT join it) that accepts connections, speaks its protocol and ends in the same call:
//! [`Ingest::publish`] looks the stream key up in the [`KeyTable`] (constant time, the key never
//! logged), logs a refusal, and begins the channel's [`Publication`] on the bus, taking over
//! whatever is live on that channel whichever protocol it came by. The protocol then hands its
//! coded frames to a [`media::MediaFeed`], which repairs timestamps, counts and sends them.
//!
//! Shared here as well: [`ConnectionLimit`] (connections at once per listener family, refusals
//! logged at most once a second) and the [`IngestError`] family that closes a connection.
//! `lib.rs` builds one [`Ingest`] at start, swaps its keys on reload and hands it to every
//! listener.

pub mod media;
pub mod rtmp;
pub mod srt;
pub mod whip;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rml_rtmp::sessions::ServerSessionError;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

pub use crate::bus::Protocol;
use crate::bus::{Bus, ChannelName, Publication};
use crate::config::{ChannelConfig, Secret};
use crate::proto::rtmp::ChunkError;

/// Why a connection closed with an error. The timeouts name the config key that set them, so
/// each protocol's log lines point at its own section.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake failed: {reason}")]
    Handshake { reason: String },
    #[error("did not start publishing within {seconds} s ({key})")]
    HandshakeTimeout { seconds: u64, key: &'static str },
    #[error("no media for {seconds} s ({key})")]
    Idle { seconds: u64, key: &'static str },
    #[error("peer read nothing for {seconds} s ({key})")]
    WriteStalled { seconds: u64, key: &'static str },
    /// RTMP: `rml_rtmp`'s session refused a message.
    #[error("RTMP protocol error: {0}")]
    Session(#[from] ServerSessionError),
    /// RTMP: the chunk stream broke a limit.
    #[error("refused: {0}")]
    Limit(#[from] ChunkError),
}

impl IngestError {
    /// Whether the peer broke a limit or a rule (logged as a warning), rather than leaving.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, IngestError::Io(_))
    }
}

/// Why [`Ingest::publish`] refused; already logged (without the key) when returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    /// No channel has this key (or, for [`Ingest::publish_to`], not the channel named).
    #[error("unknown stream key")]
    UnknownKey,
    /// [`Ingest::publish_to`] named a channel that does not exist.
    #[error("no such channel")]
    NoSuchChannel,
    /// The key is known but its channel is not running (a reload is adding or removing it).
    #[error("channel not available")]
    ChannelNotReady { channel: ChannelName },
}

/// Stream keys and the channels they publish to. Swapped whole on reload.
#[derive(Default)]
pub struct KeyTable {
    entries: Vec<(Vec<u8>, ChannelName)>,
}

impl KeyTable {
    pub fn new(channels: &[ChannelConfig]) -> Self {
        Self {
            entries: channels
                .iter()
                .map(|c| {
                    (
                        c.key.expose().as_bytes().to_vec(),
                        ChannelName::new(&c.name),
                    )
                })
                .collect(),
        }
    }

    /// The channel a key publishes to. Every entry is compared, in constant time, so the answer
    /// takes as long for a near miss as for a far one.
    pub fn lookup(&self, key: &str) -> Option<ChannelName> {
        let mut found = None;
        for (k, name) in &self.entries {
            if bool::from(k.as_slice().ct_eq(key.as_bytes())) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// `channel`'s stream key, for a publish that was authorized otherwise (a signed-in owner
    /// going live from the studio): it stays inside the server.
    pub fn key_of(&self, channel: &str) -> Option<Secret> {
        self.entries
            .iter()
            .find(|(_, name)| name.as_str() == channel)
            .map(|(k, _)| Secret::new(String::from_utf8_lossy(k).into_owned()))
    }
}

/// What every ingest protocol shares: the key table and the bus.
pub struct Ingest {
    /// Replaced on reload; read once per publish. Std lock: never held across an await.
    keys: RwLock<Arc<KeyTable>>,
    bus: Arc<Bus>,
}

impl Ingest {
    pub fn new(keys: KeyTable, bus: Arc<Bus>) -> Self {
        Self {
            keys: RwLock::new(Arc::new(keys)),
            bus,
        }
    }

    /// Swaps the key table (reload): publishes from now on use the new keys.
    pub fn set_keys(&self, keys: KeyTable) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// The channel a stream key publishes to (constant time).
    pub fn lookup(&self, key: &str) -> Option<ChannelName> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        keys.lookup(key)
    }

    /// `channel`'s stream key (see [`KeyTable::key_of`]).
    pub fn key_of(&self, channel: &str) -> Option<Secret> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        keys.key_of(channel)
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// The one way into the bus for every protocol: `key` names the channel; a live publication
    /// on it (any protocol) is cancelled and replaced without the channel going offline. A
    /// refusal is logged here, naming the peer and protocol, never the key.
    pub fn publish(
        &self,
        key: &str,
        protocol: Protocol,
        peer: SocketAddr,
    ) -> Result<Publication, PublishRefused> {
        let Some(channel) = self.lookup(key) else {
            warn!(%peer, %protocol, "publish refused: unknown stream key");
            return Err(PublishRefused::UnknownKey);
        };
        self.begin(channel, protocol, peer)
    }

    /// [`Ingest::publish`] for protocols whose URL names the channel (WHIP): refused with
    /// [`PublishRefused::NoSuchChannel`] before the key is looked at, and with
    /// [`PublishRefused::UnknownKey`] when the key belongs to no channel or another one.
    pub fn publish_to(
        &self,
        channel: &str,
        key: &str,
        protocol: Protocol,
        peer: SocketAddr,
    ) -> Result<Publication, PublishRefused> {
        if self.bus.get(channel).is_none() {
            warn!(%peer, %protocol, channel, "publish refused: no such channel");
            return Err(PublishRefused::NoSuchChannel);
        }
        match self.lookup(key) {
            Some(c) if c.as_str() == channel => self.begin(c, protocol, peer),
            _ => {
                warn!(%peer, %protocol, channel, "publish refused: unknown stream key");
                Err(PublishRefused::UnknownKey)
            }
        }
    }

    fn begin(
        &self,
        channel: ChannelName,
        protocol: Protocol,
        peer: SocketAddr,
    ) -> Result<Publication, PublishRefused> {
        let Some(bus) = self.bus.get(channel.as_str()) else {
            warn!(%peer, %protocol, %channel, "publish refused: channel not ready");
            return Err(PublishRefused::ChannelNotReady { channel });
        };
        let takeover = bus.publisher().is_some();
        let publication = bus.begin_publish(peer, protocol);
        info!(%peer, %protocol, %channel, takeover, "publish started");
        Ok(publication)
    }
}

/// Connections at once for one listener family (RTMP and RTMPS share one), as a semaphore.
/// A refusal is logged at most once a second (a flood must not become a flood of log lines),
/// with the count of those not logged.
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    /// The config key that sets the limit, named in the refusal.
    key: &'static str,
    /// (last refusal logged, refusals since). Std mutex: a few instructions, no await.
    refusals: Mutex<(Option<Instant>, u64)>,
}

impl ConnectionLimit {
    pub fn new(max: usize, key: &'static str) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            key,
            refusals: Mutex::new((None, 0)),
        }
    }

    /// A slot for a new connection from `peer`, held until the permit drops; `None` (logged as
    /// "`{scheme}` connection refused") at the limit.
    pub fn try_admit(&self, scheme: &str, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        let mut r = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        r.1 += 1;
        if r.0.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            warn!(%peer, limit = self.max, also_refused = r.1 - 1, "{scheme} connection refused: {} reached", self.key);
            *r = (Some(Instant::now()), 0);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Lifecycle;
    use crate::config::Secret;

    fn channel(name: &str, key: &str) -> ChannelConfig {
        ChannelConfig {
            name: name.into(),
            key: Secret::new(key),
            key_env: None,
            title: None,
            owners: Vec::new(),
        }
    }

    #[test]
    fn key_lookup() {
        let table = KeyTable::new(&[
            channel("alice", "alice-secret-1"),
            channel("bob", "bob-secret-22"),
        ]);
        let cases = [
            ("alice-secret-1", Some("alice")),
            ("bob-secret-22", Some("bob")),
            ("alice-secret-", None),
            ("alice", None),
            ("", None),
        ];
        for (key, want) in cases {
            assert_eq!(
                table.lookup(key).map(|c| c.to_string()),
                want.map(String::from),
                "{key}"
            );
        }
    }

    fn ingest() -> Ingest {
        let bus = Bus::new();
        bus.ensure(&ChannelName::new("alice"));
        bus.ensure(&ChannelName::new("bob"));
        let keys = KeyTable::new(&[
            channel("alice", "alice-key"),
            channel("bob", "bob-key"),
            channel("gone", "gone-key"),
        ]);
        Ingest::new(keys, bus)
    }

    #[test]
    fn a_publish_by_another_protocol_takes_over() {
        let ingest = ingest();
        let mut life = ingest.bus().subscribe_lifecycle();
        let ch = ingest.bus().get("alice").expect("alice");
        let rtmp_peer: SocketAddr = "127.0.0.1:1935".parse().unwrap();
        let whip_peer: SocketAddr = "127.0.0.2:50000".parse().unwrap();

        let first = ingest
            .publish("alice-key", Protocol::Rtmp, rtmp_peer)
            .expect("rtmp publish");
        assert_eq!(ch.publisher().map(|p| p.protocol), Some(Protocol::Rtmp));
        let second = ingest
            .publish_to("alice", "alice-key", Protocol::Whip, whip_peer)
            .expect("whip publish");
        assert!(
            first.cancelled().is_cancelled(),
            "first publication cancelled"
        );
        assert!(!second.cancelled().is_cancelled());
        let p = ch.publisher().expect("still live");
        assert_eq!((p.protocol, p.addr), (Protocol::Whip, whip_peer));
        // The RTMP connection closes and drops its publication: the channel stays live.
        drop(first);
        assert!(ch.publisher().is_some(), "channel stays live");
        assert!(matches!(life.try_recv(), Ok(Lifecycle::Live { .. })));
        assert!(life.try_recv().is_err(), "one Live event, no Offline");
        // And back the other way.
        let third = ingest
            .publish("alice-key", Protocol::Srt, rtmp_peer)
            .expect("srt publish");
        assert!(second.cancelled().is_cancelled());
        drop(second);
        assert_eq!(ch.publisher().map(|p| p.protocol), Some(Protocol::Srt));
        assert!(life.try_recv().is_err());
        drop(third);
        assert!(matches!(life.try_recv(), Ok(Lifecycle::Offline { .. })));
    }

    #[test]
    fn refusals() {
        let ingest = ingest();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let refused = |r: Result<Publication, PublishRefused>| r.err();
        assert_eq!(
            refused(ingest.publish("nope", Protocol::Rtmp, peer)),
            Some(PublishRefused::UnknownKey)
        );
        assert_eq!(
            refused(ingest.publish("gone-key", Protocol::Rtmp, peer)),
            Some(PublishRefused::ChannelNotReady {
                channel: ChannelName::new("gone")
            })
        );
        assert_eq!(
            refused(ingest.publish_to("carol", "alice-key", Protocol::Whip, peer)),
            Some(PublishRefused::NoSuchChannel)
        );
        // Bob's key does not publish to alice.
        assert_eq!(
            refused(ingest.publish_to("alice", "bob-key", Protocol::Whip, peer)),
            Some(PublishRefused::UnknownKey)
        );
        assert!(ingest.bus().get("alice").unwrap().publisher().is_none());
        ingest.set_keys(KeyTable::new(&[channel("alice", "rotated")]));
        assert_eq!(
            refused(ingest.publish("alice-key", Protocol::Rtmp, peer)),
            Some(PublishRefused::UnknownKey)
        );
        assert!(ingest.publish("rotated", Protocol::Rtmp, peer).is_ok());
    }

    #[test]
    fn connection_limit_admits_up_to_its_size() {
        let limit = ConnectionLimit::new(2, "rtmp.max_connections");
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let a = limit.try_admit("rtmp", peer).expect("first");
        let _b = limit.try_admit("rtmp", peer).expect("second");
        assert!(limit.try_admit("rtmp", peer).is_none());
        drop(a);
        assert!(limit.try_admit("rtmp", peer).is_some());
    }
}

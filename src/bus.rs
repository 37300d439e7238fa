//! The bus: per-channel fan-out of media from the one publisher to every consumer (segmenters,
//! transcoders), and server-wide lifecycle events (live, offline) for chat and announce.
//!
//! Ingest owns a [`Publication`] while a broadcaster publishes; a new publish on a live channel
//! takes over (the old publication is cancelled, its connection closes, the channel's playlists
//! go on). Consumers subscribe to a channel's [`MediaEvent`] broadcast once, at start, and keep
//! the subscription across publishes. Late joiners read the current codec configuration from
//! [`ChannelBus::info`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::proto::media::{MediaPacket, StreamInfo};

/// Media events buffered per channel before a slow consumer lags.
const MEDIA_CAPACITY: usize = 2048;
const LIFECYCLE_CAPACITY: usize = 256;

/// A public channel name (validated by the config as `[A-Za-z0-9_-]{1,64}`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    pub fn new(s: &str) -> Self {
        Self(Arc::from(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Looks a channel up by `&str` without building a name (an allocation per HLS request, which
/// counts its viewer through the bus). Consistent with the derived `Ord`, `Eq` and `Hash`,
/// which compare and hash the `str`.
impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// What flows on a channel's media broadcast.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// A publisher started; `takeover` when it replaced a live one without a gap.
    Start {
        takeover: bool,
    },
    /// The codec configuration changed (sequence headers arrived).
    Info(StreamInfo),
    Packet(MediaPacket),
    /// The publisher stopped and no one replaced it.
    End,
}

/// Server-wide lifecycle events.
#[derive(Debug, Clone, PartialEq)]
pub enum Lifecycle {
    Live {
        channel: ChannelName,
        started_at: DateTime<Utc>,
    },
    Offline {
        channel: ChannelName,
    },
}

/// The ingest protocol a publication arrived by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Rtmp,
    /// RTMP over TLS.
    Rtmps,
    Whip,
    Srt,
}

impl Protocol {
    /// The lowercase name shown in logs and `/api/admin/streams`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Rtmps => "rtmps",
            Protocol::Whip => "whip",
            Protocol::Srt => "srt",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who publishes on a channel now.
#[derive(Debug, Clone)]
pub struct PublisherInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub started_at: DateTime<Utc>,
    /// When the channel went live (kept across takeovers).
    pub live_since: DateTime<Utc>,
    cancel: CancellationToken,
}

/// Counters ingest updates per packet; read by the API and metrics.
#[derive(Debug, Default)]
pub struct ChannelStats {
    pub bytes_in: AtomicU64,
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
}

#[derive(Debug, Default)]
struct ChannelState {
    publisher: Option<PublisherInfo>,
    info: StreamInfo,
}

/// One channel's bus.
pub struct ChannelBus {
    pub name: ChannelName,
    media: broadcast::Sender<MediaEvent>,
    /// Id of the current publication; packets from a superseded one are dropped.
    current: AtomicU64,
    /// Guarded by a std mutex: short critical sections, never held across an await.
    state: Mutex<ChannelState>,
    pub stats: ChannelStats,
    lifecycle: broadcast::Sender<Lifecycle>,
    /// Set when a reload removed the channel: its tasks free everything instead of lingering.
    removed: std::sync::atomic::AtomicBool,
}

impl ChannelBus {
    /// Whether a reload removed this channel.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<MediaEvent> {
        self.media.subscribe()
    }

    /// The current codec configuration.
    pub fn info(&self) -> StreamInfo {
        self.lock().info.clone()
    }

    pub fn publisher(&self) -> Option<PublisherInfo> {
        self.lock().publisher.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChannelState> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a publication; a live one is cancelled and replaced, whatever its protocol.
    /// Ingest calls this through `ingest::Ingest::publish`, after the key check.
    pub fn begin_publish(self: &Arc<Self>, addr: SocketAddr, protocol: Protocol) -> Publication {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let now = Utc::now();
        let (takeover, live_since) = {
            let mut st = self.lock();
            let prev = st.publisher.take();
            let live_since = prev.as_ref().map(|p| p.live_since).unwrap_or(now);
            if let Some(p) = &prev {
                p.cancel.cancel();
            }
            st.publisher = Some(PublisherInfo {
                id,
                addr,
                protocol,
                started_at: now,
                live_since,
                cancel: cancel.clone(),
            });
            st.info = StreamInfo::default();
            self.current.store(id, Ordering::Release);
            (prev.is_some(), live_since)
        };
        let _ = self.media.send(MediaEvent::Start { takeover });
        if !takeover {
            let _ = self.lifecycle.send(Lifecycle::Live {
                channel: self.name.clone(),
                started_at: live_since,
            });
        }
        Publication {
            bus: self.clone(),
            id,
            cancel,
        }
    }

    /// Disconnects the current publisher (admin kick, channel removed).
    pub fn kick(&self) -> bool {
        match &self.lock().publisher {
            Some(p) => {
                p.cancel.cancel();
                true
            }
            None => false,
        }
    }
}

/// A live publication, owned by the ingest connection. Dropping it ends the stream (unless a
/// newer publication took over).
pub struct Publication {
    bus: Arc<ChannelBus>,
    id: u64,
    cancel: CancellationToken,
}

impl Publication {
    /// Cancelled when another publisher took over or an admin kicked this one.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn channel(&self) -> &ChannelBus {
        &self.bus
    }

    fn is_current(&self) -> bool {
        self.bus.current.load(Ordering::Acquire) == self.id
    }

    /// Sends a packet to every consumer; a superseded publication's packets are dropped.
    pub fn send_packet(&self, pkt: MediaPacket) {
        if self.is_current() {
            let _ = self.bus.media.send(MediaEvent::Packet(pkt));
        }
    }

    /// Updates the codec configuration and tells consumers.
    pub fn set_info(&self, info: StreamInfo) {
        if !self.is_current() {
            return;
        }
        self.bus.lock().info = info.clone();
        let _ = self.bus.media.send(MediaEvent::Info(info));
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        let ended = {
            let mut st = self.bus.lock();
            if st.publisher.as_ref().map(|p| p.id) == Some(self.id) {
                st.publisher = None;
                st.info = StreamInfo::default();
                self.bus.current.store(0, Ordering::Release);
                true
            } else {
                false
            }
        };
        if ended {
            let _ = self.bus.media.send(MediaEvent::End);
            let _ = self.bus.lifecycle.send(Lifecycle::Offline {
                channel: self.bus.name.clone(),
            });
        }
    }
}

/// All channels' buses and the lifecycle broadcast.
pub struct Bus {
    channels: Mutex<BTreeMap<ChannelName, Arc<ChannelBus>>>,
    lifecycle: broadcast::Sender<Lifecycle>,
}

impl Bus {
    pub fn new() -> Arc<Self> {
        let (lifecycle, _) = broadcast::channel(LIFECYCLE_CAPACITY);
        Arc::new(Self {
            channels: Mutex::new(BTreeMap::new()),
            lifecycle,
        })
    }

    pub fn subscribe_lifecycle(&self) -> broadcast::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }

    /// The channel's bus, created if new. Returns whether it was created.
    pub fn ensure(&self, name: &ChannelName) -> (Arc<ChannelBus>, bool) {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(name) {
            return (c.clone(), false);
        }
        let (media, _) = broadcast::channel(MEDIA_CAPACITY);
        let c = Arc::new(ChannelBus {
            name: name.clone(),
            media,
            current: AtomicU64::new(0),
            state: Mutex::new(ChannelState::default()),
            stats: ChannelStats::default(),
            lifecycle: self.lifecycle.clone(),
            removed: std::sync::atomic::AtomicBool::new(false),
        });
        map.insert(name.clone(), c.clone());
        (c, true)
    }

    /// Forgets a channel (removed by a reload); its tasks are stopped by their owner.
    pub fn remove(&self, name: &str) {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.remove(&ChannelName::new(name)) {
            c.removed.store(true, Ordering::Release);
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<ChannelBus>> {
        let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }

    /// Every channel, in name order.
    pub fn all(&self) -> Vec<Arc<ChannelBus>> {
        let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takeover_keeps_channel_live_and_drop_of_old_is_silent() {
        let bus = Bus::new();
        let (ch, _) = bus.ensure(&ChannelName::new("alice"));
        let mut life = bus.subscribe_lifecycle();
        let mut media = ch.subscribe();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();

        let first = ch.begin_publish(addr, Protocol::Rtmp);
        assert!(matches!(life.recv().await, Ok(Lifecycle::Live { .. })));
        assert!(matches!(
            media.recv().await,
            Ok(MediaEvent::Start { takeover: false })
        ));

        let second = ch.begin_publish(addr, Protocol::Rtmp);
        assert!(first.cancelled().is_cancelled());
        assert!(matches!(
            media.recv().await,
            Ok(MediaEvent::Start { takeover: true })
        ));
        drop(first);
        assert!(ch.publisher().is_some());
        assert!(life.try_recv().is_err(), "no offline/live for a takeover");

        drop(second);
        assert!(matches!(media.recv().await, Ok(MediaEvent::End)));
        assert!(matches!(life.recv().await, Ok(Lifecycle::Offline { .. })));
        assert!(ch.publisher().is_none());
    }
}

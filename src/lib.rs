//! onair: a self-hosted live-streaming server. Broadcasters push RTMP; viewers play adaptive
//! HLS served from memory.
//!
//! The media path runs one way: `ingest` (RTMP connections) publishes on the `bus`; `hls`
//! segments each channel into the in-memory store as the `source` rendition, and `transcode`
//! adds the adaptive ladder's renditions next to it (on its own worker threads); `http`
//! serves it. Lifecycle events (live,
//! offline) flow from the bus to whoever subscribes. `proto` holds the pure protocol code
//! (FLV, H.264/AAC configuration, MPEG-TS, playlists) that the rest is built on.
//! [`Server::start`] wires them together; `main.rs` adds the command line and signals.

pub mod bus;
pub mod config;
pub mod hls;
pub mod http;
pub mod ingest;
pub mod proto;
pub mod transcode;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::bus::{Bus, ChannelName};
use crate::config::Config;
use crate::hls::{HlsStore, StoreConfig};
use crate::http::HttpState;
use crate::ingest::{IngestShared, KeyTable};
use crate::transcode::Transcoder;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running server.
pub struct Server {
    pub rtmp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub bus: Arc<Bus>,
    pub store: Arc<HlsStore>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    http_task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds the listeners and starts every component.
    pub async fn start(cfg: Config) -> Result<Server, StartError> {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let bus = Bus::new();
        let store = Arc::new(HlsStore::new(StoreConfig {
            window: cfg.hls.playlist_window,
            segment_seconds: cfg.hls.segment_seconds,
        }));
        // Without a transcoder (no libx264 in this FFmpeg, no threads) the server still serves
        // every stream as its source rendition: say so loudly and carry on.
        let transcoder = match Transcoder::start(
            cfg.transcode.clone(),
            &cfg.hls,
            store.clone(),
            &tracker,
            cancel.child_token(),
        ) {
            Ok(t) => t,
            Err(e) => {
                error!(error = %e, "transcoding disabled: serving source renditions only");
                None
            }
        };
        for ch in &cfg.channels {
            let (channel, _) = bus.ensure(&ChannelName::new(&ch.name));
            if let Some(t) = &transcoder {
                t.start_channel(channel.clone(), &tracker, cancel.child_token());
            }
            hls::start_channel(
                channel,
                store.clone(),
                cfg.hls.clone(),
                &tracker,
                cancel.child_token(),
            );
        }

        let rtmp = bind("RTMP", cfg.rtmp.listen).await?;
        let http = bind("HTTP", cfg.http.listen).await?;
        let rtmp_addr = rtmp.local_addr().unwrap_or(cfg.rtmp.listen);
        let http_addr = http.local_addr().unwrap_or(cfg.http.listen);

        let ingest = Arc::new(IngestShared {
            cfg: cfg.rtmp.clone(),
            keys: RwLock::new(Arc::new(KeyTable::new(&cfg.channels))),
            bus: bus.clone(),
        });
        tracker.spawn(ingest::serve(
            rtmp,
            ingest,
            tracker.clone(),
            cancel.child_token(),
        ));
        let state = Arc::new(HttpState {
            store: store.clone(),
            bus: bus.clone(),
            transcoder: transcoder.clone(),
        });
        let http_task = tokio::spawn(http::serve(
            http,
            state,
            cfg.http.clone(),
            cancel.child_token(),
        ));
        info!(rtmp = %rtmp_addr, http = %http_addr, channels = cfg.channels.len(), "onair ready");
        Ok(Server {
            rtmp_addr,
            http_addr,
            bus,
            store,
            cancel,
            tracker,
            http_task,
        })
    }

    /// Stops accepting, ends every live stream (playlists get ENDLIST), drains HTTP.
    pub async fn shutdown(self, limit: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop in time");
        }
        let _ = tokio::time::timeout(limit, self.http_task).await;
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

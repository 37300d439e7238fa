//! onair: a self-hosted live-streaming server. Broadcasters push RTMP; viewers play adaptive
//! HLS served from memory.
//!
//! The media path runs one way: `ingest` (one module per protocol, all ending in
//! `ingest::Ingest::publish` and a protocol-neutral `ingest::media::MediaFeed`) publishes on the
//! `bus`; `hls` segments each channel into the in-memory store as the `source` rendition, and
//! `transcode` adds the adaptive ladder's renditions next to it (on its own worker threads);
//! `http` (a pure router, then one module per surface) serves it. Lifecycle events (live, offline) flow from the bus to whoever subscribes: `announce`
//! posts go-lives to X, Mastodon, Bluesky and webhooks; `chat` turns them into `live`/`offline`
//! events for viewers and carries their messages. `proto` holds the pure protocol code
//! (FLV, H.264/AAC configuration, MPEG-TS, playlists) that the rest is built on. `db` is the
//! embedded SQLite database (`{storage.data_dir}/onair.sqlite3`) for what outlives the process,
//! with its own thread; `chat` keeps its bans there.
//! [`Server::start`] wires them together; `main.rs` adds the command line and signals.

pub mod announce;
pub mod bus;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod db;
#[doc(hidden)]
pub mod fuzzing;
pub mod hls;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod proto;
pub mod record;
pub mod srt;
pub mod tls;
pub mod transcode;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::bus::{Bus, ChannelName};
use crate::chat::Chat;
use crate::config::Config;
use crate::hls::{HlsStore, StoreConfig};
use crate::http::HttpState;
use crate::ingest::{Ingest, KeyTable};
use crate::transcode::thumbnails::Thumbnails;
use crate::transcode::Transcoder;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for SRT on {addr} (srt.listen): {source}")]
    Srt {
        addr: SocketAddr,
        source: srt::SrtError,
    },
    #[error(transparent)]
    Announce(#[from] announce::AnnounceError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Webrtc(#[from] ingest::whip::WhipStartError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Auth(#[from] identity::service::AuthStartError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
}

/// A running server.
pub struct Server {
    pub rtmp_addr: SocketAddr,
    /// The WebRTC (WHIP) UDP address, when WHIP started.
    pub webrtc_addr: Option<SocketAddr>,
    /// The RTMPS listener's address, when `rtmp.tls_listen` is set.
    pub rtmps_addr: Option<SocketAddr>,
    /// The SRT listener's address, unless `srt.listen` is empty.
    pub srt_addr: Option<SocketAddr>,
    /// The SRT listener (its own IO thread); dropped last, which closes its connections.
    srt: Option<ingest::srt::SrtIngest>,
    /// The TLS listeners' certificates, read again on reload.
    certificates: Vec<tls::CertSlot>,
    pub http_addr: SocketAddr,
    pub bus: Arc<Bus>,
    pub store: Arc<HlsStore>,
    pub chat: Arc<Chat>,
    /// The database (`{storage.data_dir}/onair.sqlite3`).
    pub db: db::Db,
    /// Sign-in: sessions, providers, cross-posts.
    pub auth: Arc<identity::Auth>,
    /// Per-target announcement counters (attempts, successes, failures, dropped).
    pub announce: Arc<announce::AnnounceStats>,
    announcer: announce::AnnounceHandle,
    cancel: CancellationToken,
    tracker: TaskTracker,
    http_task: tokio::task::JoinHandle<()>,
    /// Keys and publish, shared by every ingest protocol; keys swapped on reload.
    ingest: Arc<Ingest>,
    /// The configuration in force (channels change on reload). Std mutex: short, no awaits.
    cfg: Mutex<Config>,
    /// Cancels one channel's tasks when the channel is removed by a reload.
    channel_tasks: Mutex<HashMap<String, CancellationToken>>,
    /// `None` when the ladder is empty or libx264 is missing (source renditions only).
    transcoder: Option<Arc<transcode::Transcoder>>,
    /// Recordings of every broadcast (`[record]`).
    pub recorder: Arc<record::Recorder>,
    /// Every channel's latest live thumbnail (`jpeg(channel)`: a recording's poster).
    pub thumbnails: Arc<Thumbnails>,
    /// Channel titles for the share cards (swapped on reload).
    cards: Arc<http::cards::Titles>,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub rekeyed: Vec<String>,
    /// Sections that differ but only take effect at restart.
    pub needs_restart: Vec<&'static str>,
    /// Certificates read again (by section: `http`, `rtmp`); new connections use them.
    pub certificates_reloaded: Vec<&'static str>,
    /// Certificates that could not be read again: the previous one stays in use.
    pub certificate_errors: Vec<String>,
}

impl Server {
    /// Binds the listeners and starts every component.
    pub async fn start(cfg: Config) -> Result<Server, StartError> {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        // First: an unusable data_dir or a database from a newer version stops the start
        // before anything listens.
        let db = db::Db::open(&cfg.storage).await?;
        let bus = Bus::new();
        let store = Arc::new(HlsStore::new(StoreConfig {
            window: cfg.hls.playlist_window,
            segment_seconds: cfg.hls.segment_seconds,
            container: cfg.hls.container,
            part_seconds: cfg.hls.part_seconds,
        }));
        // Subscribes to lifecycle events before ingest can publish anything.
        let cluster = cluster::Cluster::new(&cfg, bus.clone())?;
        let go_lives = match &cluster {
            Some(c) => c.subscribe_lifecycle(),
            None => bus.subscribe_lifecycle(),
        };
        let announce = announce::start_with(&cfg, go_lives, &tracker, cancel.child_token())?;
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

        let rtmp = bind("RTMP", cfg.rtmp.listen).await?;
        let http = bind("HTTP", cfg.http.listen).await?;
        let rtmp_addr = rtmp.local_addr().unwrap_or(cfg.rtmp.listen);
        let http_addr = http.local_addr().unwrap_or(cfg.http.listen);
        let rtmps = match cfg.rtmp.tls_listen {
            Some(addr) => {
                let (section, cert, key) = cfg.rtmp.tls_files(&cfg.http);
                let tls = tls::CertSlot::load(section, cert, key, &[])?;
                let listener = bind("RTMPS", addr).await?;
                let bound = listener.local_addr().unwrap_or(addr);
                Some((listener, tls, bound))
            }
            None => None,
        };
        let rtmps_addr = rtmps.as_ref().map(|(_, _, a)| *a);

        let ingest = Arc::new(Ingest::new(KeyTable::new(&cfg.channels), bus.clone()));
        // Browser-codec conversion runs on the transcode pool, or on a pool of its own when
        // the ladder is empty.
        let pool = match &transcoder {
            Some(t) => Some(t.pool()),
            None => transcode::conversion_pool(&cfg.transcode),
        };
        // Enhanced RTMP Opus audio becomes AAC on the same pool, at the WHIP conversion bitrate.
        let opus = pool.clone().map(|pool| ingest::rtmp::OpusSettings {
            pool,
            kbps: cfg.webrtc.audio_kbps,
        });
        let rtmp_shared = Arc::new(
            ingest::rtmp::RtmpShared::new(cfg.rtmp.clone(), ingest.clone()).with_opus(opus),
        );
        tracker.spawn(ingest::rtmp::serve(
            rtmp,
            None,
            rtmp_shared.clone(),
            tracker.clone(),
            cancel.child_token(),
        ));
        let mut certificates = Vec::new();
        if let Some((listener, slot, _)) = rtmps {
            certificates.push(slot.clone());
            tracker.spawn(ingest::rtmp::serve(
                listener,
                Some(slot),
                rtmp_shared.clone(),
                tracker.clone(),
                cancel.child_token(),
            ));
        }
        // Live thumbnails run on the browser-codec conversion pool.
        let thumbnails = Thumbnails::new(cfg.thumbnail.clone(), pool.clone());
        announce.set_thumbnails(thumbnails.clone());
        let whip = match pool {
            Some(pool) => Some(
                ingest::whip::WhipIngest::start(
                    &cfg,
                    ingest.clone(),
                    bus.clone(),
                    pool,
                    &tracker,
                    cancel.child_token(),
                )
                .await?,
            ),
            None => {
                error!("WHIP ingest disabled: no worker threads for browser codecs");
                None
            }
        };
        let webrtc_addr = whip.as_ref().map(|w| w.addr);
        let srt = match cfg.srt.listen_addr() {
            Some(addr) => Some(
                ingest::srt::SrtIngest::start(
                    &cfg.srt,
                    addr,
                    &cfg.rtmp.app,
                    ingest.clone(),
                    &tracker,
                    cancel.child_token(),
                )
                .map_err(|source| StartError::Srt { addr, source })?,
            ),
            None => None,
        };
        let srt_addr = srt.as_ref().map(ingest::srt::SrtIngest::local_addr);
        let chat = Chat::start(
            cfg.chat.clone(),
            bus.clone(),
            db.clone(),
            &tracker,
            cancel.child_token(),
        )
        .await?;
        if let Some(c) = &cluster {
            chat.attach_cluster(c.clone());
        }
        let auth = identity::Auth::spawn(&cfg, db.clone(), &tracker, cancel.child_token())?;
        let debate = chat::questions::Debate::start(
            cfg.debate.clone(),
            cfg.debate.sign_in_required(&cfg.auth),
            Duration::from_secs(cfg.announce.grace_seconds),
            chat.clone(),
            db.clone(),
            &tracker,
            cancel.child_token(),
        )
        .await?;
        if let Some(c) = &cluster {
            // The debate first: the cluster's first read hands it the streams' tails too.
            c.attach_debate(&debate);
            c.start(chat.clone(), &tracker, cancel.child_token());
        }
        // Announced go-lives are also posted on owners' own accounts, when they asked.
        let owners = auth.clone();
        announce.on_live(Arc::new(move |a| {
            let auth = owners.clone();
            tokio::spawn(async move { auth.owner_go_live(&a).await });
        }));
        metrics::init(&tracker, cancel.child_token());
        let recorder =
            record::Recorder::start(&cfg, db.clone(), &tracker, cancel.child_token()).await;
        recorder.record_renditions(&store);
        recorder.set_thumbnails(thumbnails.clone());
        // The replay keeps the pinned questions at their moments...
        let rec = recorder.clone();
        debate.on_pinned(Arc::new(move |channel, q| rec.question_pinned(channel, q)));
        // ...and the end-of-show post (`announce.replay_post`) names the show's replay page.
        let (rec, public_url) = (recorder.clone(), cfg.server.public_url.clone());
        announce.set_replay_links(Arc::new(move |channel, live_since| {
            let id = rec.replay_of(channel, live_since)?;
            Some(announce::message::replay_url(&public_url, channel, &id))
        }));
        let cards = http::cards::Titles::new(&cfg.channels);
        let state = Arc::new(HttpState {
            auth: auth.clone(),
            public_url: cfg.server.public_url.trim_end_matches('/').to_string(),
            announce: announce.stats.clone(),
            store: store.clone(),
            bus: bus.clone(),
            chat: chat.clone(),
            debate,
            admin_token: cfg.server.admin_token.clone(),
            ingest: ingest.clone(),
            trusted_proxies: cfg.chat.trusted_proxies.clone(),
            transcoder: transcoder.clone(),
            recorder: recorder.clone(),
            whip,
            cluster,
            thumbnails: thumbnails.clone(),
            cards: cards.clone(),
            replay_pages: Default::default(),
        });
        let tls = http::tls_config(&cfg.http)?;
        certificates.extend(tls.clone());
        let http_task = tokio::spawn(http::serve(
            http,
            state,
            cfg.http.clone(),
            tls,
            cancel.child_token(),
        ));
        info!(rtmp = %rtmp_addr, rtmps = ?rtmps_addr, srt = ?srt_addr, http = %http_addr, webrtc = ?webrtc_addr, channels = cfg.channels.len(), "onair ready");
        let server = Server {
            rtmp_addr,
            webrtc_addr,
            rtmps_addr,
            srt_addr,
            srt,
            certificates,
            http_addr,
            bus,
            store,
            chat,
            db,
            auth,
            announce: announce.stats.clone(),
            announcer: announce,
            cancel,
            tracker,
            http_task,
            ingest,
            channel_tasks: Mutex::new(HashMap::new()),
            cfg: Mutex::new(cfg.clone()),
            transcoder,
            recorder,
            thumbnails,
            cards,
        };
        for ch in &cfg.channels {
            server.start_channel(&cfg, &ch.name);
        }
        Ok(server)
    }

    /// Creates a channel's bus and starts its per-channel tasks.
    fn start_channel(&self, cfg: &Config, name: &str) {
        let (channel, _) = self.bus.ensure(&ChannelName::new(name));
        let token = self.cancel.child_token();
        // Both subscribe to the channel's media here, before this returns, so nothing a
        // publisher sends can slip past them.
        if let Some(t) = &self.transcoder {
            t.start_channel(channel.clone(), &self.tracker, token.clone());
        }
        self.recorder.start_channel(channel.clone(), token.clone());
        self.thumbnails
            .start_channel(channel.clone(), &self.tracker, token.clone());
        hls::start_channel(
            channel,
            self.store.clone(),
            cfg.hls.clone(),
            &self.tracker,
            token.clone(),
        );
        lock(&self.channel_tasks).insert(name.to_string(), token);
    }

    /// Applies a new, already validated configuration: channels and keys are added, removed or
    /// rotated without touching the other live streams; a removed channel's publisher is
    /// disconnected. Other sections take effect at the next restart (reported).
    pub fn reload(&self, new: Config) -> ReloadReport {
        let mut report = ReloadReport::default();
        let old = lock(&self.cfg).clone();
        for ch in &new.channels {
            match old.channels.iter().find(|o| o.name == ch.name) {
                None => report.added.push(ch.name.clone()),
                Some(o) if o.key != ch.key => report.rekeyed.push(ch.name.clone()),
                Some(_) => {}
            }
        }
        for o in &old.channels {
            if !new.channels.iter().any(|c| c.name == o.name) {
                report.removed.push(o.name.clone());
            }
        }
        // New keys first, so a removed channel's key stops working before it is kicked.
        self.ingest.set_keys(KeyTable::new(&new.channels));
        for name in &report.removed {
            // Mark it removed first: its tasks then free its HLS instead of ending it.
            let channel = self.bus.get(name);
            self.bus.remove(name);
            if let Some(token) = lock(&self.channel_tasks).remove(name) {
                token.cancel();
            }
            if let Some(ch) = channel {
                ch.kick();
            }
            self.thumbnails.remove(name);
        }
        for name in &report.added {
            self.start_channel(&new, name);
        }
        // Titles, new channels and rotated keys reach the announcer now; its targets at restart.
        self.announcer.set_channels(&new.channels);
        self.recorder.set_titles(&new.channels);
        self.cards.set(&new.channels);
        // Owners and admins change live too.
        self.auth
            .set_roles(&new.channels, &new.server.admin_identities);
        // Listeners, segmenting and transcoding are built at start; say what waits for a restart.
        let sections = [
            ("rtmp", format!("{:?}", old.rtmp), format!("{:?}", new.rtmp)),
            // Debug redacts the passphrase: its change is told by comparing it.
            (
                "srt",
                format!("{:?}", old.srt),
                format!(
                    "{:?}{}",
                    new.srt,
                    if old.srt.passphrase == new.srt.passphrase {
                        ""
                    } else {
                        " passphrase changed"
                    }
                ),
            ),
            ("http", format!("{:?}", old.http), format!("{:?}", new.http)),
            ("hls", format!("{:?}", old.hls), format!("{:?}", new.hls)),
            (
                "webrtc",
                format!("{:?}", old.webrtc),
                format!("{:?}", new.webrtc),
            ),
            (
                "transcode",
                format!("{:?}", old.transcode),
                format!("{:?}", new.transcode),
            ),
            (
                "record",
                format!("{:?}", old.record),
                format!("{:?}", new.record),
            ),
            (
                "storage",
                format!("{:?}", old.storage),
                format!("{:?}", new.storage),
            ),
            (
                "thumbnail",
                format!("{:?}", old.thumbnail),
                format!("{:?}", new.thumbnail),
            ),
        ];
        for (section, before, after) in sections {
            if before != after {
                report.needs_restart.push(section);
            }
        }
        // Renewed certificates (same files, new contents) take effect now.
        for slot in &self.certificates {
            match slot.reload() {
                Ok(()) => report.certificates_reloaded.push(slot.section()),
                Err(e) => {
                    warn!(error = %e, "certificate not reloaded: the previous one stays in use");
                    report.certificate_errors.push(e.to_string());
                }
            }
        }
        // Compared with PartialEq, not Debug: Debug hides the secrets, whose change counts too.
        if old.announce != new.announce {
            report.needs_restart.push("announce");
        }
        if old.auth != new.auth {
            report.needs_restart.push("auth");
        }
        info!(
            added = ?report.added,
            removed = ?report.removed,
            rekeyed = ?report.rekeyed,
            needs_restart = ?report.needs_restart,
            certificates = ?report.certificates_reloaded,
            "configuration reloaded"
        );
        *lock(&self.cfg) = new;
        report
    }

    /// Stops accepting, ends every live stream (playlists get ENDLIST), drains HTTP.
    pub async fn shutdown(self, limit: Duration) {
        // One deadline for everything, so the whole shutdown stays within `limit`.
        let deadline = tokio::time::Instant::now() + limit;
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop in time");
        }
        let _ = tokio::time::timeout_at(deadline, self.http_task).await;
        // Stops libsrt's IO thread (it notices within a poll interval) off the runtime.
        if let Some(srt) = self.srt {
            let _ =
                tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(move || drop(srt)))
                    .await;
        }
        // Last: everything that writes has stopped (or run out of time).
        if tokio::time::timeout_at(deadline, self.db.close())
            .await
            .is_err()
        {
            warn!("the database did not close in time; its WAL is folded in at the next start");
        }
    }
}

/// Locks a std mutex, ignoring poisoning (the data are plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

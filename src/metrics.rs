//! Metrics in the Prometheus text format for `GET /metrics`, through the `metrics` facade and
//! `metrics-exporter-prometheus`.
//!
//! Events on the request path (HTTP requests and their latency) are recorded as they happen.
//! State that other modules already keep (live channels, ingest counters, segments, announce
//! counters) is read at scrape time and published as absolute values, so no hot path pays for
//! metrics twice.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::announce::AnnounceStats;
use crate::bus::Bus;
use crate::hls::HlsStore;

/// Latency buckets for HTTP requests (seconds): sub-millisecond segment hits up to
/// multi-second blocking playlist reloads.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

struct Recorder {
    handle: PrometheusHandle,
    started: Instant,
}

/// The process-wide recorder (the `metrics` facade has one global recorder).
fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        // Gauges are set at scrape time: one that was not set for a minute belongs to a stream
        // or rendition that is gone, and is dropped rather than shown with a stale value.
        let builder = PrometheusBuilder::new()
            .idle_timeout(
                metrics_util::MetricKindMask::GAUGE,
                Some(Duration::from_secs(60)),
            )
            .set_buckets_for_metric(
                Matcher::Full("onair_http_request_duration_seconds".into()),
                &LATENCY_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let rec = builder.build_recorder();
        let handle = rec.handle();
        // Fails only if another recorder was installed first (an embedding program's); then
        // our scrape shows what that one does not collect, which is still correct text.
        let _ = metrics::set_global_recorder(rec);
        Recorder {
            handle,
            started: Instant::now(),
        }
    })
}

/// How often histogram samples are folded into their buckets. The exporter keeps every raw
/// sample until then (or until a scrape): without this upkeep a server that nobody scrapes grew
/// by ~18 bytes per HTTP request (24 MB after 1.35 million requests; the soak's heap grew 4.6
/// MiB/hour, found with heaptrack).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Installs the recorder (call at start, so uptime counts from then) and runs its upkeep
/// until `cancel`.
pub fn init(tracker: &TaskTracker, cancel: CancellationToken) {
    let rec = recorder();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => rec.handle.run_upkeep(),
                _ = cancel.cancelled() => return,
            }
        }
    });
}

/// Records one HTTP request.
pub fn http_request(route: &'static str, status: u16, took: Duration) {
    /// The handles of the (route, status) pairs this thread has recorded. Looking a labelled
    /// metric up in the registry builds its key (label strings) and takes a shard lock: per
    /// request that was a visible share of serving a playlist. Routes and statuses are few,
    /// and a handle is a shared reference to the one registered metric.
    type Handles = HashMap<(&'static str, u16), (metrics::Counter, metrics::Histogram)>;
    thread_local! {
        static HANDLES: RefCell<Handles> = RefCell::new(HashMap::new());
    }
    HANDLES.with(|h| {
        let mut h = h.borrow_mut();
        let (count, latency) = h.entry((route, status)).or_insert_with(|| {
            // Installed first, so that no thread keeps the handles of "no recorder yet".
            recorder();
            let status = status.to_string();
            (
                counter!("onair_http_requests_total", "route" => route, "status" => status.clone()),
                histogram!("onair_http_request_duration_seconds", "route" => route, "status" => status),
            )
        });
        count.increment(1);
        latency.record(took.as_secs_f64());
    });
}

/// What a scrape reads.
pub struct Sources {
    pub bus: Arc<Bus>,
    pub store: Arc<HlsStore>,
    pub announce: Arc<AnnounceStats>,
    pub chat: Arc<crate::chat::Chat>,
    pub transcoder: Option<Arc<crate::transcode::Transcoder>>,
    /// `None` for a single node.
    pub cluster: Option<crate::cluster::ClusterStatus>,
}

/// Renders every metric.
pub fn render(src: &Sources) -> String {
    let rec = recorder();
    gauge!("onair_uptime_seconds").set(rec.started.elapsed().as_secs_f64());
    if let Some(rss) = resident_bytes() {
        gauge!("onair_process_resident_memory_bytes").set(rss as f64);
    }
    gauge!("onair_hls_bytes_held").set(src.store.bytes_held() as f64);
    for ch in src.bus.all() {
        let name = ch.name.to_string();
        let live = ch.publisher().is_some();
        gauge!("onair_channel_live", "channel" => name.clone()).set(if live { 1.0 } else { 0.0 });
        let stats = &ch.stats;
        use std::sync::atomic::Ordering::Relaxed;
        counter!("onair_ingest_bytes_total", "channel" => name.clone())
            .absolute(stats.bytes_in.load(Relaxed));
        counter!("onair_ingest_frames_total", "channel" => name.clone(), "track" => "video")
            .absolute(stats.video_frames.load(Relaxed));
        counter!("onair_ingest_frames_total", "channel" => name.clone(), "track" => "audio")
            .absolute(stats.audio_frames.load(Relaxed));
        for r in src.store.renditions(&name) {
            let labels = [("channel", name.clone()), ("rendition", r.name.clone())];
            counter!("onair_hls_segments_total", &labels).absolute(r.segments);
            gauge!("onair_rendition_bandwidth_bps", &labels).set(r.average_bandwidth as f64);
        }
        if let Some(t) = &src.transcoder {
            for (rendition, lag, shed) in t.lags(&name) {
                let labels = [("channel", name.clone()), ("rendition", rendition)];
                gauge!("onair_transcode_lag_seconds", &labels).set(lag.as_secs_f64());
                gauge!("onair_transcode_shed", &labels).set(if shed { 1.0 } else { 0.0 });
            }
        }
    }
    for c in src.chat.stats() {
        let name = c.channel;
        gauge!("onair_viewers", "channel" => name.clone()).set(c.viewers as f64);
        gauge!("onair_chat_subscribers", "channel" => name.clone()).set(c.subscribers as f64);
        counter!("onair_chat_messages_total", "channel" => name.clone()).absolute(c.messages);
        counter!("onair_chat_slow_disconnects_total", "channel" => name).absolute(c.lagged);
    }
    if let Some(c) = &src.cluster {
        gauge!("onair_cluster_redis_up", "node" => c.node.clone()).set(if c.redis_up {
            1.0
        } else {
            0.0
        });
        counter!("onair_cluster_upstream_requests_total").absolute(c.upstream_requests);
        counter!("onair_cluster_upstream_shared_total").absolute(c.upstream_waiters);
    }
    for t in &src.announce.targets {
        use std::sync::atomic::Ordering::Relaxed;
        let target = t.name.to_string();
        counter!("onair_announce_attempts_total", "target" => target.clone())
            .absolute(t.attempts.load(Relaxed));
        counter!("onair_announce_successes_total", "target" => target.clone())
            .absolute(t.successes.load(Relaxed));
        counter!("onair_announce_failures_total", "target" => target.clone())
            .absolute(t.failures.load(Relaxed));
        counter!("onair_announce_dropped_total", "target" => target)
            .absolute(t.dropped.load(Relaxed));
    }
    rec.handle.render()
}

/// Resident set size from /proc (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

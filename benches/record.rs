//! Recording cost: CPU the recorder spends per stream per media-second (segmenting into fMP4,
//! writing and fsyncing each segment and its log line, listing it in SQLite), measured as the
//! process's CPU time (getrusage) of publishing a real H.264/AAC stream on the bus with the
//! recorder subscribed, minus the same publishing without it. The stream comes from an FLV
//! file (scripts/bench-record makes a 720p one and compares with the ffmpeg CLI remuxing the
//! same file to fMP4 HLS segments).
//! Run: cargo bench --bench record -- FILE.flv [SPEED]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use onair::bus::{Bus, ChannelName, Protocol};
use onair::config::Config;
use onair::db::{recordings, Db};
use onair::proto::aac::AacConfig;
use onair::proto::avc::AvcConfig;
use onair::proto::flv::{self, AudioTag, VideoTag};
use onair::proto::media::{MediaPacket, StreamInfo, Track, VideoConfig};
use onair::record::Recorder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        // Flags are cargo's (`--bench`, or the test harness's `--test-threads=N` when
        // `cargo test --all-targets` runs this once as a smoke test), not ours.
        .filter(|a| !a.starts_with("--"))
        .collect();
    let path = args.first().cloned().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/testsrc-320x180.flv").to_string()
    });
    let speed: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20.0);
    let file = Bytes::from(std::fs::read(&path).expect("input FLV"));
    let mut info = StreamInfo::default();
    let mut packets = Vec::new();
    for tag in flv::file_tags(&file) {
        let t = tag.timestamp_ms as i64 * 90;
        match tag.kind {
            9 => match flv::parse_video(&tag.body, None).map(|t| t.tag) {
                Ok(VideoTag::SequenceHeader { record, .. }) => {
                    info.video = Some(Arc::new(VideoConfig::Avc(
                        AvcConfig::parse(record).expect("avc"),
                    )))
                }
                Ok(VideoTag::Frame {
                    keyframe,
                    data,
                    composition_ms,
                    ..
                }) => packets.push(MediaPacket {
                    track: Track::Video,
                    dts: t,
                    pts: t + composition_ms as i64 * 90,
                    keyframe,
                    data,
                }),
                _ => {}
            },
            8 => match flv::parse_audio(&tag.body, None).map(|t| t.tag) {
                Ok(AudioTag::SequenceHeader { config, .. }) => {
                    info.audio = Some(Arc::new(AacConfig::parse(config).expect("aac")))
                }
                Ok(AudioTag::Frame { data, .. }) => packets.push(MediaPacket {
                    track: Track::Audio,
                    dts: t,
                    pts: t,
                    keyframe: false,
                    data,
                }),
                _ => {}
            },
            _ => {}
        }
    }
    let media_seconds = packets.last().map_or(0, |p| p.dts) as f64 / 90_000.0;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = rt.block_on(run(&info, &packets, speed, false));
    let rec = rt.block_on(run(&info, &packets, speed, true));
    let cost = (rec.0 - base.0).max(0.0);
    println!(
        "{{\"media_seconds\": {media_seconds:.1}, \"baseline_cpu_s\": {:.3}, \"recording_cpu_s\": {:.3}, \
         \"writer_cpu_ms_per_media_s\": {:.3}, \"bytes\": {}, \"segments\": {}}}",
        base.0,
        rec.0,
        cost * 1000.0 / media_seconds.max(1.0),
        rec.1,
        rec.2
    );
}

/// Publishes every packet at `speed` times real time; returns (CPU seconds, bytes recorded,
/// segments).
async fn run(
    info: &StreamInfo,
    packets: &[MediaPacket],
    speed: f64,
    record: bool,
) -> (f64, i64, usize) {
    let dir = std::env::temp_dir().join(format!("onair-bench-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config::default();
    cfg.storage.data_dir = dir.clone();
    cfg.record.enabled = record;
    cfg.record.queue_segments = 1024;
    let db = Db::open(&cfg.storage).await.expect("db");
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let recorder = Recorder::start(&cfg, db.clone(), &tracker, cancel.clone()).await;
    let bus = Bus::new();
    let (channel, _) = bus.ensure(&ChannelName::new("bench"));
    recorder.start_channel(channel.clone(), cancel.clone());
    // Something always reads the bus, as the HLS segmenter does.
    let mut rx = channel.subscribe();
    tokio::spawn(async move { while rx.recv().await.is_ok() {} });
    let cpu0 = cpu_seconds();
    let publication = channel.begin_publish("127.0.0.1:1".parse().expect("addr"), Protocol::Rtmp);
    publication.set_info(info.clone());
    let start = Instant::now();
    for p in packets {
        let due = Duration::from_secs_f64(p.dts as f64 / 90_000.0 / speed);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        publication.send_packet(p.clone());
    }
    drop(publication);
    let mut out = (0, 0);
    if record {
        // Until the recording is ended in the index (every segment written and listed).
        loop {
            let all = db.call(|c| recordings::all(c)).await.expect("list");
            if let Some(r) = all.first().filter(|r| !r.live()) {
                let (c, i) = (r.channel.clone(), r.id.clone());
                let n = db
                    .call(move |conn| recordings::segments(conn, &c, &i, "source"))
                    .await
                    .expect("segments")
                    .len();
                out = (r.bytes, n);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let cpu = cpu_seconds() - cpu0;
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    (cpu, out.0, out.1)
}

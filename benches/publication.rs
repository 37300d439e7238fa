//! Publication delay: time from a keyframe that closes a segment being published on the bus
//! (what ingest does the moment the RTMP message is parsed) to that segment being listed in
//! the served media playlist. Real H.264/AAC from fixtures/testsrc-320x180.flv, looped with a
//! 2 s keyframe interval, through the real bus, segmenter task and store.
//! Run: cargo bench --bench publication

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use onair::bus::{Bus, ChannelName};
use onair::config::HlsConfig;
use onair::hls::{self, HlsStore, StoreConfig};
use onair::proto::aac::AacConfig;
use onair::proto::avc::AvcConfig;
use onair::proto::flv::{self, AudioTag, VideoTag};
use onair::proto::media::{MediaPacket, StreamInfo, Track, VideoConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SEGMENTS: usize = 200;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/testsrc-320x180.flv");
    let file = Bytes::from(std::fs::read(path).expect("fixture"));
    let mut info = StreamInfo::default();
    // (ms, track, keyframe, data) of one 2 s GOP.
    let mut gop = Vec::new();
    for tag in flv::file_tags(&file) {
        match tag.kind {
            9 => match flv::parse_video(&tag.body, None).map(|t| t.tag) {
                Ok(VideoTag::SequenceHeader { record, .. }) => {
                    info.video = Some(Arc::new(VideoConfig::Avc(
                        AvcConfig::parse(record).expect("avc"),
                    )))
                }
                Ok(VideoTag::Frame { keyframe, data, .. }) if tag.timestamp_ms < 2000 => {
                    gop.push((tag.timestamp_ms as i64, Track::Video, keyframe, data))
                }
                _ => {}
            },
            8 => match flv::parse_audio(&tag.body, None).map(|t| t.tag) {
                Ok(AudioTag::SequenceHeader { config, .. }) => {
                    info.audio = Some(Arc::new(AacConfig::parse(config).expect("aac")))
                }
                Ok(AudioTag::Frame { data: d, .. }) if tag.timestamp_ms < 2000 => {
                    gop.push((tag.timestamp_ms as i64, Track::Audio, false, d))
                }
                _ => {}
            },
            _ => {}
        }
    }
    let bus = Bus::new();
    let (channel, _) = bus.ensure(&ChannelName::new("bench"));
    let store = Arc::new(HlsStore::new(StoreConfig {
        window: 6,
        segment_seconds: 2.0,
        container: onair::config::Container::Ts,
        part_seconds: 0.333,
    }));
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    hls::start_channel(
        channel.clone(),
        store.clone(),
        HlsConfig::default(),
        &tracker,
        cancel.clone(),
    );
    let publication = channel.begin_publish(
        "127.0.0.1:1".parse().expect("addr"),
        onair::bus::Protocol::Rtmp,
    );
    publication.set_info(info);

    let mut delays = Vec::new();
    for round in 0..=SEGMENTS {
        let base = round as i64 * 2000;
        for (ms, track, key, data) in &gop {
            let t = (base + ms) * 90;
            let pkt = MediaPacket {
                track: *track,
                dts: t,
                pts: t,
                keyframe: *key,
                data: data.clone(),
            };
            if *key && round > 0 {
                // This keyframe closes the previous segment: time until it is listed.
                let start = Instant::now();
                publication.send_packet(pkt);
                loop {
                    if is_listed(&store, round - 1) {
                        break;
                    }
                    if start.elapsed() > Duration::from_secs(1) {
                        panic!("segment {round} not listed within 1 s");
                    }
                    tokio::task::yield_now().await;
                }
                delays.push(start.elapsed());
            } else {
                publication.send_packet(pkt);
            }
        }
    }
    delays.sort();
    let pct = |p: f64| delays[((delays.len() as f64 - 1.0) * p) as usize];
    println!(
        "publication delay over {} segments: p50 {:?}  p99 {:?}  max {:?}",
        delays.len(),
        pct(0.5),
        pct(0.99),
        delays[delays.len() - 1]
    );
    cancel.cancel();
}

/// Whether the media playlist lists segment `sequence` (`{epoch}-{sequence}.ts`).
fn is_listed(store: &HlsStore, sequence: usize) -> bool {
    store
        .media_playlist("bench", "source")
        .map(|p| String::from_utf8_lossy(&p).contains(&format!("-{sequence}.ts\n")))
        .unwrap_or(false)
}

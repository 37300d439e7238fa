//! `record.renditions = "all"`: the ladder's renditions are recorded next to the source. Their
//! segments are already made (fMP4) by the transcode pool's writers; the HLS store's
//! [`SegmentTap`] hands each one here, on the worker's thread, and it goes to the recording's
//! disk task with the same non-blocking `try_send` as the source (a full queue marks the
//! recording failed; the channel task then gives it up). Needs `hls.container = "fmp4"`: with
//! MPEG-TS the ladder's segments are not fMP4, and only the source is recorded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use chrono::SecondsFormat;
use tokio::sync::mpsc;
use tracing::warn;

use super::disk::DiskJob;
use super::{lock, Recorder};
use crate::config::{Container, RecordRenditions};
use crate::db::recordings::SegmentRow;
use crate::hls::{HlsStore, SegmentTap, TapSegment};

/// Per rendition of a recording: next segment number and the init segment written.
#[derive(Debug, Default)]
pub struct TapState {
    seq: i64,
    init: Option<u32>,
}

/// Where a channel's transcoded segments go while it is recorded.
#[derive(Clone)]
pub struct Sink {
    pub jobs: mpsc::Sender<DiskJob>,
    pub failed: Arc<AtomicBool>,
    /// Kept by the channel task across the sessions of one recording (numbers go on).
    pub state: Arc<Mutex<HashMap<String, TapState>>>,
}

/// Installs the tap when the config asks for every rendition.
pub fn install(rec: &Arc<Recorder>, store: &HlsStore) {
    if !rec.cfg.enabled || rec.cfg.renditions != RecordRenditions::All {
        return;
    }
    if store.container() != Container::Fmp4 {
        warn!("record.renditions = \"all\" needs hls.container = \"fmp4\": only the source rendition is recorded");
        return;
    }
    let weak: Weak<Recorder> = Arc::downgrade(rec);
    let tap: SegmentTap = Arc::new(move |t: &TapSegment<'_>| {
        if let Some(rec) = weak.upgrade() {
            rec.tapped(t);
        }
    });
    store.set_tap(tap);
}

impl Recorder {
    pub(crate) fn set_sink(&self, channel: &str, sink: Option<Sink>) {
        let mut sinks = lock(&self.sinks);
        match sink {
            Some(s) => sinks.insert(channel.to_string(), s),
            None => sinks.remove(channel),
        };
    }

    fn tapped(&self, t: &TapSegment<'_>) {
        let Some(sink) = lock(&self.sinks).get(t.channel).cloned() else {
            return;
        };
        if sink.failed.load(Ordering::Acquire) {
            return;
        }
        let Some((init_id, init)) = t.init.clone().filter(|(id, _)| *id == t.segment.init_id)
        else {
            return;
        };
        let mut jobs = Vec::with_capacity(2);
        {
            let mut state = lock(&sink.state);
            let st = state.entry(t.rendition.to_string()).or_default();
            let file = format!("init-{init_id}.mp4");
            if st.init != Some(init_id) {
                st.init = Some(init_id);
                jobs.push(DiskJob::Init {
                    rendition: t.rendition.to_string(),
                    file: file.clone(),
                    data: init,
                });
            }
            st.seq += 1;
            let seg = t.segment;
            jobs.push(DiskJob::Segment {
                row: SegmentRow {
                    rendition: t.rendition.to_string(),
                    seq: st.seq,
                    file: format!("{:06}.m4s", st.seq),
                    init: file,
                    duration: seg.duration,
                    program_time: t.program_time.to_rfc3339_opts(SecondsFormat::Millis, true),
                    discontinuity: seg.discontinuity && st.seq > 1,
                    bytes: seg.data.len() as i64,
                    codecs: seg.info.codecs(),
                    resolution: seg
                        .info
                        .video
                        .as_ref()
                        .map(|v| format!("{}x{}", v.width(), v.height()))
                        .unwrap_or_default(),
                },
                data: seg.data.clone(),
            });
        }
        for job in jobs {
            match sink.jobs.try_send(job) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The channel task sees the flag at its next segment and gives it up.
                    if !sink.failed.swap(true, Ordering::AcqRel) {
                        warn!(channel = %t.channel, rendition = %t.rendition, "recording dropped: the disk is not keeping up (the live stream goes on)");
                        metrics::counter!("onair_record_dropped_total", "reason" => "queue_full")
                            .increment(1);
                    }
                    return;
                }
                // The disk task failed (and said why).
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

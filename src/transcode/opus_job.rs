//! The pool job around [`OpusToAac`], shared by every ingest that takes Opus (WHIP's browser
//! audio, Enhanced RTMP's `Opus` FourCC): messages in ([`OpusMsg`]: the stream's `OpusHead`,
//! packets with their 90 kHz start, the end), AAC frames out to an [`AacOutput`] that the
//! ingest provides (WHIP's interleaving feed, RTMP's sink). It runs as a light job, so that
//! audio keeps up ahead of the ladder's video batches on a busy pool, and its mailbox is
//! bounded by [`send`]: a job more than [`MAX_PENDING`] packets behind sheds them (the
//! converter fills the gap with silence, so the timeline holds).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::warn;

use super::convert::OpusToAac;
use super::pool::{Handler, Job};
use crate::proto::aac::AacConfig;
use crate::proto::media::MediaPacket;
use crate::proto::opus::OpusHead;

/// Packets a job may have waiting (2 s of 20 ms packets).
pub const MAX_PENDING: usize = 100;

/// Where a job's AAC goes. Called on a pool thread, one call at a time.
pub trait AacOutput: Send + 'static {
    /// The converter opened; this is its output configuration.
    fn opened(&self, config: &AacConfig);
    /// One AAC frame on the input's timeline (90 kHz).
    fn frame(&self, pkt: MediaPacket);
    /// The converter could not open: no AAC will come.
    fn failed(&self);
    /// The end of the input: the converter's tail went out; nothing more comes.
    fn finished(&self);
}

pub enum OpusMsg {
    /// The stream's identification header (Enhanced RTMP's SequenceStart); without one, stereo
    /// without pre-skip.
    Head(OpusHead),
    /// One Opus packet and the 90 kHz time of its first sample.
    Packet(Bytes, i64),
    Finish,
}

/// Opus to AAC for one stream.
pub struct OpusJob<O: AacOutput> {
    kbps: u32,
    channel: String,
    head: OpusHead,
    conv: Option<OpusToAac>,
    failed: bool,
    /// Dropped at the end: the output may hold the publication.
    out: Option<O>,
}

impl<O: AacOutput> OpusJob<O> {
    /// A job converting `channel`'s Opus to AAC at `kbps` into `out`.
    pub fn new(kbps: u32, channel: &str, out: O) -> Self {
        Self {
            kbps,
            channel: channel.to_string(),
            head: OpusHead::stereo(),
            conv: None,
            failed: false,
            out: Some(out),
        }
    }
}

impl<O: AacOutput> Handler for OpusJob<O> {
    type Msg = OpusMsg;

    fn handle(&mut self, msg: OpusMsg) {
        let Some(out) = self.out.as_ref() else {
            return;
        };
        match msg {
            OpusMsg::Head(head) => {
                if head != self.head {
                    // A new stream configuration: the old converter's tail first.
                    if let Some(mut c) = self.conv.take() {
                        c.finish().into_iter().for_each(|p| out.frame(p));
                    }
                    self.head = head;
                    self.failed = false;
                }
            }
            OpusMsg::Packet(data, pts) => {
                if self.conv.is_none() && !self.failed {
                    match OpusToAac::with_head(self.kbps, &self.head) {
                        Ok(c) => {
                            out.opened(c.config());
                            self.conv = Some(c);
                        }
                        Err(e) => {
                            self.failed = true;
                            out.failed();
                            warn!(channel = %self.channel, error = %e, "Opus audio cannot be converted to AAC; the stream goes on without audio");
                        }
                    }
                }
                if let Some(c) = self.conv.as_mut() {
                    c.push(&data, pts).into_iter().for_each(|p| out.frame(p));
                }
            }
            OpusMsg::Finish => {
                if let Some(c) = self.conv.as_mut() {
                    c.finish().into_iter().for_each(|p| out.frame(p));
                }
                out.finished();
                self.out = None;
            }
        }
    }
}

/// Sends `msg` to a job, shedding its waiting packets first (logged) when it is
/// [`MAX_PENDING`] behind.
pub fn send<O: AacOutput>(job: &Arc<Job<OpusJob<O>>>, msg: OpusMsg, channel: &str) {
    if matches!(msg, OpusMsg::Packet(..)) && job.pending() >= MAX_PENDING {
        let dropped = job.discard(|m| !matches!(m, OpusMsg::Packet(..)));
        warn!(channel = %channel, dropped, "Opus conversion fell behind; packets dropped");
    }
    job.send(msg, Instant::now());
}

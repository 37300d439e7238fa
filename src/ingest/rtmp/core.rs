//! The IO-free RTMP protocol core: bytes from a publisher in, [`CoreEvent`]s and bytes to send
//! out. The handshake and `ServerSession` come from `rml_rtmp`; the chunk stream is read first
//! by our own [`ChunkReader`] (`crate::proto::rtmp`), which enforces the limits and screens
//! messages that would make `rml_rtmp` panic. `super::RtmpConnection` drives it over a socket,
//! and `crate::fuzzing` drives it with arbitrary bytes, exactly as the connection does.
//!
//! Enhanced RTMP: the client's `connect` command object is read here before the session sees it
//! (`fourCcList`, `videoFourCcInfoMap`, `capsEx`: [`ClientCaps`]), and when the client speaks
//! E-RTMP, the `_result` that `rml_rtmp` writes on accepting it is amended with the server's
//! own list ([`crate::proto::ertmp::connect`] says why and how).

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};

use tracing::debug;

use crate::config::RtmpConfig;
use crate::ingest::IngestError;
pub use crate::proto::ertmp::connect::ClientCaps;
use crate::proto::ertmp::connect::{amend_connect_result, server_caps};
use crate::proto::rtmp::{
    frame_message, msg_type, session_preamble, ChunkLimits, ChunkReader, RtmpMessage,
};

/// What the protocol core reports to the connection that drives it.
#[derive(Debug)]
pub enum CoreEvent {
    /// `connect`: answer with [`IngestCore::accept`] or [`IngestCore::reject`]. `caps` is what
    /// the client declared of Enhanced RTMP (empty for a legacy client).
    Connect {
        request_id: u32,
        app: String,
        caps: ClientCaps,
    },
    /// `publish` with a stream key: answer with accept or reject.
    Publish {
        request_id: u32,
        key: String,
    },
    PublishFinished,
    /// `play`: onair only serves HLS, so this is rejected.
    Play {
        request_id: u32,
    },
    Metadata(Box<StreamMetadata>),
    Video {
        data: Bytes,
        timestamp: u32,
    },
    Audio {
        data: Bytes,
        timestamp: u32,
    },
}

/// The IO-free protocol core of one RTMP connection: handshake, then the chunk stream read by
/// [`ChunkReader`] within limits and re-framed for `rml_rtmp`'s `ServerSession`. Bytes in,
/// events and bytes to send out; the fuzz target drives it exactly as the connection does.
pub struct IngestCore {
    handshake: Option<Handshake>,
    reader: ChunkReader,
    /// The full limits, in force once a publish is accepted ([`IngestCore::allow_media`]).
    limits: ChunkLimits,
    session: Option<ServerSession>,
    out: Vec<u8>,
    framed: Vec<u8>,
    /// Complete messages not yet given to the session: processing stops after a request
    /// (connect, publish, play) so that it is answered before the next message is read, as a
    /// client that sends its commands back to back expects.
    pending: std::collections::VecDeque<RtmpMessage>,
    /// The client's Enhanced RTMP capabilities, from its `connect` message.
    caps: Option<ClientCaps>,
    /// The request id of the `connect` whose `_result` states the server's capabilities.
    enhanced_connect: Option<u32>,
    /// The chunk size `rml_rtmp` writes with (its `_result` is re-chunked with it).
    out_chunk_size: usize,
}

impl IngestCore {
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            handshake: Some(Handshake::new(PeerType::Server)),
            reader: ChunkReader::new(limits.before_publish()),
            limits,
            session: None,
            out: Vec::new(),
            framed: Vec::new(),
            pending: std::collections::VecDeque::new(),
            caps: None,
            enhanced_connect: None,
            out_chunk_size: ServerSessionConfig::new().chunk_size as usize,
        }
    }

    /// Messages waiting for [`IngestCore::feed`] to be called again (with no new bytes).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Limits from the configuration.
    pub fn limits(cfg: &RtmpConfig) -> ChunkLimits {
        ChunkLimits {
            max_chunk_size: cfg.max_chunk_size,
            max_message_bytes: cfg.max_message_bytes,
            // Room for one message being assembled on each of two tracks, plus commands.
            max_buffered_bytes: cfg.max_message_bytes as usize * 2 + (64 << 10),
            max_chunk_streams: 64,
            message_limit_name: "rtmp.max_message_bytes",
        }
    }

    /// A publish was accepted: media may now use the full message and buffer limits.
    pub fn allow_media(&mut self) {
        self.reader.set_limits(self.limits);
    }

    pub fn handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Bytes held for the peer's unfinished messages.
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Bytes to send to the peer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Takes bytes from the peer. Events stop after a request; answer it, then call `feed`
    /// again with no bytes while [`IngestCore::has_pending`]. After an error the connection
    /// must be closed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<CoreEvent>, IngestError> {
        let mut events = Vec::new();
        let mut data = data;
        let remaining;
        if let Some(hs) = self.handshake.as_mut() {
            let result = hs.process_bytes(data).map_err(|e| IngestError::Handshake {
                reason: format!("{e:?}"),
            })?;
            match result {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.out.extend_from_slice(&response_bytes);
                    return Ok(events);
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.out.extend_from_slice(&response_bytes);
                    self.handshake = None;
                    let (mut session, results) = ServerSession::new(ServerSessionConfig::new())?;
                    self.results(results, &mut events);
                    // Every message reaches the session as one chunk: tell it so first.
                    let results = session.handle_input(&session_preamble())?;
                    self.session = Some(session);
                    self.results(results, &mut events);
                    remaining = remaining_bytes;
                    data = &remaining;
                }
            }
        }
        if !data.is_empty() {
            self.pending.extend(self.reader.feed(data)?);
        }
        while let Some(m) = self.pending.pop_front() {
            let Some(session) = self.session.as_mut() else {
                break;
            };
            if self.caps.is_none() && m.type_id == msg_type::AMF0_COMMAND {
                self.caps = ClientCaps::from_connect_message(&m.payload);
            }
            self.framed.clear();
            frame_message(&m, &mut self.framed);
            let results = session.handle_input(&self.framed)?;
            let before = events.len();
            self.results(results, &mut events);
            let request = events[before..].iter().any(|e| {
                matches!(
                    e,
                    CoreEvent::Connect { .. } | CoreEvent::Publish { .. } | CoreEvent::Play { .. }
                )
            });
            if request {
                break;
            }
        }
        Ok(events)
    }

    pub fn accept(&mut self, request_id: u32) -> Result<(), IngestError> {
        if let Some(s) = self.session.as_mut() {
            let mut results = s.accept_request(request_id)?;
            if self.enhanced_connect == Some(request_id) {
                self.enhanced_connect = None;
                for r in results.iter_mut() {
                    if let ServerSessionResult::OutboundResponse(p) = r {
                        match amend_connect_result(&p.bytes, self.out_chunk_size, server_caps()) {
                            Ok(amended) => p.bytes = amended,
                            Err(e) => {
                                debug!(error = %e, "connect result sent without the Enhanced RTMP capabilities")
                            }
                        }
                    }
                }
            }
            self.results(results, &mut Vec::new());
        }
        Ok(())
    }

    pub fn reject(
        &mut self,
        request_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), IngestError> {
        if let Some(s) = self.session.as_mut() {
            let results = s.reject_request(request_id, code, description)?;
            self.results(results, &mut Vec::new());
        }
        Ok(())
    }

    fn results(&mut self, results: Vec<ServerSessionResult>, events: &mut Vec<CoreEvent>) {
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => self.out.extend_from_slice(&p.bytes),
                ServerSessionResult::RaisedEvent(ev) => {
                    let ev = match ev {
                        ServerSessionEvent::ConnectionRequested {
                            request_id,
                            app_name,
                        } => {
                            let caps = self.caps.clone().unwrap_or_default();
                            if caps.enhanced() {
                                self.enhanced_connect = Some(request_id);
                            }
                            CoreEvent::Connect {
                                request_id,
                                app: app_name,
                                caps,
                            }
                        }
                        ServerSessionEvent::PublishStreamRequested {
                            request_id,
                            stream_key,
                            ..
                        } => CoreEvent::Publish {
                            request_id,
                            key: stream_key,
                        },
                        ServerSessionEvent::PublishStreamFinished { .. } => {
                            CoreEvent::PublishFinished
                        }
                        ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                            CoreEvent::Play { request_id }
                        }
                        ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                            CoreEvent::Metadata(Box::new(metadata))
                        }
                        ServerSessionEvent::VideoDataReceived {
                            data, timestamp, ..
                        } => CoreEvent::Video {
                            data,
                            timestamp: timestamp.value,
                        },
                        ServerSessionEvent::AudioDataReceived {
                            data, timestamp, ..
                        } => CoreEvent::Audio {
                            data,
                            timestamp: timestamp.value,
                        },
                        _ => continue,
                    };
                    events.push(ev);
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rtmp::ChunkError;

    fn amf_str(s: &str) -> Vec<u8> {
        let mut v = vec![2];
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn amf_num(n: f64) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }

    fn amf_app_object() -> Vec<u8> {
        let mut v = vec![3, 0, 3];
        v.extend_from_slice(b"app");
        v.extend(amf_str("live"));
        v.extend_from_slice(&[0, 0, 9]);
        v
    }

    /// An RTMP message: type id, message stream id, payload.
    type Msg = (u8, u32, Vec<u8>);

    /// A real client handshake (from the ffmpeg capture), then `messages` as single chunks.
    fn session(messages: &[Msg]) -> Vec<u8> {
        let cap = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/rtmp-publish-ffmpeg.bin"
        ))
        .expect("capture");
        let mut out = cap[..3073].to_vec();
        let chunk_size = (1, 0, (1u32 << 20).to_be_bytes().to_vec());
        for (type_id, stream_id, payload) in std::iter::once(&chunk_size).chain(messages) {
            frame_message(
                &RtmpMessage {
                    timestamp: 0,
                    type_id: *type_id,
                    stream_id: *stream_id,
                    payload: Bytes::from(payload.clone()),
                },
                &mut out,
            );
        }
        out
    }

    /// Feeds a session, accepting every request; returns the error that closed it, if any.
    fn run(bytes: &[u8]) -> Option<IngestError> {
        let mut core = IngestCore::new(IngestCore::limits(&RtmpConfig::default()));
        let mut input = bytes;
        loop {
            match core.feed(input) {
                Ok(events) => {
                    for ev in events {
                        match ev {
                            CoreEvent::Connect { request_id, .. } => {
                                core.accept(request_id).ok()?
                            }
                            CoreEvent::Publish { request_id, .. } => {
                                core.allow_media();
                                core.accept(request_id).ok()?
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => return Some(e),
            }
            if !core.has_pending() {
                return None;
            }
            input = &[];
        }
    }

    fn connect() -> Msg {
        let mut v = amf_str("connect");
        v.extend(amf_num(1.0));
        v.extend(amf_app_object());
        (20, 0, v)
    }

    #[test]
    fn messages_that_would_panic_rml_rtmp_are_screened() {
        let with = |name: &str, extra: &[Vec<u8>]| {
            let mut v = amf_str(name);
            v.extend(amf_num(2.0));
            v.push(5); // null command object
            for e in extra {
                v.extend_from_slice(e);
            }
            v
        };
        let mut publish = amf_str("publish");
        publish.extend(amf_num(3.0));
        publish.push(5);
        publish.extend(amf_str("key"));
        publish.extend(amf_str("live"));
        let mut create = amf_str("createStream");
        create.extend(amf_num(2.0));
        create.push(5);
        let publishing = |msg: Msg| {
            vec![
                connect(),
                (20, 0, create.clone()),
                (20, 1, publish.clone()),
                msg,
            ]
        };
        // Broken: dropped, the connection goes on.
        let mut set_data_frame = amf_str("@setDataFrame");
        set_data_frame.extend(amf_str("onMetaData"));
        let broken: Vec<(&str, Msg)> = vec![
            (
                "a command of two values",
                (20, 0, {
                    let mut v = amf_str("createStream");
                    v.extend(amf_num(2.0));
                    v
                }),
            ),
            ("@setDataFrame alone", (18, 1, amf_str("@setDataFrame"))),
            // Found by libFuzzer (fuzz/regressions/rtmp_ingest/set-data-frame-without-metadata).
            (
                "@setDataFrame onMetaData without metadata",
                (18, 1, set_data_frame),
            ),
        ];
        for (what, msg) in broken {
            let err = run(&session(&publishing(msg)));
            assert!(err.is_none(), "{what}: {err:?}");
        }
        // Hostile: refused.
        let deep = (18, 1, {
            let mut v = amf_str("onMetaData");
            for _ in 0..5000 {
                v.extend_from_slice(&[3, 0, 1, b'a']);
            }
            v
        });
        let err = run(&session(&publishing(deep)));
        assert!(
            matches!(err, Some(IngestError::Limit(ChunkError::Amf0 { .. }))),
            "{err:?}"
        );
        // Missing publish and play arguments are answered by rml_rtmp itself.
        for msg in [
            with("publish", &[]),
            with("publish", &[amf_str("key")]),
            with("play", &[]),
        ] {
            let err = run(&session(&[connect(), (20, 1, msg)]));
            assert!(err.is_none(), "{err:?}");
        }
        // A complete publish goes through.
        let err = run(&session(&[connect(), (20, 0, create), (20, 1, publish)]));
        assert!(err.is_none(), "{err:?}");
    }
}

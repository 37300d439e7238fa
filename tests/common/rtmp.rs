//! A scripted RTMP publisher for hostile-peer tests: `rml_rtmp`'s `ClientSession` does the
//! handshake, `connect` and `publish` over a std `TcpStream`; media and anything malformed are
//! written as raw chunks, so a test controls every timestamp, chunk and header.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use onair::proto::flv::{file_tags, FileTag};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};

/// The tags of an FLV fixture.
pub fn fixture_tags(name: &str) -> Vec<FileTag> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let file = Bytes::from(std::fs::read(&path).expect("fixture"));
    file_tags(&file)
        .filter(|t| t.kind == 8 || t.kind == 9)
        .collect()
}

pub struct RtmpClient {
    pub sock: TcpStream,
    session: ClientSession,
    /// Chunk size the server was told (raw chunks are cut to it).
    pub chunk_size: usize,
    /// Stream id the server gave `createStream` (raw media goes there).
    pub stream_id: u32,
}

impl RtmpClient {
    /// Connects and runs the handshake and `connect` to app `live`.
    pub fn connect(addr: &str) -> Result<RtmpClient, String> {
        let mut sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let _ = sock.set_nodelay(true);
        let mut hs = Handshake::new(PeerType::Client);
        let p0p1 = hs
            .generate_outbound_p0_and_p1()
            .map_err(|e| format!("{e:?}"))?;
        sock.write_all(&p0p1).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 8192];
        let remaining = loop {
            let n = sock.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during the handshake".into());
            }
            match hs.process_bytes(&buf[..n]).map_err(|e| format!("{e:?}"))? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    sock.write_all(&response_bytes).map_err(|e| e.to_string())?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    sock.write_all(&response_bytes).map_err(|e| e.to_string())?;
                    break remaining_bytes;
                }
            }
        };
        let (session, _) =
            ClientSession::new(ClientSessionConfig::new()).map_err(|e| format!("{e:?}"))?;
        let mut c = RtmpClient {
            sock,
            session,
            chunk_size: 128,
            stream_id: 1,
        };
        if !remaining.is_empty() {
            c.input(&remaining)?;
        }
        let r = c
            .session
            .request_connection("live".into())
            .map_err(|e| format!("{e:?}"))?;
        c.send_results(vec![r])?;
        c.wait_event(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted))?;
        Ok(c)
    }

    /// Publishes with `key`; Err if the server refuses or closes.
    pub fn publish(&mut self, key: &str) -> Result<(), String> {
        let r = self
            .session
            .request_publishing(key.into(), PublishRequestType::Live)
            .map_err(|e| format!("{e:?}"))?;
        self.send_results(vec![r])?;
        self.wait_event(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted))?;
        // Larger chunks, as every encoder does.
        self.set_chunk_size(4096)?;
        Ok(())
    }

    /// Connects, publishes on `key` and sends the 320x180 test fixture (whole, no pacing);
    /// the connection stays open.
    pub fn publishing_fixture(addr: &str, key: &str) -> RtmpClient {
        let mut c = RtmpClient::publisher(addr, key);
        c.send_tags(&fixture_tags("testsrc-320x180.flv"), 0)
            .expect("send");
        c
    }

    /// Connects and publishes on `key`.
    pub fn publisher(addr: &str, key: &str) -> RtmpClient {
        let mut c = RtmpClient::connect(addr).expect("rtmp connect");
        c.publish(key).expect("rtmp publish");
        c
    }

    /// Ends the publish as ffmpeg does (`FCUnpublish`, `deleteStream`), keeping the socket.
    pub fn stop_publishing(&mut self) -> Result<(), String> {
        let results = self
            .session
            .stop_publishing()
            .map_err(|e| format!("{e:?}"))?;
        self.send_results(results).map(|_| ())
    }

    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), String> {
        self.raw_message(2, 1, 0, 0, &size.to_be_bytes())?;
        self.chunk_size = size.clamp(1, 1 << 20) as usize;
        Ok(())
    }

    fn input(&mut self, data: &[u8]) -> Result<Vec<ClientSessionEvent>, String> {
        let results = self
            .session
            .handle_input(data)
            .map_err(|e| format!("{e:?}"))?;
        self.send_results(results)
    }

    fn send_results(
        &mut self,
        results: Vec<ClientSessionResult>,
    ) -> Result<Vec<ClientSessionEvent>, String> {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => {
                    self.sock.write_all(&p.bytes).map_err(|e| e.to_string())?
                }
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }

    fn wait_event(&mut self, want: impl Fn(&ClientSessionEvent) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 8192];
        while Instant::now() < deadline {
            let n = match self.sock.read(&mut buf) {
                Ok(0) => return Err("server closed the connection".into()),
                Ok(n) => n,
                Err(e) => return Err(e.to_string()),
            };
            for e in self.input(&buf[..n])? {
                if let ClientSessionEvent::ConnectionRequestRejected { description } = &e {
                    return Err(format!("rejected: {description}"));
                }
                if want(&e) {
                    return Ok(());
                }
            }
        }
        Err("no answer from the server".into())
    }

    /// Writes one message as raw chunks on chunk stream `csid` (type 0, then type 3).
    pub fn raw_message(
        &mut self,
        csid: u8,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), String> {
        let bytes = chunks(
            csid,
            type_id,
            stream_id,
            timestamp,
            payload,
            self.chunk_size,
        );
        self.sock
            .write_all(&bytes.concat())
            .map_err(|e| e.to_string())
    }

    /// Sends an FLV tag's body as audio (csid 4) or video (csid 6) at `timestamp`.
    pub fn send_tag(&mut self, tag: &FileTag, timestamp: u32) -> Result<(), String> {
        let csid = if tag.kind == 8 { 4 } else { 6 };
        let sid = self.stream_id;
        self.raw_message(csid, tag.kind, sid, timestamp, &tag.body)
    }

    /// Sends tags with their own timestamps plus `offset` (wrapping), as fast as the socket
    /// takes them.
    pub fn send_tags(&mut self, tags: &[FileTag], offset: u32) -> Result<(), String> {
        for t in tags {
            self.send_tag(t, t.timestamp_ms.wrapping_add(offset))?;
        }
        Ok(())
    }

    /// Whether the server closed the connection (reads until EOF or an error, within `within`).
    pub fn closed_by_server(&mut self, within: Duration) -> bool {
        super::closed_by_peer(&mut self.sock, within)
    }
}

/// One message as chunks: a type-0 header (extended timestamp when needed), then type-3
/// continuations, each with the extended timestamp again when the first had one.
pub fn chunks(
    csid: u8,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<Vec<u8>> {
    assert!((2..64).contains(&csid));
    let ext = timestamp >= 0xff_ffff;
    let mut first = vec![csid];
    let ts = if ext { 0xff_ffff } else { timestamp };
    first.extend_from_slice(&ts.to_be_bytes()[1..]);
    first.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    first.push(type_id);
    first.extend_from_slice(&stream_id.to_le_bytes());
    if ext {
        first.extend_from_slice(&timestamp.to_be_bytes());
    }
    let mut out = Vec::new();
    let mut pieces = payload.chunks(chunk_size.max(1));
    first.extend_from_slice(pieces.next().unwrap_or(&[]));
    out.push(first);
    for p in pieces {
        let mut c = vec![0xc0 | csid];
        if ext {
            c.extend_from_slice(&timestamp.to_be_bytes());
        }
        c.extend_from_slice(p);
        out.push(c);
    }
    out
}

/// A channel kept live by a scripted publisher looping a fixture in real time, on a thread.
pub struct LoopingPublisher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoopingPublisher {
    pub fn start(addr: &str, key: &str) -> LoopingPublisher {
        let mut c = RtmpClient::publisher(addr, key);
        let tags = fixture_tags("testsrc-320x180.flv");
        let span = tags.last().map(|t| t.timestamp_ms).unwrap_or(3000) + 33;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut offset = 0u32;
            'outer: while !s.load(Ordering::Relaxed) {
                for (i, t) in tags.iter().enumerate() {
                    // Sequence headers only once.
                    if offset > 0 && i < 2 {
                        continue;
                    }
                    let at = Duration::from_millis((offset + t.timestamp_ms) as u64);
                    while start.elapsed() < at {
                        if s.load(Ordering::Relaxed) {
                            break 'outer;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if c.send_tag(t, offset + t.timestamp_ms).is_err() {
                        break 'outer;
                    }
                }
                offset += span;
            }
        });
        LoopingPublisher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LoopingPublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

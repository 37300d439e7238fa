//! A WHIP client built on str0m (no browser), shared by the tests (tests/common/whip.rs) and
//! the benchmark's client (examples/whip_client.rs). It posts an offer shaped as OBS 30+ sends
//! it (libdatachannel: one Opus and one video payload type, no fmtp, no candidates in the
//! offer, sendonly), connects as a full ICE agent to the server's ICE-lite answer and sends
//! the H.264 (or VP8) + Opus frames of a media file, paced in real time with sender reports,
//! as OBS does. It can also vanish (stop without DELETE or DTLS close), like a laptop whose
//! lid closes.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// A response header by name, any case.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One HTTP request: (status, headers, body); connection errors panic.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(10));
    for (n, v) in headers {
        req = req.set(n, v);
    }
    let r = if body.is_empty() {
        req.call()
    } else {
        req.send_string(body)
    };
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = r.status();
    let headers = r
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = r.header(&n).unwrap_or_default().to_string();
            (n, v)
        })
        .collect();
    (status, headers, r.into_string().unwrap_or_default())
}

/// One coded frame of the file: track, presentation time (seconds), data.
#[derive(Clone)]
struct Frame {
    audio: bool,
    at: f64,
    data: Vec<u8>,
}

/// The file's frames in time order, its length, and its video codec (H.264 or VP8).
fn read_frames(path: &Path) -> (Vec<Frame>, f64, Codec) {
    ffmpeg::init().expect("ffmpeg");
    let mut ictx = ffmpeg::format::input(path).expect("open media");
    let mut streams = Vec::new();
    let mut codec = Codec::H264;
    for s in ictx.streams() {
        let tb = s.time_base();
        let kind = s.parameters().medium();
        if kind == ffmpeg::media::Type::Video && s.parameters().id() == ffmpeg::codec::Id::VP8 {
            codec = Codec::Vp8;
        }
        streams.push((kind == ffmpeg::media::Type::Audio, f64::from(tb)));
    }
    let mut frames = Vec::new();
    for (s, pkt) in ictx.packets() {
        let (audio, tb) = streams[s.index()];
        let Some(pts) = pkt.pts() else { continue };
        let Some(data) = pkt.data() else { continue };
        frames.push(Frame {
            audio,
            at: pts as f64 * tb,
            data: data.to_vec(),
        });
    }
    let first = frames.iter().map(|f| f.at).fold(f64::INFINITY, f64::min);
    for f in &mut frames {
        f.at -= first;
    }
    frames.sort_by(|a, b| a.at.total_cmp(&b.at));
    let end = frames.last().map(|f| f.at).unwrap_or(0.0) + 1.0 / 30.0;
    (frames, end, codec)
}

/// How the client behaves.
#[derive(Clone)]
pub struct WhipOpts {
    pub media: PathBuf,
    /// Seconds to send (the file loops).
    pub seconds: f64,
    /// Send the trickle candidates in a PATCH after the answer.
    pub trickle: bool,
}

/// A publishing client.
pub struct WhipClient {
    /// The client's UDP socket (its only ICE candidate): where its media comes from.
    pub local: SocketAddr,
    pub location: String,
    pub etag: String,
    pub answer: String,
    base: String,
    /// The credential headers sent with every request (`Authorization`, or a session cookie
    /// with `Origin`).
    auth: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    vanish: Arc<AtomicBool>,
    pub connected: Arc<AtomicBool>,
    pub frames_sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// The offer as OBS's libdatachannel writes it: no fmtp, no RTX, no candidates.
fn obs_shape(sdp: &str) -> String {
    let mut out = String::new();
    for line in sdp.lines() {
        let l = line.trim_end();
        if l.starts_with("a=candidate")
            || l.starts_with("a=fmtp")
            || l.starts_with("a=end-of-candidates")
            || l.contains("rtx/")
            || l.starts_with("a=ssrc-group")
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out
}

impl WhipClient {
    /// Posts an offer for `channel` with `key` and, when accepted, starts sending.
    pub fn publish(
        base: &str,
        channel: &str,
        key: &str,
        opts: WhipOpts,
    ) -> Result<WhipClient, (u16, String)> {
        let auth = [("Authorization".to_string(), format!("Bearer {key}"))];
        WhipClient::publish_as(base, channel, &auth, opts)
    }

    /// [`WhipClient::publish`] with other credential headers (a signed-in owner's cookie).
    pub fn publish_as(
        base: &str,
        channel: &str,
        auth: &[(String, String)],
        opts: WhipOpts,
    ) -> Result<WhipClient, (u16, String)> {
        let with_auth = |mut h: Vec<(&'static str, &'static str)>| -> Vec<(String, String)> {
            let mut out: Vec<(String, String)> = h
                .drain(..)
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            out.extend(auth.iter().cloned());
            out
        };
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let local = socket.local_addr().expect("addr");
        let (frames, file_len, video_codec) = read_frames(&opts.media);
        let mut config = RtcConfig::new().clear_codecs();
        // As OBS offers it: one H.264 payload type without fmtp, which means packetization-mode 0
        // and the baseline fallback profile (RFC 6184); FU-A is still what it sends.
        if video_codec == Codec::Vp8 {
            // One payload type, no RTX, as libdatachannel offers it.
            config.codec_config().add_config(
                96.into(),
                None,
                Codec::Vp8,
                str0m::media::Frequency::NINETY_KHZ,
                None,
                Default::default(),
            );
        } else {
            config
                .codec_config()
                .add_h264(96.into(), None, false, 0x42001f);
        }
        let mut rtc = config.enable_opus(true, false).build(Instant::now());
        let cand = Candidate::host(local, "udp").expect("candidate");
        rtc.add_local_candidate(cand.clone());
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        let (status, headers, body) = http(
            "POST",
            &format!("{base}/whip/{channel}"),
            &refs(&with_auth(vec![("Content-Type", "application/sdp")])),
            &obs_shape(&offer.to_sdp_string()),
        );
        if status != 201 {
            return Err((status, body));
        }
        let location = header(&headers, "location").expect("Location").to_string();
        let etag = header(&headers, "etag").expect("ETag").to_string();
        let answer = SdpAnswer::from_sdp_string(&body).expect("answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        if opts.trickle {
            let frag = format!(
                "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na={}\r\n",
                sdp_value(&offer.to_sdp_string(), "a=ice-ufrag:"),
                sdp_value(&offer.to_sdp_string(), "a=ice-pwd:"),
                cand.to_sdp_string()
            );
            let mut h = with_auth(vec![("Content-Type", "application/trickle-ice-sdpfrag")]);
            h.push(("If-Match".to_string(), etag.clone()));
            let (s, _, b) = http("PATCH", &format!("{base}{location}"), &refs(&h), &frag);
            assert_eq!(s, 204, "PATCH: {b}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let vanish = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let frames_sent = Arc::new(AtomicU64::new(0));
        let run = Runner {
            video_codec,
            rtc,
            socket,
            local,
            audio,
            video,
            frames,
            file_len,
            seconds: opts.seconds,
            stop: stop.clone(),
            vanish: vanish.clone(),
            connected: connected.clone(),
            frames_sent: frames_sent.clone(),
        };
        let thread = std::thread::spawn(move || run.run());
        Ok(WhipClient {
            local,
            location,
            etag,
            answer: body,
            base: base.trim_end_matches('/').to_string(),
            auth: auth.to_vec(),
            stop,
            vanish,
            connected,
            frames_sent,
            thread: Some(thread),
        })
    }

    /// Waits until DTLS is up and media flows.
    pub fn wait_connected(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !(self.connected.load(Ordering::Acquire)
            && self.frames_sent.load(Ordering::Relaxed) > 10)
        {
            assert!(
                Instant::now() < deadline,
                "WHIP client not connected after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the broadcast as OBS does: close the peer connection, then DELETE. Returns the
    /// DELETE's status.
    pub fn stop(mut self) -> u16 {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let url = format!("{}{}", self.base, self.location);
        let mut req = ureq::delete(&url).timeout(Duration::from_secs(10));
        for (n, v) in &self.auth {
            req = req.set(n, v);
        }
        match req.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(c, _)) => c,
            Err(e) => panic!("DELETE: {e}"),
        }
    }

    /// Stops sending anything at all (no DELETE, no DTLS close): the peer vanished.
    pub fn vanish(mut self) {
        self.vanish.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Whether the sending thread has ended on its own (the server closed the session).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for WhipClient {
    fn drop(&mut self) {
        self.vanish.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sdp_value(sdp: &str, prefix: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix(prefix))
        .unwrap_or_default()
        .to_string()
}

struct Runner {
    video_codec: Codec,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    audio: Mid,
    video: Mid,
    frames: Vec<Frame>,
    file_len: f64,
    seconds: f64,
    stop: Arc<AtomicBool>,
    vanish: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
    frames_sent: Arc<AtomicU64>,
}

impl Runner {
    fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        let mut start: Option<Instant> = None;
        let mut next = 0usize;
        let mut lap = 0u32;
        loop {
            if self.vanish.load(Ordering::Acquire) {
                return;
            }
            if self.stop.load(Ordering::Acquire) {
                let _ = self.rtc.close();
                self.drain();
                return;
            }
            let timeout = match self.drain() {
                Some(t) => t,
                None => return,
            };
            // Media due now.
            if let Some(t0) = start {
                let now = Instant::now();
                let elapsed = now.duration_since(t0).as_secs_f64();
                if elapsed > self.seconds {
                    // Done sending: keep the session alive until told to stop.
                } else {
                    while let Some(f) = self.frames.get(next) {
                        let at = f.at + lap as f64 * self.file_len;
                        if at > elapsed {
                            break;
                        }
                        let f = f.clone();
                        self.send(&f, t0, at);
                        next += 1;
                        if next == self.frames.len() {
                            next = 0;
                            lap += 1;
                        }
                        if self.drain().is_none() {
                            return;
                        }
                    }
                }
            } else if self.connected.load(Ordering::Acquire) {
                start = Some(Instant::now());
            }
            let wait = timeout
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(5));
            self.socket.set_read_timeout(Some(wait)).expect("timeout");
            let input = match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => match buf[..n].try_into() {
                    Ok(contents) => Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.local,
                            contents,
                        },
                    ),
                    Err(_) => continue,
                },
                Err(_) => Input::Timeout(Instant::now()),
            };
            if self.rtc.handle_input(input).is_err() {
                return;
            }
        }
    }

    /// Drains output; `None` once the session is over.
    fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => {
                    self.connected.store(true, Ordering::Release)
                }
                Ok(Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )))
                | Ok(Output::Event(Event::Closed)) => return None,
                Ok(Output::Event(_)) => {}
                Err(_) => return None,
            }
            if !self.rtc.is_alive() {
                return None;
            }
        }
    }

    fn send(&mut self, f: &Frame, t0: Instant, at: f64) {
        let (mid, rate, codec) = if f.audio {
            (self.audio, 48_000u64, Codec::Opus)
        } else {
            (self.video, 90_000u64, self.video_codec)
        };
        let Some(w) = self.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = w
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return;
        };
        let ticks = (at * rate as f64).round() as u64;
        let freq = if f.audio {
            str0m::media::Frequency::FORTY_EIGHT_KHZ
        } else {
            str0m::media::Frequency::NINETY_KHZ
        };
        let time = MediaTime::new(ticks, freq);
        let wallclock = t0 + Duration::from_secs_f64(at);
        if w.write(pt, wallclock, time, f.data.clone()).is_ok() {
            self.frames_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Borrowed header pairs for [`http`].
fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

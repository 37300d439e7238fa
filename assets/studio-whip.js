// One WHIP publish session (RFC 9725) with standard WebRTC APIs only, so Chromium, Firefox and
// Safari behave alike: an RTCPeerConnection with two send-only transceivers, the offer POSTed
// to /whip/{channel} with the credential in the Authorization header, the answer applied, and
// DELETE on the session URL (the 201's Location) to end it.
//
// Codecs: H.264 (packetization-mode 1) first when the browser has it, since the server passes
// it through untouched; VP8 otherwise (the server converts it). `setCodecPreferences` is used
// only where the browser has it; without it the server picks from the browser's own order.

export class WhipError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const AUX = /^video\/(rtx|red|ulpfec|flexfec-03)$/i;
const fmtp = (c) => c.sdpFmtpLine || '';
const isH264 = (c) => /^video\/h264$/i.test(c.mimeType) && /packetization-mode=1/.test(fmtp(c));
const isVp8 = (c) => /^video\/vp8$/i.test(c.mimeType);
// Constrained Baseline (42e0..) first: what every H.264 decoder takes.
const h264Rank = (c) => (/profile-level-id=42e0/i.test(fmtp(c)) ? 0 : /profile-level-id=4200/i.test(fmtp(c)) ? 1 : 2);

/**
 * The video codecs in the order to offer them. `want` is `auto`, `h264` or `vp8`; a forced
 * codec is the only one offered (with its retransmission and FEC helpers), so the server cannot
 * pick another. Throws when the browser cannot send the forced codec.
 */
export function orderVideoCodecs(codecs, want) {
  const aux = codecs.filter((c) => AUX.test(c.mimeType));
  const h264 = codecs.filter(isH264).sort((a, b) => h264Rank(a) - h264Rank(b));
  const vp8 = codecs.filter(isVp8);
  if (want === 'h264' || want === 'vp8') {
    const only = want === 'h264' ? h264 : vp8;
    if (only.length === 0) throw new WhipError(0, 'This browser cannot send ' + (want === 'h264' ? 'H.264' : 'VP8') + ' video.');
    return [...only, ...aux];
  }
  const rest = codecs.filter((c) => !AUX.test(c.mimeType) && !h264.includes(c) && !vp8.includes(c));
  return [...h264, ...vp8, ...rest, ...aux];
}

function canSetCodecs() {
  return typeof RTCRtpTransceiver !== 'undefined'
    && 'setCodecPreferences' in RTCRtpTransceiver.prototype
    && typeof RTCRtpSender.getCapabilities === 'function';
}

/** Waits until the browser has gathered its ICE candidates (host ones are quick), or `ms`. */
function gathered(pc, ms) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const t = setTimeout(resolve, ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
    });
  });
}

async function reason(r) {
  try {
    const j = await r.json();
    if (j && j.error) return j.error;
  } catch (e) { /* not JSON */ }
  return 'the server answered ' + r.status;
}

export class WhipSession {
  /**
   * endpoint: `/whip/{channel}`; headers(extra): adds the credential; stream: the MediaStream;
   * codec: `auto` | `h264` | `vp8`; kbps: video bitrate; onState(state): the connection's state
   * (`connecting`, `connected`, `disconnected`, `failed`, `closed`), or `ended` when the server
   * closed it on purpose.
   */
  constructor({ endpoint, headers, stream, codec, kbps, onState }) {
    this.endpoint = new URL(endpoint, location.href).href;
    this.headers = headers;
    this.codec = codec;
    this.kbps = kbps;
    this.onState = onState;
    this.location = null;
    this.closed = false;
    this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    const video = stream.getVideoTracks()[0];
    const audio = stream.getAudioTracks()[0];
    this.video = this.pc.addTransceiver(video || 'video', {
      direction: 'sendonly',
      streams: [stream],
      sendEncodings: [{ maxBitrate: kbps * 1000, maxFramerate: 30 }],
    });
    this.audio = this.pc.addTransceiver(audio || 'audio', { direction: 'sendonly', streams: [stream] });
    const report = () => {
      if (this.closed) return;
      // connectionState is newer (Firefox 113); iceConnectionState says nearly the same.
      const s = this.pc.connectionState || this.pc.iceConnectionState;
      this.onState(s === 'checking' || s === 'new' ? 'connecting' : s === 'completed' ? 'connected' : s);
    };
    this.pc.addEventListener('connectionstatechange', report);
    this.pc.addEventListener('iceconnectionstatechange', report);
  }

  /** The negotiated video codec, once connected (e.g. `video/H264`), or null. */
  async videoCodec() {
    try {
      const stats = await this.pc.getStats();
      let codecId = null;
      stats.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') codecId = s.codecId; });
      const c = codecId && stats.get(codecId);
      return c ? c.mimeType : null;
    } catch (e) {
      return null;
    }
  }

  /** Offer, POST, answer. Throws WhipError (status 0 for network or browser errors). */
  async start() {
    if (canSetCodecs()) {
      const caps = RTCRtpSender.getCapabilities('video');
      if (caps) this.video.setCodecPreferences(orderVideoCodecs(caps.codecs, this.codec));
    } else if (this.codec !== 'auto') {
      throw new WhipError(0, 'This browser cannot choose a video codec; use Automatic.');
    }
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await gathered(this.pc, 2000);
    let r;
    try {
      r = await fetch(this.endpoint, {
        method: 'POST',
        headers: this.headers({ 'Content-Type': 'application/sdp' }),
        body: this.pc.localDescription.sdp,
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      throw new WhipError(0, 'network error: the server could not be reached');
    }
    if (r.status !== 201) throw new WhipError(r.status, await reason(r));
    const loc = r.headers.get('Location');
    if (loc) this.location = new URL(loc, this.endpoint).href;
    const sdp = await r.text();
    // Ended while the POST was on its way: end the session it made, too.
    if (this.closed) return this.stop();
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
    // The server ends a session on purpose (another publisher took over, an admin kicked it)
    // with a DTLS close_notify: say so at once rather than when ICE times out.
    const t = this.video.sender.transport;
    if (t && 'onstatechange' in t) {
      t.addEventListener('statechange', () => {
        if (t.state === 'closed' && !this.closed) this.onState('ended');
      });
    }
    await this.tune();
  }

  /**
   * Sender settings: keep the picture size steady under load (the HLS renditions are made
   * from it; fewer frames are better than a size change mid-stream), and cap the bitrate.
   */
  async tune() {
    const sender = this.video.sender;
    if (!sender.getParameters || !sender.setParameters) return;
    try {
      const p = sender.getParameters();
      if (!p.encodings || p.encodings.length === 0) p.encodings = [{}];
      for (const e of p.encodings) {
        e.maxBitrate = this.kbps * 1000;
        e.maxFramerate = 30;
      }
      p.degradationPreference = 'maintain-resolution';
      await sender.setParameters(p);
    } catch (e) {
      // Older browsers refuse some fields: the defaults still work.
    }
  }

  /** Swaps in new tracks (another camera or microphone) without a new session. */
  async replaceTracks(stream, kbps) {
    const v = stream.getVideoTracks()[0] || null;
    const a = stream.getAudioTracks()[0] || null;
    if (this.video.sender.track !== v) await this.video.sender.replaceTrack(v);
    if (this.audio.sender.track !== a) await this.audio.sender.replaceTrack(a);
    if (kbps && kbps !== this.kbps) {
      this.kbps = kbps;
      await this.tune();
    }
  }

  /** True when the server closed the DTLS transport on purpose (close_notify). */
  closedByServer() {
    const t = this.video.sender.transport;
    return !!t && t.state === 'closed';
  }

  /**
   * Ends the session: closes the connection and DELETEs the session URL so the server ends
   * the broadcast now. `keepalive` lets the request outlive a closing page.
   */
  async stop({ keepalive = false } = {}) {
    this.closed = true;
    try { this.pc.close(); } catch (e) { /* already closed */ }
    if (!this.location) return;
    const url = this.location;
    this.location = null;
    try {
      await fetch(url, { method: 'DELETE', headers: this.headers(), credentials: 'same-origin', keepalive });
    } catch (e) {
      // The server ends the session on its own when media stops.
    }
  }
}

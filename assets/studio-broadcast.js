// The broadcast panel: Go live / End broadcast, and what happens in between. Going live opens a
// WHIP session with the camera's stream; when the connection drops (ICE / peer connection
// state) a warning says so and, while the broadcaster has not pressed End, a new session is
// opened with a growing delay. Camera, microphone and size changes go into the running session
// without a new one (replaceTrack, setParameters).

import { WhipError, WhipSession } from './studio-whip.js';

const LOST_GRACE_MS = 4000; // `disconnected` often recovers by itself within a few seconds
const MAX_RETRY_MS = 15000;

const CODEC_NAMES = { 'video/h264': 'H.264', 'video/vp8': 'VP8', 'video/vp9': 'VP9', 'video/av1': 'AV1' };

export function mountBroadcast(root, ctx) {
  const { channel, auth, media, signals } = ctx;
  const $ = (id) => document.getElementById(id);
  const form = $('broadcast-form');
  const goBtn = $('go-live');
  const endBtn = $('end');
  const statusEl = $('broadcast-status');
  const warnEl = $('conn-warning');
  const codecSel = $('codec');
  const keyRow = $('key-row');
  const retryCam = $('retry-camera');

  let session = null;
  let wanted = false; // Go live pressed, End not yet
  let attempt = 0;
  let retryTimer = null;
  let lostTimer = null;

  function setState(state, text) {
    root.dataset.state = state;
    statusEl.textContent = text || '';
    goBtn.disabled = wanted;
    endBtn.disabled = !wanted;
    codecSel.disabled = wanted;
    signals.dispatchEvent(new CustomEvent('broadcast', { detail: { state } }));
  }

  function warn(text) {
    warnEl.textContent = text;
    warnEl.hidden = !text;
  }

  function clearTimers() {
    clearTimeout(retryTimer);
    clearTimeout(lostTimer);
  }

  async function describe(s) {
    const codec = await s.videoCodec();
    const t = media.stream && media.stream.getVideoTracks()[0];
    const st = t && t.getSettings ? t.getSettings() : {};
    const parts = [];
    if (codec) parts.push(CODEC_NAMES[codec.toLowerCase()] || codec);
    if (st.width && st.height) parts.push(st.width + '×' + st.height);
    return parts.length ? ' (' + parts.join(', ') + ')' : '';
  }

  function onSessionState(s, state) {
    if (s !== session || !wanted) return;
    if (state === 'connected') {
      clearTimeout(lostTimer);
      attempt = 0;
      warn('');
      setState('live', 'You are live.');
      describe(s).then((d) => { if (s === session && root.dataset.state === 'live') statusEl.textContent = 'You are live' + d + '.'; });
    } else if (state === 'disconnected') {
      warn('Connection to the server lost: waiting for it to come back…');
      setState('unstable', 'Connection unstable.');
      clearTimeout(lostTimer);
      lostTimer = setTimeout(() => restart(s), LOST_GRACE_MS);
    } else if (state === 'failed' || state === 'ended') {
      restart(s);
    }
  }

  /** The session is gone: end it and open another one, unless the server ended it on purpose. */
  function restart(s) {
    if (s !== session || !wanted) return;
    session = null;
    const byServer = s.closedByServer();
    s.stop();
    if (byServer) {
      wanted = false;
      clearTimers();
      warn('');
      setState('idle', 'The server ended this broadcast: another encoder took over the channel, or an admin stopped it.');
      return;
    }
    retry('Connection to the server lost.');
  }

  function retry(why) {
    attempt += 1;
    const ms = Math.min(1000 * 2 ** (attempt - 1), MAX_RETRY_MS);
    warn(why + ' Reconnecting' + (attempt > 1 ? ' (attempt ' + attempt + ')' : '') + '…');
    setState('reconnecting', 'Reconnecting…');
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, ms);
  }

  function giveUp(text) {
    wanted = false;
    clearTimers();
    warn('');
    setState('idle', text);
  }

  async function connect() {
    if (!wanted || session) return;
    const stream = media.stream;
    if (!stream) return giveUp('No camera: press "Try the camera again".');
    let s;
    try {
      s = new WhipSession({
        endpoint: '/whip/' + encodeURIComponent(channel),
        headers: auth.headers,
        stream,
        codec: codecSel.value,
        kbps: media.size().kbps,
        onState: (state) => onSessionState(s, state),
      });
    } catch (e) {
      return giveUp('This browser cannot broadcast: ' + e.message);
    }
    session = s;
    try {
      await s.start();
    } catch (e) {
      if (s !== session) return;
      session = null;
      s.stop();
      failed(e);
    }
  }

  function failed(e) {
    const status = e instanceof WhipError ? e.status : 0;
    if (status === 401 || status === 403) {
      auth.refused(e.message);
      giveUp('The stream key was refused: check it and press Go live again.');
      auth.focusKey();
    } else if (status === 404) {
      giveUp('This server has no channel named ' + channel + '.');
    } else if (status === 0 && !(e instanceof WhipError && e.message.startsWith('network'))) {
      giveUp('Could not go live: ' + e.message);
    } else if (status === 400 || status === 406 || status === 415) {
      giveUp('Could not go live: ' + e.message);
    } else {
      // Network, 429, 5xx: the server is busy or restarting; keep trying.
      retry('Could not reach the server (' + e.message + ').');
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (wanted) return;
    if (!auth.ready()) {
      setState('idle', 'Enter the stream key first.');
      auth.focusKey();
      return;
    }
    keyRow.classList.remove('refused');
    const s = media.stream;
    if (!s || s.getVideoTracks().every((t) => t.readyState === 'ended')) {
      try {
        await media.open();
      } catch (err) {
        setState('idle', err.message);
        retryCam.hidden = false;
        return;
      }
    }
    wanted = true;
    attempt = 0;
    warn('');
    setState('starting', 'Going live…');
    connect();
  });

  endBtn.addEventListener('click', async () => {
    wanted = false;
    clearTimers();
    warn('');
    const s = session;
    session = null;
    setState('stopping', 'Ending the broadcast…');
    if (s) await s.stop();
    setState('idle', 'Broadcast ended.');
    goBtn.focus();
  });

  retryCam.addEventListener('click', async () => {
    try {
      const note = await media.open();
      retryCam.hidden = true;
      setState(root.dataset.state || 'idle', note);
    } catch (err) {
      setState(root.dataset.state || 'idle', err.message);
    }
  });

  auth.onRefused(() => keyRow.classList.add('refused'));

  media.onChange((stream) => {
    if (session) session.replaceTracks(stream, media.size().kbps).catch(() => {});
  });

  // Leaving the page ends the broadcast at once (rather than when media stops arriving).
  window.addEventListener('pagehide', () => { if (session) session.stop({ keepalive: true }); });
  window.addEventListener('beforeunload', (ev) => {
    if (wanted) { ev.preventDefault(); ev.returnValue = ''; }
  });

  setState('idle', '');
  return {
    /** Opens the camera at page load; a refusal leaves a button to try again. */
    async openCamera() {
      try {
        const note = await media.open();
        if (note) statusEl.textContent = note;
      } catch (err) {
        statusEl.textContent = err.message;
        retryCam.hidden = false;
      }
    },
  };
}

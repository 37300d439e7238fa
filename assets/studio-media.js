// Camera and microphone: getUserMedia with the chosen devices and picture size, the device
// lists (filled by enumerateDevices once permission is given, so they carry labels; phones list
// their front and back cameras there), and the live preview. Other modules read `media.stream`
// and listen with `media.onChange(fn)` to swap tracks into a running broadcast.

/** Picture sizes offered, with the video bitrate each is sent at. */
export const SIZES = {
  360: { width: 640, height: 360, kbps: 900 },
  720: { width: 1280, height: 720, kbps: 2500 },
  1080: { width: 1920, height: 1080, kbps: 4500 },
};

const FRAME_RATE = 30;

export function createMedia({ video, message, cameraSel, micSel, sizeInputs }) {
  const changeFns = new Set();
  let stream = null;
  let opening = null;

  const size = () => {
    const checked = [...sizeInputs].find((i) => i.checked);
    return SIZES[checked ? checked.value : 720] || SIZES[720];
  };

  function videoConstraints() {
    const s = size();
    const c = {
      width: { ideal: s.width },
      height: { ideal: s.height },
      frameRate: { ideal: FRAME_RATE, max: FRAME_RATE },
    };
    if (cameraSel.value) c.deviceId = { exact: cameraSel.value };
    return c;
  }

  function audioConstraints() {
    const c = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    if (micSel.value) c.deviceId = { exact: micSel.value };
    return c;
  }

  function showMessage(text) {
    message.textContent = text;
    message.hidden = !text;
  }

  function fill(select, devices, fallback) {
    const keep = select.value;
    select.replaceChildren();
    devices.forEach((d, i) => {
      const o = document.createElement('option');
      o.value = d.deviceId;
      o.textContent = d.label || fallback + ' ' + (i + 1);
      select.append(o);
    });
    if (devices.length === 0) {
      const o = document.createElement('option');
      o.value = '';
      o.textContent = 'None found';
      select.append(o);
    }
    select.disabled = devices.length === 0;
    return keep;
  }

  /** Fills the device lists; the selection follows the tracks actually in use. */
  async function refreshDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    let all;
    try { all = await navigator.mediaDevices.enumerateDevices(); } catch (e) { return; }
    const inUse = (kind) => {
      const t = stream && (kind === 'videoinput' ? stream.getVideoTracks() : stream.getAudioTracks())[0];
      return t && t.getSettings ? t.getSettings().deviceId : undefined;
    };
    for (const [select, kind, fallback] of [[cameraSel, 'videoinput', 'Camera'], [micSel, 'audioinput', 'Microphone']]) {
      const devices = all.filter((d) => d.kind === kind && d.deviceId);
      const keep = fill(select, devices, fallback);
      const want = inUse(kind) || keep;
      if (devices.some((d) => d.deviceId === want)) select.value = want;
    }
  }

  function mirrorPreview() {
    // A front camera is shown mirrored, as people expect of themselves; viewers get it as is.
    const t = stream && stream.getVideoTracks()[0];
    const facing = t && t.getSettings ? t.getSettings().facingMode : undefined;
    video.classList.toggle('mirror', facing !== 'environment');
  }

  function adopt(next) {
    const old = stream;
    stream = next;
    video.srcObject = next;
    video.play().catch(() => {});
    mirrorPreview();
    showMessage('');
    for (const fn of changeFns) fn(next, old);
    if (old) {
      for (const t of old.getTracks()) {
        if (!next.getTracks().includes(t)) t.stop();
      }
    }
    refreshDevices();
  }

  function explain(e) {
    const name = e && e.name;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return window.isSecureContext
        ? 'This browser cannot use a camera.'
        : 'The camera needs https (or http://localhost): open this page over https, or through an SSH tunnel as localhost.';
    }
    if (name === 'NotAllowedError' || name === 'SecurityError') {
      return 'Camera or microphone blocked. Allow them for this site (the icon beside the address), then try again.';
    }
    if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'No camera found.';
    if (name === 'NotReadableError' || name === 'AbortError') {
      return 'The camera is in use by another program, or could not start.';
    }
    return 'Could not open the camera: ' + (e && e.message ? e.message : String(e));
  }

  /**
   * Opens the selected devices (replacing the current stream). A missing microphone is not
   * fatal: the broadcast goes out without sound and the page says so.
   */
  async function open({ reopenVideo = true, reopenAudio = true } = {}) {
    if (opening) return opening;
    opening = (async () => {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error(explain(null));
      const keep = [];
      const want = {};
      if (stream && !reopenVideo && stream.getVideoTracks()[0]) keep.push(stream.getVideoTracks()[0]);
      else want.video = videoConstraints();
      if (stream && !reopenAudio && stream.getAudioTracks()[0]) keep.push(stream.getAudioTracks()[0]);
      else want.audio = audioConstraints();
      // Phones often cannot open a second camera while one is open: let the old one go first.
      if (stream && want.video) for (const t of stream.getVideoTracks()) t.stop();
      let got;
      let note = '';
      try {
        got = await navigator.mediaDevices.getUserMedia(want);
      } catch (e) {
        if (e && e.name === 'NotFoundError' && want.video && want.audio) {
          got = await navigator.mediaDevices.getUserMedia({ video: want.video });
          note = 'No microphone found: the broadcast has no sound.';
        } else if (e && e.name === 'OverconstrainedError' && (cameraSel.value || micSel.value)) {
          // The chosen device went away: take the default one.
          cameraSel.value = '';
          micSel.value = '';
          got = await navigator.mediaDevices.getUserMedia({
            video: want.video && videoConstraints(),
            audio: want.audio && audioConstraints(),
          });
        } else {
          throw e;
        }
      }
      adopt(new MediaStream([...keep, ...got.getTracks()]));
      return note;
    })();
    try {
      return await opening;
    } catch (e) {
      showMessage(explain(e));
      throw new Error(explain(e));
    } finally {
      opening = null;
    }
  }

  /** A new picture size: constraints on the running camera, reopening it if that fails. */
  async function resize() {
    const t = stream && stream.getVideoTracks()[0];
    if (!t) return open();
    const s = size();
    try {
      await t.applyConstraints({ width: { ideal: s.width }, height: { ideal: s.height }, frameRate: { ideal: FRAME_RATE, max: FRAME_RATE } });
      for (const fn of changeFns) fn(stream, stream);
    } catch (e) {
      await open({ reopenAudio: false });
    }
    return '';
  }

  cameraSel.addEventListener('change', () => open({ reopenAudio: false }).catch(() => {}));
  micSel.addEventListener('change', () => open({ reopenVideo: false }).catch(() => {}));
  for (const i of sizeInputs) i.addEventListener('change', () => resize().catch(() => {}));
  if (navigator.mediaDevices && 'ondevicechange' in navigator.mediaDevices) {
    navigator.mediaDevices.addEventListener('devicechange', refreshDevices);
  }

  return {
    get stream() { return stream; },
    size,
    open,
    /** `fn(stream, previous)` after the stream or its tracks' settings change. */
    onChange(fn) { changeFns.add(fn); },
  };
}

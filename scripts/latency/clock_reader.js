// Reads the wall-clock time drawn into each displayed frame of a <video> (48 blocks, see
// clock_source.py) and records Date.now() minus it in window.__samples: the glass-to-glass
// latency, on one machine's clock. Shared by the probe page and by the watch-page probe, which
// injects it into onair's own watch page.
window.attachClockReader = function attachClockReader(v) {
  const canvas = document.createElement('canvas');
  canvas.width = 384;
  canvas.height = 72;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  window.__samples = [];
  window.__errors = window.__errors || [];
  // Stalls: the player ran out of media after playback had started.
  window.__stalls = 0;
  let playing = !v.paused && v.readyState >= 3;
  v.addEventListener('playing', () => { playing = true; });
  v.addEventListener('waiting', () => { if (playing) window.__stalls++; });
  function decode() {
    ctx.drawImage(v, 0, 0, 384, 72, 0, 0, 384, 72);
    const img = ctx.getImageData(0, 0, 384, 72).data;
    const bits = [];
    for (let i = 0; i < 48; i++) {
      const r = Math.floor(i / 16), c = i % 16;
      const x = c * 24 + 12, y = r * 24 + 12;
      bits.push(img[(y * 384 + x) * 4] > 128 ? 1 : 0);
    }
    let ms = 0;
    for (let i = 0; i < 40; i++) ms = ms * 2 + bits[i];
    let check = 0;
    for (let i = 40; i < 48; i++) check = check * 2 + bits[i];
    let sum = 0, t = ms;
    for (let k = 0; k < 5; k++) { sum += t % 256; t = Math.floor(t / 256); }
    return (sum % 256) === check ? ms : null;
  }
  function onFrame() {
    const ms = decode();
    // The frame carries the low 40 bits of Unix milliseconds.
    if (ms !== null) window.__samples.push((Date.now() % 2 ** 40) - ms);
    v.requestVideoFrameCallback(onFrame);
  }
  v.requestVideoFrameCallback(onFrame);
};

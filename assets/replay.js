// The replay page: a recording's video (hls.js, or the browser's own HLS) with its chat and
// pinned questions coming back as they happened. Each message has its media time
// (`offset_seconds`); the list shows the messages up to the video's current time, and is
// rebuilt when the viewer seeks back. Each pinned question has its time on screen
// (`offset_seconds` to `until_seconds`, null: to the end) and is the banner over the video
// while the video is within it, seeks included.
// Text from viewers is only ever inserted with textContent (chat-list.js, questions.js).
import { createChatList } from './chat-list.js';
import { showPinned } from './questions.js';

(function () {
  const channel = document.body.dataset.channel;
  const recording = document.body.dataset.recording;
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const list = $('messages');
  const status = $('player-status');
  const count = $('chat-count');
  const base = encodeURIComponent(channel) + '/' + encodeURIComponent(recording);
  const master = '/vod/' + base + '/master.m3u8';

  let log = []; // messages sorted by offset_seconds
  let pins = []; // pinned questions sorted by offset_seconds
  let onScreen; // the pin shown now (undefined: not drawn yet)
  let chatFailed = false;
  let shown = 0; // how many of `log` are in the list
  let chat = createChatList(list);

  function render() {
    const t = video.currentTime || 0;
    let want = 0;
    while (want < log.length && log[want].offset_seconds <= t) want++;
    if (want < shown) {
      // Seeked back: start the list again.
      list.textContent = '';
      chat = createChatList(list);
      shown = 0;
    }
    for (; shown < want; shown++) chat.add(log[shown]);
    if (!chatFailed) count.textContent = log.length ? shown + ' of ' + log.length : '';
    const pin = pins.find((p) => p.offset_seconds <= t &&
      (p.until_seconds == null || t < p.until_seconds)) || null;
    if (pin !== onScreen) {
      onScreen = pin;
      showPinned($('pinned'), $('pinned-text'), $('pinned-by'), pin);
    }
  }

  async function loadChat() {
    try {
      const r = await fetch('/api/channels/' + encodeURIComponent(channel) + '/recordings/' +
        encodeURIComponent(recording) + '/chat');
      if (!r.ok) throw new Error(String(r.status));
      const j = await r.json();
      log = (j.messages || []).slice().sort((a, b) => a.offset_seconds - b.offset_seconds);
      pins = (j.questions || []).slice().sort((a, b) => a.offset_seconds - b.offset_seconds);
      render();
    } catch (e) {
      chatFailed = true;
      count.textContent = '(chat unavailable)';
    }
  }

  async function loadTitle() {
    try {
      const r = await fetch('/api/channels/' + encodeURIComponent(channel) + '/recordings');
      const j = await r.json();
      const rec = (j.recordings || []).find((x) => x.id === recording);
      if (rec) {
        const when = new Date(rec.started_at);
        $('replay-title').textContent = (rec.title ? rec.title + ' · ' : '') +
          (Number.isNaN(when.getTime()) ? '' : when.toLocaleString());
        if (rec.live) $('replay-badge').textContent = 'RECORDING';
      }
    } catch (e) { /* the title is a nicety */ }
  }

  function play() {
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({ startPosition: 0 });
      hls.on(window.Hls.Events.ERROR, (_e, d) => {
        if (d.fatal) status.textContent = 'playback error: ' + d.details;
      });
      hls.loadSource(master);
      hls.attachMedia(video);
      window.onairReplayHls = hls;
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = master;
    } else {
      status.textContent = 'This browser cannot play HLS.';
    }
  }

  for (const ev of ['timeupdate', 'seeked', 'seeking', 'loadedmetadata']) {
    video.addEventListener(ev, render);
  }
  loadTitle();
  loadChat();
  play();
})();

// The watch page: HLS player (hls.js, or the browser's own HLS where Media Source Extensions are
// missing), quality menu, live badge, viewer count and chat over server-sent events.
// Chat text is only ever inserted with textContent: never as HTML.
'use strict';
(function () {
  const channel = document.body.dataset.channel;
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const badge = $('live-badge');
  const viewersEl = $('viewers');
  const offlineEl = $('offline');
  const quality = $('quality');
  const playerStatus = $('player-status');
  const messages = $('messages');
  const form = $('send-form');
  const nickEl = $('nick');
  const textEl = $('text');
  const sendBtn = $('send');
  const sendStatus = $('send-status');
  const connEl = $('chat-conn');

  const master = '/hls/' + encodeURIComponent(channel) + '/master.m3u8';
  const MAX_MESSAGES = 500;

  // ---------- player ----------
  let live = null; // unknown until the event stream says
  let hls = null;
  let native = false;
  let retryTimer = null;

  // hls.js where Media Source Extensions exist (quality menu, low-latency mode); the browser's
  // own HLS otherwise (iPhone Safari before iOS 17.1). `?player=native` forces the browser's own
  // player where it has one.
  const forceNative = new URLSearchParams(location.search).get('player') === 'native'
    && video.canPlayType('application/vnd.apple.mpegurl') !== '';

  function useHlsJs() {
    return !forceNative && typeof window.Hls !== 'undefined' && window.Hls.isSupported();
  }

  function setPlayerStatus(s) { playerStatus.textContent = s; }

  function startPlayer() {
    stopPlayer();
    if (useHlsJs()) {
      // Low-latency mode follows PART-HOLD-BACK on LL-HLS playlists (hls.js's default, 3
      // segments back, on plain ones). (Setting liveSyncDurationCount would override
      // PART-HOLD-BACK: hls.js then sits 3 whole segments, 6 s, back even on LL-HLS.) hls.js's
      // own catch-up is off (rate 1): it only speeds up with more than 1 s buffered ahead, which
      // a player a fraction of a second behind never has; this page catches up itself (below).
      hls = new window.Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1 });
      // On LL-HLS this page plays two parts behind the newest, one closer than PART-HOLD-BACK
      // (what any other player is told): chat is a conversation. After a stall hls.js moves the
      // target back by itself.
      let targetSet = false;
      hls.on(window.Hls.Events.LEVEL_LOADED, (_e, d) => {
        if (!targetSet && d.details && d.details.partTarget) {
          targetSet = true;
          hls.targetLatency = 2 * d.details.partTarget;
        }
      });
      hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
        fillQualities(hls.levels.map((l, i) => ({ value: String(i), label: levelLabel(l, i) })));
        video.play().catch(() => setPlayerStatus('press play to start'));
      });
      hls.on(window.Hls.Events.LEVEL_SWITCHED, (_e, d) => {
        if (quality.value === '-1' && hls.levels[d.level]) {
          setPlayerStatus('auto: ' + levelLabel(hls.levels[d.level], d.level));
        }
      });
      hls.on(window.Hls.Events.ERROR, (_e, d) => {
        if (!d.fatal) return;
        // The playlist may not exist yet right after going live, or the stream ended:
        // start again shortly while the channel is live.
        setPlayerStatus('waiting for video…');
        scheduleRetry();
      });
      hls.loadSource(master);
      hls.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      native = true;
      video.src = master;
      fetchRenditions();
      video.play().catch(() => setPlayerStatus('press play to start'));
    } else {
      setPlayerStatus('this browser cannot play HLS');
    }
  }

  function scheduleRetry() {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => { if (live) startPlayer(); }, 2000);
  }

  function stopPlayer() {
    clearTimeout(retryTimer);
    if (hls) { hls.destroy(); hls = null; }
    if (native) { video.removeAttribute('src'); video.load(); native = false; }
    fillQualities([]);
  }

  // Catch-up: the time hls.js takes to start (and any hiccup later) would otherwise stay in
  // the delay for good. More than 80 ms behind the target, with more than 0.5 s buffered
  // ahead, play at 1.2x (the browser keeps the audio's pitch); back at 1x within 30 ms of the
  // target, or once less than 0.4 s is buffered ahead: catching up never eats the margin that
  // keeps playback from stalling (a stall would move hls.js's target a second back).
  video.addEventListener('timeupdate', () => {
    if (!hls || native) return;
    const latency = hls.latency;
    const target = hls.targetLatency;
    if (latency == null || target == null || !isFinite(latency)) return;
    const b = video.buffered;
    const ahead = b.length ? b.end(b.length - 1) - video.currentTime : 0;
    const behind = latency - target;
    let rate = video.playbackRate;
    if (ahead < 0.4 || behind < 0.03) rate = 1;
    else if (behind > 0.08 && ahead > 0.5) rate = 1.2;
    if (rate !== video.playbackRate && video.playbackRate !== 0) video.playbackRate = rate;
  });

  video.addEventListener('error', () => { if (native && live) scheduleRetry(); });
  // A playlist that ended (the broadcaster dropped and came back) while the channel is live:
  // load it again to follow the new broadcast.
  video.addEventListener('ended', () => { if (live) scheduleRetry(); });
  video.addEventListener('playing', () => setPlayerStatus(''));

  function levelLabel(l, i) {
    const uri = l.uri || (Array.isArray(l.url) ? l.url[0] : l.url) || '';
    const m = /\/([A-Za-z0-9_-]+)\/index\.m3u8/.exec(uri);
    const name = m ? m[1] : 'level ' + (i + 1);
    return l.height ? name + ' (' + l.height + 'p)' : name;
  }

  function fillQualities(items) {
    const keep = quality.value;
    quality.replaceChildren();
    const auto = document.createElement('option');
    auto.value = '-1';
    auto.textContent = 'Auto';
    quality.append(auto);
    for (const it of items) {
      const o = document.createElement('option');
      o.value = it.value;
      o.textContent = it.label;
      quality.append(o);
    }
    quality.disabled = items.length === 0;
    quality.value = items.some((it) => it.value === keep) ? keep : '-1';
  }

  // Native HLS has no level API: the menu switches between media playlists instead.
  async function fetchRenditions() {
    try {
      const r = await fetch('/api/channels/' + encodeURIComponent(channel), { cache: 'no-store' });
      if (!r.ok) return;
      const c = await r.json();
      fillQualities((c.renditions || []).map((n) => ({
        value: '/hls/' + encodeURIComponent(channel) + '/' + encodeURIComponent(n) + '/index.m3u8',
        label: n,
      })));
    } catch (e) { /* keep Auto */ }
  }

  quality.addEventListener('change', () => {
    if (hls) {
      hls.currentLevel = Number(quality.value);
      setPlayerStatus(quality.value === '-1' ? 'auto' : '');
    } else if (native) {
      video.src = quality.value === '-1' ? master : quality.value;
      video.play().catch(() => {});
    }
  });

  function setLive(isLive) {
    const was = live;
    live = isLive;
    badge.textContent = isLive ? 'LIVE' : 'OFFLINE';
    badge.className = 'badge ' + (isLive ? 'live' : 'off');
    offlineEl.hidden = isLive;
    document.body.classList.toggle('is-offline', !isLive);
    if (isLive && was !== true) startPlayer();
    if (!isLive && was !== false) { stopPlayer(); setPlayerStatus(''); }
  }

  // ---------- chat ----------
  const shown = new Map(); // message id -> <li>
  let lastId = null;
  let es = null;
  let reconnectTimer = null;
  let backoff = 1000;

  function atBottom() {
    return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
  }

  function addMessage(m) {
    if (shown.has(m.id)) return;
    const stick = atBottom();
    const li = document.createElement('li');
    li.dataset.id = String(m.id);
    const time = document.createElement('time');
    time.dateTime = m.ts;
    const d = new Date(m.ts);
    time.textContent = isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const nick = document.createElement('span');
    nick.className = 'nick';
    nick.textContent = m.nick;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    li.append(time, ' ', nick, ' ', text);
    messages.append(li);
    shown.set(m.id, li);
    while (messages.children.length > MAX_MESSAGES) {
      const first = messages.firstElementChild;
      shown.delete(Number(first.dataset.id));
      first.remove();
    }
    if (stick) messages.scrollTop = messages.scrollHeight;
  }

  function parse(ev) {
    if (ev.lastEventId) lastId = ev.lastEventId;
    try { return JSON.parse(ev.data); } catch (e) { return null; }
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (es) es.close();
    // EventSource resends Last-Event-ID itself when it reconnects; a stream we reopen by hand
    // carries the last id in the query instead.
    let url = '/api/channels/' + encodeURIComponent(channel) + '/events';
    if (lastId) url += '?last_event_id=' + encodeURIComponent(lastId);
    es = new EventSource(url);
    es.onopen = () => { connEl.textContent = ''; backoff = 1000; };
    es.addEventListener('chat', (ev) => { const m = parse(ev); if (m) addMessage(m); });
    es.addEventListener('delete', (ev) => {
      const d = parse(ev);
      const li = d && shown.get(d.id);
      if (li) { li.remove(); shown.delete(d.id); }
    });
    es.addEventListener('live', (ev) => { parse(ev); setLive(true); });
    es.addEventListener('offline', (ev) => { parse(ev); setLive(false); });
    es.addEventListener('viewers', (ev) => {
      const d = parse(ev);
      if (d) viewersEl.textContent = d.viewers + ' watching';
    });
    es.onerror = () => {
      connEl.textContent = '(reconnecting…)';
      // CONNECTING: the browser retries by itself. CLOSED: it gave up (the server said no,
      // or is down): reopen with a growing delay.
      if (es.readyState === EventSource.CLOSED) {
        reconnectTimer = setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 30000);
      }
    };
  }

  // ---------- sending ----------
  try { nickEl.value = localStorage.getItem('onair.nick') || ''; } catch (e) { /* private mode */ }

  let cooldown = null;
  function coolDown(seconds) {
    sendBtn.disabled = true;
    clearTimeout(cooldown);
    cooldown = setTimeout(() => { sendBtn.disabled = false; }, seconds * 1000);
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const nick = nickEl.value.trim();
    const text = textEl.value.trim();
    if (!nick) { nickEl.focus(); return; }
    if (!text) { textEl.focus(); return; }
    try { localStorage.setItem('onair.nick', nick); } catch (err) { /* private mode */ }
    sendStatus.textContent = '';
    try {
      const r = await fetch('/api/channels/' + encodeURIComponent(channel) + '/chat', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ nick, text }),
      });
      if (r.status === 202) {
        textEl.value = '';
        textEl.focus();
        return;
      }
      let reason = 'could not send (' + r.status + ')';
      try { const j = await r.json(); if (j.error) reason = j.error; } catch (err) { /* keep */ }
      sendStatus.textContent = reason;
      const retry = Number(r.headers.get('Retry-After'));
      if (r.status === 429 && retry > 0) coolDown(Math.min(retry, 60));
    } catch (err) {
      sendStatus.textContent = 'network error: not sent';
    }
  });

  connect();
})();

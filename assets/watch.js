// The watch page: HLS player (hls.js, or the browser's own HLS where Media Source Extensions are
// missing), quality menu, live badge, viewer count and chat over server-sent events; with
// account.js, chat under a signed-in identity and cross-posting by the viewer's choice.
// Chat text is only ever inserted with textContent: never as HTML (chat-list.js).
import { createChatList, postChat } from './chat-list.js';

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
  const crossBox = $('cross');
  const crossEl = $('cross-post');
  const crossKeep = $('cross-keep');
  const shareX = $('share-x');
  const confirmBox = $('cross-confirm');
  const crossStatus = $('cross-status');

  const master = '/hls/' + encodeURIComponent(channel) + '/master.m3u8';

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
  const chat = createChatList(messages);
  let lastId = null;
  let es = null;
  let reconnectTimer = null;
  let backoff = 1000;

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
    es.onopen = () => {
      connEl.textContent = '';
      backoff = 1000;
      document.dispatchEvent(new CustomEvent('onair:events-open'));
    };
    // Debate events go to the Questions panel (watch-questions.js) as DOM events.
    for (const name of ['question', 'pinned', 'timer']) {
      es.addEventListener(name, (ev) => {
        const data = parse(ev);
        document.dispatchEvent(new CustomEvent('onair:' + name, { detail: { data, id: ev.lastEventId } }));
      });
    }
    es.addEventListener('chat', (ev) => { const m = parse(ev); if (m) chat.add(m); });
    es.addEventListener('delete', (ev) => { const d = parse(ev); if (d) chat.remove(d.id); });
    es.addEventListener('live', (ev) => {
      const d = parse(ev);
      if (d && d.started_at && d.started_at !== broadcast) newBroadcast(d.started_at);
      setLive(true);
    });
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

  let me = null;
  // The broadcast the viewer agreed to cross-post in (after seeing the text once), and
  // whether "for this broadcast" keeps the box ticked.
  let broadcast = null;
  let confirmedFor = null;
  function newBroadcast(startedAt) {
    broadcast = startedAt;
    crossKeep.checked = false;
    crossEl.checked = false;
  }

  function watchUrl() { return location.origin + '/watch/' + encodeURIComponent(channel); }

  function updateShareX() {
    const q = new URLSearchParams({ text: textEl.value.trim(), url: watchUrl() });
    shareX.href = 'https://x.com/intent/tweet?' + q.toString();
  }
  textEl.addEventListener('input', () => { if (!shareX.hidden) updateShareX(); });

  function applyAccount(m) {
    me = m;
    form.classList.toggle('signed-in', !!me);
    nickEl.required = !me;
    crossBox.hidden = !me;
    confirmBox.hidden = true;
    if (!me) return;
    // X without cross-posting on this server: a free share link instead of the box.
    const xShare = me.provider === 'x' && !me.can_cross_post;
    crossEl.hidden = xShare;
    crossEl.labels.forEach((l) => { l.hidden = xShare; });
    $('cross-keep-wrap').hidden = xShare;
    shareX.hidden = !xShare;
    if (xShare) updateShareX();
  }
  if (window.onairAccount) window.onairAccount.onChange(applyAccount);

  // Ticking the box without the posting permission: offer to sign in again for it.
  crossEl.addEventListener('change', () => {
    crossStatus.textContent = '';
    if (!crossEl.checked || !me || me.can_cross_post) return;
    crossEl.checked = false;
    crossStatus.replaceChildren();
    if (me.provider === 'mastodon' || (me.provider === 'bluesky' && me.oauth)) {
      const params = me.provider === 'mastodon'
        ? { instance: new URL(me.profile_url).origin, cross_post: '1' }
        : { handle: me.handle.replace(/^@/, ''), cross_post: '1' };
      const a = document.createElement('a');
      a.href = window.onairAccount.signInUrl(me.provider, params);
      a.textContent = 'Allow onair to post for you';
      crossStatus.append('onair may not post for you yet. ', a, ' (you sign in again and choose).');
    } else {
      crossStatus.textContent = 'onair may not post for you yet: sign out, then sign in again with "Let me post" ticked.';
    }
  });

  let cooldown = null;
  function coolDown(seconds) {
    sendBtn.disabled = true;
    clearTimeout(cooldown);
    cooldown = setTimeout(() => { sendBtn.disabled = false; }, seconds * 1000);
  }

  const api = '/api/channels/' + encodeURIComponent(channel);

  // Shows the exact post before the first one of a broadcast; resolves true to post it.
  async function confirmCrossPost(text) {
    let preview;
    try {
      const r = await fetch(api + '/chat/preview', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text }),
      });
      preview = await r.json();
      if (!r.ok) { crossStatus.textContent = preview.error || 'cannot post to your timeline'; return false; }
    } catch (e) { crossStatus.textContent = 'network error'; return false; }
    $('cross-where').textContent = 'This will be posted on your ' + preview.provider_label + ' account ' +
      me.handle + (preview.visibility ? ' (' + preview.visibility + ')' : '') + ':';
    $('cross-text').textContent = preview.text;
    confirmBox.hidden = false;
    $('cross-yes').focus();
    return new Promise((resolve) => {
      const done = (yes) => {
        confirmBox.hidden = true;
        $('cross-yes').onclick = null;
        $('cross-no').onclick = null;
        resolve(yes);
      };
      $('cross-yes').onclick = () => done(true);
      $('cross-no').onclick = () => done(false);
    });
  }

  // Follows a cross-post until it is posted or has failed, and says which.
  async function followCrossPost(id) {
    crossStatus.textContent = 'Posting to your timeline…';
    for (let i = 0; i < 60; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        const r = await fetch('/api/me/cross-posts', { cache: 'no-store' });
        if (!r.ok) break;
        const j = await r.json();
        const o = (j.cross_posts || []).find((x) => x.message_id === id && x.channel === channel);
        if (o && o.state === 'posted') { crossStatus.textContent = 'Posted to your timeline.'; return; }
        if (o && o.state === 'failed') { crossStatus.textContent = 'Not posted to your timeline: ' + o.error; return; }
      } catch (e) { /* try again */ }
    }
    crossStatus.textContent = 'Your post to your timeline is still waiting.';
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const nick = me ? me.handle : nickEl.value.trim();
    const text = textEl.value.trim();
    if (!nick) { nickEl.focus(); return; }
    if (!text) { textEl.focus(); return; }
    if (!me) { try { localStorage.setItem('onair.nick', nick); } catch (err) { /* private mode */ } }
    sendStatus.textContent = '';
    let crossPost = !!(me && me.can_cross_post && crossEl.checked && !crossEl.hidden);
    const key = broadcast || 'offline';
    if (crossPost && confirmedFor !== key) {
      crossPost = await confirmCrossPost(text);
      if (crossPost) confirmedFor = key;
    }
    const body = { nick, text };
    if (crossPost) body.cross_post = true;
    const r = await postChat(channel, body);
    if (r.ok) {
      const m = r.message || {};
      textEl.value = '';
      textEl.focus();
      if (!crossKeep.checked) crossEl.checked = false;
      if (m.cross_post && m.cross_post.state === 'queued') followCrossPost(m.id);
      else if (m.cross_post && m.cross_post.state === 'refused') crossStatus.textContent = 'Not posted to your timeline: ' + m.cross_post.error;
      return;
    }
    sendStatus.textContent = r.error;
    if (r.retryAfter) coolDown(r.retryAfter);
  });

  connect();
})();

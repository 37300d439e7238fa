// The status bar and the share box: live state and time on air from the channel's `live` /
// `offline` events (what viewers see, whoever publishes), the viewer count from `viewers`
// events, and the watch link with a Copy button.

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const two = (n) => String(n).padStart(2, '0');
  return h > 0 ? h + ':' + two(m) + ':' + two(s % 60) : m + ':' + two(s % 60);
}

export function mountStatus(root, ctx) {
  const { events } = ctx;
  const $ = (id) => document.getElementById(id);
  const badge = $('live-badge');
  const elapsed = $('elapsed');
  const viewers = $('viewers');
  const link = $('watch-link');
  const copyBtn = $('copy-link');
  const copyStatus = $('copy-status');

  let startedAt = null;
  let ticker = null;

  function tick() {
    if (startedAt === null) return;
    elapsed.textContent = clock((Date.now() - startedAt) / 1000);
  }

  function setLive(live, since) {
    badge.textContent = live ? 'LIVE' : 'OFFLINE';
    badge.className = 'badge ' + (live ? 'live' : 'off');
    document.body.classList.toggle('is-live', live);
    clearInterval(ticker);
    if (live) {
      const t = Date.parse(since);
      startedAt = Number.isNaN(t) ? Date.now() : t;
      elapsed.hidden = false;
      tick();
      ticker = setInterval(tick, 1000);
    } else {
      startedAt = null;
      elapsed.hidden = true;
      elapsed.textContent = '';
    }
  }

  events.on('live', (d) => setLive(true, d.started_at));
  events.on('offline', () => setLive(false));
  events.on('viewers', (d) => {
    const n = Number(d.viewers) || 0;
    viewers.textContent = n + (n === 1 ? ' viewer' : ' viewers');
  });

  if (!link.value) link.value = new URL('/watch/' + encodeURIComponent(ctx.channel), location.href).href;
  link.addEventListener('focus', () => link.select());
  copyBtn.addEventListener('click', async () => {
    let ok = false;
    try {
      await navigator.clipboard.writeText(link.value);
      ok = true;
    } catch (e) {
      // No clipboard API (plain http from another machine): copy the selection instead.
      link.select();
      try { ok = document.execCommand('copy'); } catch (e2) { ok = false; }
    }
    copyStatus.textContent = ok ? 'Copied' : 'Select the link and copy it';
    setTimeout(() => { copyStatus.textContent = ''; }, 3000);
  });
}

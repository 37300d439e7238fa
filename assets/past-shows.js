// The watch page's list of the channel's past shows, shown while the channel is offline
// (watch.js marks the body `is-offline`). Titles reach the page only through textContent.
(function () {
  const channel = document.body.dataset.channel;
  const box = document.getElementById('past-shows');
  const list = document.getElementById('past-list');
  if (!box || !list) return;
  let loaded = false;

  function fmt(seconds) {
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = String(s % 60).padStart(2, '0');
    return (h ? h + ':' + String(m).padStart(2, '0') : String(m)) + ':' + r;
  }

  async function load() {
    let j;
    try {
      const r = await fetch('/api/channels/' + encodeURIComponent(channel) + '/recordings');
      if (!r.ok) return;
      j = await r.json();
    } catch (e) { return; }
    const done = (j.recordings || []).filter((x) => !x.live);
    list.textContent = '';
    for (const rec of done) {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = rec.replay;
      const when = new Date(rec.started_at);
      a.textContent = (rec.title ? rec.title + ' · ' : '') +
        (Number.isNaN(when.getTime()) ? rec.id : when.toLocaleString());
      const len = document.createElement('span');
      len.className = 'muted';
      len.textContent = ' ' + fmt(rec.duration_seconds);
      li.append(a, len);
      list.append(li);
    }
    box.hidden = done.length === 0;
    loaded = true;
  }

  function update() {
    const offline = document.body.classList.contains('is-offline');
    if (!offline) { box.hidden = true; loaded = false; return; }
    if (!loaded) load();
    else box.hidden = list.children.length === 0;
  }
  new MutationObserver(update).observe(document.body, { attributes: true, attributeFilter: ['class'] });
  update();
})();

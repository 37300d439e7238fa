// Keeps the list of live channels fresh without a reload. Names are set with textContent.
'use strict';
(function () {
  const list = document.getElementById('channels');
  async function refresh() {
    try {
      const r = await fetch('/api/channels', { cache: 'no-store' });
      if (!r.ok) return;
      const live = (await r.json()).filter((c) => c.live);
      list.replaceChildren();
      if (live.length === 0) {
        const li = document.createElement('li');
        li.className = 'empty';
        li.textContent = 'No channel is live right now.';
        list.append(li);
      }
      for (const c of live) {
        const li = document.createElement('li');
        const a = document.createElement('a');
        a.href = '/watch/' + encodeURIComponent(c.name);
        a.textContent = c.name;
        const badge = document.createElement('span');
        badge.className = 'badge live';
        badge.textContent = 'LIVE';
        const v = document.createElement('span');
        v.className = 'viewers';
        v.textContent = c.viewers + ' watching';
        li.append(a, ' ', badge, ' ', v);
        list.append(li);
      }
    } catch (e) { /* offline server: keep what is shown */ }
  }
  setInterval(refresh, 10000);
  refresh();
})();

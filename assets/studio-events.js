// The channel's event stream (GET /api/channels/{channel}/events), opened once per page and
// shared by every studio panel: a panel calls `events.on(name, fn)` for the events it shows
// (chat, delete, live, offline, viewers, and whatever later panels need) before `start()`, so
// the history replayed at connect reaches it too. After a drop the stream is reopened with the
// last event id, as the watch page does, so nothing is missed or shown twice.

export function openEvents(channel) {
  const handlers = new Map(); // event name -> Set of functions
  const stateFns = new Set();
  let es = null;
  let lastId = null;
  let timer = null;
  let backoff = 1000;

  function dispatch(name, ev) {
    if (ev.lastEventId) lastId = ev.lastEventId;
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    for (const fn of handlers.get(name) || []) {
      try { fn(data, ev.lastEventId); } catch (e) { console.error('studio: handler for', name, 'failed:', e); }
    }
  }

  function listen(name) {
    if (es) es.addEventListener(name, (ev) => dispatch(name, ev));
  }

  function setState(s) {
    for (const fn of stateFns) fn(s);
  }

  function connect() {
    clearTimeout(timer);
    if (es) es.close();
    // `role=studio`: this page is the broadcaster's, not a viewer; it is not counted.
    let url = '/api/channels/' + encodeURIComponent(channel) + '/events?role=studio';
    if (lastId) url += '&last_event_id=' + encodeURIComponent(lastId);
    es = new EventSource(url);
    for (const name of handlers.keys()) listen(name);
    es.onopen = () => { backoff = 1000; setState('open'); };
    es.onerror = () => {
      setState('reconnecting');
      // CONNECTING: the browser retries by itself. CLOSED: it gave up; reopen by hand.
      if (es.readyState === EventSource.CLOSED) {
        timer = setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 30000);
      }
    };
  }

  return {
    /** Calls `fn(data, id)` for every event `name` (JSON-decoded, with its event id). */
    on(name, fn) {
      if (!handlers.has(name)) {
        handlers.set(name, new Set());
        listen(name);
      }
      handlers.get(name).add(fn);
    },
    /** Calls `fn('open' | 'reconnecting')` when the stream's connection changes. */
    onState(fn) { stateFns.add(fn); },
    start() { if (!es) connect(); },
  };
}

// The OBS overlay (/overlay/{channel}, a Browser Source): only the pinned question and the
// speaking timer, on a transparent page, so that they are in the video itself for players
// outside the watch page. Its event stream says `role=studio`: it is not a viewer. Viewer text
// only ever goes in with textContent.

import { createDebate, showPinned, timerDisplay } from './questions.js';

const $ = (id) => document.getElementById(id);
const channel = document.body.dataset.channel;
const debate = createDebate(channel, render);
const drawTimer = timerDisplay($('timer'), debate);

function render() {
  showPinned($('pinned'), $('pinned-text'), $('pinned-by'), debate.pinned());
  drawTimer();
}

let es = null;
let lastId = null;
let backoff = 1000;

function connect() {
  if (es) es.close();
  let url = '/api/channels/' + encodeURIComponent(channel) + '/events?role=studio';
  if (lastId) url += '&last_event_id=' + encodeURIComponent(lastId);
  es = new EventSource(url);
  es.onopen = () => { backoff = 1000; debate.load(); };
  for (const name of ['question', 'pinned', 'timer']) {
    es.addEventListener(name, (ev) => {
      if (ev.lastEventId) lastId = ev.lastEventId;
      let data = null;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      debate.apply(name, data, ev.lastEventId);
    });
  }
  es.onerror = () => {
    // CONNECTING: the browser retries by itself. CLOSED: reopen with a growing delay.
    if (es.readyState === EventSource.CLOSED) {
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    }
  };
}

debate.load();
connect();

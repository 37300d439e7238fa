// The studio's question queue and speaking timer: viewers' questions by votes, each with
// `Pin` (on every viewer's screen and the overlay at once; one at a time), `Shortlist`,
// `Answered`, `Dismiss`, and `Reopen` once answered or dismissed; `Start timer` with the
// chosen duration and `Stop timer`. Changes go through the channel-scoped admin routes on the
// studio's credential (auth.admin); the list follows the shared event stream. Viewer text
// only ever goes in with textContent.

import { askedBy, createDebate, showPinned, timerDisplay } from './questions.js';

export function mountQuestions(root, ctx) {
  const { channel, events, auth } = ctx;
  const $ = (id) => document.getElementById(id);
  const list = $('queue');
  const empty = $('queue-empty');
  const count = $('questions-count');
  const status = $('questions-status');
  const items = new Map(); // id -> { li, text, by, votes, actions }

  const debate = createDebate(channel, render);
  const drawTimer = timerDisplay($('studio-timer'), debate);

  function say(t) { status.textContent = t; }

  function needKey() {
    if (auth.ready()) return false;
    say('Enter the stream key first: the queue is moderated with it.');
    auth.focusKey();
    return true;
  }

  async function move(q, state) {
    if (needKey()) return;
    const r = await auth.admin('questions/' + q.id, { method: 'PUT', body: { state } });
    if (!r.ok) { say('Not changed: ' + r.error); return; }
    say('');
    if (r.data) debate.apply('question', r.data);
  }

  function button(label, describedBy, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'mini';
    b.textContent = label;
    b.setAttribute('aria-describedby', describedBy);
    b.addEventListener('click', onClick);
    return b;
  }

  /** The buttons a question in `state` offers. */
  function actionsFor(q, textId) {
    const out = [];
    const add = (label, state) => out.push(button(label, textId, () => move(q, state)));
    if (q.state === 'answered' || q.state === 'dismissed') {
      add('Reopen', 'open');
      return out;
    }
    if (q.state === 'pinned') add('Unpin', 'shortlisted');
    else add('Pin', 'pinned');
    if (q.state === 'open') add('Shortlist', 'shortlisted');
    add('Answered', 'answered');
    add('Dismiss', 'dismissed');
    return out;
  }

  function render() {
    const qs = debate.list();
    const seen = new Set();
    qs.forEach((q, i) => {
      let it = items.get(q.id);
      if (!it) {
        const li = document.createElement('li');
        li.dataset.id = String(q.id);
        const votes = document.createElement('span');
        votes.className = 'q-count';
        const text = document.createElement('p');
        text.className = 'q-text';
        text.id = 'queue-text-' + q.id;
        const by = document.createElement('p');
        by.className = 'q-meta';
        const actions = document.createElement('div');
        actions.className = 'q-actions';
        li.append(votes, text, by, actions);
        it = { li, text, by, votes, actions, state: null };
        items.set(q.id, it);
      }
      seen.add(q.id);
      it.li.className = 'q ' + q.state;
      it.text.textContent = q.text;
      it.by.textContent = askedBy(q) + (q.state === 'open' ? '' : ' · ' + q.state);
      it.votes.textContent = String(q.votes);
      it.votes.title = q.votes === 1 ? '1 vote' : q.votes + ' votes';
      // Buttons are rebuilt only when the state changes (a vote keeps focus where it is).
      if (it.state !== q.state) {
        it.state = q.state;
        it.actions.replaceChildren(...actionsFor(q, it.text.id));
      }
      if (list.children[i] !== it.li) list.insertBefore(it.li, list.children[i] || null);
    });
    for (const [id, it] of items) {
      if (!seen.has(id)) { it.li.remove(); items.delete(id); }
    }
    const open = qs.filter((q) => q.state !== 'answered' && q.state !== 'dismissed').length;
    count.textContent = qs.length ? '(' + open + ' waiting)' : '';
    empty.hidden = qs.length > 0;
    showPinned($('studio-pinned'), $('studio-pinned-text'), $('studio-pinned-by'), debate.pinned());
    drawTimer();
  }

  async function setTimer(seconds) {
    if (needKey()) return;
    const r = await auth.admin('timer', { method: 'PUT', body: { seconds } });
    if (!r.ok) { say('Timer not set: ' + r.error); return; }
    say('');
    debate.apply('timer', (r.data && r.data.timer) || { ends_at: null });
  }

  $('timer-start').addEventListener('click', () => setTimer(Number($('timer-seconds').value) || 60));
  $('timer-stop').addEventListener('click', () => setTimer(0));

  for (const name of ['question', 'pinned', 'timer']) {
    events.on(name, (data, id) => debate.apply(name, data, id));
  }
  events.onState((s) => { if (s === 'open') debate.load(); });
  debate.load();
  return { debate };
}

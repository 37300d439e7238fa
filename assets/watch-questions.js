// The watch page's Questions panel: ask (`Ask a question`, `Ask`), vote (`Vote` on each
// question, pressed when this viewer voted), the pinned question as a banner over the player
// and the speaking timer. Events come from the page's one event stream (watch.js re-dispatches
// `question`, `pinned` and `timer` as `onair:…` events on the document); the list is loaded
// at start and again after every reconnect. Viewer text only ever goes in with textContent.

import { askedBy, createDebate, showPinned, timerDisplay } from './questions.js';

const $ = (id) => document.getElementById(id);
const channel = document.body.dataset.channel;
const list = $('question-list');
const empty = $('questions-empty');
const form = $('ask-form');
const input = $('question');
const askBtn = $('ask');
const status = $('ask-status');
const banner = $('pinned');
const STATE_LABELS = { shortlisted: 'shortlisted', pinned: 'on screen', answered: 'answered', dismissed: 'dismissed' };

const items = new Map(); // id -> { li, text, by, votes, badge, vote }
const debate = createDebate(channel, render);
const drawTimer = timerDisplay($('timer'), debate);

function item(q) {
  let it = items.get(q.id);
  if (it) return it;
  const li = document.createElement('li');
  li.dataset.id = String(q.id);
  const text = document.createElement('p');
  text.className = 'q-text';
  text.id = 'q-text-' + q.id;
  const meta = document.createElement('p');
  meta.className = 'q-meta';
  const by = document.createElement('span');
  by.className = 'q-by';
  const votes = document.createElement('span');
  votes.className = 'q-votes';
  const badge = document.createElement('span');
  badge.className = 'q-state';
  meta.append(by, votes, badge);
  const vote = document.createElement('button');
  vote.type = 'button';
  vote.className = 'vote';
  vote.textContent = 'Vote';
  vote.setAttribute('aria-describedby', text.id);
  vote.addEventListener('click', async () => {
    const add = !debate.hasVoted(q.id);
    vote.disabled = true;
    const r = await debate.vote(q.id, add);
    vote.disabled = false;
    if (!r.ok) status.textContent = (r.data && r.data.error) || 'Your vote did not count; try again.';
  });
  li.append(vote, text, meta);
  it = { li, text, by, votes, badge, vote };
  items.set(q.id, it);
  return it;
}

function render() {
  const qs = debate.list();
  const seen = new Set();
  qs.forEach((q, i) => {
    const it = item(q);
    seen.add(q.id);
    it.text.textContent = q.text;
    it.by.textContent = askedBy(q);
    it.votes.textContent = q.votes === 1 ? '1 vote' : q.votes + ' votes';
    it.badge.textContent = STATE_LABELS[q.state] || '';
    it.li.className = 'q ' + q.state;
    const closed = q.state === 'answered' || q.state === 'dismissed';
    it.vote.hidden = closed;
    it.vote.setAttribute('aria-pressed', debate.hasVoted(q.id) ? 'true' : 'false');
    // Moved only when out of place, so a focused Vote button keeps its focus.
    if (list.children[i] !== it.li) list.insertBefore(it.li, list.children[i] || null);
  });
  for (const [id, it] of items) {
    if (!seen.has(id)) { it.li.remove(); items.delete(id); }
  }
  empty.hidden = qs.length > 0;
  showPinned(banner, $('pinned-text'), $('pinned-by'), debate.pinned());
  drawTimer();
}

for (const name of ['question', 'pinned', 'timer']) {
  document.addEventListener('onair:' + name, (e) => debate.apply(name, e.detail.data, e.detail.id));
}
// After a reconnect the stream resumes where it was; the listing makes sure of it.
document.addEventListener('onair:events-open', () => { debate.load(); });

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  const nickEl = $('nick');
  askBtn.disabled = true;
  status.textContent = '';
  const r = await debate.ask(text, nickEl ? nickEl.value.trim() : '');
  askBtn.disabled = false;
  status.classList.toggle('ok', r.ok);
  if (r.ok) {
    input.value = '';
    status.textContent = 'Asked. Others can vote for it now.';
  } else if (r.status === 429) {
    status.textContent = 'One question at a time: try again in ' + (r.retryAfter || 'a few') + ' s.';
  } else if (r.status === 401) {
    status.textContent = (r.data && r.data.error) || 'Sign in to ask.';
  } else {
    status.textContent = (r.data && r.data.error) || 'Not sent; try again.';
  }
});

debate.load();

// Debate mode as every page shows it (watch page, studio, OBS overlay): the channel's
// questions with their votes and states, the pinned one and the speaking timer, kept from
// GET /api/channels/{channel}/questions and the `question`, `pinned` and `timer` events of the
// channel's stream. Text from viewers is only ever inserted with textContent.

/** Queue first (open, shortlisted, pinned), then answered and dismissed; by votes, then age. */
export function order(a, b) {
  const closed = (q) => (q.state === 'answered' || q.state === 'dismissed' ? 1 : 0);
  return closed(a) - closed(b) || b.votes - a.votes || a.id - b.id;
}

/**
 * The debate state of `channel`. `onChange()` runs after every change. Events carrying an id
 * at or below the listing's `event_id` are replays of what the listing already has: skipped.
 */
export function createDebate(channel, onChange) {
  const questions = new Map(); // id -> question
  const voted = new Set(); // ids this viewer voted for
  let pinned = null;
  let timer = null; // { ends_at, running, seconds, offset }
  let floor = 0; // the listing's event id
  const base = '/api/channels/' + encodeURIComponent(channel) + '/questions';

  function setTimer(t) {
    if (!t || !t.ends_at) { timer = null; return; }
    // The server's clock minus ours: the countdown follows the server's deadline.
    const offset = t.now ? Date.parse(t.now) - Date.now() : 0;
    timer = Object.assign({}, t, { offset: Number.isNaN(offset) ? 0 : offset });
  }

  const debate = {
    /** Loads the listing (at start, and after a reconnect). */
    async load() {
      let r;
      try {
        r = await fetch(base, { credentials: 'same-origin', cache: 'no-store' });
      } catch (e) {
        return false;
      }
      if (!r.ok) return false;
      const l = await r.json();
      questions.clear();
      voted.clear();
      for (const q of l.questions || []) {
        if (q.voted) voted.add(q.id);
        questions.set(q.id, q);
      }
      pinned = l.pinned == null ? null : l.pinned;
      setTimer(l.timer);
      floor = Math.max(floor, Number(l.event_id) || 0);
      onChange();
      return true;
    },
    /** Applies one event (`question`, `pinned`, `timer`) with its id. */
    apply(name, data, id) {
      if (id && Number(id) <= floor) return;
      if (!data) return;
      if (name === 'question' && data.id != null) {
        questions.set(data.id, data);
      } else if (name === 'pinned' && data.new_broadcast) {
        // A new broadcast: the previous one's questions left the list.
        debate.load();
        return;
      } else if (name === 'pinned') {
        pinned = data.id == null ? null : data.id;
        if (data.question) questions.set(data.question.id, data.question);
      } else if (name === 'timer') {
        setTimer(data);
      } else {
        return;
      }
      onChange();
    },
    list() { return Array.from(questions.values()).sort(order); },
    pinned() { return pinned == null ? null : questions.get(pinned) || null; },
    timer() { return timer; },
    hasVoted(id) { return voted.has(id); },
    /** Votes for a question or takes the vote back; resolves to { ok, status, data }. */
    async vote(id, add) {
      let r;
      try {
        r = await fetch(base + '/' + encodeURIComponent(id) + '/vote', {
          method: add ? 'POST' : 'DELETE',
          credentials: 'same-origin',
        });
      } catch (e) {
        return { ok: false, status: 0, data: { error: 'network error' } };
      }
      let data = null;
      try { data = await r.json(); } catch (e) { /* not JSON */ }
      if (r.ok) {
        if (add) voted.add(id); else voted.delete(id);
        const q = questions.get(id);
        if (q && data && typeof data.votes === 'number') q.votes = data.votes;
        onChange();
      }
      return { ok: r.ok, status: r.status, data };
    },
    /** Asks a question; resolves to { ok, status, data, retryAfter }. */
    async ask(text, nick) {
      let r;
      try {
        r = await fetch(base, {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ text, nick }),
        });
      } catch (e) {
        return { ok: false, status: 0, data: { error: 'network error' } };
      }
      let data = null;
      try { data = await r.json(); } catch (e) { /* not JSON */ }
      if (r.ok && data && data.id != null && !questions.has(data.id)) {
        questions.set(data.id, data);
        onChange();
      }
      return { ok: r.ok, status: r.status, data, retryAfter: Number(r.headers.get('Retry-After')) || 0 };
    },
  };
  return debate;
}

/** Who asked: the signed-in author's display name, else the nick. */
export function askedBy(q) {
  return q.author ? q.author.display_name || q.author.handle : q.nick;
}

/** Shows the pinned question in `root` (hidden when none): `textEl` and `byEl` get text. */
export function showPinned(root, textEl, byEl, q) {
  if (!q) {
    root.hidden = true;
    textEl.textContent = '';
    if (byEl) byEl.textContent = '';
    return;
  }
  textEl.textContent = q.text;
  if (byEl) byEl.textContent = '— ' + askedBy(q);
  root.hidden = false;
}

/**
 * Keeps `el` showing the timer of `debate` (m:ss left, then "Time's up"), hidden when none.
 * Returns a function to call after the timer changes.
 */
export function timerDisplay(el, debate) {
  function draw() {
    const t = debate.timer();
    if (!t) {
      el.hidden = true;
      el.textContent = '';
      el.classList.remove('up');
      return;
    }
    const left = Date.parse(t.ends_at) - (Date.now() + t.offset);
    el.hidden = false;
    if (!(left > 0)) {
      el.textContent = "Time's up";
      el.classList.add('up');
      return;
    }
    const s = Math.ceil(left / 1000);
    const m = Math.floor(s / 60);
    el.textContent = m + ':' + String(s % 60).padStart(2, '0');
    el.classList.remove('up');
  }
  // One cheap tick for the countdown; no events per second from the server.
  setInterval(draw, 250);
  draw();
  return draw;
}

// The chat as the watch page and the studio both show it: a list of messages that keeps to
// the bottom while the reader is there, drops the oldest past a limit and removes deleted
// ones; and posting a message. Text from viewers is only ever inserted with textContent.

const MAX_MESSAGES = 500;

/**
 * A signed-in author: avatar, display name linking to the profile, and the verified mark (the
 * provider vouched for this name; an anonymous nick never has the mark).
 */
function authorOf(author) {
  const span = document.createElement('span');
  span.className = 'author';
  if (author.avatar_url) {
    const img = document.createElement('img');
    img.className = 'avatar';
    img.src = author.avatar_url;
    img.alt = '';
    img.width = 20;
    img.height = 20;
    span.append(img);
  }
  const a = document.createElement('a');
  a.className = 'nick';
  a.href = author.profile_url;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  a.title = author.handle;
  a.textContent = author.display_name;
  const mark = document.createElement('span');
  mark.className = 'verified';
  mark.title = author.handle + ' (' + author.provider + ')';
  mark.setAttribute('aria-label', 'verified ' + author.provider + ' account ' + author.handle);
  mark.textContent = '✓';
  span.append(a, mark);
  return span;
}

/**
 * A message list in `list` (an <ol>). `decorate(li, message)` adds to each item (the studio's
 * moderation buttons).
 */
export function createChatList(list, { decorate } = {}) {
  const shown = new Map(); // message id -> <li>

  const atBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 40;

  function add(m) {
    if (shown.has(m.id)) return;
    const stick = atBottom();
    const li = document.createElement('li');
    li.dataset.id = String(m.id);
    const time = document.createElement('time');
    time.dateTime = m.ts;
    const d = new Date(m.ts);
    time.textContent = Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const nick = m.author ? authorOf(m.author) : document.createElement('span');
    if (!m.author) {
      nick.className = 'nick';
      nick.textContent = m.nick;
    }
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    li.append(time, ' ', nick, ' ', text);
    if (decorate) decorate(li, m);
    list.append(li);
    shown.set(m.id, li);
    while (list.children.length > MAX_MESSAGES) {
      const first = list.firstElementChild;
      shown.delete(Number(first.dataset.id));
      first.remove();
    }
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function remove(id) {
    const li = shown.get(id);
    if (!li) return;
    // Keyboard users keep their place: focus moves to the next message's first button.
    if (li.contains(document.activeElement)) {
      const next = li.nextElementSibling || li.previousElementSibling;
      const target = next && next.querySelector('button');
      (target || list).focus();
    }
    li.remove();
    shown.delete(id);
  }

  return { add, remove };
}

/**
 * Posts `{nick, text, cross_post?}` to the channel's chat. Resolves to { ok, error, retryAfter
 * (seconds, when rate limited), message (the posted message, with its cross-post state) } and
 * never throws.
 */
export async function postChat(channel, body) {
  let r;
  try {
    r = await fetch('/api/channels/' + encodeURIComponent(channel) + '/chat', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch (e) {
    return { ok: false, error: 'network error: not sent', retryAfter: 0 };
  }
  if (r.status === 202) {
    const message = await r.json().catch(() => null);
    return { ok: true, error: null, retryAfter: 0, message };
  }
  let error = 'could not send (' + r.status + ')';
  try { const j = await r.json(); if (j.error) error = j.error; } catch (e) { /* keep */ }
  const retry = Number(r.headers.get('Retry-After'));
  return { ok: false, error, retryAfter: r.status === 429 && retry > 0 ? Math.min(retry, 60) : 0 };
}

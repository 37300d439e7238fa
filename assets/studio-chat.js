// The chat panel with moderation: messages from the channel's event stream, each with Delete
// and Ban buttons, a send box (the broadcaster chats too), slow mode and the list of bans.
// Moderation uses the channel-scoped admin routes on the studio's credential (auth.admin).
// The list and posting are the watch page's (chat-list.js); text from viewers is only ever
// inserted with textContent.

import { createChatList, postChat } from './chat-list.js';

export function mountChat(root, ctx) {
  const { channel, events, auth, signals } = ctx;
  const $ = (id) => document.getElementById(id);
  const list = $('messages');
  const connEl = $('chat-conn');
  const form = $('send-form');
  const nickEl = $('nick');
  const textEl = $('text');
  const sendBtn = $('send');
  const sendStatus = $('send-status');
  const slowSel = $('slow-mode');
  const slowBtn = $('slow-apply');
  const bansBox = $('bans');
  const banList = $('ban-list');
  const banForm = $('ban-form');
  const banAddress = $('ban-address');
  const modStatus = $('mod-status');

  function say(text) { modStatus.textContent = text; }

  function button(label, aria, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'mini';
    b.textContent = label;
    b.setAttribute('aria-label', aria);
    b.addEventListener('click', onClick);
    return b;
  }

  const chat = createChatList(list, {
    decorate(li, m) {
      const actions = document.createElement('span');
      actions.className = 'msg-actions';
      actions.append(
        button('Delete', 'Delete message from ' + m.nick, () => del(m)),
        button('Ban', 'Ban ' + m.nick, () => banNick(m.nick)),
      );
      li.append(actions);
    },
  });

  function needKey() {
    if (auth.ready()) return false;
    say('Enter the stream key first: moderation uses it.');
    auth.focusKey();
    return true;
  }

  async function del(m) {
    if (needKey()) return;
    const r = await auth.admin('chat/' + m.id, { method: 'DELETE' });
    // Removed from the list by the `delete` event every page gets; a message already gone
    // (404) is removed here.
    if (r.ok || r.status === 404) { chat.remove(m.id); say(''); } else say('Not deleted: ' + r.error);
  }

  async function banNick(nick) {
    if (needKey()) return;
    const r = await auth.admin('bans', { method: 'POST', body: { nick } });
    if (!r.ok) return say('Not banned: ' + r.error);
    const n = r.data && r.data.deleted_messages;
    say('Banned ' + nick + (n ? ' (' + n + (n === 1 ? ' message' : ' messages') + ' removed)' : '') + '.');
    loadBans();
  }

  function banItem(what, value) {
    const li = document.createElement('li');
    const label = document.createElement('span');
    label.textContent = value;
    const body = what === 'nick' ? { nick: value } : { address: value };
    li.append(label, button('Unban', 'Unban ' + value, async () => {
      const r = await auth.admin('bans', { method: 'DELETE', body });
      if (r.ok || r.status === 404) { li.remove(); say('Unbanned ' + value + '.'); } else say('Not unbanned: ' + r.error);
    }));
    return li;
  }

  async function loadBans() {
    if (!auth.ready()) return;
    const r = await auth.admin('bans');
    if (!r.ok || !r.data) return;
    banList.replaceChildren(
      ...(r.data.nicks || []).map((n) => banItem('nick', n)),
      ...(r.data.addresses || []).map((a) => banItem('address', a)),
    );
    if (!banList.children.length) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = 'Nobody is banned.';
      banList.append(li);
    }
  }

  async function loadSlowMode() {
    if (!auth.ready()) return;
    const r = await auth.admin('slow-mode');
    if (!r.ok || !r.data || typeof r.data.seconds !== 'number') return;
    const v = String(r.data.seconds);
    if (![...slowSel.options].some((o) => o.value === v)) {
      const o = document.createElement('option');
      o.value = v;
      o.textContent = v + ' s';
      slowSel.append(o);
    }
    slowSel.value = v;
  }

  slowBtn.addEventListener('click', async () => {
    if (needKey()) return;
    const seconds = Number(slowSel.value);
    const r = await auth.admin('slow-mode', { method: 'PUT', body: { seconds } });
    if (!r.ok) return say('Slow mode not changed: ' + r.error);
    say(seconds ? 'Slow mode on: one message every ' + slowSel.selectedOptions[0].textContent + ' per viewer.' : 'Slow mode off.');
  });

  bansBox.addEventListener('toggle', () => { if (bansBox.open) loadBans(); });
  banForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (needKey()) return;
    const address = banAddress.value.trim();
    const r = await auth.admin('bans', { method: 'POST', body: { address } });
    if (!r.ok) return say('Not banned: ' + r.error);
    banAddress.value = '';
    say('Banned ' + address + '.');
    loadBans();
  });

  // Once the studio holds a working credential (the broadcast went live), show the current
  // moderation settings.
  signals.addEventListener('broadcast', (e) => {
    if (e.detail.state === 'live') { loadSlowMode(); if (bansBox.open) loadBans(); }
  });

  events.on('chat', chat.add);
  events.on('delete', (d) => chat.remove(d.id));
  events.onState((s) => { connEl.textContent = s === 'open' ? '' : '(reconnecting…)'; });

  let cooldown = null;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const nick = nickEl.value.trim();
    const text = textEl.value.trim();
    if (!nick) { nickEl.focus(); return; }
    if (!text) { textEl.focus(); return; }
    sendStatus.textContent = '';
    const r = await postChat(channel, { nick, text });
    if (r.ok) { textEl.value = ''; textEl.focus(); return; }
    sendStatus.textContent = r.error;
    if (r.retryAfter) {
      sendBtn.disabled = true;
      clearTimeout(cooldown);
      cooldown = setTimeout(() => { sendBtn.disabled = false; }, r.retryAfter * 1000);
    }
  });
}

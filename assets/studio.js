// The broadcaster's studio (/studio/{channel}): camera, go live over WHIP, and the channel's
// status and chat beside it. This module only wires the pieces together:
//
//   ctx.events   the channel's event stream, shared by all panels (studio-events.js)
//   ctx.auth     the studio's credential and channel-scoped admin calls (studio-auth.js)
//   ctx.media    camera, microphone, preview and picture size (studio-media.js)
//   ctx.signals  an EventTarget for panels to tell each other things ('broadcast' state)
//
// Each page section carries `data-panel="NAME"` and is mounted by the function registered
// under NAME below. A new panel (questions, timer) is a module exporting `mount(root, ctx)`,
// one line in PANELS, and a <section data-panel="NAME"> in studio.html.

import { createAuth } from './studio-auth.js';
import { mountBroadcast } from './studio-broadcast.js';
import { mountChat } from './studio-chat.js';
import { openEvents } from './studio-events.js';
import { createMedia } from './studio-media.js';
import { mountQuestions } from './studio-questions.js';
import { mountStatus } from './studio-status.js';

const PANELS = {
  status: mountStatus,
  broadcast: mountBroadcast,
  chat: mountChat,
  questions: mountQuestions,
};

const $ = (id) => document.getElementById(id);
const channel = document.body.dataset.channel;

const ctx = {
  channel,
  events: openEvents(channel),
  auth: createAuth(channel, { input: $('stream-key'), row: $('key-row') }),
  media: createMedia({
    video: $('preview'),
    message: $('preview-msg'),
    cameraSel: $('camera'),
    micSel: $('microphone'),
    sizeInputs: document.querySelectorAll('input[name="size"]'),
  }),
  signals: new EventTarget(),
  panels: {},
};

for (const el of document.querySelectorAll('[data-panel]')) {
  const name = el.dataset.panel;
  const mount = PANELS[name];
  if (!mount) continue;
  try {
    ctx.panels[name] = mount(el, ctx) || {};
  } catch (e) {
    console.error('studio: panel', name, 'failed to start:', e);
  }
}

// A signed-in owner of this channel needs no stream key: the studio then sends the session
// cookie (WHIP and the channel's admin routes take it) and the key field goes away.
fetch('/api/me', { credentials: 'same-origin', cache: 'no-store' })
  .then((r) => (r.ok ? r.json() : null))
  .then((me) => {
    if (!me || !(me.owner_of || []).includes(channel)) return;
    ctx.auth.useSession();
    const note = $('owner-note');
    note.textContent = 'Signed in as ' + me.handle + ', an owner of this channel: no stream key needed.';
    note.hidden = false;
  })
  .catch(() => { /* signed out or offline: the key field stays */ });

ctx.events.start();
if (ctx.panels.broadcast && ctx.panels.broadcast.openCamera) ctx.panels.broadcast.openCamera();

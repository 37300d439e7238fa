// Signing in, on every page that has an element with id "account": the "Sign in" button opens
// a panel with the providers this server offers (from GET /api/me's 401 answer), a signed-in
// viewer sees their name, avatar and "Sign out". Other scripts read the viewer through
// window.onairAccount: `ready` (a promise of the /api/me answer or null) and `onChange(fn)`.
// Text from providers is only ever inserted with textContent.
'use strict';
(function () {
  const root = document.getElementById('account');
  const listeners = [];
  let me = null;
  let resolveReady;
  const ready = new Promise((r) => { resolveReady = r; });
  window.onairAccount = {
    ready,
    get me() { return me; },
    onChange(fn) { listeners.push(fn); },
    signInUrl(provider, params) {
      const q = new URLSearchParams(params || {});
      q.set('return', location.pathname + location.search);
      return '/auth/' + provider + '/start?' + q.toString();
    },
  };
  if (!root) { resolveReady(null); return; }

  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    e.append(...kids);
    return e;
  };

  function changed() { for (const fn of listeners) fn(me); }

  function renderSignedIn() {
    root.replaceChildren();
    const who = el('span', { class: 'me' });
    if (me.avatar_url) who.append(el('img', { class: 'avatar', src: me.avatar_url, alt: '', width: '24', height: '24' }));
    const link = el('a', { href: me.profile_url, target: '_blank', rel: 'noopener noreferrer', text: me.display_name });
    link.title = me.handle;
    who.append(link, ' ', el('span', { class: 'verified', title: 'signed in with ' + me.provider, 'aria-label': 'verified ' + me.provider + ' account', text: '✓' }));
    const out = el('button', { type: 'button', class: 'secondary', text: 'Sign out' });
    out.addEventListener('click', async () => {
      await fetch('/auth/logout', { method: 'POST' }).catch(() => {});
      me = null;
      renderSignedOut(lastOffer);
      changed();
    });
    root.append(who, ' ', out);
  }

  let lastOffer = {};
  function renderSignedOut(offer) {
    lastOffer = offer || {};
    root.replaceChildren();
    const toggle = el('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false', 'aria-controls': 'signin-panel', text: 'Sign in' });
    const panel = el('div', { id: 'signin-panel', class: 'signin-panel', hidden: '' });
    toggle.addEventListener('click', () => {
      const open = panel.hidden;
      panel.hidden = !open;
      toggle.setAttribute('aria-expanded', String(open));
      if (open) { const f = panel.querySelector('input'); if (f) f.focus(); }
    });
    const allowPost = el('input', { type: 'checkbox', id: 'signin-post' });
    const status = el('p', { class: 'send-status', role: 'status' });
    const go = (provider, params) => {
      if (allowPost.checked) params.cross_post = '1';
      location.href = window.onairAccount.signInUrl(provider, params);
    };
    if (lastOffer.mastodon) {
      const f = el('form', { class: 'signin-row' });
      const inst = el('input', { id: 'signin-mastodon', name: 'instance', placeholder: '@you@mastodon.social', required: '', autocomplete: 'username' });
      f.append(el('label', { for: 'signin-mastodon', text: 'Mastodon handle or server' }), inst,
        el('button', { type: 'submit', text: 'Sign in with Mastodon' }));
      f.addEventListener('submit', (e) => { e.preventDefault(); go('mastodon', { instance: inst.value.trim() }); });
      panel.append(f);
    }
    if (lastOffer.bluesky) {
      const f = el('form', { class: 'signin-row' });
      const handle = el('input', { id: 'signin-bluesky', name: 'handle', placeholder: 'you.bsky.social', required: '', autocomplete: 'username' });
      f.append(el('label', { for: 'signin-bluesky', text: 'Bluesky handle' }), handle);
      if (lastOffer.bluesky === 'app_password') {
        const pw = el('input', { id: 'signin-bluesky-pw', type: 'password', required: '', autocomplete: 'off' });
        f.append(el('label', { for: 'signin-bluesky-pw', text: 'App password' }), pw);
        f.append(el('button', { type: 'submit', text: 'Sign in with Bluesky' }));
        f.addEventListener('submit', async (e) => {
          e.preventDefault();
          status.textContent = '';
          const r = await fetch('/auth/bluesky/app-password', {
            method: 'POST', headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ handle: handle.value.trim(), app_password: pw.value }),
          }).catch(() => null);
          pw.value = '';
          if (r && r.ok) { load(); return; }
          let why = 'could not sign in';
          try { const j = await r.json(); if (j.error) why = j.error; } catch (err) { /* keep */ }
          status.textContent = why;
        });
        f.append(el('p', { class: 'muted', text: 'Make an app password in Bluesky: Settings, Privacy and security, App passwords. onair uses it once to sign you in and does not keep it.' }));
      } else {
        f.append(el('button', { type: 'submit', text: 'Sign in with Bluesky' }));
        f.addEventListener('submit', (e) => { e.preventDefault(); go('bluesky', { handle: handle.value.trim() }); });
      }
      panel.append(f);
    }
    if (lastOffer.x) {
      const b = el('button', { type: 'button', text: 'Sign in with X' });
      b.addEventListener('click', () => go('x', {}));
      panel.append(el('div', { class: 'signin-row' }, b));
    }
    if (!lastOffer.mastodon && !lastOffer.bluesky && !lastOffer.x) {
      panel.append(el('p', { class: 'muted', text: 'Signing in is not enabled on this server.' }));
    } else {
      panel.append(el('p', { class: 'signin-row' }, allowPost,
        el('label', { for: 'signin-post', text: ' Let me post chat messages to my timeline (only the ones I choose)' })));
    }
    panel.append(status);
    root.append(toggle, panel);
  }

  async function load() {
    try {
      const r = await fetch('/api/me', { cache: 'no-store' });
      const j = await r.json().catch(() => ({}));
      if (r.ok) { me = j; renderSignedIn(); } else { me = null; renderSignedOut(j.sign_in); }
    } catch (e) {
      me = null;
      renderSignedOut({});
    }
    resolveReady(me);
    changed();
  }
  load();
})();

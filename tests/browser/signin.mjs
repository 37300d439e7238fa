// Browser test of signing in, in Debian's headless Chromium driven by playwright-core.
// Usage: node tests/browser/signin.mjs <base-url> <mastodon-url> <screenshot-dir>
// The Rust test (tests/signin_browser.rs) starts onair and a Mastodon stand-in. As a new viewer
// would: open the watch page, sign in with Mastodon (allowing posts), approve at the
// stand-in's consent page, chat (the message shows the verified author to another viewer),
// tick "Also post to my timeline", see the exact post, post it, see it confirmed; an anonymous
// viewer cannot take the signed-in handle; sign out. Prints "POSTED <json text>" with the text
// the page showed, then "BROWSER OK".
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, mastodon, artifacts] = process.argv.slice(2);
if (!base || !mastodon || !artifacts) {
  console.error('usage: signin.mjs <base-url> <mastodon-url> <screenshot-dir>');
  process.exit(2);
}

const log = (...a) => console.log('[browser]', ...a);
const profiles = [];
let failed = false;
let viewer;
let other;

function fail(msg) { throw new Error(msg); }

async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'onair-chromium-'));
  profiles.push(profile);
  return chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
  });
}

try {
  viewer = await launch();
  other = await launch();
  const pageErrors = [];
  const open = async (ctx) => {
    const p = await ctx.newPage();
    p.on('pageerror', (e) => pageErrors.push(String(e)));
    p.on('console', (m) => { if (m.type() === 'error') log('console error:', m.text()); });
    await p.goto(base + '/watch/alice');
    return p;
  };
  const a = await open(viewer);
  const b = await open(other);

  // Signed out: "Sign in" opens the panel with Mastodon.
  const signIn = a.getByRole('button', { name: 'Sign in', exact: true });
  await signIn.waitFor({ timeout: 10000 });
  await signIn.click();
  await a.getByLabel('Mastodon handle or server').fill(mastodon);
  await a.getByLabel(/Let me post chat messages to my timeline/).check();
  await a.screenshot({ path: join(artifacts, 'signin-panel.png') });
  await a.getByRole('button', { name: 'Sign in with Mastodon' }).click();

  // The Mastodon stand-in's consent page: approve as bob.
  await a.waitForURL((u) => u.toString().startsWith(mastodon), { timeout: 15000 });
  log('at the consent page:', a.url().split('?')[0]);
  const scopes = await a.textContent('#scopes');
  if (!/write:statuses/.test(scopes)) fail('posting scope not asked although the viewer allowed it: ' + scopes);
  await a.getByLabel('Account').fill('bob');
  await a.getByRole('button', { name: 'Authorize' }).click();

  // Back on the watch page, signed in.
  await a.waitForURL((u) => u.toString() === base + '/watch/alice', { timeout: 15000 });
  await a.getByRole('button', { name: 'Sign out' }).waitFor({ timeout: 10000 });
  const shownName = await a.textContent('#account .me a');
  if (shownName !== 'Bob B.') fail('signed-in name shown: ' + shownName);
  if (await a.isVisible('#nick')) fail('the nick field is still shown to a signed-in viewer');
  log('signed in as', shownName);

  // A message without cross-posting: the other viewer sees it with the verified author.
  await a.getByLabel('Message').fill('hello, signed in');
  await a.getByRole('button', { name: 'Send' }).click();
  await b.waitForFunction(
    () => [...document.querySelectorAll('#messages li')].some((li) => li.querySelector('.text').textContent === 'hello, signed in'
      && li.querySelector('.author .verified') && li.querySelector('.author a').textContent === 'Bob B.'),
    null, { timeout: 10000 });
  const href = await b.$eval('#messages li:last-child .author a', (e) => e.getAttribute('href'));
  if (href !== mastodon + '/@bob') fail('profile link: ' + href);
  log('other viewer sees the verified author linking to', href);

  // Cross-post: tick the box, see the exact text before the first post, post it.
  const words = 'Great point about the budget!';
  await a.getByLabel('Also post to my timeline').check();
  await a.getByLabel('Message').fill(words);
  await a.getByRole('button', { name: 'Send' }).click();
  await a.waitForSelector('#cross-confirm:not([hidden])', { timeout: 10000 });
  const where = await a.textContent('#cross-where');
  const preview = await a.textContent('#cross-text');
  log('confirmation:', where, JSON.stringify(preview));
  if (!/Mastodon/.test(where) || !/unlisted/.test(where)) fail('confirmation does not say where: ' + where);
  if (!preview.startsWith(words) || !preview.includes(base + '/watch/alice')) fail('preview text: ' + preview);
  await a.screenshot({ path: join(artifacts, 'signin-cross-post-confirm.png') });
  await a.getByRole('button', { name: 'Post it' }).click();
  await a.waitForFunction(() => document.getElementById('cross-status').textContent === 'Posted to your timeline.',
    null, { timeout: 30000 });
  await b.waitForFunction(
    (t) => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === t),
    words, { timeout: 10000 });
  console.log('POSTED ' + JSON.stringify(preview));
  // The box unticks itself after the message (no "for this broadcast").
  if (await a.getByLabel('Also post to my timeline').isChecked()) fail('cross-post box stayed ticked');

  // An anonymous viewer cannot take the signed-in viewer's name as a nick.
  const handle = shownName;
  await b.fill('#nick', handle);
  await b.fill('#text', 'I am bob, honest');
  await b.click('#send');
  await b.waitForFunction(() => document.getElementById('send-status').textContent !== '', null, { timeout: 10000 });
  const refusal = await b.textContent('#send-status');
  log('anonymous', handle, 'refused:', refusal);
  if (!/signed-in/.test(refusal)) fail('impersonating nick not refused: ' + refusal);
  await a.screenshot({ path: join(artifacts, 'signin-chat.png') });

  // Sign out: the page is signed out, and so is the server.
  await a.getByRole('button', { name: 'Sign out' }).click();
  await a.getByRole('button', { name: 'Sign in', exact: true }).waitFor({ timeout: 10000 });
  const me = await a.evaluate(async () => (await fetch('/api/me')).status);
  if (me !== 401) fail('/api/me after sign-out: ' + me);
  await a.reload();
  await a.getByRole('button', { name: 'Sign in', exact: true }).waitFor({ timeout: 10000 });
  log('signed out');
  if (pageErrors.length) fail('page errors: ' + pageErrors.join('; '));
  console.log('BROWSER OK');
} catch (e) {
  console.error('BROWSER FAILED:', e && e.stack ? e.stack : e);
  failed = true;
} finally {
  for (const c of [viewer, other]) if (c) await c.close().catch(() => {});
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);

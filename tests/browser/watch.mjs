// Browser test of the watch page, in Debian's headless Chromium driven by playwright-core.
// Usage: node tests/browser/watch.mjs <base-url> <screenshot-dir> <stop-file>
// The Rust test (tests/watch_page.rs) pushes with ffmpeg; this script checks playback, chat
// between two pages, that markup in chat stays text, then writes "stop" into <stop-file> to ask
// the Rust side to stop the push, waits for the offline state, writes "start" for a new push and
// waits for playback to resume. Prints "BROWSER OK" on success.
import { chromium } from 'playwright-core';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

const [base, artifacts, stopFile] = process.argv.slice(2);
if (!base || !artifacts || !stopFile) {
  console.error('usage: watch.mjs <base-url> <screenshot-dir> <stop-file>');
  process.exit(2);
}

/** A TCP relay to the server whose connections can all be cut at once. */
function startRelay(target) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        base: 'http://127.0.0.1:' + server.address().port,
        cutAll: () => { for (const s of sockets) s.destroy(); },
      });
    });
  });
}

const profile = mkdtempSync(join(tmpdir(), 'onair-chromium-'));
const log = (...a) => console.log('[browser]', ...a);
let browser;
let failed = false;

function fail(msg) {
  failed = true;
  throw new Error(msg);
}

try {
  // launchPersistentContext is how playwright takes a --user-data-dir of our choosing.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
    viewport: { width: 1280, height: 720 },
  });
  browser = context;
  const dialogs = [];
  const pageErrors = [];
  const watch = async (via, path = '/watch/alice') => {
    const p = await context.newPage();
    p.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
    p.on('pageerror', (e) => pageErrors.push(String(e)));
    p.on('console', (m) => { if (m.type() === 'error') log('console error:', m.text()); });
    await p.goto(via + path);
    return p;
  };
  // Page a reaches the server through a TCP relay the test can cut, as a network drop would.
  const relay = await startRelay(new URL(base));
  const a = await watch(relay.base);
  const b = await watch(base);

  // Both pages show LIVE and play: currentTime advances.
  for (const [name, p] of [['a', a], ['b', b]]) {
    await p.waitForFunction(() => document.getElementById('live-badge').textContent === 'LIVE', null, { timeout: 30000 });
    await p.waitForFunction(() => document.getElementById('video').currentTime > 0.5, null, { timeout: 45000 });
    const t1 = await p.evaluate(() => document.getElementById('video').currentTime);
    await p.waitForTimeout(2500);
    const t2 = await p.evaluate(() => document.getElementById('video').currentTime);
    log(`page ${name}: currentTime ${t1.toFixed(2)} -> ${t2.toFixed(2)}`);
    if (!(t2 > t1 + 1)) fail(`video on page ${name} does not advance (${t1} -> ${t2})`);
  }
  // The browser's own HLS player, where it has one (Chromium does), also plays.
  const nativeHls = await a.evaluate(() => document.createElement('video').canPlayType('application/vnd.apple.mpegurl'));
  if (nativeHls) {
    const c = await watch(base + '/watch/alice?player=native', '');
    await c.waitForFunction(() => document.getElementById('video').currentTime > 0.5, null, { timeout: 45000 });
    const n1 = await c.evaluate(() => document.getElementById('video').currentTime);
    await c.waitForFunction((t) => document.getElementById('video').currentTime > t + 1, n1, { timeout: 20000 });
    const nOpts = await c.$$eval('#quality option', (os) => os.map((o) => o.textContent));
    log('native HLS plays; quality menu:', JSON.stringify(nOpts));
    if (!nOpts.includes('source')) fail('native quality menu lacks the source rendition');
    await c.close();
  } else {
    log('this browser has no native HLS; skipped that path');
  }
  const usesHlsJs = await a.evaluate(() => typeof window.Hls !== 'undefined' && window.Hls.isSupported());
  log('hls.js in use:', usesHlsJs);
  const options = await a.$$eval('#quality option', (os) => os.map((o) => o.textContent));
  log('quality menu:', JSON.stringify(options));
  if (!options.includes('Auto') || options.length < 2) fail('quality menu not filled: ' + options);
  await a.waitForFunction(() => /\d+ watching/.test(document.getElementById('viewers').textContent), null, { timeout: 10000 });
  log('viewers shown:', await a.textContent('#viewers'));

  // A message typed and sent by keyboard on page a appears on page b.
  await a.focus('#nick');
  await a.keyboard.type('ann');
  await a.keyboard.press('Tab');
  await a.keyboard.type('hello from page a');
  await a.keyboard.press('Enter');
  await b.waitForFunction(
    () => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === 'hello from page a'),
    null, { timeout: 10000 });
  log('message from a seen on b');

  // Markup is shown as text, never run.
  const evil = '<img src=x onerror=alert(1)>';
  await b.fill('#nick', 'mallory');
  await b.fill('#text', evil);
  await b.click('#send');
  await a.waitForFunction(
    (t) => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === t),
    evil, { timeout: 10000 });
  await a.waitForTimeout(500);
  const imgs = await a.$$eval('#messages img', (x) => x.length);
  if (imgs !== 0) fail('chat text was rendered as HTML');
  if (dialogs.length) fail('a dialog opened: ' + dialogs.join(', '));
  log('markup stayed text; no dialog');

  // The network drops: page a's connections (it goes through a TCP relay) are cut, a message is
  // posted meanwhile, and after reconnecting the page shows it (resumed with Last-Event-ID).
  const connCount = () => a.evaluate(() => document.getElementById('chat-conn').textContent);
  relay.cutAll();
  await a.waitForFunction(() => /reconnecting/.test(document.getElementById('chat-conn').textContent), null, { timeout: 15000 });
  log('event stream dropped:', await connCount());
  const missed = 'sent while you were away';
  const r = await fetch(base + '/api/channels/alice/chat', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ nick: 'carol', text: missed }),
  });
  if (r.status !== 202) fail('post from node: ' + r.status);
  await a.waitForFunction(
    (t) => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === t),
    missed, { timeout: 30000 });
  await a.waitForFunction(() => document.getElementById('chat-conn').textContent === '', null, { timeout: 10000 });
  const dupes = await a.$$eval('#messages .text', (x) => x.filter((e) => e.textContent === 'hello from page a').length);
  if (dupes !== 1) fail('messages duplicated after the reconnect: ' + dupes);
  log('reconnected and caught up');

  // Phone-sized screen: nothing overflows sideways, the send box is reachable.
  await a.setViewportSize({ width: 390, height: 844 });
  await a.waitForTimeout(300);
  const overflow = await a.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) fail('page overflows a phone-sized screen by ' + overflow + 'px');
  await a.screenshot({ path: join(artifacts, 'watch-phone.png') });
  await a.setViewportSize({ width: 1280, height: 720 });
  await a.waitForTimeout(300);
  await a.screenshot({ path: join(artifacts, 'watch-live.png') });

  // The broadcaster stops: both pages show offline.
  writeFileSync(stopFile, 'stop');
  for (const p of [a, b]) {
    await p.waitForFunction(() => document.getElementById('live-badge').textContent === 'OFFLINE'
      && !document.getElementById('offline').hidden, null, { timeout: 30000 });
  }
  log('offline shown');
  await a.screenshot({ path: join(artifacts, 'watch-offline.png') });

  // The broadcaster comes back: the page resumes by itself.
  writeFileSync(stopFile, 'start');
  await a.waitForFunction(() => document.getElementById('live-badge').textContent === 'LIVE', null, { timeout: 30000 });
  const r1 = await a.evaluate(() => document.getElementById('video').currentTime);
  await a.waitForFunction((t) => document.getElementById('video').currentTime > t + 1, r1, { timeout: 45000 });
  log('live again and playing');

  // The index page lists the live channel with a link to its watch page.
  await b.goto(base + '/');
  const links = await b.$$eval('#channels a', (x) => x.map((e) => e.getAttribute('href')));
  if (!links.includes('/watch/alice')) fail('index does not list alice: ' + links);
  await b.screenshot({ path: join(artifacts, 'index.png') });
  if (pageErrors.length) fail('page errors: ' + pageErrors.join('; '));
  console.log('BROWSER OK');
} catch (e) {
  console.error('BROWSER FAILED:', e && e.stack ? e.stack : e);
  failed = true;
} finally {
  if (browser) await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);

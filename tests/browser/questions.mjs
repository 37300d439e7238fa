// Browser test of debate mode, in Debian's headless Chromium driven by playwright-core.
// Usage: node tests/browser/questions.mjs <base-url> <stream-key> <screenshot-dir>
// Two watch pages (the second through a TCP relay that can cut its connections), the OBS
// overlay and the studio: a question asked in one page is voted in the other, pinned from the
// studio and must show as the banner in both pages and the overlay within 1 s; the timer
// started in the studio counts down everywhere and shows "Time's up"; an HTML-looking question
// stays text and opens no dialog; after a dropped connection the second page catches up.
// Prints one JSON report line and "QUESTIONS OK" on success.
import net from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail, launchStudioBrowser, log, screenshots, until } from './studio-lib.mjs';

const [base, key, artifacts] = process.argv.slice(2);
if (!base || !key || !artifacts) {
  console.error('usage: questions.mjs <base-url> <stream-key> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

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
        close: () => server.close(),
      });
    });
  });
}

const relay = await startRelay(new URL(base));
const browser = await launchStudioBrowser(base);
const dialogs = [];
const report = {};
try {
  const a = await browser.open('/watch/alice');
  const b = await browser.context.newPage();
  b.on('pageerror', (e) => browser.pageErrors.push(String(e)));
  await b.goto(relay.base + '/watch/alice');
  const overlay = await browser.open('/overlay/alice');
  const studio = await browser.open('/studio/alice');
  for (const p of [a, b, overlay, studio]) p.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });

  // The names CONTRACT.md gives, exactly once each.
  const once = async (what, loc) => {
    const n = await loc.count();
    if (n !== 1) fail(n + ' controls named "' + what + '" (want exactly 1)');
  };
  await once('Ask a question', a.getByRole('textbox', { name: 'Ask a question', exact: true }));
  await once('Ask', a.getByRole('button', { name: 'Ask', exact: true }));
  await once('Start timer', studio.getByRole('button', { name: 'Start timer', exact: true }));

  // Ask in page A (the nick is the chat's).
  await a.getByRole('textbox', { name: 'Nick', exact: true }).fill('ann');
  await a.getByRole('textbox', { name: 'Ask a question', exact: true }).fill('What would you change first?');
  await a.getByRole('button', { name: 'Ask', exact: true }).click();
  await until('the question in page B', 5000, () => b.locator('.question-list .q-text', { hasText: 'What would you change first?' }).count());

  // Vote in page B; page A sees the count (from the coalesced event).
  const voteB = b.getByRole('button', { name: 'Vote', exact: true });
  await once('Vote', voteB);
  await voteB.click();
  await until('the vote counted in page A', 5000, async () => (await a.locator('.question-list .q-votes').first().textContent()) === '1 vote');
  await until('Vote shown as pressed in page B', 5000, async () => (await voteB.getAttribute('aria-pressed')) === 'true');

  // An HTML-looking question stays text and runs nothing.
  const html = '<img src=x onerror=alert(1)><b>bold?</b>';
  await b.getByRole('textbox', { name: 'Ask a question', exact: true }).fill(html);
  await b.getByRole('button', { name: 'Ask', exact: true }).click();
  await until('the HTML-looking question in page A', 5000, () => a.locator('.question-list .q-text', { hasText: 'bold?' }).count());
  const shown = await a.evaluate(() => {
    const ps = [...document.querySelectorAll('.question-list .q-text')];
    const p = ps.find((x) => x.textContent.includes('bold?'));
    return { text: p.textContent, elements: p.children.length, imgs: document.querySelectorAll('.question-list img').length };
  });
  if (shown.text !== html || shown.elements !== 0 || shown.imgs !== 0) fail('markup was not kept as text: ' + JSON.stringify(shown));

  // The studio: the stream key, then Pin the first question.
  await studio.getByLabel('Stream key', { exact: true }).fill(key);
  const item = studio.locator('#queue li', { hasText: 'What would you change first?' });
  await until('the question in the studio queue', 5000, () => item.count());
  for (const name of ['Pin', 'Answered', 'Dismiss']) {
    await once(name + ' (first question)', item.getByRole('button', { name, exact: true }));
  }
  const banners = [[a, 'page A'], [b, 'page B'], [overlay, 'overlay']];
  const t0 = Date.now();
  await item.getByRole('button', { name: 'Pin', exact: true }).click();
  const seen = {};
  await Promise.all(banners.map(async ([p, name]) => {
    await p.waitForFunction(() => {
      const el = document.getElementById('pinned');
      return el && !el.hidden && document.getElementById('pinned-text').textContent === 'What would you change first?';
    }, null, { timeout: 5000 });
    seen[name] = Date.now() - t0;
  }));
  report.banner_ms = seen;
  for (const [name, ms] of Object.entries(seen)) if (ms > 1000) fail('the banner took ' + ms + ' ms in ' + name);
  log('banner shown after', JSON.stringify(seen));
  const transparent = await overlay.evaluate(() => getComputedStyle(document.body).backgroundColor);
  if (transparent !== 'rgba(0, 0, 0, 0)') fail('the overlay is not transparent: ' + transparent);

  // Start timer (1 min by default): every page counts down from the server's deadline.
  await studio.getByRole('button', { name: 'Start timer', exact: true }).click();
  const timers = [[a, '#timer'], [b, '#timer'], [overlay, '#timer'], [studio, '#studio-timer']];
  for (const [p, sel] of timers) {
    await p.waitForFunction((s) => /^[01]:\d\d$/.test(document.querySelector(s).textContent), sel, { timeout: 5000 });
  }
  const first = await a.locator('#timer').textContent();
  await until('the countdown to move', 4000, async () => (await a.locator('#timer').textContent()) !== first);
  report.countdown = [first, await a.locator('#timer').textContent()];
  await screenshots(a, artifacts, 'watch');
  await screenshots(studio, artifacts, 'studio');
  await overlay.screenshot({ path: join(artifacts, 'overlay.png'), omitBackground: true });

  // A 2 s timer (from the admin route, as a moderator's script would): "Time's up" everywhere.
  const put = await studio.evaluate(async (k) => (await fetch('/api/admin/channels/alice/timer', {
    method: 'PUT', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + k },
    body: JSON.stringify({ seconds: 2 }),
  })).status, key);
  if (put !== 200) fail('timer PUT: ' + put);
  for (const [p, sel] of timers) {
    await p.waitForFunction((s) => document.querySelector(s).textContent === "Time's up", sel, { timeout: 8000 });
  }

  // Page B loses its connection; meanwhile the question is answered and the other pinned.
  relay.cutAll();
  await item.getByRole('button', { name: 'Answered', exact: true }).click();
  const other = studio.locator('#queue li', { hasText: 'bold?' });
  await other.getByRole('button', { name: 'Pin', exact: true }).click();
  await b.waitForFunction(() => document.getElementById('pinned-text').textContent.includes('bold?'), null, { timeout: 15000 });
  const stale = await b.evaluate(() => document.querySelector('.question-list .q.answered .q-text'));
  if (!stale) fail('page B did not catch up with the answered question after reconnecting');
  // Reopen from the studio puts it back in the queue.
  await item.getByRole('button', { name: 'Reopen', exact: true }).click();
  await until('the reopened question in page A', 5000, () => a.locator('.question-list .q.open .q-text', { hasText: 'What would you change first?' }).count());

  if (dialogs.length) fail('a dialog opened: ' + dialogs.join(', '));
  if (browser.pageErrors.length) fail('page errors: ' + browser.pageErrors.join('; '));
  console.log(JSON.stringify(report));
  console.log('QUESTIONS OK');
} catch (e) {
  console.error(e);
  console.log('QUESTIONS FAILED: ' + e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
  relay.close();
}

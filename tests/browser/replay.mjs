// Browser test of the replay page, in Debian's headless Chromium driven by playwright-core.
// Usage: node tests/browser/replay.mjs <base-url> <channel> <recording> <early-text> <early-offset> <late-text> <late-offset> <question-text> <question-from> <question-until>
// Checks that a chat message appears when the video passes its media time (not before), that
// a seek back takes later messages away and a seek forward brings them, that the pinned
// question is the banner over the video while the video is within its time on screen (as
// text, seeks included), and that the channel's watch page lists the show while offline.
// Prints "BROWSER OK" on success.
import { chromium } from 'playwright-core';

const [base, channel, id, early, earlyAt, late, lateAt, question, qFrom, qUntil] = process.argv.slice(2);
const log = (...a) => console.log('[browser]', ...a);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
let code = 0;
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => log('page error', String(e)));
  await page.goto(`${base}/replay/${channel}/${id}`);
  const texts = () => page.$$eval('#messages li .text', (els) => els.map((e) => e.textContent));
  const time = () => page.evaluate(() => document.getElementById('video').currentTime);
  const banner = () => page.evaluate(() => {
    const b = document.getElementById('pinned');
    return b.hidden ? null : document.getElementById('pinned-text').textContent;
  });
  const bannerIs = (want) => page.waitForFunction((w) => {
    const b = document.getElementById('pinned');
    const shown = b.hidden ? null : document.getElementById('pinned-text').textContent;
    return shown === w;
  }, want, { timeout: 30000 });
  // Nothing is shown before the video gets there.
  await page.waitForFunction(() => document.getElementById('video').readyState >= 1, null, { timeout: 20000 });
  let shown = await texts();
  if (shown.includes(late)) throw new Error(`"${late}" shown at the start: ${shown}`);
  if (await banner() !== null) throw new Error(`a question is on screen at the start: ${await banner()}`);
  await page.evaluate(() => { const v = document.getElementById('video'); v.muted = true; return v.play(); });
  await page.waitForFunction((t) => [...document.querySelectorAll('#messages li .text')].some((e) => e.textContent === t),
    early, { timeout: 30000 });
  let t = await time();
  log('early message at', t, 'expected', earlyAt);
  if (t + 0.5 < Number(earlyAt)) throw new Error(`"${early}" shown at ${t}, before its time ${earlyAt}`);
  shown = await texts();
  if (shown.includes(late)) throw new Error(`"${late}" shown at ${t}, before ${lateAt}`);
  // The pinned question comes on screen at its moment, as text (no markup from its words).
  await bannerIs(question);
  t = await time();
  log('question on screen at', t, 'expected', qFrom);
  if (t + 0.5 < Number(qFrom)) throw new Error(`question shown at ${t}, before its time ${qFrom}`);
  if (await page.$('#pinned b')) throw new Error('the question\'s text was inserted as HTML');
  await page.waitForFunction((m) => [...document.querySelectorAll('#messages li .text')].some((e) => e.textContent === m),
    late, { timeout: 40000 });
  t = await time();
  log('late message at', t, 'expected', lateAt);
  if (t + 0.5 < Number(lateAt)) throw new Error(`"${late}" shown at ${t}, before its time ${lateAt}`);
  if (t > Number(lateAt) + 3) throw new Error(`"${late}" shown late, at ${t} (its time ${lateAt})`);
  // Answered: off screen once the video passes its end.
  await bannerIs(null);
  t = await time();
  log('question off screen at', t, 'expected', qUntil);
  if (t + 0.5 < Number(qUntil)) throw new Error(`question taken away at ${t}, before ${qUntil}`);
  // A seek back to the start takes both away; a seek past the late one brings it at once.
  await page.evaluate(() => { document.getElementById('video').currentTime = 0; });
  await page.waitForFunction((m) => ![...document.querySelectorAll('#messages li .text')].some((e) => e.textContent === m),
    late, { timeout: 10000 });
  log('seek back: later messages gone', await texts());
  await bannerIs(null);
  // A seek into the question's time brings it back at once.
  await page.evaluate((s) => { document.getElementById('video').currentTime = s; },
    (Number(qFrom) + Number(qUntil)) / 2);
  await bannerIs(question);
  log('seek into the question: on screen again');
  await page.evaluate((s) => { document.getElementById('video').currentTime = s; }, Number(lateAt) + 0.5);
  await page.waitForFunction((m) => [...document.querySelectorAll('#messages li .text')].some((e) => e.textContent === m),
    late, { timeout: 10000 });
  log('seek forward: late message back');
  await bannerIs(null);
  // The watch page, offline, lists the show with a link to its replay.
  const watch = await browser.newPage();
  await watch.goto(`${base}/watch/${channel}`);
  await watch.waitForSelector(`#past-list a[href="/replay/${channel}/${id}"]`, { timeout: 15000 });
  log('watch page lists the show');
  console.log('BROWSER OK');
} catch (e) {
  console.error(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);

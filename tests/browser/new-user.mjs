// The studio tried as a new user would (issue 13, "Done when"): open the studio URL, allow the
// camera (the fake one), enter the stream key, press Go live with every default (size, codec),
// and watch yourself at the watch URL. Also checks what a new user meets first: the controls'
// names, the Tab order with a visible focus, the layout at desktop and phone sizes
// (screenshots), and that the media time listed follows the wall clock.
//
// Usage: ONAIR_STUDIO_KEY=KEY node tests/browser/new-user.mjs BASE CHANNEL OUT_DIR [SECONDS]
// (the key comes from the environment, so it stays out of `ps`). Run by scripts/try-studio.
// Prints one JSON line with the figures and "NEW USER OK".
import { mkdirSync } from 'node:fs';
import {
  checkKeyboard, checkNames, fail, launchStudioBrowser, listedSeconds, log, screenshots,
  text, until, waitForPreview, waitLive,
} from './studio-lib.mjs';

const [base, channel, out, secondsArg] = process.argv.slice(2);
const key = process.env.ONAIR_STUDIO_KEY || '';
const seconds = Number(secondsArg || 30);
if (!base || !channel || !out || !key) {
  console.error('usage: ONAIR_STUDIO_KEY=KEY node new-user.mjs BASE CHANNEL OUT_DIR [SECONDS]');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const secs = (ms) => Math.round(ms / 100) / 10;
let browser;
let failed = false;

/** Every media playlist of the master, with its listed media time. */
async function listed() {
  const master = await (await fetch(base + '/hls/' + channel + '/master.m3u8')).text();
  const names = [...master.matchAll(/^([^#\s][^\s]*)\/index\.m3u8$/gm)].map((m) => m[1]);
  const found = {};
  for (const name of names) {
    const r = await fetch(base + '/hls/' + channel + '/' + name + '/index.m3u8');
    if (r.status === 200) found[name] = listedSeconds(await r.text());
  }
  return found;
}

try {
  browser = await launchStudioBrowser(base);
  const studio = await browser.open('/studio/' + channel);
  await waitForPreview(studio);
  await checkNames(studio);
  const tabOrder = await checkKeyboard(studio);
  log('tab order:', tabOrder.join(' → '));
  await screenshots(studio, out, 'studio-start');

  // Type the key, press Go live: nothing else changed.
  await studio.getByLabel('Stream key', { exact: true }).click();
  await studio.keyboard.type(key);
  await studio.getByRole('button', { name: 'Go live', exact: true }).click();
  const pressed = Date.now();
  const status = await waitLive(studio);
  const liveAfter = Date.now() - pressed;
  log('studio:', status, secs(liveAfter), 's after Go live');

  const watch = await browser.open('/watch/' + channel);
  await watch.waitForFunction(() => document.getElementById('video').currentTime > 1, null, { timeout: 60000 });
  const watchingAfter = Date.now() - pressed;
  const [w, h] = await watch.evaluate(() => { const v = document.getElementById('video'); return [v.videoWidth, v.videoHeight]; });
  const qualities = await watch.$$eval('#quality option', (os) => os.map((o) => o.textContent));
  log('watching yourself', secs(watchingAfter), 's after Go live at', w + 'x' + h, '; quality menu:', qualities.join(' | '));
  await studio.waitForFunction(() => /^[1-9]\d* viewers?$/.test(document.getElementById('viewers').textContent), null, { timeout: 20000 });

  // On air for a while: the listed media time must follow the wall clock.
  await until('the broadcast to run ' + seconds + ' s', (seconds + 10) * 1000, async () => Date.now() - pressed >= seconds * 1000);
  const media = await listed();
  const wall = (Date.now() - pressed) / 1000;
  log('listed media', JSON.stringify(media), 'after', wall.toFixed(1), 's on air');
  for (const [name, t] of Object.entries(media)) {
    if (t > 1.2 * wall + 3) fail(name + ' lists ' + t.toFixed(1) + ' s of media after ' + wall.toFixed(1) + ' s on air');
  }
  if (!media.source) fail('no source rendition listed');
  await screenshots(studio, out, 'studio-live');
  await screenshots(watch, out, 'watch-live');

  await studio.getByRole('button', { name: 'End broadcast', exact: true }).click();
  await watch.waitForFunction(() => document.getElementById('live-badge').textContent === 'OFFLINE', null, { timeout: 20000 });
  await until('ENDLIST', 15000, async () => (await (await fetch(base + '/hls/' + channel + '/source/index.m3u8')).text()).includes('#EXT-X-ENDLIST'));
  log('ended:', await text(studio, '#broadcast-status'));
  if (browser.pageErrors.length) fail('page errors: ' + browser.pageErrors.join('; '));
  console.log(JSON.stringify({
    status, live_after_s: secs(liveAfter), watching_after_s: secs(watchingAfter), played: w + 'x' + h,
    qualities, wall_s: Math.round(wall * 10) / 10, listed_s: media, tab_order: tabOrder,
  }));
  console.log('NEW USER OK');
} catch (e) {
  console.error('NEW USER FAILED:', e && e.stack ? e.stack : e);
  failed = true;
} finally {
  if (browser) await browser.close();
}
process.exit(failed ? 1 : 0);

// Browser test of the studio page: Debian's headless Chromium with a fake camera and
// microphone, driven by playwright-core, goes live from /studio/alice over WHIP; a second page
// plays /watch/alice and chats with the studio, which deletes the message; End broadcast ends
// the stream (ENDLIST, `offline`). Usage:
//   node tests/browser/studio.mjs <base-url> <codec: h264|vp8> <size: 360|720|1080> <artifact-dir>
//        [relay=FROM,TO] [takeover=studio|rtmp]
// With relay=FROM,TO (host:port each), the server's WebRTC address FROM is reached through a
// UDP relay to TO that this script cuts, to check the connection warning and the automatic
// reconnect. takeover=studio: a second studio page goes live on the same channel and ends the
// broadcast. takeover=rtmp: the script prints "RTMP TAKEOVER" and the caller starts an RTMP
// push on the channel; once the studio has yielded to it, the studio goes live again (taking
// the channel back) and ends the broadcast. Either way the replaced studio must say so and stay
// off. Prints one JSON line (what the page reported) and "STUDIO OK".
import dgram from 'node:dgram';
import { join } from 'node:path';
import {
  checkKeyboard, checkNames, discontinuities, fail, launchStudioBrowser, log, screenshots,
  stageState, text, until, waitForPreview, waitLive,
} from './studio-lib.mjs';

const [base, codec, size, artifacts, ...rest] = process.argv.slice(2);
const opts = Object.fromEntries(rest.map((a) => a.split(/=(.*)/s).slice(0, 2)));
const relaySpec = opts.relay || null;
const takeover = opts.takeover || null;
if (!base || !codec || !size || !artifacts || ![null, 'studio', 'rtmp'].includes(takeover)) {
  console.error('usage: studio.mjs <base-url> <h264|vp8> <360|720|1080> <artifact-dir> [relay=FROM,TO] [takeover=studio|rtmp]');
  process.exit(2);
}
const STREAM_KEY = 'alice-secret-key-123';
let browser;
let failed = false;

/**
 * A UDP relay between the browser and the server's WebRTC socket that can be cut: `from` is
 * the address the server puts in its ICE candidates, `to` the socket it really listens on.
 */
function startRelay(from, to) {
  const [fromHost, fromPort] = from.split(':');
  const [toHost, toPort] = to.split(':');
  const front = dgram.createSocket('udp4');
  const backs = new Map(); // browser address -> socket towards the server
  let cut = false;
  front.on('message', (msg, rinfo) => {
    if (cut) return;
    const key = rinfo.address + ':' + rinfo.port;
    let back = backs.get(key);
    if (!back) {
      back = dgram.createSocket('udp4');
      back.on('message', (m) => { if (!cut) front.send(m, rinfo.port, rinfo.address); });
      back.bind(0, toHost);
      backs.set(key, back);
    }
    back.send(msg, Number(toPort), toHost);
  });
  return new Promise((resolve) => front.bind(Number(fromPort), fromHost, () => resolve({
    cut() { cut = true; },
    restore() { cut = false; },
    close() { front.close(); for (const b of backs.values()) b.close(); },
  })));
}

try {
  let relay = null;
  if (relaySpec) {
    const [from, to] = relaySpec.split(',');
    relay = await startRelay(from, to);
    log('UDP relay', from, '->', to);
  }
  browser = await launchStudioBrowser(base);
  const { open, pageErrors } = browser;

  // The studio: the camera opens at once (the fake device), its lists are filled.
  const studio = await open('/studio/alice');
  await waitForPreview(studio);
  const cameras = await studio.$$eval('#camera option', (os) => os.map((o) => o.textContent));
  log('cameras:', JSON.stringify(cameras));
  if (cameras.length === 0 || cameras.includes('None found')) fail('no camera listed');
  await checkNames(studio);
  log('tab order:', (await checkKeyboard(studio)).join(' → '));

  // Choose the size and the codec, enter the key by keyboard and go live with Enter (the
  // VP8 run) or the button (the H.264 run).
  await studio.getByLabel(size + 'p', { exact: true }).check();
  await studio.getByText('Advanced').click();
  await studio.getByLabel('Video codec').selectOption(codec);
  await studio.getByLabel('Stream key', { exact: true }).focus();
  await studio.keyboard.type(STREAM_KEY);
  if (codec === 'vp8') await studio.keyboard.press('Enter');
  else await studio.getByRole('button', { name: 'Go live' }).click();
  const wentLive = Date.now();
  const status = await waitLive(studio);
  log('studio says:', status);
  const wantCodec = codec === 'vp8' ? 'VP8' : 'H.264';
  if (!status.includes(wantCodec)) fail('the browser does not send ' + wantCodec + ': ' + status);
  if (!(await studio.getByRole('button', { name: 'Go live' }).isDisabled())) fail('Go live still enabled while live');

  // The key is nowhere but in memory: not in the URL, storage or cookies.
  const leaks = await studio.evaluate((k) => [
    location.href.includes(k), JSON.stringify(localStorage).includes(k),
    JSON.stringify(sessionStorage).includes(k), document.cookie.includes(k),
  ], STREAM_KEY);
  if (leaks.some(Boolean)) fail('stream key leaked into URL/storage/cookie: ' + leaks);

  // The server has the stream: master playlist, then the studio's badge says LIVE.
  await until('master playlist', 30000, async () => (await fetch(base + '/hls/alice/master.m3u8')).status === 200);
  await studio.waitForFunction(() => document.getElementById('live-badge').textContent === 'LIVE', null, { timeout: 15000 });
  await studio.waitForFunction(() => /^\d+:\d\d/.test(document.getElementById('elapsed').textContent), null, { timeout: 5000 });
  log('live; elapsed', await text(studio, '#elapsed'));

  // A viewer watches and chats.
  const watch = await open('/watch/alice');
  await watch.waitForFunction(() => document.getElementById('live-badge').textContent === 'LIVE', null, { timeout: 20000 });
  await watch.waitForFunction(() => document.getElementById('video').currentTime > 0.5, null, { timeout: 45000 });
  const t1 = await watch.evaluate(() => document.getElementById('video').currentTime);
  await watch.waitForFunction((t) => document.getElementById('video').currentTime > t + 1, t1, { timeout: 15000 });
  const played = await watch.evaluate(() => { const v = document.getElementById('video'); return [v.videoWidth, v.videoHeight]; });
  log('watch page plays', played.join('x'));
  await studio.waitForFunction(() => /^[1-9]\d* viewers?$/.test(document.getElementById('viewers').textContent), null, { timeout: 20000 });
  log('studio shows', await text(studio, '#viewers'));

  const hello = 'hello from the watch page';
  await watch.getByLabel('Nick').fill('viewer1');
  await watch.getByLabel('Message').fill(hello);
  await watch.getByRole('button', { name: 'Send' }).click();
  const inStudio = (t) => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === t);
  await studio.waitForFunction(inStudio, hello, { timeout: 10000 });
  log('message seen in the studio');
  await screenshots(studio, artifacts, 'studio-live');

  // The studio deletes it (by keyboard: focus the button, Enter); it leaves the watch page.
  await studio.getByRole('button', { name: 'Delete message from viewer1' }).focus();
  await studio.keyboard.press('Enter');
  await watch.waitForFunction((t) => ![...document.querySelectorAll('#messages .text')].some((e) => e.textContent === t), hello, { timeout: 10000 });
  await studio.waitForFunction((t) => ![...document.querySelectorAll('#messages .text')].some((e) => e.textContent === t), hello, { timeout: 10000 });
  log('deleted from the studio, gone on the watch page');

  // Slow mode from the studio: a second quick message from the viewer is refused.
  await studio.getByLabel('Slow mode').selectOption('30');
  await studio.getByRole('button', { name: 'Set slow mode' }).click();
  await studio.waitForFunction(() => /Slow mode on/.test(document.getElementById('mod-status').textContent), null, { timeout: 5000 });
  await watch.getByLabel('Message').fill('one');
  await watch.getByRole('button', { name: 'Send' }).click();
  await studio.waitForFunction(inStudio, 'one', { timeout: 10000 });
  await watch.getByLabel('Message').fill('two');
  await watch.getByRole('button', { name: 'Send' }).click();
  await watch.waitForFunction(() => /slow mode/i.test(document.getElementById('send-status').textContent), null, { timeout: 5000 });
  log('slow mode holds back the viewer');

  // Ban the viewer's nick from the studio: its messages go, further posts are refused.
  await studio.getByRole('button', { name: 'Ban viewer1' }).click();
  await studio.waitForFunction(() => /Banned viewer1/.test(document.getElementById('mod-status').textContent), null, { timeout: 5000 });
  await watch.waitForFunction(() => ![...document.querySelectorAll('#messages .text')].some((e) => e.textContent === 'one'), null, { timeout: 10000 });
  await studio.getByLabel('Slow mode').selectOption('0');
  await studio.getByRole('button', { name: 'Set slow mode' }).click();
  await studio.waitForFunction(() => /Slow mode off/.test(document.getElementById('mod-status').textContent), null, { timeout: 5000 });
  log('ban removed the messages');

  let reconnected = false;
  if (relay) {
    // The network drops: a warning shows, and the studio comes back by itself with a new session.
    relay.cut();
    await studio.waitForFunction(() => !document.getElementById('conn-warning').hidden, null, { timeout: 30000 });
    log('warning:', await text(studio, '#conn-warning'));
    await studio.screenshot({ path: join(artifacts, 'studio-reconnecting.png') });
    await until('reconnecting state', 30000, async () => (await stageState(studio)) === 'reconnecting');
    relay.restore();
    await studio.waitForFunction(() => document.querySelector('.stage').dataset.state === 'live'
      && document.getElementById('conn-warning').hidden, null, { timeout: 45000 });
    log('reconnected:', await text(studio, '#broadcast-status'));
    const before = await watch.evaluate(() => document.getElementById('video').currentTime);
    await watch.waitForFunction((t) => document.getElementById('video').currentTime > t + 1, before, { timeout: 45000 });
    reconnected = true;
  }

  // Another encoder takes the channel: a second studio (the broadcaster's phone), or an RTMP
  // push (OBS). The first page says so and stays off instead of fighting back.
  let publisher = studio;
  let tookOver = null;
  if (takeover) {
    let second = null;
    if (takeover === 'studio') {
      second = await open('/studio/alice');
      await waitForPreview(second);
      await second.getByLabel('Stream key', { exact: true }).fill(STREAM_KEY);
      await second.getByRole('button', { name: 'Go live' }).click();
      await waitLive(second);
    } else {
      console.log('RTMP TAKEOVER');
    }
    await studio.waitForFunction(() => document.querySelector('.stage').dataset.state === 'idle', null, { timeout: 30000 });
    const why = await text(studio, '#broadcast-status');
    log('first studio:', why);
    if (!/another encoder took over/.test(why)) fail('the replaced studio does not say why it stopped: ' + why);
    if (!(await studio.getByRole('button', { name: 'Go live' }).isEnabled())) fail('Go live not enabled on the replaced studio');
    const end = Date.now() + 6000;
    while (Date.now() < end) {
      const states = [await stageState(studio), second ? await stageState(second) : 'live'];
      if (states[0] !== 'idle' || states[1] !== 'live') fail('the studios fight over the channel: ' + states);
      await new Promise((r) => setTimeout(r, 250));
    }
    const before = await watch.evaluate(() => document.getElementById('video').currentTime);
    await watch.waitForFunction((t) => document.getElementById('video').currentTime > t + 1, before, { timeout: 45000 });
    log('taken over by', takeover, '; the first studio stays off; viewers still play');
    if (second) {
      publisher = second;
    } else {
      // The broadcaster takes the channel back from the browser (WHIP takes over RTMP): one
      // more discontinuity in the same playlist.
      const playlist = async () => (await fetch(base + '/hls/alice/source/index.m3u8')).text();
      const breaks = discontinuities(await playlist());
      await studio.getByRole('button', { name: 'Go live' }).click();
      log('back from RTMP:', await waitLive(studio));
      await until('the studio\'s stream back in the playlist', 30000, async () => discontinuities(await playlist()) > breaks);
    }
    tookOver = takeover;
  }

  // End broadcast: the playlist ends and both pages hear `offline`.
  const liveMs = Date.now() - wentLive;
  await publisher.getByRole('button', { name: 'End broadcast' }).click();
  await publisher.waitForFunction(() => /Broadcast ended/.test(document.getElementById('broadcast-status').textContent), null, { timeout: 10000 });
  await watch.waitForFunction(() => document.getElementById('live-badge').textContent === 'OFFLINE', null, { timeout: 15000 });
  await studio.waitForFunction(() => document.getElementById('live-badge').textContent === 'OFFLINE', null, { timeout: 15000 });
  await until('ENDLIST', 15000, async () => {
    const r = await fetch(base + '/hls/alice/source/index.m3u8');
    return r.status === 200 && (await r.text()).includes('#EXT-X-ENDLIST');
  });
  log('ended: ENDLIST and offline');
  if (!(await publisher.getByRole('button', { name: 'Go live' }).isEnabled())) fail('Go live not enabled again');
  if (pageErrors.length) fail('page errors: ' + pageErrors.join('; '));
  if (relay) relay.close();
  console.log(JSON.stringify({ status, played, reconnected, took_over: tookOver, live_ms: liveMs }));
  console.log('STUDIO OK');
} catch (e) {
  console.error('STUDIO FAILED:', e && e.stack ? e.stack : e);
  failed = true;
} finally {
  if (browser) await browser.close();
}
process.exit(failed ? 1 : 0);

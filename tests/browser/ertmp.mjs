// hls.js (the copy onair ships) in Debian's headless Chromium plays an Enhanced RTMP stream's
// master playlist: it reports which levels hls.js kept (it drops those whose CODECS the browser
// cannot decode, such as HEVC here), picks the first H.264 level, and measures how far playback
// advances. Usage: node tests/browser/ertmp.mjs MASTER_URL MS; prints JSON
// { levels: [codecs...], level_codecs, played, hevc_supported, av1_supported, errors }.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, ms] = process.argv.slice(2);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const HLS = readFileSync(join(root, 'assets', 'vendor', 'hls.min.js'));
const PAGE = `<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="hls.min.js"></script><script>
window.__errors = [];
window.__level = null;
const v = document.getElementById('v');
const hls = new Hls();
hls.on(Hls.Events.MANIFEST_PARSED, () => {
  window.__levels = hls.levels.map((l) => l.attrs.CODECS || '');
  const i = hls.levels.findIndex((l) => (l.attrs.CODECS || '').startsWith('avc1.'));
  if (i >= 0) hls.currentLevel = i;
});
hls.on(Hls.Events.LEVEL_SWITCHED, (_e, d) => { window.__level = hls.levels[d.level].attrs.CODECS; });
hls.on(Hls.Events.ERROR, (_e, d) => { if (d.fatal) window.__errors.push(d.type + ': ' + d.details); });
hls.loadSource(${JSON.stringify(url)});
hls.attachMedia(v);
</script></body></html>`;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
try {
  const page = await browser.newPage();
  // The page is routed under the stream's own origin: same-origin fetches, no CORS.
  const origin = new URL(url).origin;
  await page.route(`${origin}/__ertmp/**`, (route) => {
    if (route.request().url().endsWith('/hls.min.js')) {
      return route.fulfill({ body: HLS, contentType: 'application/javascript' });
    }
    return route.fulfill({ body: PAGE, contentType: 'text/html' });
  });
  await page.goto(`${origin}/__ertmp/page.html`);
  await page.waitForFunction(() => document.getElementById('v').currentTime > 0, null, { timeout: 30000 });
  const start = await page.evaluate(() => document.getElementById('v').currentTime);
  await page.waitForTimeout(Number(ms));
  const r = await page.evaluate(() => ({
    levels: window.__levels,
    level_codecs: window.__level,
    now: document.getElementById('v').currentTime,
    hevc_supported: MediaSource.isTypeSupported('video/mp4; codecs="hvc1.1.6.L60.90"'),
    av1_supported: MediaSource.isTypeSupported('video/mp4; codecs="av01.0.00M.08"'),
    errors: window.__errors,
  }));
  r.played = r.now - start;
  delete r.now;
  console.log(JSON.stringify(r));
} finally {
  await browser.close();
}

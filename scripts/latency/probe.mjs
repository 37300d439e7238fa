// Shared by the latency benchmark and the low-latency browser test: opens the probe page
// (scripts/latency/page.html, with the hls.js that onair ships) in headless Chromium for one
// stream and returns what it measured. The page is served by Playwright's request routing, so
// no static file server is needed.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const PAGE = readFileSync(join(here, 'page.html'));
const HLS = readFileSync(join(root, 'assets', 'vendor', 'hls.min.js'));
const READER = readFileSync(join(here, 'clock_reader.js'), 'utf8');

export async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
}

const pct = (a, p) => a[Math.min(a.length - 1, Math.floor((a.length - 1) * p))];

// Plays `url` and measures: `mode` is `watch` for onair's own watch page at `url` (the clock
// reader is injected into it), else the hls.js settings of the probe page (`default`, `ll`,
// `plain`, see page.html). Discards `warmMs` of samples, then measures for `ms`. Returns
// { frames, median, p90 (seconds), stalls, errors }.
export async function probe(browser, url, mode, warmMs, ms) {
  const page = await browser.newPage();
  if (mode === 'watch') {
    await page.goto(url);
    await page.waitForSelector('video');
    await page.evaluate((src) => {
      window.__errors = [];
      // eslint-disable-next-line no-eval
      (0, eval)(src);
      window.attachClockReader(document.querySelector('video'));
    }, READER);
  } else {
    // The probe page is routed under the stream's own origin, so hls.js fetches same-origin
    // (no CORS, no local-network-access prompt).
    const origin = new URL(url).origin;
    await page.route(`${origin}/__probe/**`, (route) => {
      const u = new URL(route.request().url());
      if (u.pathname.endsWith('/hls.min.js')) return route.fulfill({ body: HLS, contentType: 'application/javascript' });
      if (u.pathname.endsWith('/clock_reader.js')) return route.fulfill({ body: READER, contentType: 'application/javascript' });
      return route.fulfill({ body: PAGE, contentType: 'text/html' });
    });
    await page.goto(`${origin}/__probe/page.html?src=${encodeURIComponent(url)}&hls=${mode}`);
  }
  await page.waitForTimeout(warmMs);
  await page.evaluate(() => { window.__samples = []; window.__stalls = 0; });
  await page.waitForTimeout(ms);
  const r = await page.evaluate(() => ({ samples: window.__samples, stalls: window.__stalls, errors: window.__errors }));
  await page.close();
  const s = r.samples.sort((a, b) => a - b);
  return {
    frames: s.length,
    median: s.length ? pct(s, 0.5) / 1000 : null,
    p90: s.length ? pct(s, 0.9) / 1000 : null,
    stalls: r.stalls,
    errors: r.errors,
  };
}

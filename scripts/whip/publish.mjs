// Headless Chromium as a WHIP broadcaster: a fake camera and microphone (or a canvas drawing
// the clock), RTCPeerConnection and fetch to /whip/{channel} from a page routed under the
// server's own origin (so the page is a secure context on localhost and fetches same-origin).
// Used by tests/whip_browser.rs and scripts/bench-whip.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const PAGE = readFileSync(join(here, 'page.html'));

export async function launch(extra = []) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required', ...extra],
  });
}

// Opens the publisher page on `base`'s origin and goes live; returns { page, result }.
export async function goLive(browser, base, opts) {
  const origin = new URL(base).origin;
  const context = await browser.newContext();
  await context.grantPermissions(['camera', 'microphone'], { origin });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') process.stderr.write(`page: ${m.text()}\n`); });
  await page.route(`${origin}/__whip/**`, (route) => route.fulfill({ body: PAGE, contentType: 'text/html' }));
  await page.goto(`${origin}/__whip/page.html`);
  const result = await page.evaluate((o) => startWhip(o), opts);
  return { page, result };
}

// What the studio's browser checks share (tests/browser/studio.mjs, the Chromium test, and
// scripts/try-studio's new-user run): Debian's headless Chromium with a fake camera and
// microphone in a fresh profile, polling with a deadline, opening the studio, going live, and
// the keyboard/accessibility checks of CONTRACT.md's names.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const log = (...a) => console.error('[studio]', ...a);

export function fail(msg) {
  throw new Error(msg);
}

/** Polls `f` (async, truthy when done) until `ms` passed; returns its value. */
export async function until(what, ms, f) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) fail('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Chromium in a fresh profile (removed by `close()`), the fake camera allowed. Returns
 * { context, open(path), pageErrors, close() }; `open` loads `base + path` in a new page that
 * records its uncaught errors.
 */
export async function launchStudioBrowser(base, viewport = { width: 1280, height: 800 }) {
  const profile = mkdtempSync(join(tmpdir(), 'onair-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
    ],
    viewport,
  });
  const pageErrors = [];
  return {
    context,
    pageErrors,
    async open(path) {
      const p = await context.newPage();
      p.on('pageerror', (e) => pageErrors.push(String(e)));
      p.on('console', (m) => { if (m.type() === 'error') log('console error:', m.text()); });
      await p.goto(base + path);
      return p;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export const text = (p, sel) => p.evaluate((s) => document.querySelector(s).textContent, sel);
export const stageState = (p) => p.evaluate(() => document.querySelector('.stage').dataset.state);

/** Waits for the preview to show the camera (the page opens it at load). */
export async function waitForPreview(studio) {
  await studio.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 20000 });
}

/** Waits until the studio says it is live, with the codec and size once known; returns the text. */
export async function waitLive(studio, ms = 30000) {
  await studio.waitForFunction(() => document.querySelector('.stage').dataset.state === 'live', null, { timeout: ms });
  await studio.waitForFunction(() => /You are live \(/.test(document.getElementById('broadcast-status').textContent), null, { timeout: 5000 }).catch(() => {});
  return text(studio, '#broadcast-status');
}

/** The controls CONTRACT.md names, each exactly once, by role and exact accessible name. */
export async function checkNames(studio) {
  const want = [
    ['Stream key', () => studio.getByLabel('Stream key', { exact: true })],
    ['Camera', () => studio.getByRole('combobox', { name: 'Camera', exact: true })],
    ['Microphone', () => studio.getByRole('combobox', { name: 'Microphone', exact: true })],
    ['Go live', () => studio.getByRole('button', { name: 'Go live', exact: true })],
    ['End broadcast', () => studio.getByRole('button', { name: 'End broadcast', exact: true })],
  ];
  for (const [name, find] of want) {
    const n = await find().count();
    if (n !== 1) fail(n + ' controls named "' + name + '" (want exactly 1)');
  }
  if ((await studio.getByLabel('Stream key', { exact: true }).getAttribute('type')) !== 'password') {
    fail('Stream key is not a password field');
  }
}

/**
 * Tabs through a freshly loaded page (nothing focused yet) from the top and returns what got focus, in order: the accessible
 * name, and whether a focus ring is drawn (a visible outline or box shadow). Fails when a
 * focused control has no visible focus, or the broadcast controls are out of order.
 */
export async function checkKeyboard(studio, stops = 14) {
  const seen = [];
  for (let i = 0; i < stops; i++) {
    await studio.keyboard.press('Tab');
    seen.push(await studio.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const labelled = el.labels && el.labels.length ? el.labels[0].textContent : '';
      const name = (el.getAttribute('aria-label') || labelled || el.textContent || el.value || '').trim().replace(/\s+/g, ' ');
      const cs = getComputedStyle(el);
      const ring = (cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2) || (cs.boxShadow && cs.boxShadow !== 'none');
      return { name, tag: el.tagName.toLowerCase(), ring };
    }));
  }
  const focused = seen.filter(Boolean);
  const noRing = focused.filter((f) => !f.ring);
  if (noRing.length) fail('focus not visible on: ' + noRing.map((f) => f.name).join(', '));
  const order = ['Stream key', 'Camera', 'Microphone', 'Go live'];
  const at = order.map((n) => focused.findIndex((f) => f.name === n));
  if (at.some((i) => i < 0) || at.some((i, k) => k > 0 && i < at[k - 1])) {
    fail('tab order: want ' + order.join(' → ') + ', got ' + focused.map((f) => f.name).join(' → '));
  }
  return focused.map((f) => f.name);
}

/** Discontinuities so far: the ones slid out of the window plus those listed. */
export function discontinuities(playlist) {
  const gone = Number((playlist.match(/#EXT-X-DISCONTINUITY-SEQUENCE:(\d+)/) || [])[1] || 0);
  return gone + (playlist.match(/^#EXT-X-DISCONTINUITY$/gm) || []).length;
}

/** Sums the EXTINF durations of a media playlist. */
export function listedSeconds(playlist) {
  return [...playlist.matchAll(/#EXTINF:([\d.]+)/g)].reduce((a, m) => a + Number(m[1]), 0);
}

/** Screenshots `page` at a desktop and a phone size; fails when the phone size scrolls sideways. */
export async function screenshots(page, dir, name) {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: join(dir, name + '-desktop.png') });
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) fail(name + ' overflows a phone-sized screen by ' + overflow + 'px');
  await page.screenshot({ path: join(dir, name + '-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
}

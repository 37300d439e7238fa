// Opens the latency probe page in headless Chromium for each target and prints the median and
// p90 latency of the frames displayed after a warm-up.
// Usage: node measure.mjs PAGE_BASE SECONDS name=URL[,ll] ...
import { chromium } from 'playwright-core';

const [base, seconds, ...targets] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor((a.length - 1) * p))];
for (const t of targets) {
  const [name, rest] = t.split('=');
  const [url, mode] = rest.split(',');
  const page = await browser.newPage();
  await page.goto(`${base}/page.html?src=${encodeURIComponent(url)}&ll=${mode === 'll' ? 1 : 0}`);
  const warm = 8000;
  await page.waitForTimeout(warm);
  await page.evaluate(() => { window.__samples = []; });
  await page.waitForTimeout(Number(seconds) * 1000);
  const { samples, errors } = await page.evaluate(() => ({ samples: window.__samples, errors: window.__errors }));
  samples.sort((a, b) => a - b);
  if (samples.length === 0) {
    console.log(`${name.padEnd(14)} no frames decoded (errors: ${errors.join(' ') || 'none'})`);
  } else {
    console.log(`${name.padEnd(14)} frames ${String(samples.length).padStart(5)}  median ${(pct(samples, 0.5) / 1000).toFixed(2)} s  p90 ${(pct(samples, 0.9) / 1000).toFixed(2)} s`);
  }
  await page.close();
}
await browser.close();

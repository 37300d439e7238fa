// Publishes from headless Chromium over WHIP for a while, then ends with DELETE; prints JSON:
// { post, stats, delete }. With `clock` the source is a canvas drawing the wall clock
// (scripts/bench-whip's glass-to-glass measurement) instead of the fake camera.
// Usage: node tests/browser/whip.mjs BASE CHANNEL KEY CODEC WIDTH HEIGHT SECONDS [clock]
import { launch, goLive } from '../../scripts/whip/publish.mjs';

const [base, channel, key, codec, width, height, seconds, clock] = process.argv.slice(2);
const browser = await launch();
try {
  const { page, result } = await goLive(browser, base, {
    channel, key, codec, width: Number(width), height: Number(height), clock: clock === 'clock',
  });
  if (result.status !== 201) {
    console.log(JSON.stringify({ post: result }));
  } else {
    // Tell the test it is live, then keep publishing.
    process.stderr.write('LIVE\n');
    await page.waitForTimeout(Number(seconds) * 1000);
    const stats = await page.evaluate(() => whipStats());
    const del = await page.evaluate(() => stopWhip());
    console.log(JSON.stringify({ post: result, stats, delete: del }));
  }
} finally {
  await browser.close();
}

// Low-latency playback in headless Chromium with hls.js: prints the probe's measurements as
// JSON. Usage: node tests/browser/low_latency.mjs MASTER_URL WARM_MS MEASURE_MS
import { launch, probe } from '../../scripts/latency/probe.mjs';

const [url, warm, ms] = process.argv.slice(2);
const browser = await launch();
try {
  const r = await probe(browser, url, 'll', Number(warm), Number(ms));
  console.log(JSON.stringify(r));
} finally {
  await browser.close();
}

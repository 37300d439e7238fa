// Prints the median and p90 glass-to-glass latency of each target after a warm-up.
// Usage: node measure.mjs SECONDS name=URL[,MODE] ...  (MODE: default, ll, plain, watch; see
// probe.mjs)
import { launch, probe } from './probe.mjs';

const [seconds, ...targets] = process.argv.slice(2);
const browser = await launch();
for (const t of targets) {
  const [name, rest] = t.split('=');
  const [url, mode] = rest.split(',');
  const r = await probe(browser, url, mode || 'default', 8000, Number(seconds) * 1000);
  if (!r.frames) {
    console.log(`${name.padEnd(24)} no frames decoded (errors: ${r.errors.join(' ') || 'none'})`);
  } else {
    console.log(`${name.padEnd(24)} frames ${String(r.frames).padStart(5)}  median ${r.median.toFixed(2)} s  p90 ${r.p90.toFixed(2)} s  stalls ${r.stalls}`);
  }
}
await browser.close();

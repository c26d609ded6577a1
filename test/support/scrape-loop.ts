/**
 * Scrapes GET /metrics over a Unix socket COUNT times in a row and prints
 * {"ok":N,"failed":F,"ms":T,"bytes":B}: the client side of the event-loop
 * measurement (its own process, so the client's work is not measured).
 *
 *   node scrape-loop.js PATH COUNT
 */
import { request } from 'node:http';

const [path, countText] = process.argv.slice(2);
const count = Number(countText);

function once(): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ socketPath: path as string, path: '/metrics' }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve(res.statusCode === 200 ? bytes : -1));
    });
    req.on('error', () => resolve(-1));
    req.end();
  });
}

const started = performance.now();
let ok = 0;
let failed = 0;
let bytes = 0;
for (let i = 0; i < count; i++) {
  const b = await once();
  if (b >= 0) {
    ok++;
    bytes = b;
  } else failed++;
}
process.stdout.write(`${JSON.stringify({ ok, failed, ms: Math.round(performance.now() - started), bytes })}\n`);

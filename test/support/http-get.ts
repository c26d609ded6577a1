/**
 * GET /metrics as whoever runs it (tests run it as uid 65534 through
 * setpriv), over a Unix socket or TCP, with an optional bearer token. Prints
 * one JSON line: {"status":N,"body":"..."} or {"error":"EACCES"}; never
 * throws, so the outcome is always the test's to judge.
 *
 *   node http-get.js unix PATH [TOKEN]
 *   node http-get.js tcp HOST PORT [TOKEN]
 */
import { request } from 'node:http';

const [kind, a, b, c] = process.argv.slice(2);
const where = kind === 'unix' ? { socketPath: a as string } : { host: a as string, port: Number(b) };
const token = kind === 'unix' ? b : c;
const say = (v: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(v)}\n`);
const req = request({ ...where, path: '/metrics', headers: token ? { authorization: `Bearer ${token}` } : {}, timeout: 10_000 }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d: string) => (body += d));
  res.on('end', () => say({ status: res.statusCode, body }));
});
req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
req.on('error', (err: NodeJS.ErrnoException) => say({ error: err.code ?? err.message }));
req.end();

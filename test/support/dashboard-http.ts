/**
 * One HTTP request to the dashboard as whoever runs it (tests run it as uid
 * 65534 through the world's uid option), from inside a namespace. Prints one
 * JSON line: {"status":N,"headers":{...},"body":"..."} or {"error":"CODE"};
 * never throws, so the outcome is always the test's to judge.
 *
 *   node dashboard-http.js '{"port":9330,"path":"/","headers":{...}}'
 *
 * With "body" (and a "method" such as POST) it sends that body.
 *
 * With "sse": true it prints the status line, then one JSON line per SSE
 * message ({"event":"events","data":...}) until killed or "sseMs" passes.
 */
import { request } from 'node:http';

/** What this helper prints for a plain request (tests read it with `import type`: importing the script itself would run it). */
export interface HttpOutcome {
  status?: number;
  headers?: Record<string, string | string[]>;
  body?: string;
  error?: string;
}

const o = JSON.parse(process.argv[2] ?? '{}') as { host?: string; port: number; path: string; method?: string; headers?: Record<string, string>; body?: string; sse?: boolean; sseMs?: number };
const say = (v: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(v)}\n`);
const req = request({ host: o.host ?? '127.0.0.1', port: o.port, path: o.path, method: o.method ?? 'GET', headers: o.headers ?? {}, timeout: o.sse ? 60_000 : 10_000 }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  if (o.sse && res.statusCode === 200) {
    say({ status: res.statusCode, headers: res.headers });
    setTimeout(() => process.exit(0), o.sseMs ?? 10_000).unref();
    res.on('data', (d: string) => {
      body += d;
      let end: number;
      while ((end = body.indexOf('\n\n')) >= 0) {
        const msg = body.slice(0, end);
        body = body.slice(end + 2);
        const event = /^event: (.*)$/m.exec(msg)?.[1];
        const data = /^data: (.*)$/m.exec(msg)?.[1];
        if (event && data) say({ event, data: JSON.parse(data) as unknown });
      }
    });
    return;
  }
  res.on('data', (d: string) => (body += d));
  res.on('end', () => say({ status: res.statusCode, headers: res.headers, body }));
});
req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
req.on('error', (err: NodeJS.ErrnoException) => say({ error: err.code ?? err.message }));
req.end(o.body);

/**
 * Alerts: roll-up without loss, the durable outbox (retries, backoff,
 * giving up counted, surviving a restart), the sinks' wire formats, what a
 * suppression covers, the policy's alerts: and suppress: sections, and the
 * component end to end with an exec sink that is down, then back.
 */
import assert from 'node:assert/strict';
import { waitFor } from '../support/monitor-helpers.js';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { AlertsComponent, dnsOccurrence, flowOccurrence, suppressedBy } from '../../src/alerts/alerts-component.js';
import { backoffMs, MAX_ATTEMPTS, Outbox } from '../../src/alerts/outbox.js';
import { Rollup, type AlertMessage, type AlertOccurrence } from '../../src/alerts/rollup.js';
import { chatText, deliver, signatureHeaders, syslogLine, webhookBody } from '../../src/alerts/sinks.js';
import { PolicyError } from '../../src/errors.js';
import { publishAlert, publishFlow, type FlowEvent } from '../../src/events/channels.js';
import type { Runtime } from '../../src/runtime/component.js';
import { ControlServer } from '../../src/runtime/control-server.js';
import { Registry } from '../../src/runtime/metrics.js';
import { policyFrom } from '../support/fixtures.js';

const base = mkdtempSync(join(tmpdir(), 'sluice-alerts-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

const occ = (over: Partial<AlertOccurrence> = {}): AlertOccurrence => ({ time: Date.now(), trigger: 'blocked', severity: 'warning', rule: '#default', who: 'curl', destination: '198.18.1.11', message: 'curl to 198.18.1.11 blocked', ...over });

describe('unit: alert roll-up', () => {
  it('10,000 occurrences of one key in a window are one message with the count; other keys their own', async () => {
    const out: AlertMessage[] = [];
    const r = new Rollup('ops', 80, (m) => out.push(m));
    const t0 = Date.now();
    for (let i = 0; i < 10_000; i++) r.add(occ({ time: t0 + i }));
    r.add(occ({ destination: '198.18.1.12' }));
    r.add(occ({ who: 'wget' }));
    assert.equal(out.length, 0, 'held for the window');
    await sleep(150);
    assert.equal(out.length, 3);
    const storm = out.find((m) => m.destination === '198.18.1.11' && m.who === 'curl');
    assert.equal(storm?.count, 10_000);
    assert.equal(storm?.first, new Date(t0).toISOString());
    assert.equal(storm?.last, new Date(t0 + 9_999).toISOString());
    assert.match(storm?.text ?? '', /^\[sluice blocked\] curl to 198\.18\.1\.11 blocked \(10000 times from /);
    assert.deepEqual(r.counts, { occurrences: 10_002, sent: 10_002, messages: 3 });
  });

  it('a critical occurrence goes out at once; its repeats in the window follow as one summary', async () => {
    const out: AlertMessage[] = [];
    const r = new Rollup('ops', 60, (m) => out.push(m));
    const crit = occ({ trigger: 'tamper', severity: 'critical', rule: undefined, who: undefined, destination: undefined, message: 'table deleted' });
    r.add(crit);
    assert.equal(out.length, 1);
    assert.equal(out[0]?.count, 1);
    r.add(crit);
    r.add(crit);
    await sleep(120);
    assert.equal(out.length, 2);
    assert.equal(out[1]?.count, 2);
    r.add(crit);
    await sleep(120);
    assert.equal(out.length, 3, 'a later one opens a new window and goes out at once');
    assert.equal(r.counts.occurrences, r.counts.sent);
  });

  it('past 10,000 distinct keys in a window, the rest are counted under one overflow message: the counts add up', async () => {
    const out: AlertMessage[] = [];
    const r = new Rollup('ops', 200, (m) => out.push(m));
    for (let i = 0; i < 10_005; i++) r.add(occ({ destination: `198.18.${i >> 8}.${i & 255}` }));
    r.flush();
    assert.equal(out.length, 10_001);
    const over = out.filter((m) => m.overflow);
    assert.equal(over.length, 1);
    assert.equal(over[0]?.count, 5);
    assert.equal(out.reduce((s, m) => s + m.count, 0), 10_005);
  });
});

describe('unit: what a rolled-up message says', () => {
  it('exactly the key, the counts and the first occurrence: the same key with other words is the same message, another rule another', () => {
    const out: AlertMessage[] = [];
    const r = new Rollup('ops', 60_000, (m) => out.push(m));
    const t0 = Date.parse('2026-12-05T10:00:00.000Z');
    r.add(occ({ time: t0, rule: 'api', who: 'curl', destination: 'd.example', message: 'curl to d.example port 443/tcp blocked by api', detail: { dport: 443 } }));
    r.add(occ({ time: t0 + 5, rule: 'api', who: 'curl', destination: 'd.example', message: 'curl to d.example port 8443/tcp blocked by api', detail: { dport: 8443 } }));
    r.add(occ({ time: t0 + 7, rule: '#default', who: 'curl', destination: 'd.example', message: 'curl to d.example blocked by #default' }));
    r.add({ time: t0 + 9, trigger: 'unlisted-name', severity: 'warning', message: 'someone asked for x.example' });
    r.flush();
    assert.deepEqual(out, [
      { route: 'ops', trigger: 'blocked', severity: 'warning', count: 2, first: '2026-12-05T10:00:00.000Z', last: '2026-12-05T10:00:00.005Z', message: 'curl to d.example port 443/tcp blocked by api', text: '[sluice blocked] curl to d.example port 443/tcp blocked by api (2 times from 2026-12-05T10:00:00.000Z to 2026-12-05T10:00:00.005Z)', rule: 'api', who: 'curl', destination: 'd.example', detail: { dport: 443 } },
      { route: 'ops', trigger: 'blocked', severity: 'warning', count: 1, first: '2026-12-05T10:00:00.007Z', last: '2026-12-05T10:00:00.007Z', message: 'curl to d.example blocked by #default', text: '[sluice blocked] curl to d.example blocked by #default (at 2026-12-05T10:00:00.007Z)', rule: '#default', who: 'curl', destination: 'd.example' },
      { route: 'ops', trigger: 'unlisted-name', severity: 'warning', count: 1, first: '2026-12-05T10:00:00.009Z', last: '2026-12-05T10:00:00.009Z', message: 'someone asked for x.example', text: '[sluice unlisted-name] someone asked for x.example (at 2026-12-05T10:00:00.009Z)' },
    ]);
  });

  it('overflow is per trigger and says so; a critical alert is never marked overflow, and its summary starts at the first repeat', () => {
    const out: AlertMessage[] = [];
    const r = new Rollup('ops', 60_000, (m) => out.push(m));
    for (let i = 0; i < 10_000; i++) r.add(occ({ destination: `198.19.${i >> 8}.${i & 255}` }));
    r.add(occ({ destination: 'a.example' }));
    r.add(occ({ destination: 'b.example' }));
    r.add({ time: 5, trigger: 'unlisted-name', severity: 'warning', message: 'x', destination: 'x.example' });
    const t1 = Date.parse('2026-12-05T11:00:00.000Z');
    const crit = { trigger: 'tamper' as const, severity: 'critical' as const, message: 'table deleted', detail: { changes: ['the table was deleted'] } };
    r.add({ ...crit, time: t1 });
    r.add({ ...crit, time: t1 + 100 });
    r.add({ ...crit, time: t1 + 200 });
    r.flush();
    const over = out.filter((m) => m.overflow);
    assert.deepEqual(over.map((m) => [m.trigger, m.count, m.message, m.destination]), [
      ['blocked', 2, 'blocked events beyond 10000 distinct keys in one window', undefined],
      ['unlisted-name', 1, 'unlisted-name events beyond 10000 distinct keys in one window', undefined],
    ]);
    const tamper = out.filter((m) => m.trigger === 'tamper');
    assert.deepEqual(tamper.map((m) => [m.count, m.first, m.overflow]), [
      [1, '2026-12-05T11:00:00.000Z', undefined],
      [2, '2026-12-05T11:00:00.100Z', undefined],
    ]);
  });
});

describe('unit: alert roll-up keeps critical alerts apart', () => {
  it('two different tamper alerts in one window are two messages; a full key table never swallows one', async () => {
    const out: AlertMessage[] = [];
    const r = new Rollup('ops', 60_000, (m) => out.push(m));
    const tamper = (message: string) => occ({ trigger: 'tamper', severity: 'critical', rule: undefined, who: undefined, destination: undefined, message });
    r.add(tamper('added counter x; restored'));
    r.add(tamper('table deleted; restoring failed: EPERM'));
    assert.deepEqual(out.map((m) => m.message), ['added counter x; restored', 'table deleted; restoring failed: EPERM']);
    for (let i = 0; i < 10_000; i++) r.add(occ({ destination: `198.19.${i >> 8}.${i & 255}` }));
    r.add(tamper('chain output deleted'));
    assert.equal(out.at(-1)?.message, 'chain output deleted', 'out at once, past 10,000 open keys');
    r.flush();
  });

  it('the same tamper in a loop (another pid, another restore time each time) is one alert and a summary', () => {
    const out: AlertMessage[] = [];
    const r = new Rollup('ops', 60_000, (m) => out.push(m));
    for (let i = 0; i < 1_000; i++) r.add(occ({ trigger: 'tamper', severity: 'critical', rule: undefined, who: undefined, destination: undefined, message: `changed by nft (pid ${1000 + i}): the table was deleted; restored in ${i % 50} ms`, detail: { changes: ['the table was deleted'] } }));
    assert.equal(out.length, 1);
    assert.equal(r.open, 1);
    r.flush();
    assert.equal(out.length, 2);
    assert.equal(out[1]?.count, 999);
  });
});

describe('unit: the alert outbox', () => {
  const msg = (text: string): AlertMessage => ({ route: 'ops', trigger: 'blocked', severity: 'warning', count: 1, first: 'a', last: 'b', message: text, text });

  it('in order, with backoff after a failure, delivered counted; what waits survives a reopen', () => {
    const file = join(base, `o${++n}.db`);
    let o = new Outbox(file);
    const now = 1_000_000;
    o.enqueue('ops', msg('one'), now);
    o.enqueue('ops', msg('two'), now);
    const first = o.next('ops', now);
    assert.equal(first?.message.text, 'one');
    assert.equal(o.failedAttempt(first as NonNullable<typeof first>, 'HTTP 503', now), false);
    assert.equal(o.next('ops', now + 999), null, 'backing off (1 s), and the second waits behind the first');
    assert.equal(o.nextDue('ops'), now + 1000);
    o.close();
    o = new Outbox(file);
    const again = o.next('ops', now + 1000);
    assert.equal(again?.message.text, 'one');
    assert.equal(again?.attempts, 1);
    o.delivered((again as NonNullable<typeof again>).id, 'ops');
    assert.equal(o.next('ops', now + 1000)?.message.text, 'two');
    const c = o.counters('ops');
    assert.deepEqual({ delivered: c.delivered, retried: c.retried, failed: c.failed, queued: c.queued, lastError: c.lastError }, { delivered: 1, retried: 1, failed: 0, queued: 1, lastError: null });
    assert.deepEqual(o.routes(), ['ops']);
    o.close();
  });

  it('an alert tried too often is given up, and counted as failed', () => {
    const o = new Outbox(join(base, `o${++n}.db`));
    o.enqueue('ops', msg('x'), 0);
    const row = o.next('ops', 0);
    assert.ok(row);
    assert.equal(o.failedAttempt({ ...row, attempts: MAX_ATTEMPTS - 1 }, 'refused', 0), true);
    assert.equal(o.next('ops', Number.MAX_SAFE_INTEGER), null);
    assert.equal(o.counters('ops').failed, 1);
    o.close();
  });

  it('a window closing on many keys is stored in one go; a route dropped from the policy gives its alerts up, counted', () => {
    const o = new Outbox(join(base, `o${++n}.db`));
    const t0 = performance.now();
    o.enqueueMany(Array.from({ length: 5_000 }, (_, i) => msg(`m${i}`)));
    const ms = performance.now() - t0;
    assert.equal(o.counters('ops').queued, 5_000);
    assert.ok(ms < 2_000, `5,000 alerts stored in ${Math.round(ms)} ms (one transaction, not 5,000 syncs)`);
    assert.equal(o.dropRoute('ops'), 5_000);
    assert.deepEqual({ queued: o.counters('ops').queued, failed: o.counters('ops').failed }, { queued: 0, failed: 5_000 });
    o.close();
  });

  it('backoff: 1 s, 2 s, 4 s ... at most 5 minutes', () => {
    assert.deepEqual([1, 2, 3, 4, 9, 10, 50].map(backoffMs), [1000, 2000, 4000, 8000, 256_000, 300_000, 300_000]);
  });
});

describe('unit: what sinks receive', () => {
  const m: AlertMessage = { route: 'ops', trigger: 'blocked', severity: 'critical', count: 3, first: '2026-12-05T00:00:00.000Z', last: '2026-12-05T00:00:01.000Z', rule: 'we"ird]\\', who: 'curl', destination: 'x.example', message: 'm', text: 'line one\nline two' };

  it('syslog: RFC 5424 with structured data, escaped, one line', () => {
    assert.match(syslogLine({ ...m, text: 'a\u0000b\u001b[31mc' }), / a\?b\?\[31mc$/, 'no control characters');
    const line = syslogLine(m, { host: 'host one', pid: 42, now: new Date('2026-12-05T01:02:03.000Z') });
    assert.equal(line, '<26>1 2026-12-05T01:02:03.000Z host_one sluice 42 blocked [sluice@32473 route="ops" trigger="blocked" count="3" first="2026-12-05T00:00:00.000Z" last="2026-12-05T00:00:01.000Z" rule="we\\"ird\\]\\\\" who="curl" destination="x.example"] line one line two');
  });

  it('syslog: a newline or control character in a name cannot start a line of its own', () => {
    const line = syslogLine({ ...m, who: '/tmp/evil\n<13>1 forged', destination: 'x\u0000y' });
    assert.equal(line.split('\n').length, 1);
    assert.match(line, /who="\/tmp\/evil\?<13>1 forged" destination="x\?y"/);
  });

  it('exec: a program that leaves a child running is settled at its timeout, the child killed with it', async () => {
    const t0 = Date.now();
    await assert.rejects(deliver({ kind: 'exec', argv: ['/bin/sh', '-c', 'sleep 20 & sleep 20'], timeoutMs: 300 }, m, () => undefined), /killed after its 300 ms/);
    assert.ok(Date.now() - t0 < 3_000, `settled in ${Date.now() - t0} ms`);
    await assert.rejects(deliver({ kind: 'exec', argv: ['/bin/sh', '-c', 'cat >/dev/null; echo nope >&2; exit 4'], timeoutMs: 5_000 }, m, () => undefined), /exited 4: nope/);
    await deliver({ kind: 'exec', argv: ['/bin/sh', '-c', 'sleep 20 & cat >/dev/null'], timeoutMs: 5_000 }, m, () => undefined);
  });

  it('webhook: a refusal that will not change (404) is permanent, a busy receiver (503, 429) is not', async () => {
    const { createServer } = await import('node:http');
    let status = 404;
    const server = createServer((_req, res) => {
      res.statusCode = status;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const sink = { kind: 'webhook' as const, url: `http://127.0.0.1:${port}/h`, secretFile: null };
    try {
      await assert.rejects(deliver(sink, m, () => undefined), (e: unknown) => (e as { permanent?: boolean }).permanent === true && /HTTP 404/.test((e as Error).message));
      for (const s of [503, 429]) {
        status = s;
        await assert.rejects(deliver(sink, m, () => undefined), (e: unknown) => (e as { permanent?: boolean }).permanent === false);
      }
      status = 204;
      await deliver(sink, m, () => undefined);
    } finally {
      server.close();
    }
  });

  it('webhook: text for Slack, Mattermost and Teams, content for Discord, the alert itself; the signature checks out', () => {
    const body = webhookBody(m);
    const parsed = JSON.parse(body) as { text: string; content: string; allowed_mentions: unknown; sluice: AlertMessage };
    assert.equal(parsed.text, m.text);
    assert.equal(parsed.content, m.text);
    assert.deepEqual(parsed.allowed_mentions, { parse: [] });
    assert.deepEqual(parsed.sluice, m);
    // A program named to page everyone, or to dress up a link, does neither.
    const hostile = JSON.parse(webhookBody({ ...m, text: 'blocked: <!channel> @everyone <https://evil.example|docs> & [docs](https://evil.example)' })) as { text: string; content: string };
    assert.equal(hostile.text, 'blocked: &lt;!channel&gt; @\u200beveryone &lt;https://evil.example|docs&gt; &amp; [docs]\u200b(https://evil.example)');
    assert.equal(hostile.content, hostile.text);
    const h = signatureHeaders('s3cret', body, 1_700_000_000_500);
    assert.equal(h['X-Sluice-Timestamp'], '1700000000');
    assert.equal(h['X-Sluice-Signature'], `sha256=${createHmac('sha256', 's3cret').update(`1700000000.${body}`).digest('hex')}`);
  });
});

describe('unit: suppressions and what an event is', () => {
  const policy = policyFrom(
    `mode: enforce\nrules:\n  - name: ntp\n    to: [198.18.5.0/24]\nsuppress:\n  - {rule: "#default", destination: "*.ntp.org", until: 2999-01-31, reason: migration}\n  - {destination: 198.18.9.0/24, until: 2999-01-01, reason: lab}\n  - {rule: ntp, until: 2000-01-01, reason: old}\n`,
  );

  it('by rule and name pattern, by address range; an expired one covers nothing and is a warning', () => {
    const s = policy.suppress;
    assert.equal(s.length, 3);
    assert.ok(suppressedBy(s, occ({ destination: 'a.pool.ntp.org' }), '198.18.1.1'));
    assert.equal(suppressedBy(s, occ({ destination: 'ntp.org' }), '198.18.1.1'), null, 'a wildcard covers names under it');
    assert.equal(suppressedBy(s, occ({ rule: 'other', destination: 'a.ntp.org' }), '198.18.1.1'), null);
    assert.ok(suppressedBy(s, occ({ rule: 'any' }), '198.18.9.7'));
    assert.equal(suppressedBy(s, occ({ rule: 'ntp', destination: 'x' }), '198.18.5.5'), null, 'expired');
    assert.ok(policy.warnings.some((w) => /expired on 2000-01-01/.test(w.message)));
  });

  it('a blocked flow, an encrypted-DNS flow and a refused name are occurrences; an allowed flow is none', () => {
    const f: FlowEvent = { time: 1, verdict: 'blocked', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.1.11', dport: 443, process: { pid: 5, exe: '/usr/bin/curl', unit: 'build.service' } };
    const o = flowOccurrence(f);
    assert.equal(o?.trigger, 'blocked');
    assert.equal(o?.who, 'build.service');
    assert.match(o?.message ?? '', /build\.service to 198\.18\.1\.11 port 443\/tcp blocked by #default/);
    assert.equal(flowOccurrence({ ...f, rule: '#encrypted-dns' })?.trigger, 'encrypted-dns');
    assert.equal(flowOccurrence({ ...f, verdict: 'allowed' }), null);
    const d = dnsOccurrence({ time: 1, transport: 'udp', client: { address: '127.0.0.1', port: 5, uid: 1000 }, name: 'exfil.evil.example', type: 1, verdict: 'blocked', rules: [], rcode: 3, answers: [], dropped: [], latencyMs: 1 });
    assert.equal(d?.trigger, 'unlisted-name');
    assert.equal(d?.who, 'uid 1000');
    assert.equal(d?.rule, '#default');
  });
});

describe('unit: the alerts: and suppress: sections of a policy', () => {
  const bad = (yaml: string, re: RegExp) =>
    assert.throws(
      () => policyFrom(`mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.10]\n${yaml}`),
      (e: unknown) => e instanceof PolicyError && e.issues.some((i) => re.test(i.message)),
      yaml,
    );

  it('parses every sink, with defaults', () => {
    const p = policyFrom(
      'mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.10]\nalerts:\n  - {name: ops, sink: {webhook: "https://chat.example/hooks/abc", secret_file: /etc/sluice/k}, on: [blocked, tamper], rules: [api, "#default"], window: 5m}\n  - {name: log, sink: {syslog: "tcp://[2001:db8::9]:6514"}, on: [tamper]}\n  - {name: page, sink: {exec: [/usr/local/bin/page, --team, net], timeout: 2s}, on: [tamper]}\n  - {name: j, sink: {journal: true}, on: [unlisted-name]}\n',
    );
    assert.deepEqual(p.alerts[0], { name: 'ops', sink: { kind: 'webhook', url: 'https://chat.example/hooks/abc', secretFile: '/etc/sluice/k' }, on: ['blocked', 'tamper'], rules: ['api', '#default'], windowMs: 300_000 });
    assert.deepEqual(p.alerts[1]?.sink, { kind: 'syslog', transport: 'tcp', host: '2001:db8::9', port: 6514 });
    assert.equal(p.alerts[1]?.windowMs, 60_000);
    assert.deepEqual(p.alerts[2]?.sink, { kind: 'exec', argv: ['/usr/local/bin/page', '--team', 'net'], timeoutMs: 2000 });
    assert.deepEqual(p.alerts[3]?.sink, { kind: 'journal' });
  });

  it('refuses what would not work, each with its reason', () => {
    bad('alerts:\n  - {name: a, sink: {webhook: "https://x.example/", journal: true}, on: [tamper]}\n', /a sink is one kind, not webhook and journal/);
    bad('alerts:\n  - {name: a, sink: {}, on: [tamper]}\n', /a sink is one of/);
    bad('alerts:\n  - {name: a, sink: {journal: true}, on: [tampering]}\n', /unknown trigger "tampering"/);
    bad('alerts:\n  - {name: a, sink: {journal: true}, on: [blocked], rules: [apii]}\n', /no rule named "apii"/);
    bad('alerts:\n  - {name: a, sink: {journal: true}, on: [blocked], window: 0s}\n', /window is a duration from 1s to 1d/);
    bad('alerts:\n  - {name: a, sink: {journal: true}, on: [blocked], window: 2d}\n', /window is a duration/);
    bad('alerts:\n  - {name: a, sink: {webhook: "ftp://x.example/"}, on: [blocked]}\n', /http:\/\/ or https:\/\//);
    bad('alerts:\n  - {name: a, sink: {webhook: "https://u:p@x.example/"}, on: [blocked]}\n', /no credentials in the URL/);
    bad('alerts:\n  - {name: a, sink: {webhook: "https://x.example/", secret_file: key}, on: [blocked]}\n', /secret_file is an absolute path/);
    bad('alerts:\n  - {name: a, sink: {exec: [page]}, on: [blocked]}\n', /absolute path/);
    bad('alerts:\n  - {name: a, sink: {syslog: "udp://x.example:99999"}, on: [blocked]}\n', /syslog is udp:\/\/HOST/);
    bad('alerts:\n  - {name: a, sink: {journal: true, timeout: 1s}, on: [blocked]}\n', /timeout belongs to an exec sink/);
    bad('alerts:\n  - {name: a, sink: {journal: true}, on: [blocked]}\n  - {name: a, sink: {journal: true}, on: [tamper]}\n', /duplicate alert name "a"/);
    bad('alerts:\n  - {name: A!, sink: {journal: true}, on: [blocked]}\n', /an alert name is 1-48/);
    bad('suppress:\n  - {rule: api, until: 2027-02-30, reason: x}\n', /until is a date, YYYY-MM-DD/);
    bad('suppress:\n  - {until: 2027-02-01, reason: x}\n', /names a rule, a destination, or both/);
    bad('suppress:\n  - {rule: nope, until: 2027-02-01, reason: x}\n', /no rule named "nope"/);
    bad('suppress:\n  - {destination: "a*b.example", until: 2027-02-01, reason: x}\n', /a destination is an address, a prefix or a name pattern/);
  });
});

describe('unit: the alerts component', () => {
  function runtime(yaml: string): Runtime {
    const dir = join(base, `d${++n}`);
    return { policy: policyFrom(yaml), state: { dir }, metrics: new Registry(), control: new ControlServer(join(dir, 'c.sock')), log: () => undefined } as unknown as Runtime;
  }
  const blocked = (dst: string): FlowEvent => ({ time: Date.now(), verdict: 'blocked', rule: '#default', family: 4, proto: 17, src: '198.18.0.2', dst, dport: 9, process: { pid: 9, comm: 'nc' } });

  it('a storm is one message through an exec sink that was down, then back, across a restart; suppressed ones are counted, not sent', async () => {
    const outFile = join(base, `exec-out-${n}.jsonl`);
    const down = join(base, `exec-down-${n}`);
    writeFileSync(down, '');
    // The sink: fails while the "down" file exists, else appends the alert it reads.
    const script = join(base, `sink-${n}.sh`);
    writeFileSync(script, `#!/bin/sh\n[ -e '${down}' ] && exit 3\ncat >> '${outFile}'\n`, { mode: 0o755 });
    const yaml = `mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.10]\nalerts:\n  - {name: ops, sink: {exec: [${script}]}, on: [blocked, tamper], window: 1s}\nsuppress:\n  - {destination: 198.18.9.0/24, until: 2999-01-01, reason: lab}\n`;
    const rt = runtime(yaml);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(rt.state.dir, { recursive: true });
    let c = new AlertsComponent();
    await c.start(rt);
    for (let i = 0; i < 2_000; i++) publishFlow(blocked('198.18.1.11'));
    for (let i = 0; i < 5; i++) publishFlow(blocked('198.18.9.9'));
    await sleep(1_400);
    const st = c.status() as { routes: Record<string, { queued: number; retried: number; suppressed: number }> };
    assert.equal(st.routes.ops?.suppressed, 5);
    assert.equal(st.routes.ops?.queued, 1, 'the summary waits: the sink is down');
    assert.ok((st.routes.ops?.retried ?? 0) >= 1);
    await c.stop();

    rmSync(down);
    c = new AlertsComponent();
    await c.start(rt);
    await waitFor('the exec sink to write', async () => (existsSync(outFile) ? true : undefined), 20_000);
    await sleep(200);
    const got = readFileSync(outFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AlertMessage);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.count, 2_000);
    assert.equal(got[0]?.destination, '198.18.1.11');
    // A tamper alert from the core goes out at once.
    publishAlert({ time: Date.now(), kind: 'tamper', severity: 'critical', message: 'table deleted' });
    await waitFor('the second line', async () => (readFileSync(outFile, 'utf8').trim().split('\n').length >= 2 ? true : undefined), 20_000);
    assert.match(readFileSync(outFile, 'utf8'), /"trigger":"tamper"/);
    // The sink wrote the line before it exited; the route counts it delivered when it has exited 0.
    const status = () => c.status() as { routes: Record<string, { delivered: number; queued: number }> };
    await waitFor('two deliveries', async () => (status().routes.ops?.delivered === 2 ? true : undefined), 20_000);
    const after = status();
    assert.equal(after.routes.ops?.delivered, 2);
    assert.equal(after.routes.ops?.queued, 0);
    await c.stop();
  });
});

describe('unit: a webhook body template', () => {
  const m: AlertMessage = { route: 'ops', trigger: 'blocked', severity: 'warning', count: 3, first: 'f', last: 'l', message: 'curl blocked', text: '[sluice blocked] "evil" <@here> blocked', who: 'curl\n"}, "x": 1, {"' };

  it('each {{field}} becomes that field as a JSON value: a name another process chose stays a string, and text is made safe for chat', () => {
    const body = webhookBody(m, '{"msgtype": "text", "body": {{text}}, "n": {{count}}, "who": {{who}}, "rule": {{rule}}}');
    assert.deepEqual(JSON.parse(body), { msgtype: 'text', body: chatText(m.text), n: 3, who: m.who, rule: null });
    assert.deepEqual(Object.keys(JSON.parse(webhookBody(m)) as object), ['text', 'content', 'allowed_mentions', 'sluice'], 'without a template, the default body');
  });

  it('a template that is not JSON once filled, uses an unknown field or none, or sits on another sink, is refused at load', () => {
    const load = (sink: string) => policyFrom(`mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.10]\nalerts:\n  - name: a\n    sink: ${sink}\n    on: [blocked]\n`);
    assert.equal((load(`{webhook: "https://x.example/", template: '{"t": {{text}}}'}`).alerts[0]?.sink as { template?: string }).template, '{"t": {{text}}}');
    const bad = (sink: string, re: RegExp) => assert.throws(() => load(sink), (e: unknown) => e instanceof PolicyError && e.issues.some((i) => re.test(i.message)), sink);
    bad(`{webhook: "https://x.example/", template: '{"t": "{{text}}"}'}`, /not inside quotes/);
    bad(`{webhook: "https://x.example/", template: '{"t": {{txt}}}'}`, /unknown template field \{\{txt\}\}/);
    bad(`{webhook: "https://x.example/", template: '{"t": 1}'}`, /at least one field/);
    bad(`{journal: true, template: '{"t": {{text}}}'}`, /template belongs to a webhook sink/);
  });
});

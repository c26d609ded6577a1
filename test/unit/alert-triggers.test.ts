/**
 * The alert triggers that watch the daemon itself and what it learns:
 * `attribution-low` (a window of events that mostly name no process),
 * `new-destination` (a process or unit reaching somewhere for the first
 * time, remembered across restarts, after a learning period), `event-loss`
 * (records lost after the kernel) and `daemon-failed` (a previous daemon
 * that did not stop cleanly), each through the alerts component to a route;
 * and the local sinks: the syslog socket and the journal's native protocol.
 */
import assert from 'node:assert/strict';
import { waitFor } from '../support/monitor-helpers.js';
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { AlertsComponent } from '../../src/alerts/alerts-component.js';
import { Outbox } from '../../src/alerts/outbox.js';
import type { AlertMessage } from '../../src/alerts/rollup.js';
import { deliver, localSyslogLine } from '../../src/alerts/sinks.js';
import { AttributionGauge, NewDestinations, type SeenStore } from '../../src/alerts/watches.js';
import { previousFailure } from '../../src/daemon/daemon.js';
import { publishDnsQuery, publishFlow, type DnsQueryEvent, type FlowEvent } from '../../src/events/channels.js';
import { ZERO_COUNTERS } from '../../src/events/event-store.js';
import { MemoryStore } from '../../src/events/memory-store.js';
import { EventStoreComponent } from '../../src/events/store-component.js';
import type { Runtime } from '../../src/runtime/component.js';
import { ControlServer } from '../../src/runtime/control-server.js';
import { Registry } from '../../src/runtime/metrics.js';
import { journalEntry, journalKey, stderrIsJournal } from '../../src/runtime/journal.js';
import { PolicyError } from '../../src/errors.js';
import { policyFrom, ROOT } from '../support/fixtures.js';

const base = mkdtempSync(join(tmpdir(), 'sluice-triggers-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

const flow = (over: Partial<FlowEvent> = {}): FlowEvent => ({ time: Date.now(), verdict: 'allowed', rule: 'api', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.1.10', dport: 443, process: { pid: 9, comm: 'curl', exe: '/usr/bin/curl' }, ...over });
const dns = (over: Partial<DnsQueryEvent> = {}): DnsQueryEvent => ({
  time: Date.now(),
  transport: 'udp',
  client: { address: '127.0.0.1', port: 5353, uid: 1000 },
  name: 'api.example.com',
  type: 1,
  verdict: 'allowed',
  rules: ['api'],
  rcode: 0,
  answers: ['198.18.1.10'],
  dropped: [],
  latencyMs: 1,
  process: { pid: 10, comm: 'dig', exe: '/usr/bin/dig' },
  ...over,
});

/** An in-memory pair store. */
class MapStore implements SeenStore {
  rows: { who: string; destination: string; first: number }[] = [];
  constructor(private readonly since: number) {}
  seen(limit: number) {
    return { since: this.since, pairs: this.rows.slice(-limit) };
  }
  addSeen(pairs: readonly { who: string; destination: string; first: number }[]) {
    this.rows.push(...pairs);
  }
}

describe('unit: attribution-low', () => {
  const opts = { windowMs: 1_000, minEvents: 10, threshold: 0.5 };

  it('a window where under half of the events name their process is one occurrence, with the numbers', () => {
    const g = new AttributionGauge(opts);
    const t0 = 1_000_000;
    for (let i = 0; i < 12; i++) assert.equal(g.add(flow({ time: t0 + i, ...(i < 4 ? {} : { process: undefined }) })), null);
    const o = g.tick(t0 + 1_000);
    assert.ok(o);
    assert.equal(o.trigger, 'attribution-low');
    assert.deepEqual(o.detail, { events: 12, attributed: 4, windowMs: 1_000 });
    assert.match(o.message, /only 4 of 12 connection events in 1 s named their process \(33%/);
    assert.equal(g.tick(t0 + 5_000), null, 'the window was closed: the next starts empty');
  });

  it('half or more named, or too few events to judge, is nothing; the window also closes on the next event', () => {
    const g = new AttributionGauge(opts);
    const t0 = 2_000_000;
    for (let i = 0; i < 12; i++) g.add(flow({ time: t0 + i, ...(i < 6 ? {} : { process: undefined }) }));
    assert.equal(g.tick(t0 + 1_000), null, '6 of 12 is not low');
    for (let i = 0; i < 9; i++) g.add(flow({ time: t0 + 2_000 + i, process: undefined }));
    assert.equal(g.tick(t0 + 3_000), null, '9 events are too few to judge');
    for (let i = 0; i < 10; i++) g.add(flow({ time: t0 + 4_000 + i, process: undefined }));
    const o = g.add(flow({ time: t0 + 5_100 }));
    assert.equal(o?.trigger, 'attribution-low', 'the next window\'s first event closes the low one');
  });
});

describe('unit: new-destination', () => {
  it('after the learning period, the first allowed flow or answered name of each (who, destination) is one occurrence; repeats, blocked flows and anonymous ones are not', () => {
    const store = new MapStore(0);
    const d = new NewDestinations(store, { learnMs: 1_000, max: 100 }, 0);
    assert.equal(d.fromFlow(flow({ time: 500 })), null, 'learning: recorded, not reported');
    assert.equal(d.stats.learned, 1);
    assert.equal(d.fromFlow(flow({ time: 2_000 })), null, 'already known');
    const o = d.fromFlow(flow({ time: 2_000, dst: '198.18.1.11', hostname: 'cdn.example.com' }));
    assert.equal(o?.trigger, 'new-destination');
    assert.equal(o?.who, '/usr/bin/curl');
    assert.equal(o?.destination, 'cdn.example.com', 'the name, not the address, when the event has one');
    assert.match(o?.message ?? '', /\/usr\/bin\/curl reached cdn\.example\.com \(198\.18\.1\.11\) port 443\/tcp for the first time \(allowed by api\)/);
    assert.equal(d.fromFlow(flow({ time: 2_000, dst: '198.18.1.12', hostname: 'cdn.example.com' })), null, 'same name, another address: not new');
    assert.equal(d.fromFlow(flow({ time: 2_000, dst: '198.18.9.9', verdict: 'blocked' })), null, 'blocked is the blocked trigger\'s');
    assert.equal(d.fromFlow(flow({ time: 2_000, dst: '198.18.9.8', process: undefined })), null, 'nobody to compare with');
    const q = d.fromDns(dns({ time: 2_000, name: 'API.example.com.' }));
    assert.equal(q?.destination, 'api.example.com', 'names are compared lower-case, without the root dot');
    assert.equal(q?.who, '/usr/bin/dig');
    assert.equal(d.fromDns(dns({ time: 2_000, name: 'evil.example', verdict: 'blocked' })), null, 'a refused name is unlisted-name\'s');
    d.flush();
    assert.deepEqual(
      store.rows.map((r) => `${r.who} ${r.destination}`),
      ['/usr/bin/curl 198.18.1.10', '/usr/bin/curl cdn.example.com', '/usr/bin/dig api.example.com'],
    );
  });

  it('what was seen is remembered across a restart, in the alert database; memory is bounded', () => {
    const file = join(base, `seen-${++n}.db`);
    let outbox = new Outbox(file);
    let d = new NewDestinations(outbox, { learnMs: 0, max: 2 }, 1_000);
    assert.ok(d.fromFlow(flow({ time: 2_000, dst: '198.18.1.1' })));
    assert.ok(d.fromFlow(flow({ time: 2_001, dst: '198.18.1.2' })));
    assert.ok(d.fromFlow(flow({ time: 2_002, dst: '198.18.1.3' })), 'the oldest pair leaves memory');
    assert.ok(d.fromFlow(flow({ time: 2_003, dst: '198.18.1.1' })), 'forgotten, so new again');
    d.flush();
    outbox.close();
    outbox = new Outbox(file);
    d = new NewDestinations(outbox, { learnMs: 0, max: 10 }, 9_000);
    assert.equal(d.fromFlow(flow({ time: 10_000, dst: '198.18.1.2' })), null, 'known from before the restart');
    assert.ok(d.fromFlow(flow({ time: 10_000, dst: '198.18.1.4' })));
    assert.equal(outbox.seen(10).since, 1_000, 'the learning period counts from the first start, not this one');
    // On disk at most max pairs: the oldest go.
    outbox.addSeen([5, 6, 7, 8].map((i) => ({ who: 'w', destination: `d${i}`, first: 20_000 + i })), 3);
    assert.deepEqual(outbox.seen(100).pairs.map((p) => p.destination), ['d6', 'd7', 'd8']);
    outbox.addSeen([{ who: 'w', destination: 'd9', first: 30_000 }], 3);
    assert.deepEqual(outbox.seen(100).pairs.map((p) => p.destination), ['d7', 'd8', 'd9']);
    outbox.close();
  });
});

describe('unit: daemon-failed at start', () => {
  it('a previous daemon that was running, or whose start failed, is reported; a clean stop or a first start is not', () => {
    const at = '2026-12-05T10:00:00.000Z';
    assert.match(previousFailure({ state: 'running', pid: 4242, at }, 1)?.message ?? '', /previous Sluice daemon \(pid 4242, running since .*\) ended without stopping cleanly/);
    assert.match(previousFailure({ state: 'starting', pid: 4242, at }, 1)?.message ?? '', /ended without stopping cleanly/);
    assert.match(previousFailure({ state: 'failed', pid: 4242, at, error: 'EUPSTREAM boom' }, 1)?.message ?? '', /failed to start at .*: EUPSTREAM boom/);
    assert.equal(previousFailure({ state: 'stopped', pid: 4242, at }, 1), null);
    assert.equal(previousFailure(null, 1), null);
    assert.equal(previousFailure({ state: 'running', pid: 1, at }, 1), null, 'its own state');
  });
});

describe('unit: the new triggers through the alerts component', () => {
  function runtime(yaml: string): { rt: Runtime; lines: { message: string; fields: Record<string, unknown> | undefined }[] } {
    const dir = join(base, `d${++n}`);
    mkdirSync(dir, { recursive: true });
    const lines: { message: string; fields: Record<string, unknown> | undefined }[] = [];
    const rt = { policy: policyFrom(yaml), state: { dir }, metrics: new Registry(), control: new ControlServer(join(dir, 'c.sock')), log: (_l: string, message: string, fields?: Record<string, unknown>) => lines.push({ message, fields }) } as unknown as Runtime;
    return { rt, lines };
  }
  const POLICY = (on: string) => `mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.0/24]\nalerts:\n  - {name: ops, sink: {journal: true}, on: [${on}], window: 1s}\n`;
  /** Journal sinks write the daemon's log here (on a host with journald they would go to it). */
  const NO_JOURNAL = join(base, 'no-journal.sock');
  const sent = (lines: { message: string; fields: Record<string, unknown> | undefined }[], trigger: string) => lines.filter((l) => l.fields?.alert === trigger);

  it('new-destination and attribution-low reach a route that listens for them, and nothing else does', async () => {
    const { rt, lines } = runtime(POLICY('new-destination, attribution-low'));
    const c = new AlertsComponent({ newDestinations: { learnMs: 0, max: 100 }, attribution: { windowMs: 300, minEvents: 5, threshold: 0.5 }, journalSocket: NO_JOURNAL });
    await c.start(rt);
    try {
      publishFlow(flow({ dst: '198.18.1.20' }));
      publishDnsQuery(dns({ name: 'docs.example.com' }));
      for (let i = 0; i < 6; i++) publishFlow(flow({ dst: '198.18.1.20', process: undefined, verdict: 'blocked' }));
      await waitFor('both alerts', async () => (sent(lines, 'new-destination').length >= 2 && sent(lines, 'attribution-low').length >= 1 ? true : undefined), 20_000);
      assert.deepEqual(sent(lines, 'new-destination').map((l) => l.fields?.destination).sort(), ['198.18.1.20', 'docs.example.com']);
      assert.equal(sent(lines, 'attribution-low').length, 1);
      assert.equal(sent(lines, 'blocked').length, 0, 'the route does not listen for blocked');
    } finally {
      await c.stop();
    }
    // Learned pairs were stored when the component stopped.
    const outbox = new Outbox(join(rt.state.dir, 'alerts.db'));
    assert.equal(outbox.seen(10).pairs.length, 2);
    outbox.close();
  });

  it('event-loss: records lost after the component started are one alert saying how many; losses of earlier runs are not reported again', async () => {
    const { rt, lines } = runtime(POLICY('event-loss'));
    const store = new MemoryStore();
    store.append([], { ...ZERO_COUNTERS, seqGaps: 7 });
    let counters = { ...ZERO_COUNTERS };
    const events = new EventStoreComponent({ open: () => store, counters: () => counters, lossEveryMs: 100 });
    const c = new AlertsComponent({ journalSocket: NO_JOURNAL });
    await c.start(rt);
    await events.start(rt);
    try {
      await sleep(250);
      assert.equal(sent(lines, 'event-loss').length, 0, 'the 7 lost before this run are not news');
      counters = { ...ZERO_COUNTERS, seqGaps: 3, collectorDrops: 2 };
      await waitFor('the event-loss alert', async () => (sent(lines, 'event-loss').length > 0 ? true : undefined), 20_000);
      const got = sent(lines, 'event-loss');
      assert.equal(got.length, 1);
      assert.match(got[0]?.message ?? '', /5 event records lost/);
      assert.match(got[0]?.message ?? '', /10 in the kernel, 2 dropped by the collector/);
    } finally {
      await events.stop();
      await c.stop();
    }
  });
});

describe('unit: local sinks (the syslog socket, the journal)', () => {
  const msg: AlertMessage = { route: 'ops', trigger: 'tamper', severity: 'critical', count: 2, first: '2026-12-05T10:00:00.000Z', last: '2026-12-05T10:00:01.000Z', message: 'x', text: '[sluice tamper] table deleted\nby "evil"\u0007', rule: undefined, who: 'nft', destination: undefined };

  it('the local syslog line is what syslog(3) sends: <PRI>Mmm dd hh:mm:ss sluice[PID]: MSG, one line, no control characters, within a datagram', () => {
    const line = localSyslogLine(msg, { pid: 77, now: new Date(2026, 11, 5, 9, 3, 7) });
    assert.equal(line, '<26>Dec  5 09:03:07 sluice[77]: [sluice tamper] table deleted by "evil"? (route ops, tamper, count 2)');
    const long = localSyslogLine({ ...msg, text: 'é'.repeat(5_000) }, { max: 1_000 });
    assert.ok(Buffer.byteLength(long) <= 1_000 && !long.includes('\ufffd'), 'cut on a character boundary');
  });

  it('a journal entry is KEY=value lines, MESSAGE first, values one line, within a datagram; field names are the journal\'s', () => {
    assert.equal(journalKey('rule'), 'SLUICE_RULE');
    assert.equal(journalKey('firstSeen'), 'SLUICE_FIRST_SEEN');
    assert.equal(journalKey('a-b.c'), 'SLUICE_A_B_C');
    const e = journalEntry('line one\nline two', [['PRIORITY', 2], ['SLUICE_WHO', 'evil\nSLUICE_ALERT=forged'], ['SLUICE_RULE', undefined], ['SLUICE_DETAIL', { a: 1 }]]);
    assert.equal(e, 'MESSAGE=line one line two\nPRIORITY=2\nSLUICE_WHO=evil SLUICE_ALERT=forged\nSLUICE_DETAIL={"a":1}\n', 'a newline in a value cannot start a field of its own');
    assert.ok(Buffer.byteLength(journalEntry('m'.repeat(10_000), [['PRIORITY', 6]])) <= 4_000);
  });

  it('stderr is the journal only when JOURNAL_STREAM names its device and inode', () => {
    const st = fstatSync(2);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }), true);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1}` }), false, 'a stderr redirected elsewhere keeps JSON lines');
    assert.equal(stderrIsJournal({}), false);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: 'junk' }), false);
  });

  it('the syslog unix sink and the journal sink each send one datagram to their socket; no socket is a reason, not a hang', async () => {
    const dir = mkdtempSync(join(base, 'sock-'));
    const path = join(dir, 'log');
    // A datagram receiver (Node has none for unix sockets): prints each datagram as JSON.
    const rx = spawn('python3', ['-c', `import socket,sys,json\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(${JSON.stringify(path)})\nprint("ready",flush=True)\nwhile True:\n  d=s.recv(65536)\n  print(json.dumps(d.decode()),flush=True)\n`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      rx.stdout.on('data', (d: Buffer) => (out += d.toString()));
      // Deadline polls: python's start on a loaded machine can take seconds.
      await waitFor('the receiver to bind its socket', async () => (out.includes('ready') ? true : undefined), 20_000);
      const got = () => out.split('\n').slice(1).filter(Boolean).map((l) => JSON.parse(l) as string);
      await deliver({ kind: 'syslog', transport: 'unix', path }, msg, () => undefined);
      await deliver({ kind: 'journal' }, msg, () => assert.fail('not the log: the socket is there'), { journalSocket: path });
      await waitFor('both datagrams', async () => (got().length >= 2 ? true : undefined), 20_000);
      const [sys, jour] = got();
      assert.match(sys ?? '', /^<26>\w{3} [ \d]\d \d\d:\d\d:\d\d sluice\[\d+\]: \[sluice tamper\] table deleted by "evil"\? \(route ops, tamper, count 2\)$/);
      const fields = new Map((jour ?? '').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
      assert.equal(fields.get('MESSAGE'), '[sluice tamper] table deleted by "evil"?');
      assert.equal(fields.get('PRIORITY'), '2');
      assert.equal(fields.get('SYSLOG_IDENTIFIER'), 'sluice');
      assert.equal(fields.get('SLUICE_ALERT'), 'tamper');
      assert.equal(fields.get('SLUICE_COUNT'), '2');
      assert.equal(fields.get('SLUICE_WHO'), 'nft');
      assert.equal(fields.has('SLUICE_RULE'), false, 'absent fields are left out');
    } finally {
      rx.kill();
    }
    await assert.rejects(deliver({ kind: 'syslog', transport: 'unix', path: join(dir, 'none') }, msg, () => undefined), /syslog: .*none: no such socket \(ENOENT\)/);
    const logged: string[] = [];
    await deliver({ kind: 'journal' }, msg, (m) => logged.push(m), { journalSocket: join(dir, 'none') });
    assert.deepEqual(logged, [msg.text], 'no journal here: the daemon\'s log');
  });

  it('syslog: unix:///dev/log in a policy is the local socket; a relative or dotted path is refused', () => {
    const p = (v: string) => policyFrom(`mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.10]\nalerts:\n  - {name: s, sink: {syslog: "${v}"}, on: [tamper]}\n`);
    assert.deepEqual(p('unix:///dev/log').alerts[0]?.sink, { kind: 'syslog', transport: 'unix', path: '/dev/log' });
    for (const bad of ['unix://dev/log', 'unix:///run/../dev/log', `unix:///${'x'.repeat(120)}`]) assert.throws(() => p(bad), PolicyError, bad);
  });
});

describe('unit: the daemon\'s log under systemd', () => {
  it('with stderr the journal (JOURNAL_STREAM), each line is a journal entry with its fields; else JSON on stderr', async () => {
    const dir = mkdtempSync(join(base, 'journal-'));
    const sock = join(dir, 'journal.sock');
    const rx = spawn('python3', ['-c', `import socket,json\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(${JSON.stringify(sock)})\nprint("ready",flush=True)\nwhile True:\n  print(json.dumps(s.recv(65536).decode()),flush=True)\n`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      rx.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor('the receiver to bind its socket', async () => (out.includes('ready') ? true : undefined), 20_000);
      const errFile = join(dir, 'stderr');
      const code = `import(${JSON.stringify(join(ROOT, 'dist/src/daemon/daemon.js'))}).then((m) => m.logLine('warn', 'blocked a thing', { rule: 'api', verdict: 'blocked', process: { pid: 9, comm: 'curl' } }))`;
      const run = async (journal: boolean) => {
        const fd = openSync(errFile, 'w');
        const st = fstatSync(fd);
        const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'ignore', fd], env: { ...process.env, SLUICE_JOURNAL_SOCKET: sock, ...(journal ? { JOURNAL_STREAM: `${st.dev}:${st.ino}` } : { JOURNAL_STREAM: '' }) } });
        await new Promise((r) => child.on('exit', r));
        closeSync(fd);
        return readFileSync(errFile, 'utf8');
      };
      assert.equal(await run(true), '', 'nothing on stderr');
      await waitFor('the journal entry', async () => (out.includes('MESSAGE') ? true : undefined), 20_000);
      const entry = JSON.parse(out.split('\n')[1] ?? '""') as string;
      assert.equal(entry, 'MESSAGE=blocked a thing\nPRIORITY=4\nSYSLOG_IDENTIFIER=sluice\nSLUICE_LEVEL=warn\nSLUICE_RULE=api\nSLUICE_VERDICT=blocked\nSLUICE_PROCESS={"pid":9,"comm":"curl"}\n');
      const plain = await run(false);
      assert.equal((JSON.parse(plain) as { rule: string }).rule, 'api', 'not the journal: a JSON line');
    } finally {
      rx.kill();
    }
  });
});

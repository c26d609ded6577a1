/**
 * Integration: monitoring in the namespace world. The daemon runs in the
 * client namespace (its own state directory); attempts come from a helper
 * process (test/support/attempt.ts) that stays alive after the attempt, as
 * uid 65534, from a fixed local port so its one event is found exactly.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StoredEvent } from '../../src/events/event-store.js';
import { findCgroup2Root } from '../../src/system/cgroups.js';
import { compileBlast } from '../support/blast.js';
import { attempter, eventsFrom, finish, logEvents, metricValue, NODE, scrapeMetrics, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';

const NOBODY = 65534;
const SUPPORT = join(ROOT, 'dist/test/support');

const ENFORCE = `
mode: enforce
log:
  rate: 5000
  burst: 20000
  # One sender here: its share is the whole budget (test/integration/log-budget.test.ts tests the shares).
  user_rate: 5000
  user_burst: 20000
rules:
  - name: dns
    to: [${HOSTS.dns4}]
    ports: [53]
  - name: hold
    to: [${HOSTS.api4}]
    ports: [9100/tcp]
  - name: metadata
    action: deny
    to: [${HOSTS.meta4}]
`;

const AUDIT = ENFORCE.replace('mode: enforce', 'mode: audit');

const metrics = scrapeMetrics;
const metric = metricValue;

function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

describe('integration: monitoring (events, attribution, connections, metrics)', () => {
  let w: World;
  let daemon: ChildProcess;
  let daemonPid: number;
  let policyPath: string;
  let cgroupDir: string | undefined;

  before(async () => {
    w = await World.create();
    // A server that keeps connections open, for `connections` and `top`.
    await w.spawnReady(w.world, [NODE, join(SUPPORT, 'hold-server.js'), '9100']);
    policyPath = w.policy(ENFORCE);
    // The socket-table methods (what runs without the attribution probes) are what these tests name;
    // the probes have their own (kernel-attribution.test.ts).
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', policyPath], { env: w.env({ SLUICE_EBPF: 'off' }), readyText: 'sluice daemon: running' });
    daemonPid = Number(readFileSync(join(w.stateDir, 'daemon.pid'), 'utf8'));
    daemon.stderr?.resume();
  });
  after(async () => {
    await w?.destroy();
  });

  it('a blocked TCP connect: one event with rule, addresses, uid, pid, executable, and the cgroup it ran in', async () => {
    const root = findCgroup2Root();
    assert.ok(root, 'this host has a cgroup2 mount');
    const rel = `sluice-test-${process.pid}.slice/attempt-tcp.service`;
    cgroupDir = w.makeCgroup(root, rel);
    const a = await attempter(w, ['tcp', HOSTS.meta4, '80', '31001'], { uid: NOBODY });
    writeFileSync(join(cgroupDir, 'cgroup.procs'), String(a.pid));
    const outcome = await a.go();
    assert.deepEqual(outcome, { ok: false, error: 'ECONNREFUSED' }, 'the connect is refused at once');
    const evs = await eventsFrom(w, 31001);
    assert.equal(evs.length, 1, JSON.stringify(evs));
    const e = evs[0] as StoredEvent;
    assert.equal(e.verdict, 'blocked');
    assert.equal(e.rule, 'metadata');
    assert.equal(e.family, 4);
    assert.equal(e.proto, 6);
    assert.equal(e.src, HOSTS.client4);
    assert.equal(e.dst, HOSTS.meta4);
    assert.equal(e.dport, 80);
    assert.equal(e.iface, 'eth0');
    assert.equal(e.uid, NOBODY);
    assert.equal(e.user, 'nobody');
    assert.equal(e.process?.pid, a.pid);
    assert.equal(e.process?.exe, NODE);
    assert.match(e.process?.cmdline ?? '', /attempt\.js tcp 198\.18\.1\.254 80 31001/);
    assert.equal(e.process?.cgroup, `/${rel}`);
    assert.equal(e.process?.unit, 'attempt-tcp.service');
    assert.ok(e.attribution, 'the attribution method is recorded');
    await finish(a);
  });

  it('a blocked UDP send: one event with the default rule, uid, pid and executable', async () => {
    const a = await attempter(w, ['udp', HOSTS.other4, '5000', '31002'], { uid: NOBODY });
    const outcome = await a.go();
    assert.equal(outcome.ok, false, 'the datagram is refused');
    const evs = await eventsFrom(w, 31002);
    assert.equal(evs.length, 1, JSON.stringify(evs));
    const e = evs[0] as StoredEvent;
    assert.deepEqual(
      { verdict: e.verdict, rule: e.rule, proto: e.proto, src: e.src, dst: e.dst, dport: e.dport, uid: e.uid, pid: e.process?.pid, exe: e.process?.exe },
      { verdict: 'blocked', rule: '#default', proto: 17, src: HOSTS.client4, dst: HOSTS.other4, dport: 5000, uid: NOBODY, pid: a.pid, exe: NODE },
    );
    await finish(a);
  });

  it('two processes of one user in one cgroup: the socket names the sender (the socket method), not the bystander', async () => {
    // Neither the uid nor the cgroup tells them apart; only the sender's socket (still open: the
    // helper keeps its bound UDP socket) does. Without the socket method the event has no process.
    const bystander = await attempter(w, ['udp', HOSTS.other4, '5001', '31005'], { uid: NOBODY });
    const sender = await attempter(w, ['udp', HOSTS.other4, '5001', '31004'], { uid: NOBODY });
    try {
      assert.equal((await sender.go()).ok, false, 'the datagram is refused');
      const evs = await eventsFrom(w, 31004);
      assert.equal(evs.length, 1, JSON.stringify(evs));
      const e = evs[0] as StoredEvent;
      assert.deepEqual(
        { pid: e.process?.pid, attribution: e.attribution, uid: e.uid },
        { pid: sender.pid, attribution: 'socket', uid: NOBODY },
        `the bystander is ${bystander.pid}`,
      );
    } finally {
      await finish(sender);
      await finish(bystander);
    }
  });

  it('a blocked IPv6 connect: one event with IPv6 addresses, uid, pid and executable', async () => {
    const a = await attempter(w, ['tcp', HOSTS.api6, '443', '31003'], { uid: NOBODY });
    assert.deepEqual(await a.go(), { ok: false, error: 'ECONNREFUSED' });
    const evs = await eventsFrom(w, 31003);
    assert.equal(evs.length, 1, JSON.stringify(evs));
    const e = evs[0] as StoredEvent;
    assert.deepEqual(
      { verdict: e.verdict, rule: e.rule, family: e.family, proto: e.proto, src: e.src, dst: e.dst, dport: e.dport, uid: e.uid, pid: e.process?.pid, exe: e.process?.exe },
      { verdict: 'blocked', rule: '#default', family: 6, proto: 6, src: HOSTS.client6, dst: HOSTS.api6, dport: 443, uid: NOBODY, pid: a.pid, exe: NODE },
    );
    await finish(a);
  });

  it('log filters by verdict, process and rule, and stats counts by rule and process', async () => {
    const byRule = await logEvents(w, ['--rule', 'metadata']);
    assert.ok(byRule.length >= 1 && byRule.every((e) => e.rule === 'metadata'));
    const byProcess = await logEvents(w, ['--process', 'node', '--verdict', 'blocked', '--since', '1h']);
    assert.ok(byProcess.length >= 3, `three attributed events, got ${byProcess.length}`);
    assert.deepEqual(await logEvents(w, ['--process', 'no-such-process']), []);
    const text = await w.sluice(['log', '--limit', '5']);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /BLOCKED\s+metadata\s+tcp\s+198\.18\.0\.2:31001 -> 198\.18\.1\.254:80\s+user=nobody node\[\d+\]/);
    const st = await w.sluiceJson<{ events: { total: number; byRule: { rule: string; count: number }[]; byProcess: { key: string }[] }; kernel: Record<string, { packets: number }> }>(['stats']);
    assert.equal(st.code, 0);
    assert.ok(st.json.events.total >= 3);
    assert.ok(st.json.events.byRule.some((r) => r.rule === 'metadata'));
    assert.ok(st.json.events.byProcess.some((p) => p.key === NODE));
    assert.ok((st.json.kernel.r_metadata?.packets ?? 0) >= 1, 'kernel counters are shown');
  });

  it('connections and top list a live outbound connection with its process and rule', async () => {
    const a = await attempter(w, ['hold', HOSTS.api4, '9100', '31004'], { uid: NOBODY });
    assert.equal((await a.go()).ok, true, 'the allowed connection is up');
    const r = await w.sluiceJson<{ connections: { remote: string; remotePort: number; localPort: number; uid: number; user?: string; rule?: string; state: string; process?: { pid: number; exe?: string } }[] }>(['connections']);
    assert.equal(r.code, 0, r.stderr);
    const c = r.json.connections.find((x) => x.localPort === 31004);
    assert.ok(c, `the connection is listed: ${JSON.stringify(r.json.connections)}`);
    assert.deepEqual(
      { remote: c.remote, port: c.remotePort, uid: c.uid, user: c.user, rule: c.rule, state: c.state, pid: c.process?.pid, exe: c.process?.exe },
      { remote: HOSTS.api4, port: 9100, uid: NOBODY, user: 'nobody', rule: 'hold', state: 'ESTABLISHED', pid: a.pid, exe: NODE },
    );
    const text = await w.sluice(['connections']);
    assert.match(text.stdout, new RegExp(`node\\s+${a.pid}\\s+nobody\\s+-\\s+tcp\\s+198\\.18\\.0\\.2:31004\\s+198\\.18\\.1\\.10:9100`));
    const t = await w.sluiceJson<{ processes: { pid?: number; connections: number }[] }>(['top', '--interval', '1']);
    assert.equal(t.code, 0);
    assert.ok(t.json.processes.some((p) => p.pid === a.pid && p.connections === 1), JSON.stringify(t.json.processes));
    const screen = await w.sluice(['top', '--interval', '1']);
    assert.match(screen.stdout, /sluice top: \d+ outbound connections/);
    assert.match(screen.stdout, /198\.18\.1\.10:9100\s+hold/);
    await finish(a);
  });

  it('a burst of 100,000 blocked packets: kernel counters exact, daemon alive, memory bounded, every record accounted for', async () => {
    const blast = compileBlast();
    const bin = dirname(blast);
    const before = await metrics(w);
    const k0 = metric(before, 'sluice_rule_packets_total', '{action="deny",mode="enforce",rule="#default"}');
    const rss0 = rssOf(daemonPid);
    const r = await w.exec([blast, 'udp', HOSTS.other4, '7000', '100000', '0', '31005'], { uid: NOBODY, timeoutMs: 120_000 });
    rmSync(bin, { recursive: true, force: true });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { sent: number }).sent, 100_000);
    const after = await metrics(w);
    assert.equal(metric(after, 'sluice_rule_packets_total', '{action="deny",mode="enforce",rule="#default"}') - k0, 100_000, 'the kernel counted every packet');

    // Accounting: every packet is stored, suppressed by the kernel limit, lost in the kernel (sequence gaps) or dropped (counted).
    const accounted = async () => {
      const m = await metrics(w);
      const stored = (await logEvents(w, ['--rule', '#default'])).filter((e) => e.sport === 31005).length;
      const suppressedOf = (text: string) => metric(text, 'sluice_log_suppressed_total', '{budget="shared",kind="block"}') + metric(text, 'sluice_log_suppressed_total', '{budget="user",kind="block"}');
      const suppressed = suppressedOf(m) - suppressedOf(before);
      const lost = metric(m, 'sluice_nflog_lost_records_total') - metric(before, 'sluice_nflog_lost_records_total');
      const dropped =
        metric(m, 'sluice_events_dropped_total', '{stage="collector"}') - metric(before, 'sluice_events_dropped_total', '{stage="collector"}') +
        metric(m, 'sluice_events_dropped_total', '{stage="store"}') - metric(before, 'sluice_events_dropped_total', '{stage="store"}');
      const malformed = metric(m, 'sluice_nflog_malformed_total') - metric(before, 'sluice_nflog_malformed_total');
      return { stored, suppressed, lost, dropped, malformed, sum: stored + suppressed + lost + dropped + malformed };
    };
    const acc = await waitFor('the pipeline to account for every packet', async () => {
      const a = await accounted();
      return a.sum === 100_000 ? a : undefined;
    }, 60_000).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(await accounted())}`);
    });
    assert.ok(acc.suppressed > 0, 'the kernel rate limit suppressed records, and that is visible');
    assert.ok(acc.stored >= 20_000, `the burst allowance was recorded: ${acc.stored}`);

    const st = await w.sluiceJson<{ pipeline: { seqGaps: number; collectorDrops: number; storeDrops: number }; kernel: Record<string, { packets: number }> }>(['stats']);
    assert.ok((st.json.kernel.suppressed_block?.packets ?? 0) + (st.json.kernel.suppressed_user_block?.packets ?? 0) >= acc.suppressed, '`sluice stats` shows what the limit suppressed');
    assert.ok(st.json.pipeline, '`sluice stats` shows the pipeline counters');

    const status = await w.sluiceJson<{ state: string }>(['status']);
    assert.equal(status.code, 0);
    assert.ok(daemon.exitCode === null && daemon.signalCode === null, 'the daemon is alive');
    const rss1 = rssOf(daemonPid);
    assert.ok(rss1 - rss0 < 200 * 1024 * 1024, `daemon memory grew by ${Math.round((rss1 - rss0) / 1048576)} MiB (bounded queues)`);
  });

  it('audit mode: would-block events with the process, and nothing is blocked', async () => {
    const audit = w.policy(AUDIT, 'audit.yaml');
    const applied = await w.sluice(['apply', audit]);
    assert.equal(applied.code, 0, applied.stderr);
    const a = await attempter(w, ['tcp', HOSTS.other4, '443', '31006'], { uid: NOBODY });
    assert.deepEqual(await a.go(), { ok: true }, 'the connection goes through in audit mode');
    const u = await attempter(w, ['udp', HOSTS.other4, '5000', '31007'], { uid: NOBODY });
    assert.equal((await u.go()).ok, true, 'the datagram goes out in audit mode');
    for (const port of [31006, 31007]) {
      const evs = await eventsFrom(w, port);
      assert.equal(evs.length, 1, JSON.stringify(evs));
      assert.equal(evs[0]?.verdict, 'would-block');
      assert.equal(evs[0]?.rule, '#default');
      assert.equal(evs[0]?.process?.pid, port === 31006 ? a.pid : u.pid);
    }
    assert.ok((await logEvents(w, ['--verdict', 'would-block'])).length >= 2);
    const m = await metrics(w);
    assert.ok(metric(m, 'sluice_rule_packets_total', '{action="deny",mode="audit",rule="#default"}') >= 2, 'per-rule counters carry the mode');
    assert.match(m, /sluice_events_stored_total\{verdict="would-block"\} [1-9]/);
    await finish(a);
    await finish(u);
  });
});

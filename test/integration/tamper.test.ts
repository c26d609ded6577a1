/**
 * Integration: the tamper watchdog against the real kernel. The daemon runs
 * in the client namespace; another process (nft, as root in that namespace:
 * what an attacker after a privilege escalation, or a careless
 * `systemctl restart nftables`, does) changes Sluice's table. Each change is
 * put back within a second with an alert naming it and the process; a
 * Sluice apply, the guard's own writes, and `tamper: alert` are not restores.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { collectJsonLines, HOSTS, ROOT, stopChild, World } from '../world/world.js';

const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');
const policyText = (tamper: string, extra = '') => `mode: enforce
tamper: ${tamper}
dns:
  upstreams: [198.18.0.53]
rules:
  - name: api
    to: [api.sluice.test]
    ports: [443/tcp]
  - name: lan
    to: [198.18.4.0/24${extra}]
`;

interface LogLine {
  message: string;
  alert?: string;
  by?: string[];
  changes?: string[];
  restored?: boolean;
}

describe('integration: the tamper watchdog', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  let logs: LogLine[] = [];

  const start = async (tamper: string) => {
    const file = w.policy(policyText(tamper), `tamper-${tamper}.yaml`);
    logs = [];
    const applied = await w.sluice(['apply', file]);
    assert.equal(applied.code, 0, applied.stderr);
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
    collectJsonLines(daemon.stderr, logs);
  };
  const stop = async () => {
    await stopChild(daemon);
    daemon = undefined;
  };
  /** The table's shape as nft prints it (no elements, no counters): what a restore must give back exactly. */
  const shape = async () => (await w.exec(['nft', '-s', '-t', 'list', 'table', 'inet', 'sluice'])).stdout;
  const set = async (name: string) => (await w.exec(['nft', 'list', 'set', 'inet', 'sluice', name])).stdout;
  const tamperAlerts = () => logs.filter((l) => l.alert === 'tamper');
  /** Polls until `ok` holds; the milliseconds it took. */
  const until = async (ok: () => Promise<boolean>, limitMs = 3_000): Promise<number> => {
    const t0 = performance.now();
    while (!(await ok())) {
      if (performance.now() - t0 > limitMs) throw new Error(`not within ${limitMs} ms`);
      await sleep(10);
    }
    return performance.now() - t0;
  };
  const journal = () =>
    readFileSync(join(w.stateDir, 'journal.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; by?: string[]; changes?: string[] });

  before(async () => {
    w = await World.create({ dns: true });
    await start('restore');
  });
  after(async () => {
    await stop();
    await w?.destroy();
  });

  /** Runs one tamper and checks it was undone within a second, with an alert naming nft and the change. */
  const tamperAndRestore = async (what: RegExp, act: () => Promise<void>, intact: () => Promise<boolean>) => {
    const alertsBefore = tamperAlerts().length;
    await act();
    const ms = await until(intact);
    assert.ok(ms < 1_000, `restored in ${Math.round(ms)} ms`);
    await until(async () => tamperAlerts().length > alertsBefore, 1_000);
    const alert = tamperAlerts().at(-1) as LogLine;
    assert.equal(alert.restored, true);
    assert.ok(alert.by?.some((b) => /^nft \(pid \d+\)$/.test(b)), `names the committing process: ${JSON.stringify(alert.by)}`);
    assert.match((alert.changes ?? []).join('\n'), what);
  };

  it('the table deleted, a rule deleted, a chain policy changed, the DNS redirect removed: each put back within a second, with an alert', async () => {
    const applied = await shape();
    assert.match(applied, /redirect to :/, 'the policy has the DNS redirect');
    const same = async () => (await shape()) === applied;

    await tamperAndRestore(/the table was deleted/, () => w.nft(['delete', 'table', 'inet', 'sluice']).then(() => undefined), same);

    const handle = (text: string, re: RegExp) => {
      const line = text.split('\n').find((l) => re.test(l));
      const m = line ? /# handle (\d+)/.exec(line) : null;
      assert.ok(m, `a rule matching ${re} in\n${text}`);
      return m[1] as string;
    };
    const redirect = handle(await w.nft(['-a', 'list', 'chain', 'inet', 'sluice', 'dns_redirect']), /redirect to :/);
    await tamperAndRestore(/removed: .*redirect to :/, () => w.nft(['delete', 'rule', 'inet', 'sluice', 'dns_redirect', 'handle', redirect]).then(() => undefined), same);

    await tamperAndRestore(/policy accept|policy drop/, () => w.nft(['chain', 'inet', 'sluice', 'output', '{ policy accept; }']).then(() => undefined), same);

    const output = await w.nft(['-a', 'list', 'chain', 'inet', 'sluice', 'output']);
    const first = handle(output, /jump|goto/);
    await tamperAndRestore(/removed: /, () => w.nft(['delete', 'rule', 'inet', 'sluice', 'output', 'handle', first]).then(() => undefined), same);

    // An accept rule inserted at the top of the output chain: the classic bypass.
    await tamperAndRestore(/added: .*accept/, () => w.nft(['insert', 'rule', 'inet', 'sluice', 'output', 'accept']).then(() => undefined), same);
    // The table made dormant: every rule stays, none filters.
    await tamperAndRestore(/flags Sluice does not write \(dormant\)/, () => w.nft(['add', 'table', 'inet', 'sluice', '{ flags dormant; }']).then(() => undefined), same);
    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4b}:443`], { timeoutMs: 800 }), { [`tcp:${HOSTS.api4b}:443`]: false }, 'still blocked after the restores');
    const restores = journal().filter((j) => j.event === 'tamper-restore');
    assert.ok(restores.length >= 6, `each restore is in the journal (${restores.length})`);
  });

  it('an address someone adds to a DNS-filled set is taken out; what the guard opened stays', async () => {
    const r = await w.exec([process.execPath, DNSQ, '--name', 'api.sluice.test', '--connect', '443']);
    assert.match(r.stdout, /"connect":"ok"/, r.stdout + r.stderr);
    const setName = /set (r_api_d4) \{/.exec(await shape())?.[1];
    assert.ok(setName);
    assert.match(await set(setName), new RegExp(HOSTS.api4.replaceAll('.', '\\.')), 'the guard opened the answer');
    await tamperAndRestore(
      /did not open/,
      () => w.nft(['add', 'element', 'inet', 'sluice', setName, `{ ${HOSTS.api4b} timeout 1h }`]).then(() => undefined),
      async () => !(await set(setName)).includes(HOSTS.api4b),
    );
    assert.match(await set(setName), new RegExp(HOSTS.api4.replaceAll('.', '\\.')), 'the guard\'s address is still open');
    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4b}:443`], { timeoutMs: 800 }), { [`tcp:${HOSTS.api4b}:443`]: false });
  });

  it('a catch-all element someone adds to a DNS-filled set (every address, which nft prints as `*`) is taken out', async () => {
    const setName = /set (r_api_d4) \{/.exec(await shape())?.[1];
    assert.ok(setName);
    await tamperAndRestore(
      /catch-all element/,
      () => w.nft(['add', 'element', 'inet', 'sluice', setName, '{ * }']).then(() => undefined),
      async () => !/\*/.test(await set(setName)),
    );
    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4b}:443`], { timeoutMs: 800 }), { [`tcp:${HOSTS.api4b}:443`]: false });
  });

  it('a Sluice apply while the daemon runs, and the guard\'s own writes, are not tampering', async () => {
    const alertsBefore = tamperAlerts().length;
    const before = await shape();
    for (const name of ['api.sluice.test', 'www.sluice.test']) await w.exec([process.execPath, DNSQ, '--name', name]);
    const other = w.policy(policyText('restore', ', 198.18.6.0/24'), 'other.yaml');
    const r = await w.sluice(['apply', other]);
    assert.equal(r.code, 0, r.stderr);
    const applied = await shape();
    assert.match(applied, /policy=sha256:/);
    assert.notEqual(/policy=sha256:(\w+)/.exec(applied)?.[1], /policy=sha256:(\w+)/.exec(before)?.[1], 'the other policy is in');
    await sleep(300);
    assert.equal(await shape(), applied, 'the applied policy stays');
    assert.equal(tamperAlerts().length, alertsBefore, 'no tamper alert');
    const st = (await w.control('status')) as { components: Record<string, Record<string, number> | undefined> };
    const tw = st.components['tamper-watch'];
    assert.ok(tw, JSON.stringify(st));
    assert.ok((tw.ownTransactions ?? 0) > 0, 'the guard\'s writes were seen and taken as its own');
    assert.ok((tw.foreignTransactions ?? 0) > 0, 'the apply (another process) was looked at');
  });

  it('tamper: alert reports the change and leaves it', async () => {
    await stop();
    await start('alert');
    const alertsBefore = tamperAlerts().length;
    await w.nft(['delete', 'table', 'inet', 'sluice']);
    await until(async () => tamperAlerts().length > alertsBefore, 1_000);
    const alert = tamperAlerts().at(-1) as LogLine;
    assert.equal(alert.restored, false);
    assert.match(alert.message, /left as it is \(tamper: alert\)/);
    await sleep(300);
    assert.equal((await w.exec(['nft', 'list', 'table', 'inet', 'sluice'])).code, 1, 'not restored');
    assert.equal(journal().at(-1)?.event, 'tamper');
  });
});

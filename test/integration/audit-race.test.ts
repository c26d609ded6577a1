/**
 * Integration: audit observations are exact (issue 11). In audit mode the
 * daemon learns an allowed name's addresses by watching the DNS reply go by
 * (NFLOG), so a program that connects the instant its answer arrives races
 * the set write: the kernel sees the connect before the address is in the
 * rule's set and logs would-block. The collector reconciles such a record
 * with the answer observed before it; these tests are the race, run 200
 * times with a fresh address each time, and the controls that keep the
 * reconciliation honest (an unlisted address, an allowed name on a port its
 * rule does not list).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StoredEvent } from '../../src/events/event-store.js';
import { logEvents, sleep, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';

const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');

const POLICY = `mode: audit
tamper: alert
dns:
  upstreams: [${HOSTS.dns4}]
log:
  rate: 5000
  burst: 20000
  user_rate: 5000
  user_burst: 20000
rules:
  - name: dns
    to: [${HOSTS.dns4}]
    ports: [53]
  - name: web
    to: [api.sluice.test, "*.race.sluice.test"]
    ports: [443/tcp]
`;

interface Answer {
  name: string;
  answers?: string[];
  connect?: string;
  error?: string;
}

describe('integration: audit mode, the DNS-observation race', () => {
  let w: World;
  let daemon: ChildProcess;

  const q = async (...args: string[]): Promise<Answer[]> => {
    const r = await w.exec([process.execPath, DNSQ, ...args], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Answer);
  };

  before(async () => {
    w = await World.create({ dns: true });
    await w.addLocalRange('198.18.20.0/24');
    daemon = await w.startDaemon(w.policy(POLICY));
  });
  after(async () => {
    await w?.destroy();
  });

  it('200 resolve-then-connect pairs to fresh addresses of an allowed name: 0 would-block events', async () => {
    const results = await q('--server', HOSTS.dns4, '--repeat-names', 'r{i}.race.sluice.test', '--count', '200', '--connect', '443');
    assert.equal(results.length, 200);
    assert.deepEqual(results.filter((r) => r.connect !== 'ok'), [], 'audit mode blocks nothing');
    // The positive control, last: once its event is stored, every earlier record has been through the collector.
    const control = await q('--server', HOSTS.dns4, '--name', 'api.sluice.test', '--connect', '8443');
    assert.equal(control[0]?.connect, 'ok');
    assert.equal((await w.reach([`tcp:${HOSTS.other4}:443`]))[`tcp:${HOSTS.other4}:443`], true);
    const events = await waitFor('the controls\' would-block events', async () => {
      const all = await logEvents(w, ['--verdict', 'would-block']);
      return all.some((e) => e.dst === HOSTS.other4) && all.some((e) => e.dst === HOSTS.api4 && e.dport === 8443) ? all : undefined;
    });
    // Held records are released within a second: give any stragglers time to be stored too.
    await sleep(1500);
    const wouldBlock = (await logEvents(w, ['--verdict', 'would-block'])).filter((e: StoredEvent) => e.dst.startsWith('198.18.20.'));
    assert.deepEqual(
      wouldBlock.map((e) => `${e.dst}:${e.dport} ${e.hostname ?? ''}`),
      [],
      'a connect right after an allowed answer is never would-block',
    );
    // The controls: an address no rule lists, and an allowed name's address on a port its rule does not list.
    assert.ok(events.some((e) => e.dst === HOSTS.other4 && e.dport === 443 && e.rule === '#default'), 'an unlisted address is still would-block');
    const wrongPort = events.find((e) => e.dst === HOSTS.api4 && e.dport === 8443);
    assert.ok(wrongPort, 'an allowed name on another port is still would-block');
    assert.equal(wrongPort.rule, '#default');
    // The reconciliation is counted, so an operator can see races happened.
    const status = (await w.control('collector.status')) as { auditRaces?: { reconciled: number } };
    assert.ok(status.auditRaces !== undefined, 'the collector reports its race reconciliation');
  });
});

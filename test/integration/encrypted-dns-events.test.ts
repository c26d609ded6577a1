/**
 * Integration: a DNS-over-TLS attempt, the classic way around the DNS guard,
 * is blocked by the built-in #encrypted-dns rule and shows up in the event
 * log under that rule (its records were once counted as foreign: the
 * collector's prefix pattern did not know the rule's name).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StoredEvent } from '../../src/events/event-store.js';
import { attempter, eventsFrom, finish, NODE } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';

const NOBODY = 65534;

// A rule naming a domain turns the DNS guard on, and with it the encrypted-DNS block.
const POLICY = `
mode: enforce
dns:
  upstreams: [${HOSTS.dns4}]
rules:
  - name: api
    to: [api.sluice.test]
    ports: [443/tcp]
  - name: world
    to: [${HOSTS.api4}]
    ports: [80/tcp]
`;

interface CollectorStatus {
  components: { collector: { counters: { foreign: number; records: number } } };
}

describe('integration: encrypted DNS attempts in the event log', () => {
  let w: World;
  let daemon: ChildProcess;

  before(async () => {
    w = await World.create({ dns: true });
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', w.policy(POLICY), '--metrics', 'off'], { env: w.env(), readyText: 'sluice daemon: running' });
    daemon.stderr?.resume();
  });
  after(async () => {
    await w?.destroy();
  });

  it('a DNS-over-TLS connect by an unprivileged user is refused and stored as blocked by #encrypted-dns, not counted foreign', async () => {
    const before = ((await w.control('status')) as CollectorStatus).components.collector.counters;
    const a = await attempter(w, ['tcp', HOSTS.api4, '853', '31853'], { uid: NOBODY });
    assert.deepEqual(await a.go(), { ok: false, error: 'ECONNREFUSED' }, 'the DoT connect is refused at once');
    const evs = await eventsFrom(w, 31853);
    assert.equal(evs.length, 1, JSON.stringify(evs));
    const e = evs[0] as StoredEvent;
    assert.deepEqual(
      { verdict: e.verdict, rule: e.rule, proto: e.proto, dst: e.dst, dport: e.dport, uid: e.uid },
      { verdict: 'blocked', rule: '#encrypted-dns', proto: 6, dst: HOSTS.api4, dport: 853, uid: NOBODY },
    );
    const after = ((await w.control('status')) as CollectorStatus).components.collector.counters;
    assert.equal(after.foreign - before.foreign, 0, 'no record was counted as foreign');
    assert.ok(after.records > before.records, 'the collector received the record');
    const st = await w.sluiceJson<{ kernel: Record<string, { packets: number }> }>(['stats']);
    assert.ok((st.json.kernel.encrypted_dns?.packets ?? 0) >= 1, 'the kernel counted the blocked attempt');
    await finish(a);
  });
});

/**
 * Integration: the kernel's log budget is shared by everyone, so one user's
 * flood of blocked packets could spend it and hide everyone else's blocked
 * attempts. The attack: uid 65534 floods blocked UDP sends while root makes
 * a few blocked connects. Each user has its own share of the budget (a
 * meter keyed on the socket's uid), so every one of root's attempts is
 * stored; the kernel counters stay exact, and what the flooder's share held
 * back is counted, so every packet is still accounted for.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PipelineCounters } from '../../src/events/event-store.js';
import { compileBlast } from '../support/blast.js';
import { logEvents, NODE, sleep, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';

const NOBODY = 65534;
const FLOOD = 15_000;
/** Datagrams per second: 100 times the flooder's share, 25 times the shared budget (and light enough not to starve other tests). */
const FLOOD_RATE = 5_000;
const FLOOD_PORT = 31200;
const ROOT_CONNECTS = 20;

// A small budget, so the flood is far over it: 200/s shared, each user 50/s (burst 100) by default.
const POLICY = `
mode: enforce
log:
  rate: 200
  burst: 400
rules:
  - name: metadata
    action: deny
    to: [${HOSTS.meta4}]
`;

type Kernel = Record<string, { packets: number }>;

describe('integration: each user has its own share of the kernel log budget', () => {
  let w: World;
  let daemon: ChildProcess;
  let bin: string;

  before(async () => {
    w = await World.create();
    bin = dirname(compileBlast());
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', w.policy(POLICY), '--metrics', 'off'], { env: w.env(), readyText: 'sluice daemon: running' });
    daemon.stderr?.resume();
  });
  after(async () => {
    await w?.destroy();
    if (bin) rmSync(bin, { recursive: true, force: true });
  });

  const kernel = async (): Promise<Kernel> => {
    const st = await w.sluiceJson<{ kernel: Kernel | null }>(['stats']);
    assert.equal(st.code, 0, st.stderr);
    return st.json.kernel ?? {};
  };
  const pipeline = async (): Promise<PipelineCounters> => ((await w.control('events.pipeline')) as { counters: PipelineCounters }).counters;
  const delta = (a: Kernel, b: Kernel, name: string) => (b[name]?.packets ?? 0) - (a[name]?.packets ?? 0);

  it('uid 65534 floods blocked UDP sends; all of root\'s blocked connects meanwhile are stored, counters exact, the flood\'s suppression counted', async () => {
    const k0 = await kernel();
    const p0 = await pipeline();
    const flood = w.exec([join(bin, 'blast'), 'udp', HOSTS.other4, '7000', String(FLOOD), String(FLOOD_RATE), String(FLOOD_PORT)], { uid: NOBODY, timeoutMs: 60_000 });
    // Root's attempts start once the flood is well under way, and end before it does.
    await sleep(500);
    const connects = await w.exec([join(bin, 'blast'), 'tcp', HOSTS.meta4, '80', String(ROOT_CONNECTS), '10']);
    assert.equal(connects.code, 0, connects.stderr);
    const c = JSON.parse(connects.stdout) as { sent: number; errors: number };
    assert.deepEqual({ sent: c.sent, refused: c.errors }, { sent: ROOT_CONNECTS, refused: ROOT_CONNECTS });
    const f = await flood;
    assert.equal(f.code, 0, f.stderr);
    const floodOut = JSON.parse(f.stdout) as { sent: number; seconds: number };
    assert.equal(floodOut.sent, FLOOD);
    assert.ok(floodOut.seconds > 2.4, `the flood lasted ${floodOut.seconds} s, longer than root's attempts`);

    const k1 = await kernel();
    assert.equal(delta(k0, k1, 'r_metadata'), ROOT_CONNECTS, "the kernel counted every one of root's connects");
    assert.equal(delta(k0, k1, 'default'), FLOOD, 'the kernel counted every flooded datagram');

    // Every one of root's blocked connects is in the store, with root's uid.
    const rootEvents = await waitFor(`${ROOT_CONNECTS} events of root's connects`, async () => {
      const evs = (await logEvents(w, ['--rule', 'metadata'])).filter((e) => e.uid === 0);
      return evs.length >= ROOT_CONNECTS ? evs : undefined;
    }, 20_000).catch(async (err: Error) => {
      throw new Error(`${err.message}: stored ${(await logEvents(w, ['--rule', 'metadata'])).length}; kernel ${JSON.stringify(await kernel())}`);
    });
    assert.equal(rootEvents.length, ROOT_CONNECTS);
    assert.ok(rootEvents.every((e) => e.verdict === 'blocked' && e.dst === HOSTS.meta4 && e.dport === 80));

    // The flood: what the user's share held back is counted apart, and every datagram is accounted for.
    const userHeld = delta(k0, await kernel(), 'suppressed_user_block');
    assert.ok(userHeld >= FLOOD - 400, `the flooder's share held back most of the flood: ${userHeld}`);
    const accounted = async () => {
      const k = await kernel();
      const p = await pipeline();
      const stored = (await logEvents(w, ['--rule', '#default'])).filter((e) => e.sport === FLOOD_PORT).length;
      const shared = delta(k0, k, 'suppressed_block');
      const user = delta(k0, k, 'suppressed_user_block');
      const lost = p.seqGaps - p0.seqGaps + p.collectorDrops - p0.collectorDrops + p.storeDrops - p0.storeDrops + p.malformed - p0.malformed;
      return { stored, shared, user, lost, sum: stored + shared + user + lost };
    };
    const acc = await waitFor('every flooded datagram accounted for', async () => {
      const a = await accounted();
      return a.sum === FLOOD ? a : undefined;
    }, 20_000).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(await accounted())}`);
    });
    assert.ok(acc.stored > 0 && acc.stored <= 100 + 50 * Math.ceil(floodOut.seconds) + 10, `the flooder got about its share recorded: ${JSON.stringify(acc)}`);
    assert.equal(acc.shared, 0, 'the shared budget held back nothing: no one was over it');

    const text = await w.sluice(['stats']);
    assert.match(text.stdout, new RegExp(`not recorded by the kernel's log budget: ${acc.shared + acc.user} blocked \\(${acc.user} over the sending user's share\\)`));
  });
});

/**
 * The DNS guard's decision path in one process, for issue 14's tail: what it
 * allocates per answer (the young generation's scavenges are the event
 * loop's longest regular pauses under DNS load) and how long it takes, for a
 * cache hit and for a fresh answer, with the sites that allocate most.
 *
 *   npm run bench:guard-alloc [-- --hits N]
 *
 * The guard runs as in the daemon (policy, matcher, rebinding filter,
 * learned state, answer cache) with an upstream that answers at once and a
 * set writer that accepts every write at once (the kernel's part, netlink,
 * is not the guard's): no sockets, no kernel, no daemon subscribers, so the
 * figures are the guard's own. Allocation is counted by V8's sampling heap
 * profiler with the objects later collected included (every byte allocated,
 * sampled every 1 KiB): it does not depend on the machine's load, unlike
 * the time, which is printed for comparisons within one run only. Each
 * path is measured twice and the lower figure kept. Nothing is asserted.
 */
import { Session } from 'node:inspector/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeQuery, type RR } from '../src/dns/dns-message.js';
import { parseAddr } from '../src/net/ip.js';
import { guardSetup } from '../test/support/guard-harness.js';
import { ROOT } from '../test/world/world.js';
import { provenance } from './lib/provenance.js';
import { seededRandom, zipfRanks } from './lib/zipf.js';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

const NAMES = 2000;
const POLICY = 'mode: enforce\ndns:\n  guard: true\nrules:\n  - name: bench\n    to: ["*.bench.sluice.test"]\n';
const CLIENT = { transport: 'udp' as const, address: '198.18.0.2', port: 5353, uid: 65534 };

function answerFor(name: string): RR[] {
  const i = Number(/^h(\d+)\./.exec(name)?.[1] ?? 0);
  const a = parseAddr(`198.18.${(i >> 8) & 255}.${i & 255}`);
  if (!a) throw new Error(`no address for ${name}`);
  return [{ name, type: 1, class: 1, ttl: 3600, data: { kind: 'a', addr: a.value } } as RR];
}

const query = (i: number, id: number) => encodeQuery(id & 0xffff, { name: `h${i}.bench.sluice.test`, type: 1, class: 1 }, { rd: true, cd: false, dnssecOk: false, udpSize: 1232 });

/** Bytes allocated per call of `run` (n calls), and the sites that allocated them. */
async function measure(session: Session, n: number, run: (i: number) => Promise<void>): Promise<{ bytes: number; usPer: number; sites: [string, number][] }> {
  await session.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await run(i);
  const ms = performance.now() - t0;
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: ProfileNode } };
  const sites = new Map<string, number>();
  let total = 0;
  const walk = (node: ProfileNode) => {
    const f = node.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/dist\//, '')}:${f.lineNumber + 1}`;
    // The driving loop's own allocations (its closures and promises) are not the guard's.
    if (!f.url.includes('/bench/')) {
      total += node.selfSize;
      sites.set(key, (sites.get(key) ?? 0) + node.selfSize);
    }
    for (const c of node.children) walk(c);
  };
  walk(profile.head);
  return { bytes: total / n, usPer: (ms * 1000) / n, sites: [...sites].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / n]) };
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--hits');
  const hits = Number(i >= 0 ? process.argv[i + 1] : 50_000);
  if (!Number.isInteger(hits) || hits < 1000) throw new Error(`--hits must be a whole number of at least 1000: ${hits}`);
  const prov = provenance('npm run bench:guard-alloc');
  const say = (s = '') => process.stdout.write(`${s}\n`);
  say(`bench:guard-alloc: ${hits} cache hits over ${NAMES} names, ${NAMES} fresh answers per pass; commit ${prov.commit ?? '?'}${prov.dirty ? ' (sources differ from it)' : ''}; node ${prov.node}`);
  const session = new Session();
  session.connect();
  const report: Record<string, unknown> = { provenance: prov, hits, names: NAMES };
  /** The guard of one pass: the harness's, with the kernel writes accepted as they come. */
  const setup = () => {
    const h = guardSetup(POLICY, (q) => answerFor(q.name));
    h.guard.deps = { ...h.guard.deps, writer: { write: () => Promise.resolve() } };
    return h;
  };
  const best = async (label: string, n: number, make: () => Promise<(i: number) => Promise<void>>) => {
    const runs = [];
    for (let pass = 0; pass < 2; pass++) runs.push(await measure(session, n, await make()));
    const m = runs.reduce((a, b) => (b.bytes < a.bytes ? b : a));
    say(`\n  ${label}: ${Math.round(m.bytes)} bytes allocated per answer, ${m.usPer.toFixed(1)} us per answer in this run`);
    for (const [site, bytes] of m.sites.slice(0, 12)) if (bytes >= 8) say(`    ${String(Math.round(bytes)).padStart(6)} B  ${site}`);
    report[label] = { bytesPerAnswer: Math.round(m.bytes), usPerAnswer: m.usPer, sites: m.sites.slice(0, 30) };
  };
  const packets = Array.from({ length: NAMES }, (_, k) => query(k, k));
  // Fresh answers: a new guard each pass, every name asked once (upstream, filter, kernel write, cache store).
  await best('fresh answer', NAMES, async () => {
    const h = setup();
    return async (k) => {
      if (!(await h.guard.handle(packets[k] as Buffer, CLIENT))) throw new Error('no reply');
      h.events.length = 0;
    };
  });
  // Cache hits: names drawn with probability 1/rank (Zipf, s = 1), after one pass over them all.
  await best('cache hit', hits, async () => {
    const h = setup();
    for (const p of packets) await h.guard.handle(p, CLIENT);
    const order = zipfRanks(NAMES, 1, hits, seededRandom(0x2b1f));
    const before = h.guard.cache.stats.hits;
    return async (k) => {
      if (!(await h.guard.handle(packets[order[k] as number] as Buffer, CLIENT))) throw new Error('no reply');
      h.events.length = 0;
      if (k === hits - 1 && h.guard.cache.stats.hits - before !== hits) throw new Error('not every answer came from the cache');
    };
  });
  session.disconnect();
  const dir = join(ROOT, 'bench/out');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `guard-alloc-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  say(`\nwrote ${file}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:guard-alloc: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});

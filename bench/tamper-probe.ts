/**
 * Runs inside the client namespace for bench/tamper.ts: tampers with the
 * table (each kind COUNT times, with `nft`, as an attacker would) and times
 * each tamper to its restore on one nf_tables notification socket: from the
 * notification of nft's transaction to that of the daemon's transaction that
 * undid it. Then the baseline: the same ruleset written by this process
 * straight through netlink (one replace of a copy under another table name),
 * what a restore costs with no detection in front of it. Prints one JSON line.
 *
 *   node dist/bench/tamper-probe.js --count N --daemon-pid PID --set NAME
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { KernelNetfilter } from '../src/netfilter/kernel-netfilter.js';
import { NftMonitor, type NftTransaction } from '../src/netfilter/nft-monitor.js';
import { openNftNotifications } from '../src/netfilter/nft-notify-socket.js';
import { NFPROTO_INET } from '../src/netfilter/nl-constants.js';

const { values } = parseArgs({ options: { count: { type: 'string' }, 'daemon-pid': { type: 'string' }, set: { type: 'string' } } });
const COUNT = Number(values.count ?? 100);
const DAEMON = Number(values['daemon-pid']);
const SET = values.set ?? '';

const nft = (...args: string[]) => {
  const r = spawnSync('nft', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nft ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const handleOf = (chain: string, re: RegExp): string => {
  const line = nft('-a', 'list', 'chain', 'inet', 'sluice', chain)
    .split('\n')
    .find((l) => re.test(l));
  const m = line ? /# handle (\d+)/.exec(line) : null;
  if (!m) throw new Error(`no rule matching ${re} in chain ${chain}`);
  return m[1] as string;
};

const KINDS: Record<string, (i: number) => string[]> = {
  'delete table': () => ['delete', 'table', 'inet', 'sluice'],
  'delete rule': () => ['delete', 'rule', 'inet', 'sluice', 'output', 'handle', handleOf('output', /jump|goto/)],
  'insert accept': () => ['insert', 'rule', 'inet', 'sluice', 'output', 'accept'],
  'add DNS-set element': (i) => ['add', 'element', 'inet', 'sluice', SET, `{ 198.19.${(i >> 8) & 255}.${i & 255} timeout 1h }`],
};

interface Pending {
  resolve: (ms: number) => void;
  reject: (e: Error) => void;
  tamperAt?: number;
}
let waiting: Pending | undefined;
const onTx = (t: NftTransaction) => {
  const now = performance.now();
  if (!waiting) return;
  if (t.pid === DAEMON) {
    if (waiting.tamperAt !== undefined) waiting.resolve(now - waiting.tamperAt);
    return;
  }
  if (t.comm === 'nft' && waiting.tamperAt === undefined) waiting.tamperAt = now;
};
let lost = 0;
const monitor = new NftMonitor('sluice', NFPROTO_INET, onTx, () => lost++, { source: openNftNotifications() });

async function one(args: string[]): Promise<number> {
  const p = new Promise<number>((resolve, reject) => {
    waiting = { resolve, reject };
    setTimeout(() => reject(new Error(`no restore within 5 s after nft ${args.join(' ')}`)), 5_000).unref();
  });
  nft(...args);
  try {
    return await p;
  } finally {
    waiting = undefined;
  }
}

async function main(): Promise<void> {
  const results: Record<string, number[]> = {};
  for (const [kind, make] of Object.entries(KINDS)) {
    results[kind] = [];
    for (let i = 0; i < COUNT; i++) {
      (results[kind] as number[]).push(await one(make(i)));
      // Let the daemon's own notifications drain before the next tamper.
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  // The baseline: the same ruleset, written straight (another table name, removed after).
  const nf = new KernelNetfilter();
  const live = nf.read('sluice', { elements: 'all' });
  if (!live) throw new Error('the table is not there for the baseline');
  const copy = { ...live.ruleset, table: 'sluice_bench', sets: live.ruleset.sets.map((s) => (s.meter ? { ...s, elements: [] } : s)) };
  const baseline: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    const t0 = performance.now();
    nf.replace(copy, { carryDynamic: false });
    baseline.push(performance.now() - t0);
  }
  nf.remove('sluice_bench');
  nf.close();
  monitor.close();
  process.stdout.write(`${JSON.stringify({ results, baseline, lost, monitor: monitor.stats })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`tamper-probe: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});

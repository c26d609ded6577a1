import { buildCounterName } from '../../compile/kernel-names.js';
import { TABLE_NAME } from '../../compile/ruleset.js';
import { lostRecords, type EventStats, type PipelineCounters } from '../../events/event-store.js';
import { eventStorePath } from '../../events/store-component.js';
import { parseSince } from '../../events/time-window.js';
import { controlCall } from '../../runtime/control-server.js';
import { EXIT, type Context } from '../context.js';
import { openStoreForReading } from './log.js';

/** Kernel counters of the live table, or null when there is none (or it cannot be read). */
function kernelCounters(ctx: Context): Record<string, { packets: number; bytes: number }> | null {
  try {
    const m = ctx.netfilter().counters(TABLE_NAME);
    if (m.size === 0) return null;
    return Object.fromEntries([...m].map(([k, v]) => [k, { packets: Number(v.packets), bytes: Number(v.bytes) }]));
  } catch {
    return null;
  }
}

/**
 * `sluice stats [--since 24h] [--limit N] [--json]`: events by verdict, rule,
 * destination and process from the store; the kernel's exact counters; and
 * the pipeline's health (records lost in the kernel or dropped in Sluice),
 * so what the log does not show is still accounted for.
 */
/** What the running daemon's collector says about attribution, or null when no daemon answers. */
interface AttributionHealth {
  methods: Record<string, number>;
  probes: {
    loaded: boolean;
    reason?: string;
    lookups?: { hits: number; misses: number; mismatched: number; errors: number };
    flowsMax?: number;
    execsMax?: number;
    capturedPerSecond?: number | null;
    flowTurnoverSeconds?: number | null;
  };
}

async function attributionHealth(ctx: Context): Promise<AttributionHealth | null> {
  try {
    const st = (await controlCall(ctx.state.controlSocket, 'collector.status', {}, 2_000)) as { attribution?: Record<string, number>; probes?: AttributionHealth['probes'] };
    if (!st || typeof st !== 'object' || !st.probes) return null;
    return { methods: st.attribution ?? {}, probes: st.probes };
  } catch {
    return null;
  }
}

const num = (x: unknown): number => (typeof x === 'number' && Number.isFinite(x) ? x : 0);

export async function stats(ctx: Context, args: { since?: string; limit?: number }): Promise<number> {
  const since = parseSince(args.since ?? '24h');
  const top = args.limit ?? 10;
  const store = openStoreForReading(ctx.state.dir);
  let st: EventStats | null = null;
  let counters: PipelineCounters | null = null;
  try {
    st = store ? store.stats({ since }, top) : null;
    counters = store ? store.counters() : null;
  } finally {
    store?.close();
  }
  const kernel = kernelCounters(ctx);
  const attribution = await attributionHealth(ctx);
  ctx.result({ since: new Date(since).toISOString(), store: eventStorePath(ctx.state.dir), events: st, pipeline: counters, kernel, attribution });
  if (ctx.json) return EXIT.ok;

  ctx.say(`Events since ${new Date(since).toISOString()}${store ? '' : ' (no event store yet)'}`);
  if (st) {
    ctx.say(`  total ${st.total}: blocked ${st.byVerdict.blocked}, would-block ${st.byVerdict['would-block']}, allowed ${st.byVerdict.allowed}; with a process ${st.attributed}`);
    if (st.byRule.length > 0) {
      ctx.say('');
      ctx.say('By rule:');
      for (const r of st.byRule.slice(0, top)) ctx.say(`  ${String(r.count).padStart(8)}  ${r.verdict.padEnd(11)} ${r.rule}`);
      ctx.say('By destination:');
      for (const r of st.byDestination) ctx.say(`  ${String(r.count).padStart(8)}  ${r.key}`);
      ctx.say('By process:');
      for (const r of st.byProcess) ctx.say(`  ${String(r.count).padStart(8)}  ${r.key}`);
    }
  }
  if (kernel) {
    ctx.say('');
    ctx.say('Kernel counters (exact, since the table was applied):');
    for (const [name, v] of Object.entries(kernel)) ctx.say(`  ${String(v.packets).padStart(8)}  ${name}`);
  }
  if (counters) {
    const lost = lostRecords(counters);
    ctx.say('');
    ctx.say('Pipeline (cumulative):');
    ctx.say(`  records ${counters.records}, malformed ${counters.malformed}, foreign ${counters.foreign}`);
    ctx.say(`  lost in the kernel ${counters.seqGaps} (socket overflows: ${counters.overflows}), dropped by the collector ${counters.collectorDrops}, by the store ${counters.storeDrops}`);
    if (kernel) {
      const held = (log: 'block' | 'allow', budget: 'shared' | 'user') => kernel[buildCounterName({ kind: 'suppressed', log, budget })]?.packets ?? 0;
      ctx.say(`  not recorded by the kernel's log budget: ${held('block', 'shared') + held('block', 'user')} blocked (${held('block', 'user')} over the sending user's share), ${held('allow', 'shared') + held('allow', 'user')} allowed (${held('allow', 'user')} over the user's share)`);
    }
    ctx.say(lost === 0 ? '  nothing lost after the kernel rate limit' : `  ${lost} records lost or dropped after the kernel rate limit`);
  }
  if (attribution) {
    const m = attribution.methods;
    const p = attribution.probes;
    ctx.say('');
    ctx.say('Attribution (this daemon run):');
    ctx.say(`  by the probes ${num(m.kernel)}, socket ${num(m.socket)}, cgroup ${num(m.cgroup)}, user ${num(m.user)}; ambiguous ${num(m.ambiguous)}, none ${num(m.none)}`);
    if (!p.loaded) ctx.say(`  probes not in use: ${p.reason ?? 'unknown'}`);
    else {
      const l = p.lookups;
      ctx.say(`  probe lookups: ${num(l?.hits)} found, ${num(l?.misses)} missed, ${num(l?.mismatched)} another socket's, ${num(l?.errors)} errors`);
      const turnover = p.flowTurnoverSeconds;
      ctx.say(
        `  flow map ${num(p.flowsMax)} entries, exec map ${num(p.execsMax)}; ${typeof p.capturedPerSecond === 'number' ? `${p.capturedPerSecond.toFixed(1)} records/s, so a record lasts ${typeof turnover === 'number' ? `about ${turnover >= 100 ? Math.round(turnover) : turnover.toFixed(1)} s` : 'indefinitely'} before eviction` : 'capture rate not measured yet'}`,
      );
    }
  }
  return EXIT.ok;
}

import { parseLogPrefix } from '../compile/kernel-names.js';
import type { Component, Runtime } from '../runtime/component.js';
import { publishFlow } from '../events/channels.js';
import type { PipelineCounters, RecordedEvent } from '../events/event-store.js';
import { NflogListener, type NflogRecord } from '../netfilter/nflog.js';
import type { Policy } from '../policy/policy.js';
import { userName } from '../system/users.js';
import { Attributor, baseEvent, type FlowFacts } from './attribution.js';
import { AuditReconciler } from './audit-reconciler.js';
import { CgroupIndex } from './cgroup-index.js';
import { CaptureRate, loadProbes, ownNetns, ProbeReader } from './kernel-attribution.js';
import { LinkNames } from './links.js';
import { ServiceNames } from './service-names.js';
import { ProcessTable } from './process-table.js';

/** Records that may wait for attribution at once; beyond it they are attributed from what is known. */
const WAITING_MAX = 16_384;

/** The facts of one record, or a reason to skip it. Pure, so it is unit- and fuzz-tested. */
export function recordFacts(r: NflogRecord): FlowFacts | 'foreign' | 'malformed' {
  const p = parseLogPrefix(r.prefix);
  if (!p) return 'foreign';
  const pkt = r.packet;
  if (!pkt) return 'malformed';
  const f: FlowFacts = { time: r.timeMs, verdict: p.verdict, rule: p.rule, family: pkt.family, proto: pkt.proto, src: pkt.src, dst: pkt.dst };
  if (p.scope !== undefined) f.scope = p.scope;
  if (pkt.sport !== undefined) f.sport = pkt.sport;
  if (pkt.dport !== undefined) f.dport = pkt.dport;
  if (pkt.icmpType !== undefined) f.icmpType = pkt.icmpType;
  if (pkt.echoId !== undefined) f.echoId = pkt.echoId;
  if (r.uid !== undefined) f.uid = r.uid;
  if (r.outIfindex !== undefined) f.outIfindex = r.outIfindex;
  // Only block chains (enforce mode) write the sender's cgroup into the mark, after resetting it to 0.
  if (p.verdict === 'blocked' && r.mark !== undefined && r.mark !== 0) f.cgroupLow32 = r.mark;
  return f;
}

export interface CollectorOptions {
  /** Records waiting for attribution; beyond it records are dropped and counted (default 65,536). */
  queueMax?: number;
  /** Records attributed per turn of the event loop (default 2,048). */
  chunk?: number;
}

/**
 * The event collector: reads the policy's NFLOG group, attributes each
 * record to a process, and publishes a flow event (the store subscribes).
 * Memory is bounded: records are reduced to small facts at once (the
 * kernel's buffer is not kept), and at most `queueMax` wait; a flood beyond
 * that is dropped and counted, never queued without bound. The kernel's own
 * rate limit (policy `log.rate`) comes first, and its exact counters say
 * what was suppressed there.
 */
export class Collector implements Component {
  readonly name = 'collector';
  private listener: NflogListener | undefined;
  private attributor: Attributor | undefined;
  private procs: ProcessTable | undefined;
  private services: ServiceNames | undefined;
  private cgroups: CgroupIndex | undefined;
  private queue: FlowFacts[] = [];
  /** Records whose attribution waits for something worked out off the loop; published when it is. */
  private waiting = new Set<Promise<void>>();
  private head = 0;
  private scheduled = false;
  private rt: Runtime | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private policy: Policy | undefined;
  private probes: ProbeReader | undefined;
  private probeCapacity = { flows: 0, execs: 0 };
  private captureRate = new CaptureRate();
  private pressureTimer: NodeJS.Timeout | undefined;
  /** Audit mode: would-block records that raced an observed DNS answer are reconciled with it (audit-reconciler.ts). */
  private readonly reconciler = new AuditReconciler(() => this.policy, (e) => this.emit(e));
  /** Why the probes are not in use (said once, at start). */
  private probesUnavailable: string | undefined;
  private readonly queueMax: number;
  private readonly chunk: number;
  private readonly own = { foreign: 0, malformed: 0, collectorDrops: 0, published: 0, attributionErrors: 0 };
  /** Listener totals of listeners already closed (reloads rebind), so counters stay cumulative. */
  private closed = { records: 0, malformed: 0, overflows: 0, seqGaps: 0 };

  constructor(opts: CollectorOptions = {}) {
    this.queueMax = opts.queueMax ?? 65_536;
    this.chunk = opts.chunk ?? 2_048;
  }

  async start(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.policy = rt.policy;
    this.procs = new ProcessTable({ exclude: [process.pid] });
    this.procs.refresh();
    // Kept fresh while idle too (a /proc listing, new pids only: well under a millisecond), so an exit is
    // noticed within 100 ms and the process stops being a candidate for later records.
    this.refreshTimer = setInterval(() => this.procs?.refresh(), 100);
    this.refreshTimer.unref();
    const links = new LinkNames();
    this.services = new ServiceNames();
    this.cgroups = new CgroupIndex();
    const probes = loadProbes();
    if (probes.loaded) {
      this.probes = new ProbeReader(probes.maps);
      this.probeCapacity = { flows: probes.flowsMax, execs: probes.execsMax };
      this.sampleCaptures();
      this.pressureTimer = setInterval(() => this.sampleCaptures(), 5_000);
      this.pressureTimer.unref();
      rt.log('info', 'kernel attribution: probes attached', { programs: probes.programs, flowsMax: probes.flowsMax, execsMax: probes.execsMax });
    } else {
      this.probesUnavailable = probes.reason;
      rt.log('warn', `kernel attribution unavailable: ${probes.reason}; processes are found by the socket table, and one-shot senders may go unnamed`);
    }
    this.attributor = new Attributor({
      procs: this.procs,
      cgroups: this.cgroups,
      services: this.services,
      userName,
      ifName: (i) => links.name(i),
      // A TCP connect refused with a reset has no socket left when its record is read.
      socketMayExist: (f) => !(f.proto === 6 && f.verdict === 'blocked' && this.policy?.blockWith === 'reject'),
      ...(this.probes ? { kernel: { reader: this.probes, netns: ownNetns() } } : {}),
    });
    this.reconciler.start();
    this.bind(rt.policy.log.group);
    this.registerMetrics(rt);
    rt.control.handle('collector.status', { call: () => this.status() });
  }

  private bind(group: number): void {
    if (this.listener) {
      const s = this.listener.stats;
      this.closed.records += s.records;
      this.closed.malformed += s.malformed;
      this.closed.overflows += s.overflows;
      this.closed.seqGaps += s.seqGaps;
      this.listener.close();
    }
    this.listener = new NflogListener(group, (records) => this.enqueue(records));
  }

  private enqueue(records: NflogRecord[]): void {
    for (const r of records) {
      let f: ReturnType<typeof recordFacts>;
      try {
        f = recordFacts(r);
      } catch {
        f = 'malformed';
      }
      if (f === 'foreign') this.own.foreign++;
      else if (f === 'malformed') this.own.malformed++;
      else if (this.queue.length - this.head >= this.queueMax) this.own.collectorDrops++;
      else this.queue.push(f);
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === this.head) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.drain();
    });
  }

  /** Attributes and publishes one chunk, then yields to the event loop (the NFLOG socket must keep being read). */
  private drain(): void {
    const a = this.attributor;
    if (!a) return;
    a.beginBatch();
    const end = Math.min(this.queue.length, this.head + this.chunk);
    a.prefetch(this.queue, this.head, end);
    for (; this.head < end; this.head++) {
      const f = this.queue[this.head] as FlowFacts;
      let e: RecordedEvent | Promise<RecordedEvent>;
      try {
        // A record whose cgroup or unit is being worked out (off the loop) waits for it, unless too many already do.
        e = this.waiting.size < WAITING_MAX ? a.attributeOrWait(f) : a.attribute(f);
      } catch (err) {
        e = this.unattributed(f, err);
      }
      if (e instanceof Promise) this.wait(f, e);
      else this.publish(e);
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 65_536) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.schedule();
  }

  private publish(e: RecordedEvent): void {
    if (!this.reconciler.offer(e)) this.emit(e);
  }

  private emit(e: RecordedEvent): void {
    publishFlow(e);
    this.own.published++;
  }

  /** Attribution reads /proc and netlink; whatever goes wrong, the event itself is still kept. */
  private unattributed(f: FlowFacts, err: unknown): RecordedEvent {
    this.own.attributionErrors++;
    if (this.own.attributionErrors <= 10) this.rt?.log('warn', 'attribution failed', { error: (err as Error).message });
    const e = baseEvent(f);
    if (f.uid !== undefined) e.uid = f.uid;
    return e;
  }

  private wait(f: FlowFacts, pending: Promise<RecordedEvent>): void {
    const done = pending.then(
      (e) => this.publish(e),
      (err: unknown) => this.publish(this.unattributed(f, err)),
    );
    this.waiting.add(done);
    void done.finally(() => this.waiting.delete(done));
  }

  /** Cumulative pipeline counters of this run (the store adds what earlier runs persisted). */
  counters(): Omit<PipelineCounters, 'storeDrops'> {
    const s = this.listener?.stats ?? { records: 0, malformed: 0, overflows: 0, seqGaps: 0 };
    return {
      records: this.closed.records + s.records,
      malformed: this.closed.malformed + s.malformed + this.own.malformed,
      foreign: this.own.foreign,
      overflows: this.closed.overflows + s.overflows,
      seqGaps: this.closed.seqGaps + s.seqGaps,
      collectorDrops: this.own.collectorDrops,
    };
  }

  private registerMetrics(rt: Runtime): void {
    rt.metrics.collect(() => {
      const c = this.counters();
      const at = this.attributor?.stats;
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      return [
        { name: 'sluice_nflog_records_total', help: 'NFLOG records received', type: 'counter', samples: [{ labels: {}, value: c.records }] },
        { name: 'sluice_nflog_malformed_total', help: 'NFLOG records that could not be parsed', type: 'counter', samples: [{ labels: {}, value: c.malformed }] },
        { name: 'sluice_nflog_foreign_total', help: 'NFLOG records whose prefix is not Sluice\'s', type: 'counter', samples: [{ labels: {}, value: c.foreign }] },
        { name: 'sluice_nflog_overflows_total', help: 'Times the NFLOG socket buffer overflowed (ENOBUFS)', type: 'counter', samples: [{ labels: {}, value: c.overflows }] },
        { name: 'sluice_nflog_lost_records_total', help: 'Records lost in the kernel, from gaps in NFLOG sequence numbers', type: 'counter', samples: [{ labels: {}, value: c.seqGaps }] },
        { name: 'sluice_events_dropped_total', help: 'Events dropped in Sluice because a queue was full', type: 'counter', samples: [{ labels: { stage: 'collector' }, value: c.collectorDrops }] },
        { name: 'sluice_event_queue_length', help: 'Records waiting for attribution', type: 'gauge', samples: [{ labels: { stage: 'collector' }, value: this.queue.length - this.head }] },
        {
          name: 'sluice_events_attributed_total',
          help: 'Events by how their process was found (kernel, socket, cgroup, user) or why not (ambiguous, none)',
          type: 'counter',
          samples: at ? (['kernel', 'socket', 'cgroup', 'user', 'ambiguous', 'none'] as const).map((m) => ({ labels: { method: m }, value: at[m] })) : [],
        },
        ...this.probeMetrics(),
        {
          name: 'sluice_audit_races_total',
          help: 'Audit mode: would-block records held for a DNS answer, by outcome (reconciled: the answer came first, not a would-block)',
          type: 'counter',
          samples: (['reconciled', 'confirmed', 'overflow'] as const).map((k) => ({ labels: { result: k }, value: this.reconciler.stats[k] })),
        },
        { name: 'process_resident_memory_bytes', help: 'Resident memory of the daemon', type: 'gauge', samples: [{ labels: {}, value: mem.rss }] },
        { name: 'process_heap_bytes', help: 'V8 heap in use by the daemon', type: 'gauge', samples: [{ labels: {}, value: mem.heapUsed }] },
        { name: 'process_cpu_seconds_total', help: 'CPU time of the daemon (user + system)', type: 'counter', samples: [{ labels: {}, value: (cpu.user + cpu.system) / 1e6 }] },
      ];
    });
  }

  /** Reads the probes' capture counter into the rate (every 5 s, and at each scrape); their counters then. */
  private sampleCaptures(): ReturnType<ProbeReader['probeStats']> | undefined {
    if (!this.probes) return undefined;
    const p = this.probes.probeStats();
    this.captureRate.add(Date.now(), p.captured);
    return p;
  }

  /** The flow map's size and how long a record lasts in it at the current rate. */
  private pressure(): { flowsMax: number; execsMax: number; capturedPerSecond: number | null; flowTurnoverSeconds: number | null } {
    return {
      flowsMax: this.probeCapacity.flows,
      execsMax: this.probeCapacity.execs,
      capturedPerSecond: this.captureRate.perSecond() ?? null,
      flowTurnoverSeconds: this.captureRate.turnoverSeconds(this.probeCapacity.flows),
    };
  }

  /** The probes' counters and this collector's lookups in their maps. */
  private probeMetrics(): { name: string; help: string; type: 'counter' | 'gauge'; samples: { labels: Record<string, string>; value: number }[] }[] {
    const up = { name: 'sluice_attribution_probes_loaded', help: 'Whether the kernel attribution probes are attached (1) or the socket table is used (0)', type: 'gauge' as const, samples: [{ labels: {}, value: this.probes ? 1 : 0 }] };
    if (!this.probes) return [up];
    const p = this.sampleCaptures() ?? this.probes.probeStats();
    const l = this.probes.stats;
    const pr = this.pressure();
    return [
      up,
      {
        name: 'sluice_attribution_map_entries_max',
        help: 'Capacity of the probes\' LRU maps (flows: senders by flow or socket; execs: executables and command lines by process)',
        type: 'gauge',
        samples: [
          { labels: { map: 'flows' }, value: pr.flowsMax },
          { labels: { map: 'execs' }, value: pr.execsMax },
        ],
      },
      ...(pr.flowTurnoverSeconds !== null
        ? [
            {
              name: 'sluice_attribution_flow_map_turnover_seconds',
              help: 'How long a sender record lasts in the flow map before newer ones evict it, at the last minute\'s capture rate (capacity / captures per second); evictions cost attribution only when this nears the collector\'s lag',
              type: 'gauge' as const,
              samples: [{ labels: {}, value: pr.flowTurnoverSeconds }],
            },
          ]
        : []),
      {
        name: 'sluice_attribution_probe_events_total',
        help: 'What the probes did: senders captured, sends skipped as unchanged, execs recorded, command lines unreadable, sockets without a namespace',
        type: 'counter',
        samples: Object.entries(p).map(([k, v]) => ({ labels: { event: k }, value: v })),
      },
      {
        name: 'sluice_attribution_probe_lookups_total',
        help: 'Lookups of a record\'s sender in the probes\' flow map by result (an LRU map: a miss after eviction is a miss)',
        type: 'counter',
        samples: (['hits', 'misses', 'mismatched', 'errors'] as const).map((k) => ({ labels: { result: k }, value: l[k] })),
      },
      {
        name: 'sluice_attribution_exec_lookups_total',
        help: 'Lookups of a sender\'s executable and command line in the probes\' exec map by result',
        type: 'counter',
        samples: [
          { labels: { result: 'hits' }, value: l.execHits },
          { labels: { result: 'misses' }, value: l.execMisses },
        ],
      },
    ];
  }

  async reload(rt: Runtime): Promise<void> {
    this.rt = rt;
    const group = rt.policy.log.group;
    const old = this.policy?.log.group;
    this.policy = rt.policy;
    if (group !== old) this.bind(group);
  }

  status(): Record<string, unknown> {
    return {
      group: this.policy?.log.group,
      queued: this.queue.length - this.head,
      waiting: this.waiting.size,
      published: this.own.published,
      counters: this.counters(),
      attribution: this.attributor?.stats,
      probes: this.probes ? { loaded: true, lookups: this.probes.stats, kernel: this.sampleCaptures(), ...this.pressure() } : { loaded: false, reason: this.probesUnavailable },
      units: this.services?.stats,
      cgroupIndexWalks: this.cgroups?.walks,
      processes: this.procs?.stats,
      auditRaces: { ...this.reconciler.stats, holding: this.reconciler.holding },
    };
  }

  async stop(): Promise<void> {
    clearInterval(this.refreshTimer);
    clearInterval(this.pressureTimer);
    this.listener?.close();
    this.listener = undefined;
    // Whatever is still queued is published now, so the store (stopped after us) writes it.
    while (this.head < this.queue.length) this.drain();
    await Promise.all(this.waiting);
    this.reconciler.stop();
    this.attributor?.close();
    this.attributor = undefined;
  }
}

import type { DnsQueryEvent } from '../events/channels.js';

const TRANSPORTS: DnsQueryEvent['transport'][] = ['udp', 'tcp', 'passive'];
const VERDICTS: DnsQueryEvent['verdict'][] = ['allowed', 'blocked', 'would-block', 'error'];
const NONE: readonly never[] = Object.freeze([]);

/**
 * The newest DNS queries the guard answered (what `sluice dns` shows), in a
 * fixed-capacity ring stored column by column: numbers in typed arrays,
 * text as strings, shared where it repeats (client addresses, rule lists).
 * At thousands of queries a second, keeping every event as a graph of small
 * objects for seconds made the garbage collector's work grow with the query
 * rate; columns keep what survives to a few flat values per query.
 */
export class QueryLog {
  private next = 0;
  private count = 0;
  private readonly time: Float64Array;
  private readonly latency: Float64Array;
  private readonly port: Uint16Array;
  private readonly type: Uint16Array;
  private readonly rcode: Uint16Array;
  private readonly codes: Uint8Array;
  private readonly address: string[];
  private readonly name: string[];
  private readonly rules: (readonly string[])[];
  /** Answers joined by spaces ('' for none). */
  private readonly answers: string[];
  /** Rare fields (dropped addresses, the process, a detail), kept as given. */
  private readonly extra: ({ dropped?: DnsQueryEvent['dropped']; process?: DnsQueryEvent['process']; detail?: string } | undefined)[];
  private readonly interned = new Map<string, string>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`query log capacity must be a positive integer, not ${capacity}`);
    this.time = new Float64Array(capacity);
    this.latency = new Float64Array(capacity);
    this.port = new Uint16Array(capacity);
    this.type = new Uint16Array(capacity);
    this.rcode = new Uint16Array(capacity);
    this.codes = new Uint8Array(capacity);
    this.address = new Array<string>(capacity).fill('');
    this.name = new Array<string>(capacity).fill('');
    this.rules = new Array<readonly string[]>(capacity).fill(NONE);
    this.answers = new Array<string>(capacity).fill('');
    this.extra = new Array(capacity).fill(undefined);
  }

  /** Client addresses repeat: one string each (bounded). */
  private intern(s: string): string {
    const known = this.interned.get(s);
    if (known !== undefined) return known;
    if (this.interned.size >= 4096) this.interned.clear();
    this.interned.set(s, s);
    return s;
  }

  push(e: DnsQueryEvent): void {
    const i = this.next;
    this.time[i] = e.time;
    this.latency[i] = e.latencyMs;
    this.port[i] = e.client.port;
    this.type[i] = e.type;
    this.rcode[i] = e.rcode;
    this.codes[i] = (TRANSPORTS.indexOf(e.transport) << 4) | VERDICTS.indexOf(e.verdict);
    this.address[i] = this.intern(e.client.address);
    this.name[i] = e.name;
    this.rules[i] = e.rules.length === 0 ? NONE : e.rules;
    this.answers[i] = e.answers.length === 0 ? '' : e.answers.join(' ');
    this.extra[i] = e.dropped.length > 0 || e.process || e.detail !== undefined ? { dropped: e.dropped.length > 0 ? e.dropped : undefined, process: e.process, detail: e.detail } : undefined;
    this.next = (i + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  get size(): number {
    return this.count;
  }

  /**
   * How long the guard took to answer (from the query's arrival to the
   * answer's send) over the queries it answered since `since` (ms since the
   * epoch), among the log's newest `capacity`; passive observations
   * (audit mode, nothing answered) do not count. Milliseconds; zeros when
   * there were none.
   */
  answerTimes(since: number): { count: number; p50: number; p99: number; max: number } {
    const passive = TRANSPORTS.indexOf('passive');
    const xs = new Float64Array(this.count);
    let n = 0;
    for (let back = 1; back <= this.count; back++) {
      const i = (this.next - back + this.capacity) % this.capacity;
      // Not a break: events are recorded when their process is known, so a slower one can follow a newer one.
      if ((this.time[i] as number) < since) continue;
      if ((this.codes[i] as number) >> 4 === passive) continue;
      xs[n++] = this.latency[i] as number;
    }
    if (n === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
    const sorted = xs.subarray(0, n).sort();
    // Nearest rank: the smallest value at or above the fraction of the answers.
    const rank = (q: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))] as number;
    return { count: n, p50: rank(0.5), p99: rank(0.99), max: sorted[n - 1] as number };
  }

  /** The newest `n` queries (all when omitted), oldest first, as events. */
  last(n = this.count): DnsQueryEvent[] {
    const k = Math.max(0, Math.min(n, this.count));
    const out: DnsQueryEvent[] = [];
    for (let back = k; back > 0; back--) out.push(this.at((this.next - back + this.capacity) % this.capacity));
    return out;
  }

  private at(i: number): DnsQueryEvent {
    const x = this.extra[i];
    const answers = this.answers[i] as string;
    const e: DnsQueryEvent = {
      time: this.time[i] as number,
      transport: TRANSPORTS[(this.codes[i] as number) >> 4] as DnsQueryEvent['transport'],
      client: { address: this.address[i] as string, port: this.port[i] as number },
      name: this.name[i] as string,
      type: this.type[i] as number,
      verdict: VERDICTS[(this.codes[i] as number) & 15] as DnsQueryEvent['verdict'],
      rules: [...(this.rules[i] as readonly string[])],
      rcode: this.rcode[i] as number,
      answers: answers === '' ? [] : answers.split(' '),
      dropped: x?.dropped ? [...x.dropped] : [],
      latencyMs: this.latency[i] as number,
    };
    if (x?.detail !== undefined) e.detail = x.detail;
    if (x?.process) e.process = x.process;
    return e;
  }
}

import type { DnsQueryEvent } from '../events/channels.js';

const TRANSPORTS: DnsQueryEvent['transport'][] = ['udp', 'tcp', 'passive'];
const VERDICTS: DnsQueryEvent['verdict'][] = ['allowed', 'blocked', 'would-block', 'error'];
const NONE: readonly never[] = Object.freeze([]);

/** Bytes of a name's slot, and of an answers' slot (longer text is kept as a string). */
const NAME_SLOT = 96;
const ANSWERS_SLOT = 48;
/** Rule lists are shared by their text: a few distinct lists, whatever the rate (bounded). */
const MAX_RULE_LISTS = 1024;

/**
 * The newest DNS queries the guard answered (what `sluice dns` shows), in a
 * fixed-capacity ring stored column by column: numbers in typed arrays, the
 * name and the answers as bytes in fixed slots of one buffer (outside the
 * JavaScript heap), the rest shared where it repeats (client addresses, rule
 * lists). At thousands of queries a second an entry lives for seconds, longer
 * than the young generation's collections are apart: kept as strings and
 * arrays, every query's text was copied by each collection and then promoted,
 * and the collector's pauses on the loop that answers grew with the query
 * rate. In the slots the query's own strings die young; only text longer than
 * its slot, or not ASCII (rare: names over 96 bytes, several answers), is kept
 * as a string.
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
  /** Names and answers (joined by spaces): bytes in their slots, with their lengths; a string beside when longer than the slot. */
  private readonly text: Buffer;
  private readonly nameLen: Uint8Array;
  private readonly answersLen: Uint8Array;
  private readonly long = new Map<number, { name?: string; answers?: string }>();
  private readonly rules: (readonly string[])[];
  private readonly ruleLists = new Map<string, readonly string[]>();
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
    this.text = Buffer.alloc(capacity * (NAME_SLOT + ANSWERS_SLOT));
    this.nameLen = new Uint8Array(capacity);
    this.answersLen = new Uint8Array(capacity);
    this.rules = new Array<readonly string[]>(capacity).fill(NONE);
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

  /** A rule list shared with every earlier one of the same text (bounded). */
  private sharedRules(rules: readonly string[]): readonly string[] {
    if (rules.length === 0) return NONE;
    // JSON for several (injective); a single rule by its name (the length check below keeps them apart).
    const key = rules.length === 1 ? (rules[0] as string) : JSON.stringify(rules);
    const known = this.ruleLists.get(key);
    if (known !== undefined && known.length === rules.length) return known;
    if (this.ruleLists.size >= MAX_RULE_LISTS) this.ruleLists.clear();
    const kept = Object.freeze([...rules]);
    this.ruleLists.set(key, kept);
    return kept;
  }

  /**
   * Writes `s` into a slot when it is ASCII (one byte per character, so it
   * reads back exactly) and fits; its length, or -1 for the string beside.
   */
  private static put(buf: Buffer, s: string, at: number, slot: number): number {
    // UTF-8 takes one byte for each character exactly when all of them are ASCII.
    if (s.length > slot || Buffer.byteLength(s, 'utf8') !== s.length) return -1;
    return buf.write(s, at, s.length, 'latin1');
  }

  push(e: DnsQueryEvent): void {
    const i = this.next;
    const base = i * (NAME_SLOT + ANSWERS_SLOT);
    const answers = e.answers.length === 0 ? '' : e.answers.length === 1 ? (e.answers[0] as string) : e.answers.join(' ');
    const nameN = QueryLog.put(this.text, e.name, base, NAME_SLOT);
    const answersN = QueryLog.put(this.text, answers, base + NAME_SLOT, ANSWERS_SLOT);
    if (nameN < 0 || answersN < 0) this.long.set(i, { ...(nameN < 0 ? { name: e.name } : {}), ...(answersN < 0 ? { answers } : {}) });
    else if (this.long.size > 0) this.long.delete(i);
    this.nameLen[i] = nameN < 0 ? 0 : nameN;
    this.answersLen[i] = answersN < 0 ? 0 : answersN;
    this.time[i] = e.time;
    this.latency[i] = e.latencyMs;
    this.port[i] = e.client.port;
    this.type[i] = e.type;
    this.rcode[i] = e.rcode;
    this.codes[i] = (TRANSPORTS.indexOf(e.transport) << 4) | VERDICTS.indexOf(e.verdict);
    this.address[i] = this.intern(e.client.address);
    this.rules[i] = this.sharedRules(e.rules);
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
    const base = i * (NAME_SLOT + ANSWERS_SLOT);
    const long = this.long.get(i);
    const name = long?.name ?? this.text.toString('latin1', base, base + (this.nameLen[i] as number));
    const answers = long?.answers ?? this.text.toString('latin1', base + NAME_SLOT, base + NAME_SLOT + (this.answersLen[i] as number));
    const e: DnsQueryEvent = {
      time: this.time[i] as number,
      transport: TRANSPORTS[(this.codes[i] as number) >> 4] as DnsQueryEvent['transport'],
      client: { address: this.address[i] as string, port: this.port[i] as number },
      name,
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

import type { ChainDef, KeyType, Ruleset, SetDef, SetElem } from '../compile/ruleset.js';
import { addrBytes } from '../net/ip.js';
import { NlWriter, udataEncode } from './nl-attr.js';
import {
  CHAIN,
  DATA,
  DTYPE,
  HOOK,
  HOOKNUM,
  LIST_ELEM,
  MSG,
  NF_ACCEPT,
  NF_DROP,
  NFNL_MSG_BATCH_BEGIN,
  NFNL_MSG_BATCH_END,
  NFNL_SUBSYS_NFTABLES,
  NFPROTO_INET,
  NFPROTO_UNSPEC,
  NLM_F_ACK,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  OBJ,
  OBJECT_COUNTER,
  OBJECT_LIMIT,
  RULE,
  SET,
  SET_DESC,
  SET_ELEM,
  SET_ELEM_F_INTERVAL_END,
  SET_ELEM_LIST,
  SET_F,
  SET_FIELD_LEN,
  TABLE,
  TYPE_BITS,
  UDATA_COMMENT,
  A,
} from './nl-constants.js';
import { stmtToLExprs, writeLExpr, intBytes, type LExpr } from './nft-expr.js';

const msgType = (m: number) => (NFNL_SUBSYS_NFTABLES << 8) | m;

/** Key layout per set key type. */
export const KEY_INFO: Record<KeyType, { len: number; dtype: number; fields?: number[] }> = {
  ipv4_addr: { len: 4, dtype: DTYPE.ipv4_addr },
  ipv6_addr: { len: 16, dtype: DTYPE.ipv6_addr },
  inet_service: { len: 2, dtype: DTYPE.inet_service },
  'inet_proto . inet_service': {
    // Each field of a concatenation occupies whole 32-bit registers.
    len: 8,
    dtype: (DTYPE.inet_proto << TYPE_BITS) | DTYPE.inet_service,
    fields: [1, 2],
  },
  ifname: { len: 16, dtype: DTYPE.ifname },
  uid: { len: 4, dtype: DTYPE.uid },
  cgroupv2: { len: 8, dtype: DTYPE.cgroupv2 },
  icmpv6_type: { len: 1, dtype: DTYPE.icmpv6_type },
  mark: { len: 4, dtype: DTYPE.mark },
};

/** Keys the kernel compares in host byte order (nftables BYTEORDER_HOST_ENDIAN = 1). */
const HOST_ORDER_KEYS = new Set<KeyType>(['uid', 'cgroupv2', 'mark']);
/** libnftnl NFTNL_UDATA_SET_KEYBYTEORDER. */
const UDATA_SET_KEYBYTEORDER = 0;

/** Largest element-list payload per NEWSETELEM message; netlink attribute lengths are 16-bit. */
const ELEM_CHUNK_BYTES = 60_000;

/** Upper bound on elements in a set filled at run time (DNS-learned addresses): bounded memory. */
export const DYNAMIC_SET_MAX = 65_536;

/** One kernel element: key, optional inclusive key_end (concat intervals), flags, timeout. */
interface RawElem {
  key: Buffer;
  keyEnd?: Buffer;
  flags?: number;
  timeoutMs?: number;
}

function ifnameBytes(name: string): Buffer {
  const b = Buffer.alloc(16);
  b.write(name, 0, 'latin1');
  return b;
}

/** Adds one to a big-endian byte string (the exclusive end of an interval). Returns null on overflow. */
function incrementBytes(b: Buffer): Buffer | null {
  const out = Buffer.from(b);
  for (let i = out.length - 1; i >= 0; i--) {
    const v = out[i] ?? 0;
    if (v < 0xff) {
      out[i] = v + 1;
      return out;
    }
    out[i] = 0;
  }
  return null;
}

/**
 * Turns IR elements into kernel elements. Single-field interval sets (rbtree)
 * take each range as a start element and an INTERVAL_END element one past its
 * end; concatenated interval sets (pipapo) take KEY and an inclusive KEY_END.
 * Ranges must not overlap (the loader merges them).
 */
export function rawElements(set: Pick<SetDef, 'key' | 'interval'>, elems: SetElem[]): RawElem[] {
  const info = KEY_INFO[set.key];
  const out: RawElem[] = [];
  if (set.key === 'inet_proto . inet_service') {
    for (const e of elems) {
      if (e.t !== 'protoport') throw new TypeError(`element ${e.t} does not fit a proto . port set`);
      const k = (port: number) => Buffer.concat([intBytes(e.proto, 4, false), intBytes(port, 2, true), Buffer.alloc(2)]);
      if (set.interval) out.push({ key: k(e.from), keyEnd: k(e.to) });
      else if (e.from === e.to) out.push({ key: k(e.from) });
      else throw new TypeError('a hash set of ports holds single ports only');
    }
    return out;
  }
  const ranges: [Buffer, Buffer | null][] = [];
  const single: RawElem[] = [];
  for (const e of elems) {
    let start: Buffer;
    let endExclusive: Buffer | null;
    let timeoutMs: number | undefined;
    if (e.t === 'addr') {
      if ((e.family === 4) !== (set.key === 'ipv4_addr')) throw new TypeError('address family does not match the set');
      start = addrBytes(e.family, e.start);
      // Only an interval set has ends (a hash set's million hosts need none).
      endExclusive = set.interval ? incrementBytes(addrBytes(e.family, e.end)) : null;
      timeoutMs = e.timeoutMs;
      if (!set.interval && e.start !== e.end) throw new TypeError('a hash set holds single addresses only');
    } else if (e.t === 'ifname') {
      if (e.wildcard) {
        start = ifnameBytes(e.name);
        endExclusive = incrementBytes(ifnameBytes(e.name).subarray(0, e.name.length));
        if (endExclusive) endExclusive = Buffer.concat([endExclusive, Buffer.alloc(16 - e.name.length)]);
      } else {
        start = ifnameBytes(e.name);
        endExclusive = incrementBytes(start);
      }
    } else if (e.t === 'port') {
      if (set.key !== 'inet_service' || e.from > e.to) throw new TypeError(`element ${e.t} does not fit a ${set.key} set`);
      start = intBytes(e.from, 2, true);
      endExclusive = set.interval ? incrementBytes(intBytes(e.to, 2, true)) : null;
      if (!set.interval && e.from !== e.to) throw new TypeError('a hash set of ports holds single ports only');
    } else if (e.t === 'num') {
      start = intBytes(e.value, info.len, false);
      endExclusive = null;
      timeoutMs = e.timeoutMs;
    } else {
      throw new TypeError(`element ${e.t} does not fit a ${set.key} set`);
    }
    if (set.interval) ranges.push([start, endExclusive]);
    else single.push(timeoutMs !== undefined ? { key: start, timeoutMs } : { key: start });
  }
  if (!set.interval) return single;
  ranges.sort((a, b) => Buffer.compare(a[0], b[0]));
  // As nft does: an interval end at zero when the first range starts above it.
  const first = ranges[0];
  if (first && first[0].some((x) => x !== 0)) out.push({ key: Buffer.alloc(info.len), flags: SET_ELEM_F_INTERVAL_END });
  for (const [start, end] of ranges) {
    out.push({ key: start });
    if (end) out.push({ key: end, flags: SET_ELEM_F_INTERVAL_END });
  }
  return out;
}

type PlainHost = Extract<SetElem, { t: 'addr' }>;

/** An address element without a timeout, as a static set holds. */
function isPlainHost(e: SetElem): boolean {
  return e.t === 'addr' && e.timeoutMs === undefined;
}

/**
 * Builds one nf_tables transaction. Sets, chains and objects are created with
 * NLM_F_EXCL: without it the kernel treats a second object of the same name
 * as an update of the first (a second chain's rules are appended to the
 * first), so a naming mistake would merge two objects instead of failing.
 */
export class BatchBuilder {
  // Small to start (a DNS answer's set update is a few hundred bytes); it doubles as needed.
  readonly w = new NlWriter(4096);
  readonly descriptions = new Map<number, string>();
  private seq: number;
  private setIds = new Map<string, number>();
  private nextSetId = 1;

  constructor(firstSeq = (Date.now() & 0x3fffffff) | 1) {
    this.seq = firstSeq;
    this.w.beginMsg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, this.seq++, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES).endMsg();
  }

  private begin(m: number, flags: number, what: string): void {
    const seq = this.seq++;
    this.descriptions.set(seq, what);
    this.w.beginMsg(msgType(m), NLM_F_REQUEST | NLM_F_ACK | flags, seq, NFPROTO_INET);
  }

  /** Sequence numbers that must be acknowledged. */
  expected(): Set<number> {
    return new Set(this.descriptions.keys());
  }

  addTable(name: string, comment?: string, flags = 0): this {
    this.begin(MSG.NEWTABLE, NLM_F_CREATE, `adding table inet ${name}`);
    this.w.str(TABLE.NAME, name).u32be(TABLE.FLAGS, flags);
    if (comment !== undefined) this.w.bytes(TABLE.USERDATA, udataEncode(UDATA_COMMENT.table, comment));
    this.w.endMsg();
    return this;
  }

  deleteTable(name: string): this {
    this.begin(MSG.DELTABLE, 0, `deleting table inet ${name}`);
    this.w.str(TABLE.NAME, name).endMsg();
    return this;
  }

  addCounter(table: string, name: string, comment?: string): this {
    this.begin(MSG.NEWOBJ, NLM_F_CREATE | NLM_F_EXCL, `adding counter ${name}`);
    this.w.str(OBJ.TABLE, table).str(OBJ.NAME, name).u32be(OBJ.TYPE, OBJECT_COUNTER);
    this.w.nest(OBJ.DATA, () => this.w.u64be(A.counter.BYTES, 0n).u64be(A.counter.PACKETS, 0n));
    if (comment !== undefined) this.w.bytes(OBJ.USERDATA, udataEncode(UDATA_COMMENT.obj, comment));
    this.w.endMsg();
    return this;
  }

  addLimit(table: string, name: string, rate: number, burst: number): this {
    this.begin(MSG.NEWOBJ, NLM_F_CREATE | NLM_F_EXCL, `adding limit ${name}`);
    this.w.str(OBJ.TABLE, table).str(OBJ.NAME, name).u32be(OBJ.TYPE, OBJECT_LIMIT);
    this.w.nest(OBJ.DATA, () =>
      this.w
        .u64be(A.limit.RATE, BigInt(rate))
        .u64be(A.limit.UNIT, 1n)
        .u32be(A.limit.BURST, burst)
        .u32be(A.limit.TYPE, 0)
        .u32be(A.limit.FLAGS, 0),
    );
    this.w.endMsg();
    return this;
  }

  addSet(table: string, set: SetDef): this {
    const info = KEY_INFO[set.key];
    const id = this.nextSetId++;
    this.setIds.set(set.name, id);
    let flags = 0;
    if (set.interval) flags |= SET_F.INTERVAL;
    if (set.timeout) flags |= SET_F.TIMEOUT;
    // EVAL: updated from the packet path (a meter's dynset); the kernel picks a set type that can.
    if (set.meter) flags |= SET_F.EVAL;
    // The field layout only for a concatenated interval set (pipapo): the kernel refuses it on a
    // set without the CONCAT flag, and a hash set needs neither (as nft writes them).
    const fields = set.interval ? info.fields : undefined;
    if (fields) flags |= SET_F.CONCAT;
    this.begin(MSG.NEWSET, NLM_F_CREATE | NLM_F_EXCL, `adding set ${set.name}`);
    this.w.str(SET.TABLE, table).str(SET.NAME, set.name).u32be(SET.FLAGS, flags);
    this.w.u32be(SET.KEY_TYPE, info.dtype).u32be(SET.KEY_LEN, info.len).u32be(SET.ID, id);
    // Size: for static hash sets it lets the kernel pick a fixed-size hash
    // (cheaper lookups); for dynamic sets it bounds memory against floods.
    const size = set.dynamic ? DYNAMIC_SET_MAX : !set.interval && !set.timeout ? Math.max(set.elements.length, 1) : 0;
    if (size > 0 || fields) {
      this.w.nest(SET.DESC, () => {
        if (size > 0) this.w.u32be(SET_DESC.SIZE, size);
        if (fields) {
          this.w.nest(SET_DESC.CONCAT, () => {
            for (const f of fields) this.w.nest(LIST_ELEM, () => this.w.u32be(SET_FIELD_LEN, f));
          });
        }
      });
    }
    // User data is for nft's display only: the key byte order (without it nft
    // prints host-order keys such as uids byte-swapped) and the comment.
    const udata: Buffer[] = [];
    if (HOST_ORDER_KEYS.has(set.key)) udata.push(Buffer.from([UDATA_SET_KEYBYTEORDER, 4, 1, 0, 0, 0]));
    if (set.comment !== undefined) udata.push(udataEncode(UDATA_COMMENT.set, set.comment));
    if (udata.length > 0) this.w.bytes(SET.USERDATA, Buffer.concat(udata));
    this.w.endMsg();
    if (set.elements.length > 0) this.elements('add', table, set, set.elements);
    return this;
  }

  /** Adds or deletes elements, split into messages that fit netlink's 16-bit attribute lengths. */
  elements(op: 'add' | 'delete', table: string, set: Pick<SetDef, 'name' | 'key' | 'interval'>, elems: SetElem[]): this {
    if (!set.interval && (set.key === 'ipv4_addr' || set.key === 'ipv6_addr') && elems.every(isPlainHost)) return this.hostElements(op, table, set, elems as PlainHost[]);
    const raw = rawElements(set, elems);
    return this.elementMessages(op, table, set, raw.length, (i) => {
      const r = raw[i] as RawElem;
      this.w.nest(LIST_ELEM, () => {
        this.w.nest(SET_ELEM.KEY, () => this.w.bytes(DATA.VALUE, r.key));
        if (r.keyEnd) this.w.nest(SET_ELEM.KEY_END, () => this.w.bytes(DATA.VALUE, r.keyEnd as Buffer));
        if (r.flags) this.w.u32be(SET_ELEM.FLAGS, r.flags);
        if (r.timeoutMs !== undefined && op === 'add') {
          this.w.u64be(SET_ELEM.TIMEOUT, BigInt(r.timeoutMs));
          // The expiry too (Linux 5.3+): a kernel that updates elements it holds (6.12+) updates
          // only what an add carries that differs, so an add with the timeout the element already
          // has would otherwise leave its old expiry in place.
          this.w.u64be(SET_ELEM.EXPIRATION, BigInt(r.timeoutMs));
        }
      });
    });
  }

  /**
   * The elements of an address hash set with no timeouts (a feed's hosts, the
   * bulk of a large policy), written straight into the batch: the bytes the
   * general path writes, without a RawElem and its buffers per element.
   */
  private hostElements(op: 'add' | 'delete', table: string, set: Pick<SetDef, 'name' | 'key'>, elems: PlainHost[]): this {
    const family = set.key === 'ipv4_addr' ? 4 : 6;
    const max = family === 4 ? 0xffffffffn : (1n << 128n) - 1n;
    // The elements and each message's header (header, table, set, id; chunks of ~60 KB).
    const bytes = elems.length * (12 + (family === 4 ? 4 : 16));
    this.w.reserve(bytes + (Math.ceil(bytes / ELEM_CHUNK_BYTES) + 1) * (64 + table.length + set.name.length));
    return this.elementMessages(op, table, set, elems.length, (i) => {
      const e = elems[i] as PlainHost;
      if (e.family !== family) throw new TypeError('address family does not match the set');
      if (e.start !== e.end) throw new TypeError('a hash set holds single addresses only');
      if (e.start < 0n || e.start > max) throw new RangeError(`address out of range for IPv${family}`);
      this.w.addrElem(LIST_ELEM, SET_ELEM.KEY, DATA.VALUE, family, e.start);
    });
  }

  /** Element messages for `count` elements, each written by `write(i)`, as many as their 16-bit lengths need. */
  private elementMessages(op: 'add' | 'delete', table: string, set: Pick<SetDef, 'name'>, count: number, write: (i: number) => void): this {
    const id = this.setIds.get(set.name);
    let i = 0;
    while (i < count) {
      this.begin(op === 'add' ? MSG.NEWSETELEM : MSG.DELSETELEM, op === 'add' ? NLM_F_CREATE : 0, `${op === 'add' ? 'adding' : 'deleting'} elements of set ${set.name}`);
      this.w.str(SET_ELEM_LIST.TABLE, table).str(SET_ELEM_LIST.SET, set.name);
      if (id !== undefined) this.w.u32be(SET_ELEM_LIST.SET_ID, id);
      const nestStart = this.w.length;
      this.w.nest(SET_ELEM_LIST.ELEMENTS, () => {
        while (i < count && this.w.since(nestStart) < ELEM_CHUNK_BYTES) write(i++);
      });
      this.w.endMsg();
    }
    return this;
  }

  addChain(table: string, chain: ChainDef): this {
    this.begin(MSG.NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL, `adding chain ${chain.name}`);
    this.w.str(CHAIN.TABLE, table).str(CHAIN.NAME, chain.name);
    if (chain.base) {
      const base = chain.base;
      this.w.nest(CHAIN.HOOK, () => {
        this.w.u32be(HOOK.HOOKNUM, HOOKNUM[base.hook]);
        this.w.u32be(HOOK.PRIORITY, base.priority >>> 0);
      });
      this.w.u32be(CHAIN.POLICY, base.policy === 'accept' ? NF_ACCEPT : NF_DROP);
      this.w.str(CHAIN.TYPE, base.type);
    }
    if (chain.comment !== undefined) this.w.bytes(CHAIN.USERDATA, udataEncode(UDATA_COMMENT.chain, chain.comment));
    this.w.endMsg();
    return this;
  }

  addRule(table: string, chain: string, exprs: LExpr[], comment?: string): this {
    this.begin(MSG.NEWRULE, NLM_F_CREATE | NLM_F_APPEND, `adding a rule to chain ${chain}${comment ? ` (${comment})` : ''}`);
    this.w.str(RULE.TABLE, table).str(RULE.CHAIN, chain);
    this.w.nest(RULE.EXPRESSIONS, () => {
      for (const x of exprs) {
        // Sets created in this batch are found by id as well as name.
        const withId = (x.e === 'lookup' || x.e === 'dynset') && this.setIds.has(x.set) ? { ...x, setId: this.setIds.get(x.set) } : x;
        writeLExpr(this.w, withId);
      }
    });
    if (comment !== undefined) this.w.bytes(RULE.USERDATA, udataEncode(UDATA_COMMENT.rule, comment));
    this.w.endMsg();
    return this;
  }

  finish(): Buffer {
    this.w.beginMsg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, this.seq++, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES).endMsg();
    return this.w.finish();
  }
}

/**
 * One transaction that replaces Sluice's table: create it if missing (so the
 * delete cannot fail), delete it, and build the new one. The kernel commits
 * all of it or none of it; a failure leaves the previous table in force.
 * `flags.live`: the flags the table has now (the create-if-missing must not
 * ask to change them: an owned table refuses that); `flags.table`: the new
 * table's.
 */
export function encodeReplace(rs: Ruleset, extra?: (b: BatchBuilder) => void, flags: { live: number; table: number } = { live: 0, table: 0 }): BatchBuilder {
  const b = new BatchBuilder();
  b.addTable(rs.table, undefined, flags.live).deleteTable(rs.table).addTable(rs.table, rs.comment, flags.table);
  for (const c of rs.counters) b.addCounter(rs.table, c.name, c.comment);
  for (const l of rs.limits) b.addLimit(rs.table, l.name, l.rate, l.burst);
  for (const s of rs.sets) b.addSet(rs.table, s);
  for (const c of rs.chains) b.addChain(rs.table, c);
  for (const c of rs.chains) {
    for (const r of c.rules) b.addRule(rs.table, c.name, r.stmts.flatMap(stmtToLExprs), r.comment);
  }
  extra?.(b);
  return b;
}

/** One transaction that removes Sluice's table if it exists. */
export function encodeDelete(table: string, liveFlags = 0): BatchBuilder {
  return new BatchBuilder().addTable(table, undefined, liveFlags).deleteTable(table);
}

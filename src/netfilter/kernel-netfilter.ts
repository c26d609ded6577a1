import type { ChainDef, Ruleset, SetDef, SetElem } from '../compile/ruleset.js';
import { release } from 'node:os';
import { NetlinkError, SystemError } from '../errors.js';
import { native } from '../native/native.js';
import { NlWriter, attrMap, attrStr, attrU32, type NlMsg } from './nl-attr.js';
import {
  CHAIN,
  GEN_ID,
  MSG,
  NETLINK_NETFILTER,
  NFNL_SUBSYS_NFTABLES,
  NFPROTO_INET,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NFPROTO_UNSPEC,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  OBJ,
  OBJECT_COUNTER,
  RULE,
  SET,
  SET_ELEM_LIST,
  TABLE,
  TABLE_F,
} from './nl-constants.js';
import { forgetFlowsMarked, forgetRedirects, forgetUnredirected } from './conntrack.js';
import { NetlinkSocket, DumpInterrupted } from './netlink-socket.js';
import { decodeChain, decodeElemMessages, decodeObj, decodeRule, decodeSet, decodeTable, elementsToIR, tableFlagNames, type CounterValue, type LiveTable } from './nft-decode.js';
import { BatchBuilder, encodeDelete, encodeReplace } from './nft-encode.js';
import { carriesLearned, sameLearnedSet, type ElementChange, type ForwardChain, type Netfilter, type ReadOptions } from './netfilter.js';

const T = (m: number) => (NFNL_SUBSYS_NFTABLES << 8) | m;
const ENOENT = 2;
const EOPNOTSUPP = 95;
/** Refreshed elements this close to their expiry may already be expired-but-uncollected in the kernel. */
const NEAR_EXPIRY_MS = 3_000;

/** Netfilter over nf_tables netlink, in the network namespace of the calling process. */
export class KernelNetfilter implements Netfilter {
  private sock: NetlinkSocket;
  private seq = 1;
  private updates: boolean | undefined;
  /** The daemon: an owned ruleset's table is written owned by this socket (see `hold`). */
  private readonly owner: boolean;
  /** Whether this writer holds owned tables (false between `release` and `hold`). */
  private holding: boolean;

  /**
   * `timeoutUpdates` skips the probe (tests take each path on any kernel).
   * `owner`: this is the daemon, the one process that holds an owned table
   * (policy `owned_table`); any other writer leaves it persistent and
   * unowned, for the daemon to take back.
   */
  constructor(opts: { timeoutUpdates?: boolean; owner?: boolean } = {}) {
    this.sock = NetlinkSocket.open(NETLINK_NETFILTER);
    this.updates = opts.timeoutUpdates;
    this.owner = opts.owner === true;
    this.holding = this.owner;
  }

  /** The flags an owned ruleset's table is written with by this writer. */
  private ownedFlags(): number {
    return TABLE_F.PERSIST | (this.owner && this.holding ? TABLE_F.OWNER : 0);
  }

  /** The live table's flags as they are (what a create-if-missing must repeat), refusing before the kernel does when another socket owns it. */
  private liveFlags(live: LiveTable | null, doing: string): number {
    if (!live) return 0;
    if (live.owner !== undefined && live.owner !== native().nlPortId(this.sock.fd)) {
      throw new SystemError(
        'ETABLEOWNED',
        `Cannot ${doing}: inet ${live.ruleset.table} is owned (flags owner) by another process's netlink socket (port ${live.owner}), and only it may change the table. A running Sluice daemon hands it over to \`sluice apply\`, \`off\` and rollbacks; stop the process that holds it, or wait for it to exit (the table stays).`,
      );
    }
    return (live.ruleset.owned ? TABLE_F.PERSIST : 0) | (live.owner !== undefined ? TABLE_F.OWNER : 0);
  }

  /**
   * Takes an owned ruleset's table that no socket holds (written by the CLI,
   * the boot-time restore, or a daemon that exited) for this writer, in one
   * transaction that changes nothing else. `held`: it already was; `absent`:
   * no table, or not an owned ruleset's. Throws when another socket holds it.
   */
  hold(table: string): 'held' | 'taken' | 'absent' {
    this.holding = this.owner;
    const live = this.read(table, { elements: 'none' });
    if (!live || !live.ruleset.owned || !this.owner) return 'absent';
    if (live.owner !== undefined) {
      this.liveFlags(live, `take inet ${table}`);
      return 'held';
    }
    this.commit(this.batch().addTable(table, undefined, TABLE_F.OWNER | TABLE_F.PERSIST));
    return 'taken';
  }

  /**
   * Lets go of every table this writer holds (they stay, persistent and
   * unowned, for another writer to replace), until the next `hold`. The
   * kernel has no message for it: the socket is closed and another opened.
   */
  release(): void {
    this.holding = false;
    const old = this.sock;
    this.sock = NetlinkSocket.open(NETLINK_NETFILTER);
    old.close();
  }

  /** Whether this writer holds owned tables now (false between `release` and `hold`). */
  holds(): boolean {
    return this.owner && this.holding;
  }

  socketFd(): number {
    return this.sock.fd;
  }

  /** The netlink port of this writer's socket (what the kernel records as an owned table's owner). */
  portId(): number {
    return native().nlPortId(this.sock.fd);
  }

  /**
   * Whether adding an element that is already in a set sets its timeout anew
   * (Linux 6.12+, "netfilter: nf_tables: set element timeout update
   * support"); before that kernel the add succeeds and changes nothing, so an
   * address would close at its first expiry however often it was answered
   * since. Probed once, the way nftables' own test suite does, in a table of
   * its own (removed at once): add an element with a short timeout, add it
   * again with a long one, read it back. Any failure counts as "no" (the
   * refresh then takes the path every kernel supports).
   */
  timeoutUpdates(): boolean {
    this.updates ??= this.probeTimeoutUpdates();
    return this.updates;
  }

  private probeTimeoutUpdates(): boolean {
    // One fixed name: a probe table a crash left behind is replaced and removed by the next probe.
    const table = 'sluice_probe';
    const set: SetDef = { name: 'probe', key: 'ipv4_addr', interval: false, timeout: true, dynamic: true, elements: [] };
    const elem = (timeoutMs: number): SetElem => ({ t: 'addr', family: 4, start: 0xc6120001n, end: 0xc6120001n, timeoutMs });
    try {
      this.commit(this.batch().addTable(table).deleteTable(table).addTable(table, 'sluice: kernel probe, removed at once').addSet(table, set).elements('add', table, set, [elem(10_000)]));
      this.commit(this.batch().elements('add', table, set, [elem(3_600_000)]));
      const msgs = this.dump(MSG.GETSETELEM, (w) => w.str(SET_ELEM_LIST.TABLE, table).str(SET_ELEM_LIST.SET, set.name));
      const got = elementsToIR(set, decodeElemMessages(msgs), []);
      const e = got[0];
      return got.length === 1 && e !== undefined && e.t === 'addr' && (e.timeoutMs ?? 0) > 60_000;
    } catch {
      return false;
    } finally {
      try {
        this.commit(encodeDelete(table));
      } catch {
        // Never created, or already gone.
      }
    }
  }

  close(): void {
    this.sock.close();
  }

  private req(type: number, flags: number, family: number, attrs?: (w: NlWriter) => void): Buffer {
    const w = new NlWriter(256);
    w.beginMsg(T(type), NLM_F_REQUEST | flags, this.seq++, family);
    attrs?.(w);
    w.endMsg();
    return w.finish();
  }

  private dump(type: number, attrs?: (w: NlWriter) => void): NlMsg[] {
    return this.sock.dump(this.req(type, NLM_F_DUMP | NLM_F_ACK, NFPROTO_INET, attrs));
  }

  /** Base chains on the forward hook in every ip, ip6 and inet table (see Netfilter.forwardChains). */
  forwardChains(): ForwardChain[] {
    const families: Record<number, ForwardChain['family']> = { [NFPROTO_IPV4]: 'ip', [NFPROTO_IPV6]: 'ip6', [NFPROTO_INET]: 'inet' };
    const all = (type: number) => this.sock.dump(this.req(type, NLM_F_DUMP | NLM_F_ACK, NFPROTO_UNSPEC));
    const out: ForwardChain[] = [];
    for (const m of all(MSG.GETCHAIN)) {
      const family = families[m.payload[0] ?? -1];
      if (!family) continue;
      const d = decodeChain(m);
      if (d.chain.base?.hook !== 'forward' || d.chain.base.type !== 'filter') continue;
      out.push({ family, table: d.table, chain: d.chain.name, policy: d.chain.base.policy, rules: 0 });
    }
    if (out.length === 0) return out;
    for (const m of all(MSG.GETRULE)) {
      const family = families[m.payload[0] ?? -1];
      const a = attrMap(m.payload, 4);
      const table = attrStr(a.get(RULE.TABLE));
      const chain = attrStr(a.get(RULE.CHAIN));
      const c = out.find((x) => x.family === family && x.table === table && x.chain === chain);
      if (c) c.rules++;
    }
    return out;
  }

  /** The ruleset generation: changes on every committed transaction. */
  generation(): number {
    const replies = this.sock.request(this.req(MSG.GETGEN, NLM_F_ACK, NFPROTO_UNSPEC));
    for (const r of replies) {
      const id = attrU32(attrMap(r.payload, 4).get(GEN_ID));
      if (id !== undefined) return id;
    }
    throw new Error('no generation id in GETGEN reply');
  }

  replace(ruleset: Ruleset, opts: { carryDynamic?: boolean } = {}): void {
    // Carry DNS-learned addresses (dynamic sets) across a replacement, so a
    // reload never breaks connections a program is about to make.
    const carried: { set: SetDef; elems: SetElem[] }[] = [];
    const carry = opts.carryDynamic !== false;
    const live = this.read(ruleset.table, { elements: carry ? 'dynamic' : 'none' });
    if (carry) {
      if (live && carriesLearned(live.ruleset.comment, ruleset.comment)) {
        const wanted = new Map(ruleset.sets.filter((s) => s.dynamic).map((s) => [s.name, s]));
        for (const s of live.ruleset.sets) {
          const target = wanted.get(s.name);
          if (!target || !sameLearnedSet(s, target) || s.elements.length === 0) continue;
          carried.push({ set: target, elems: s.elements.map(remainingLifetime) });
        }
      }
    }
    const flags = { live: this.liveFlags(live, `replace inet ${ruleset.table}`), table: ruleset.owned ? this.ownedFlags() : 0 };
    const batch = encodeReplace(
      ruleset,
      (b) => {
        for (const c of carried) b.elements('add', ruleset.table, c.set, c.elems);
      },
      flags,
    );
    try {
      this.commit(batch);
    } catch (err) {
      // Before 6.9 the kernel has no persist flag: say what the policy asked for.
      if (ruleset.owned && err instanceof NetlinkError && err.errno === EOPNOTSUPP) {
        throw new SystemError('EOWNEDTABLE', `This kernel (${release()}) refused the table flags owner and persist that \`owned_table: true\` asks for (Linux 6.9 or later has them); nothing was changed. Remove owned_table from the policy to run unowned.`, { cause: err });
      }
      throw err;
    }
    forgetStaleRedirect(live?.ruleset ?? null, ruleset);
  }

  /** A batch numbered after the last one this socket sent (a late ack can never be taken for its own). */
  private batch(): BatchBuilder {
    return new BatchBuilder(this.seq);
  }

  private commit(b: BatchBuilder): void {
    this.seq = Math.max(this.seq, ...b.expected()) + 2;
    const buf = b.finish();
    this.sock.transact(buf, b.expected(), (seq) => b.descriptions.get(seq) ?? `message ${seq}`);
  }

  forgetFlows(value: number, mask: number): void {
    forgetFlowsMarked(value, mask);
  }

  remove(table: string, opts: { unowned?: boolean } = {}): boolean {
    if (opts.unowned) {
      // Add (a no-op on the table as it is, flags 0) then delete: absent or present, one transaction.
      this.commit(encodeDelete(table, 0));
      return true;
    }
    const live = this.read(table, { elements: 'none' });
    if (!live) return false;
    this.commit(encodeDelete(table, this.liveFlags(live, `remove inet ${table}`)));
    forgetStaleRedirect(live.ruleset, null);
    return true;
  }

  addElements(table: string, changes: ElementChange[]): void {
    const work = changes.filter((c) => c.elems.length > 0 || (c.remove?.length ?? 0) > 0 || (c.refresh?.length ?? 0) > 0);
    if (work.length === 0) return;
    const replace = work.some((c) => (c.refresh?.length ?? 0) > 0) && !this.timeoutUpdates();
    const dropped = replace ? this.dropNearExpiry(table, work) : [];
    const b = this.batch();
    for (const c of work) {
      if (c.remove && c.remove.length > 0) b.elements('delete', table, c.set, c.remove);
      const refresh = (c.refresh ?? []).map((r) => r.elem);
      if (replace && refresh.length > 0) {
        // A kernel that ignores a new timeout on an element it holds: take the element out and
        // put it back with the new one, in this transaction, so no packet sees it missing. The
        // first add makes the delete safe whether or not the element is still there.
        b.elements('add', table, c.set, refresh);
        b.elements('delete', table, c.set, refresh);
      }
      const adds = [...c.elems, ...refresh];
      if (adds.length > 0) b.elements('add', table, c.set, adds);
    }
    try {
      this.commit(b);
    } catch (err) {
      // Put back what was taken out ahead of a batch the kernel refused, for what was left of its life.
      if (dropped.length > 0) {
        const now = Date.now();
        try {
          const back = this.batch();
          for (const d of dropped) back.elements('add', table, d.set, [{ ...d.elem, timeoutMs: Math.max(1000, d.expiresAt - now) } as SetElem]);
          this.commit(back);
        } catch {
          // They were about to expire anyway; the refused batch's error is the one to report.
        }
      }
      throw err;
    }
  }

  /**
   * The replace path's one hazard: an element whose timeout ran out but that
   * the kernel has not collected yet could make the first add a no-op and the
   * delete fail (a delete treats it as gone, an add as present). Elements that
   * may be that close to expiry are deleted first, each in a transaction of
   * its own where "not there" is fine. Between that delete and the batch a
   * connect to the address is refused: only elements in their last seconds
   * take this path, past every answer's TTL when ttl_grace is at least 3 s
   * (the default is 30). If the batch then fails, they are put back for what
   * was left of their life.
   */
  private dropNearExpiry(table: string, work: ElementChange[]): { set: ElementChange['set']; elem: SetElem; expiresAt: number }[] {
    const now = Date.now();
    const dropped: { set: ElementChange['set']; elem: SetElem; expiresAt: number }[] = [];
    for (const c of work) {
      for (const r of c.refresh ?? []) {
        if (r.expiresAt - now > NEAR_EXPIRY_MS) continue;
        try {
          this.commit(this.batch().elements('delete', table, c.set, [r.elem]));
          if (r.expiresAt > now) dropped.push({ set: c.set, elem: r.elem, expiresAt: r.expiresAt });
        } catch (err) {
          if (!(err instanceof NetlinkError && err.errno === ENOENT)) throw err;
        }
      }
    }
    return dropped;
  }

  /**
   * The table, read consistently: within one ruleset generation, or, when
   * other tables keep changing the generation (another process churning its
   * own table, on purpose or not), two reads in a row that agree.
   */
  read(table: string, opts: ReadOptions = {}): LiveTable | null {
    let previous: string | undefined;
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        const before = this.generation();
        const result = this.readOnce(table, opts.elements ?? 'static');
        if (this.generation() === before) return result;
        // Remaining lifetimes tick between reads: not part of the comparison.
        const key = JSON.stringify(result, (k, v: unknown) => (k === 'expiresMs' ? undefined : typeof v === 'bigint' ? `${v}n` : v));
        if (key === previous) return result;
        previous = key;
      } catch (err) {
        if (!(err instanceof DumpInterrupted)) throw err;
      }
    }
    throw new Error('the ruleset kept changing while being read; try again');
  }

  private readOnce(table: string, elements: NonNullable<ReadOptions['elements']>): LiveTable | null {
    let tableMsg: NlMsg | undefined;
    try {
      tableMsg = this.sock.request(this.req(MSG.GETTABLE, NLM_F_ACK, NFPROTO_INET, (w) => w.str(TABLE.NAME, table)))[0];
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === ENOENT) return null;
      throw err;
    }
    if (!tableMsg) return null;
    const anomalies: string[] = [];
    const t = decodeTable(tableMsg);
    // Sluice writes persist, and owner with it (a dormant table filters nothing at all; owner
    // without persist would take the table away with the socket that owns it).
    const foreignFlags = t.flags & ~(TABLE_F.OWNER | TABLE_F.PERSIST);
    if (foreignFlags !== 0) anomalies.push(`the table has flags Sluice does not write (${tableFlagNames(foreignFlags)})`);
    if (t.flags & TABLE_F.OWNER && !(t.flags & TABLE_F.PERSIST)) anomalies.push('the table is owned without persist (it would go with its owner)');
    const rs: Ruleset = { table: t.name, comment: t.comment, sets: [], counters: [], limits: [], chains: [] };
    if (t.flags & TABLE_F.PERSIST) rs.owned = true;

    for (const m of this.dump(MSG.GETOBJ, (w) => w.str(OBJ.TABLE, table))) {
      const o = decodeObj(m);
      if (o.table !== table) continue;
      if (o.counter) rs.counters.push(o.comment !== undefined ? { name: o.name, comment: o.comment } : { name: o.name });
      else if (o.limit) {
        rs.limits.push({ name: o.name, rate: o.limit.rate, burst: o.limit.burst });
        if (!o.limit.ok) anomalies.push(`limit ${o.name} has a unit, type or flags Sluice does not write`);
      } else anomalies.push(`object ${o.name} of type ${o.type} is not one Sluice writes`);
    }
    for (const m of this.dump(MSG.GETSET, (w) => w.str(SET.TABLE, table))) {
      const d = decodeSet(m);
      if (d.table !== table) continue;
      if (d.anomaly) anomalies.push(d.anomaly);
      const wanted = elements === 'all' || (elements === 'static' && !d.set.dynamic) || (elements === 'dynamic' && d.set.dynamic);
      if (wanted) {
        const elemMsgs = this.dump(MSG.GETSETELEM, (w) => w.str(SET_ELEM_LIST.TABLE, table).str(SET_ELEM_LIST.SET, d.set.name));
        d.set.elements = elementsToIR(d.set, decodeElemMessages(elemMsgs), anomalies);
      }
      rs.sets.push(d.set);
    }
    const chains = new Map<string, ChainDef>();
    for (const m of this.dump(MSG.GETCHAIN, (w) => w.str(CHAIN.TABLE, table))) {
      const d = decodeChain(m);
      if (d.table !== table) continue;
      if (d.anomaly) anomalies.push(d.anomaly);
      chains.set(d.chain.name, d.chain);
      rs.chains.push(d.chain);
    }
    for (const m of this.dump(MSG.GETRULE, (w) => w.str(RULE.TABLE, table))) {
      const d = decodeRule(m);
      if (d.table !== table) continue;
      const chain = chains.get(d.chain);
      if (chain) chain.rules.push(d.rule);
      else anomalies.push(`rule in unknown chain ${d.chain}`);
    }
    return t.flags & TABLE_F.OWNER && t.owner !== undefined ? { ruleset: rs, anomalies, owner: t.owner } : { ruleset: rs, anomalies };
  }

  counters(table: string): Map<string, CounterValue> {
    const out = new Map<string, CounterValue>();
    try {
      for (const m of this.dump(MSG.GETOBJ, (w) => w.str(OBJ.TABLE, table).u32be(OBJ.TYPE, OBJECT_COUNTER))) {
        const o = decodeObj(m);
        if (o.table === table && o.counter) out.set(o.name, o.counter);
      }
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === ENOENT) return out;
      throw err;
    }
    return out;
  }
}

/** A learned element re-added with what is left of its lifetime (at least a second), so a reload never extends it. */
function remainingLifetime(e: SetElem): SetElem {
  if (e.t !== 'addr' && e.t !== 'num') return e;
  const { expiresMs, timeoutMs, ...rest } = e;
  const left = expiresMs ?? timeoutMs;
  return left === undefined ? rest : { ...rest, timeoutMs: Math.max(left, 1000) };
}

/** The port the ruleset redirects DNS to (the guard's), or null when it redirects nothing. */
export function redirectPort(rs: Ruleset | null): number | null {
  for (const c of rs?.chains ?? []) for (const r of c.rules) for (const st of r.stmts) if (st.k === 'redirect') return st.port;
  return null;
}

/**
 * A replaced or removed ruleset takes its DNS redirect with it, but conntrack
 * keeps the NAT bindings it made: those flows are forgotten, so no query is
 * sent on to a port the guard no longer serves.
 */
function forgetStaleRedirect(before: Ruleset | null, after: Ruleset | null): void {
  const from = redirectPort(before);
  const to = redirectPort(after);
  if (from !== null && from !== to) forgetRedirects(from);
  if (to !== null && from !== to) forgetUnredirected(to);
}

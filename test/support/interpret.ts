/**
 * An interpreter for the compiled IR: evaluates a packet the way the kernel
 * evaluates the ruleset (first matching rule, goto/jump semantics, base-chain
 * policy). Tests use it to check that `explain` and the compiled ruleset
 * agree, without a kernel.
 */
import type { ChainDef, Ruleset, SetDef, Stmt } from '../../src/compile/ruleset.js';

export interface Packet {
  family: 4 | 6;
  daddr: bigint;
  l4proto: number;
  dport?: number;
  /** Source port (replies to inbound flows leave from the local service's port). */
  sport?: number;
  icmpType?: number;
  uid: number;
  /** The packet has no socket owner (an orphaned socket after close(), a TIME_WAIT ACK): `meta skuid` and `socket cgroupv2` do not match. */
  ownerless?: boolean;
  oif: number;
  oifname: string;
  /** cgroup id of the socket's ancestor at each level (index = level). */
  cgroupAncestors: bigint[];
  ct: 'new' | 'established';
  /** Conntrack direction of an established packet: original (0, the default) or reply (1). */
  ctDirection?: 0 | 1;
  /** The flow's conntrack mark (all 32 bits). */
  ctMark?: number;
  mark?: number;
  /** True when the sending socket uses a source address that is not this host's (IPV6_FREEBIND). */
  saddrForeign?: boolean;
  /** Conntrack status bits (IPS_DST_NAT for a redirected flow). */
  ctStatus?: number;
  /** The sending socket's SO_MARK. */
  socketMark?: number;
  /** True when the destination is an address of this host (fib daddr type local). */
  daddrLocal?: boolean;
}

export interface Outcome {
  verdict: 'accept' | 'drop' | 'reject';
  counters: string[];
  logs: string[];
}

type Flow = { kind: 'verdict'; v: Outcome['verdict'] } | { kind: 'return' };

function inSet(set: SetDef, p: Packet, sel: Extract<Stmt, { k: 'lookup' }>): boolean {
  for (const e of set.elements) {
    switch (sel.sel) {
      case 'ip daddr':
      case 'ip6 daddr':
        if (e.t === 'addr' && e.family === p.family && e.start <= p.daddr && p.daddr <= e.end) return true;
        break;
      case 'meta l4proto . th dport':
        if (e.t === 'protoport' && p.dport !== undefined && e.proto === p.l4proto && e.from <= p.dport && p.dport <= e.to) return true;
        break;
      case 'meta l4proto . th sport':
        if (e.t === 'protoport' && p.sport !== undefined && e.proto === p.l4proto && e.from <= p.sport && p.sport <= e.to) return true;
        break;
      case 'th dport':
        // The port alone (a rule's port ranges of one protocol: the rule compares meta l4proto before it).
        if (e.t === 'port' && p.dport !== undefined && e.from <= p.dport && p.dport <= e.to) return true;
        break;
      case 'meta oifname':
        if (e.t === 'ifname' && (e.wildcard ? p.oifname.startsWith(e.name) : p.oifname === e.name)) return true;
        break;
      case 'meta skuid':
        if (e.t === 'num' && !p.ownerless && e.value === BigInt(p.uid)) return true;
        break;
      case 'socket cgroupv2': {
        const id = p.cgroupAncestors[sel.level ?? 0];
        if (e.t === 'num' && id !== undefined && e.value === id) return true;
        break;
      }
      case 'icmpv6 type':
        if (e.t === 'num' && p.icmpType !== undefined && e.value === BigInt(p.icmpType)) return true;
        break;
      default:
        // A selector this interpreter does not model must not read as "no match": that would make
        // every rule using it look unreachable and every agreement test pass vacuously.
        throw new Error(`interpret: cannot evaluate a lookup on ${sel.sel}`);
    }
  }
  return false;
}

function cmpValue(sel: Extract<Stmt, { k: 'cmp' }>['sel'], p: Packet): number | undefined {
  switch (sel) {
    case 'meta nfproto':
      return p.family === 4 ? 2 : 10;
    case 'meta l4proto':
      return p.l4proto;
    case 'meta oif':
      return p.oif;
    case 'th dport':
      return p.dport;
    case 'th sport':
      return p.sport;
    case 'ct status':
      return p.ctStatus ?? 0;
    case 'socket mark':
      return p.socketMark ?? 0;
    case 'icmpv6 type':
      return p.icmpType;
    case 'meta skuid':
      return p.ownerless ? undefined : p.uid;
    case 'meta mark':
      return p.mark ?? 0;
    case 'fib daddr type':
      return p.daddrLocal ? 2 : 1;
    case 'fib saddr type':
      return p.saddrForeign ? 1 : 2;
    case 'ct direction':
      return p.ctDirection ?? 0;
    case 'ct mark':
      return p.ctMark ?? 0;
    default:
      throw new Error(`interpret: cannot evaluate a comparison on ${sel}`);
  }
}

/** Evaluates the base chain `output` for the packet. */
export function interpret(rs: Ruleset, p: Packet): Outcome {
  const chains = new Map(rs.chains.map((c) => [c.name, c]));
  const sets = new Map(rs.sets.map((s) => [s.name, s]));
  const counters: string[] = [];
  const logs: string[] = [];

  const runChain = (chain: ChainDef, depth: number): Flow => {
    if (depth > 16) throw new Error('chain loop');
    for (const rule of chain.rules) {
      let matched = true;
      for (const s of rule.stmts) {
        if (!matched) break;
        switch (s.k) {
          case 'cmp': {
            const raw = cmpValue(s.sel, p);
            const v = raw !== undefined && s.mask !== undefined ? (raw & s.mask) >>> 0 : raw;
            const eq = v !== undefined && v === s.value;
            matched = s.op === 'eq' ? eq : v !== undefined && !eq;
            break;
          }
          case 'lookup': {
            const set = sets.get(s.set);
            if (!set) throw new Error(`lookup of missing set ${s.set}`);
            const hit = inSet(set, p, s);
            matched = s.neg ? !hit : hit;
            break;
          }
          case 'ct':
            matched = s.states.includes(p.ct);
            break;
          case 'counter':
            counters.push(s.name);
            break;
          case 'limit':
            break; // under the limit
          case 'meter':
            matched = !s.over; // every user within its share: an `over` meter does not match
            break;
          case 'mark-set':
          case 'mark-set-cgroup':
            break; // marks only label the packet for the event collector
          case 'ct-mark-set':
            p.ctMark = (((p.ctMark ?? 0) & ~s.mask) | s.value) >>> 0;
            break;
          case 'mark-set-skuid':
          case 'ct-zone-set':
            break; // marks and zones label the packet (event collector, DNS guard, conntrack); no verdict
          case 'log':
            logs.push(s.prefix);
            break;
          case 'reject':
            return { kind: 'verdict', v: 'reject' };
          case 'verdict':
            if (s.v === 'accept' || s.v === 'drop') return { kind: 'verdict', v: s.v };
            if (s.v === 'return') return { kind: 'return' };
            matched = false; // continue: next rule
            break;
          case 'goto':
          case 'jump': {
            const target = chains.get(s.chain);
            if (!target) throw new Error(`missing chain ${s.chain}`);
            const r = runChain(target, depth + 1);
            if (s.k === 'goto' || r.kind === 'verdict') return r;
            matched = false;
            break;
          }
          case 'redirect':
          case 'unknown':
            throw new Error(`cannot interpret ${s.k}`);
        }
      }
    }
    return { kind: 'return' };
  };

  const output = chains.get('output');
  if (!output?.base) throw new Error('no output base chain');
  const r = runChain(output, 0);
  const verdict = r.kind === 'verdict' ? r.v : output.base.policy;
  return { verdict, counters, logs };
}

/**
 * Evaluates the nat output base chain, which the kernel runs before the filter
 * chain on a flow's first packet: `redirect` when the packet is sent to a local
 * port instead (the DNS guard), `accept` when it goes on to its destination.
 */
export function interpretNat(rs: Ruleset, p: Packet): 'redirect' | 'accept' {
  const nat = rs.chains.find((c) => c.base?.type === 'nat' && c.base.hook === 'output');
  if (!nat || p.ct !== 'new') return 'accept';
  for (const rule of nat.rules) {
    let matched = true;
    for (const s of rule.stmts) {
      if (!matched) break;
      if (s.k === 'cmp') {
        const v = cmpValue(s.sel, p);
        const eq = v !== undefined && (s.mask !== undefined ? (v & s.mask) >>> 0 : v) === s.value;
        matched = s.op === 'eq' ? eq : v !== undefined && !eq;
      } else if (s.k === 'lookup') {
        // An audit policy redirects only its enforce scopes' DNS: the scope's uid or cgroup set.
        const set = rs.sets.find((x) => x.name === s.set);
        if (!set) throw new Error(`lookup of missing set ${s.set}`);
        const hit = inSet(set, p, s);
        matched = s.neg ? !hit : hit;
      } else if (s.k === 'redirect') return 'redirect';
      else if (s.k === 'verdict') return 'accept';
      else throw new Error(`interpretNat: cannot evaluate ${s.k}`);
    }
  }
  return 'accept';
}

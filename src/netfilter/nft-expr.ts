import type { CtState, Selector, Stmt } from '../compile/ruleset.js';
import { attrI32, attrMap, attrStr, attrU16, attrU32, attrU64, parseAttrs, type NlWriter } from './nl-attr.js';
import {
  A,
  CMP_EQ,
  CMP_NEQ,
  CT_MARK,
  CT_STATE,
  CT_STATE_BITS,
  CT_STATUS,
  DATA,
  DYNSET_OP_UPDATE,
  EXPR,
  ICMPX_ADMIN_PROHIBITED,
  LIMIT_F_INV,
  LIMIT_PKTS,
  LIST_ELEM,
  LOOKUP_F_INV,
  META,
  NAT_DNAT,
  NAT_RANGE_ADDR_PORT,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NF_ACCEPT,
  NF_DROP,
  NFT_CONTINUE,
  NFT_GOTO,
  NFT_JUMP,
  NFT_RETURN,
  OBJECT_COUNTER,
  OBJECT_LIMIT,
  PAYLOAD_BASE,
  REG32_01,
  REG_1,
  REG_2,
  REG_VERDICT,
  REJECT_ICMPX_UNREACH,
  REJECT_TCP_RST,
  SOCKET_CGROUPV2,
  SOCKET_MARK,
  VERDICT,
} from './nl-constants.js';

/** Low-level nf_tables expressions: what the kernel stores, one to one. */
export type LExpr =
  | { e: 'meta'; key: number; dreg: number }
  | { e: 'metaset'; key: number; sreg: number }
  | { e: 'payload'; base: number; offset: number; len: number; dreg: number }
  | { e: 'cmp'; sreg: number; op: number; data: Buffer }
  | { e: 'lookup'; sreg: number; set: string; setId?: number; flags: number }
  | { e: 'ct'; key: number; dreg: number }
  | { e: 'ctset'; key: number; sreg: number }
  | { e: 'fib'; result: number; flags: number; dreg: number }
  | { e: 'bitwise'; sreg: number; dreg: number; len: number; mask: Buffer; xor: Buffer }
  | { e: 'socket'; key: number; dreg: number; level: number }
  | { e: 'objref'; type: number; name: string }
  | { e: 'log'; group: number; prefix: string }
  | { e: 'reject'; type: number; code: number }
  | { e: 'immediate'; dreg: number; code?: number; chain?: string; data?: Buffer }
  | { e: 'redir'; regMin: number; flags: number }
  /** Destination NAT to the address in `regAddr` and the port in `regProto` (one of each: no ranges). */
  | { e: 'nat'; type: number; family: number; regAddr: number; regProto: number; flags: number }
  | { e: 'masq'; flags: number }
  /** A packet-rate limit (`rate` per second) as the expression of a dynset: each element gets its own. */
  | { e: 'limit'; rate: number; unit: number; burst: number; type: number; flags: number }
  /** Updates an element keyed by a register in a set, then runs its expression on that element. */
  | { e: 'dynset'; op: number; sreg: number; set: string; setId?: number; timeoutMs: number; expr: LExpr }
  | { e: 'raw'; name: string; hex: string };

/** How each selector is loaded into a register, and how wide its value is. */
interface Load {
  exprs: (dreg: number) => LExpr[];
  /** Byte width of the value; integers are host order unless `be`. */
  width: number;
  be: boolean;
}

const LOADS: Record<Exclude<Selector, 'meta l4proto . th dport' | 'meta l4proto . th sport' | 'socket cgroupv2'>, Load> = {
  'ip daddr': { exprs: (r) => [{ e: 'payload', base: PAYLOAD_BASE.NETWORK, offset: 16, len: 4, dreg: r }], width: 4, be: true },
  'ip6 daddr': { exprs: (r) => [{ e: 'payload', base: PAYLOAD_BASE.NETWORK, offset: 24, len: 16, dreg: r }], width: 16, be: true },
  'ip saddr': { exprs: (r) => [{ e: 'payload', base: PAYLOAD_BASE.NETWORK, offset: 12, len: 4, dreg: r }], width: 4, be: true },
  'ip6 saddr': { exprs: (r) => [{ e: 'payload', base: PAYLOAD_BASE.NETWORK, offset: 8, len: 16, dreg: r }], width: 16, be: true },
  'th dport': { exprs: (r) => [{ e: 'payload', base: PAYLOAD_BASE.TRANSPORT, offset: 2, len: 2, dreg: r }], width: 2, be: true },
  'th sport': { exprs: (r) => [{ e: 'payload', base: PAYLOAD_BASE.TRANSPORT, offset: 0, len: 2, dreg: r }], width: 2, be: true },
  'icmpv6 type': { exprs: (r) => [{ e: 'payload', base: PAYLOAD_BASE.TRANSPORT, offset: 0, len: 1, dreg: r }], width: 1, be: true },
  'meta l4proto': { exprs: (r) => [{ e: 'meta', key: META.L4PROTO, dreg: r }], width: 1, be: false },
  'meta nfproto': { exprs: (r) => [{ e: 'meta', key: META.NFPROTO, dreg: r }], width: 1, be: false },
  'meta oif': { exprs: (r) => [{ e: 'meta', key: META.OIF, dreg: r }], width: 4, be: false },
  'meta oifname': { exprs: (r) => [{ e: 'meta', key: META.OIFNAME, dreg: r }], width: 16, be: false },
  'meta iifname': { exprs: (r) => [{ e: 'meta', key: META.IIFNAME, dreg: r }], width: 16, be: false },
  'meta skuid': { exprs: (r) => [{ e: 'meta', key: META.SKUID, dreg: r }], width: 4, be: false },
  'meta mark': { exprs: (r) => [{ e: 'meta', key: META.MARK, dreg: r }], width: 4, be: false },
  // NFT_FIB_RESULT_ADDRTYPE of the destination (NFTA_FIB_F_DADDR): an RTN_* value in host order.
  'fib daddr type': { exprs: (r) => [{ e: 'fib', result: 3, flags: 2, dreg: r }], width: 4, be: false },
  // The same for the source address (NFTA_FIB_F_SADDR).
  'fib saddr type': { exprs: (r) => [{ e: 'fib', result: 3, flags: 1, dreg: r }], width: 4, be: false },
  'ct direction': { exprs: (r) => [{ e: 'ct', key: CT_DIRECTION, dreg: r }], width: 1, be: false },
  'ct mark': { exprs: (r) => [{ e: 'ct', key: CT_MARK, dreg: r }], width: 4, be: false },
  'ct status': { exprs: (r) => [{ e: 'ct', key: CT_STATUS, dreg: r }], width: 4, be: false },
  'socket mark': { exprs: (r) => [{ e: 'socket', key: SOCKET_MARK, dreg: r, level: 0 }], width: 4, be: false },
};

/** The transport-port offset of each concatenated `meta l4proto . th Xport` selector. */
const CONCAT_PORT: Record<'meta l4proto . th dport' | 'meta l4proto . th sport', number> = { 'meta l4proto . th dport': 2, 'meta l4proto . th sport': 0 };

/** Encodes an integer of `width` bytes (host order = little-endian, or big-endian). */
export function intBytes(value: number | bigint, width: number, be: boolean): Buffer {
  const b = Buffer.alloc(width);
  let v = BigInt(value);
  for (let i = 0; i < width; i++) {
    b[be ? width - 1 - i : i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

export function bytesInt(b: Buffer, be: boolean): bigint {
  let v = 0n;
  for (let i = 0; i < b.length; i++) v = (v << 8n) | BigInt(b[be ? i : b.length - 1 - i] ?? 0);
  return v;
}

const CT_DIRECTION = 1;
/** NFT_CT_ZONE: the conntrack zone (a host-order u16). */
const CT_ZONE = 17;

const CT_ORDER: CtState[] = ['invalid', 'established', 'related', 'new', 'untracked'];

/** Lowers one statement to kernel expressions. */
export function stmtToLExprs(s: Stmt): LExpr[] {
  switch (s.k) {
    case 'cmp': {
      const load = LOADS[s.sel];
      const masked: LExpr[] =
        s.mask === undefined ? [] : [{ e: 'bitwise', sreg: REG_1, dreg: REG_1, len: load.width, mask: intBytes(s.mask, load.width, load.be), xor: Buffer.alloc(load.width) }];
      return [...load.exprs(REG_1), ...masked, { e: 'cmp', sreg: REG_1, op: s.op === 'eq' ? CMP_EQ : CMP_NEQ, data: intBytes(s.value, load.width, load.be) }];
    }
    case 'lookup': {
      const flags = s.neg ? LOOKUP_F_INV : 0;
      if (s.sel === 'meta l4proto . th dport' || s.sel === 'meta l4proto . th sport') {
        return [
          { e: 'meta', key: META.L4PROTO, dreg: REG_1 },
          { e: 'payload', base: PAYLOAD_BASE.TRANSPORT, offset: CONCAT_PORT[s.sel], len: 2, dreg: REG32_01 },
          { e: 'lookup', sreg: REG_1, set: s.set, flags },
        ];
      }
      if (s.sel === 'socket cgroupv2') {
        return [
          { e: 'socket', key: SOCKET_CGROUPV2, dreg: REG_1, level: s.level ?? 0 },
          { e: 'lookup', sreg: REG_1, set: s.set, flags },
        ];
      }
      return [...LOADS[s.sel].exprs(REG_1), { e: 'lookup', sreg: REG_1, set: s.set, flags }];
    }
    case 'ct': {
      let mask = 0;
      for (const st of s.states) mask |= CT_STATE_BITS[st];
      return [
        { e: 'ct', key: CT_STATE, dreg: REG_1 },
        { e: 'bitwise', sreg: REG_1, dreg: REG_1, len: 4, mask: intBytes(mask, 4, false), xor: Buffer.alloc(4) },
        { e: 'cmp', sreg: REG_1, op: CMP_NEQ, data: Buffer.alloc(4) },
      ];
    }
    case 'counter':
      return [{ e: 'objref', type: OBJECT_COUNTER, name: s.name }];
    case 'limit':
      return [{ e: 'objref', type: OBJECT_LIMIT, name: s.name }];
    case 'log':
      return [{ e: 'log', group: s.group, prefix: s.prefix }];
    case 'meter':
      return [
        ...LOADS[s.sel].exprs(REG_1),
        {
          e: 'dynset',
          op: DYNSET_OP_UPDATE,
          sreg: REG_1,
          set: s.set,
          timeoutMs: s.timeoutMs,
          expr: { e: 'limit', rate: s.rate, unit: 1, burst: s.burst, type: LIMIT_PKTS, flags: s.over ? LIMIT_F_INV : 0 },
        },
      ];
    case 'reject':
      return [s.how === 'tcp-reset' ? { e: 'reject', type: REJECT_TCP_RST, code: 0 } : { e: 'reject', type: REJECT_ICMPX_UNREACH, code: ICMPX_ADMIN_PROHIBITED }];
    case 'redirect':
      return [
        { e: 'immediate', dreg: REG_1, data: intBytes(s.port, 2, true) },
        // NF_NAT_RANGE_PROTO_SPECIFIED: the port in the register is the target.
        { e: 'redir', regMin: REG_1, flags: 2 },
      ];
    case 'dnat':
      return [
        { e: 'immediate', dreg: REG_1, data: intBytes(s.addr, s.family === 4 ? 4 : 16, true) },
        { e: 'immediate', dreg: REG_2, data: intBytes(s.port, 2, true) },
        { e: 'nat', type: NAT_DNAT, family: s.family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6, regAddr: REG_1, regProto: REG_2, flags: NAT_RANGE_ADDR_PORT },
      ];
    case 'masquerade':
      return [{ e: 'masq', flags: 0 }];
    case 'ct-mark-set':
      // ct mark = (ct mark & ~mask) ^ value, with value inside mask: the other bits are someone else's.
      return [
        { e: 'ct', key: CT_MARK, dreg: REG_1 },
        { e: 'bitwise', sreg: REG_1, dreg: REG_1, len: 4, mask: intBytes(~s.mask >>> 0, 4, false), xor: intBytes(s.value & s.mask, 4, false) },
        { e: 'ctset', key: CT_MARK, sreg: REG_1 },
      ];
    case 'mark-set':
      return [
        { e: 'immediate', dreg: REG_1, data: intBytes(s.value, 4, false) },
        { e: 'metaset', key: META.MARK, sreg: REG_1 },
      ];
    case 'mark-set-cgroup':
      return [
        { e: 'socket', key: SOCKET_CGROUPV2, dreg: REG_1, level: s.level },
        { e: 'metaset', key: META.MARK, sreg: REG_1 },
      ];
    case 'mark-set-skuid':
      return [
        { e: 'meta', key: META.SKUID, dreg: REG_1 },
        { e: 'metaset', key: META.MARK, sreg: REG_1 },
      ];
    case 'ct-zone-set':
      return [
        { e: 'immediate', dreg: REG_1, data: intBytes(s.zone, 2, false) },
        { e: 'ctset', key: CT_ZONE, sreg: REG_1 },
      ];
    case 'verdict': {
      const code = { accept: NF_ACCEPT, drop: NF_DROP, return: NFT_RETURN, continue: NFT_CONTINUE }[s.v];
      return [{ e: 'immediate', dreg: REG_VERDICT, code }];
    }
    case 'goto':
    case 'jump':
      return [{ e: 'immediate', dreg: REG_VERDICT, code: s.k === 'goto' ? NFT_GOTO : NFT_JUMP, chain: s.chain }];
    case 'unknown':
      throw new Error('cannot encode an unknown statement');
  }
}

function sameLoad(a: LExpr[], b: LExpr[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Raises kernel expressions back to statements: the inverse of stmtToLExprs.
 * Greedy pattern matching; whatever does not match exactly becomes `unknown`,
 * so a rule that was edited by hand never compares equal to a compiled one.
 */
export function lexprsToStmts(list: LExpr[]): Stmt[] {
  const out: Stmt[] = [];
  let i = 0;
  const at = (k: number) => list[i + k];
  outer: while (i < list.length) {
    const x = at(0);
    if (!x) break;
    // ct state
    const b = at(1);
    const c = at(2);
    if (x.e === 'ct' && x.key === CT_STATE && x.dreg === REG_1 && b?.e === 'bitwise' && c?.e === 'cmp') {
      if (b.sreg === REG_1 && b.dreg === REG_1 && b.len === 4 && b.xor.equals(Buffer.alloc(4)) && c.op === CMP_NEQ && c.sreg === REG_1 && c.data.equals(Buffer.alloc(4))) {
        const mask = Number(bytesInt(b.mask, false));
        const states = CT_ORDER.filter((st) => mask & CT_STATE_BITS[st]);
        let rebuilt = 0;
        for (const st of states) rebuilt |= CT_STATE_BITS[st];
        if (rebuilt === mask && states.length > 0) {
          out.push({ k: 'ct', states });
          i += 3;
          continue;
        }
      }
    }
    // ct mark set (ct mark & ~mask) ^ value
    if (x.e === 'ct' && x.key === CT_MARK && x.dreg === REG_1 && b?.e === 'bitwise' && c?.e === 'ctset' && c.key === CT_MARK && c.sreg === REG_1) {
      if (b.sreg === REG_1 && b.dreg === REG_1 && b.len === 4 && b.mask.length === 4 && b.xor.length === 4) {
        const mask = ~Number(bytesInt(b.mask, false)) >>> 0;
        const value = Number(bytesInt(b.xor, false));
        if ((value & ~mask) === 0) {
          out.push({ k: 'ct-mark-set', mask, value });
          i += 3;
          continue;
        }
      }
    }
    // a masked compare: load, AND with a mask, compare
    if (b?.e === 'bitwise' && c?.e === 'cmp' && b.sreg === REG_1 && b.dreg === REG_1 && c.sreg === REG_1) {
      for (const sel of ['ct mark', 'ct status'] as const) {
        const load = LOADS[sel];
        // Widths first: every length here came from the kernel (or an attacker's table) and may be anything.
        if (b.len !== load.width || b.mask.length !== load.width || b.xor.length !== load.width || c.data.length !== load.width) continue;
        if (!sameLoad([x], load.exprs(REG_1)) || !b.xor.equals(Buffer.alloc(load.width)) || (c.op !== CMP_EQ && c.op !== CMP_NEQ)) continue;
        out.push({ k: 'cmp', sel, op: c.op === CMP_EQ ? 'eq' : 'neq', value: Number(bytesInt(c.data, load.be)), mask: Number(bytesInt(b.mask, load.be)) });
        i += 3;
        continue outer;
      }
    }
    // concatenated proto . port lookup
    if (x.e === 'meta' && x.key === META.L4PROTO && x.dreg === REG_1 && b?.e === 'payload' && c?.e === 'lookup') {
      const sel = b.offset === 2 ? 'meta l4proto . th dport' : b.offset === 0 ? 'meta l4proto . th sport' : undefined;
      if (sel && b.base === PAYLOAD_BASE.TRANSPORT && b.len === 2 && b.dreg === REG32_01 && c.sreg === REG_1) {
        out.push(withNeg({ k: 'lookup', sel, set: c.set }, c.flags));
        i += 3;
        continue;
      }
    }
    if (x.e === 'socket' && x.key === SOCKET_CGROUPV2 && x.dreg === REG_1 && b?.e === 'metaset' && b.key === META.MARK && b.sreg === REG_1) {
      out.push({ k: 'mark-set-cgroup', level: x.level });
      i += 2;
      continue;
    }
    if (x.e === 'meta' && x.key === META.SKUID && x.dreg === REG_1 && b?.e === 'metaset' && b.key === META.MARK && b.sreg === REG_1) {
      out.push({ k: 'mark-set-skuid' });
      i += 2;
      continue;
    }
    if (x.e === 'immediate' && x.dreg === REG_1 && x.data?.length === 2 && b?.e === 'ctset' && b.key === CT_ZONE && b.sreg === REG_1) {
      out.push({ k: 'ct-zone-set', zone: Number(bytesInt(x.data, false)) });
      i += 2;
      continue;
    }
    if (x.e === 'immediate' && x.dreg === REG_1 && x.data?.length === 4 && b?.e === 'metaset' && b.key === META.MARK && b.sreg === REG_1) {
      out.push({ k: 'mark-set', value: Number(bytesInt(x.data, false)) });
      i += 2;
      continue;
    }
    if (x.e === 'socket' && x.key === SOCKET_CGROUPV2 && x.dreg === REG_1 && b?.e === 'lookup' && b.sreg === REG_1) {
      out.push(withNeg({ k: 'lookup', sel: 'socket cgroupv2', set: b.set, level: x.level }, b.flags));
      i += 2;
      continue;
    }
    const loadable = x.e === 'meta' || x.e === 'payload' || x.e === 'fib' || (x.e === 'ct' && (x.key === CT_DIRECTION || x.key === CT_MARK || x.key === CT_STATUS)) || (x.e === 'socket' && x.key === SOCKET_MARK);
    if (loadable && b && (b.e === 'cmp' || b.e === 'lookup') && b.sreg === REG_1) {
      for (const [sel, load] of Object.entries(LOADS) as [keyof typeof LOADS, Load][]) {
        if (!sameLoad([x], load.exprs(REG_1))) continue;
        if (b.e === 'lookup') {
          out.push(withNeg({ k: 'lookup', sel, set: b.set }, b.flags));
          i += 2;
          continue outer;
        }
        if (b.data.length === load.width && (b.op === CMP_EQ || b.op === CMP_NEQ) && load.width <= 4) {
          out.push({ k: 'cmp', sel, op: b.op === CMP_EQ ? 'eq' : 'neq', value: Number(bytesInt(b.data, load.be)) });
          i += 2;
          continue outer;
        }
      }
    }
    if (x.e === 'meta' && x.key === META.SKUID && x.dreg === REG_1 && b?.e === 'dynset') {
      const l = b.expr;
      if (b.op === DYNSET_OP_UPDATE && b.sreg === REG_1 && l.e === 'limit' && l.unit === 1 && l.type === LIMIT_PKTS && (l.flags === 0 || l.flags === LIMIT_F_INV) && l.burst >= 0) {
        out.push({ k: 'meter', sel: 'meta skuid', set: b.set, timeoutMs: b.timeoutMs, rate: l.rate, burst: l.burst, over: l.flags === LIMIT_F_INV });
        i += 2;
        continue;
      }
    }
    if (x.e === 'objref' && (x.type === OBJECT_COUNTER || x.type === OBJECT_LIMIT)) {
      out.push(x.type === OBJECT_COUNTER ? { k: 'counter', name: x.name } : { k: 'limit', name: x.name });
      i += 1;
      continue;
    }
    if (x.e === 'log') {
      out.push({ k: 'log', group: x.group, prefix: x.prefix });
      i += 1;
      continue;
    }
    if (x.e === 'reject') {
      if (x.type === REJECT_TCP_RST && x.code === 0) {
        out.push({ k: 'reject', how: 'tcp-reset' });
        i += 1;
        continue;
      }
      if (x.type === REJECT_ICMPX_UNREACH && x.code === ICMPX_ADMIN_PROHIBITED) {
        out.push({ k: 'reject', how: 'icmpx-admin' });
        i += 1;
        continue;
      }
    }
    if (x.e === 'immediate' && x.dreg === REG_1 && x.data?.length === 2 && b?.e === 'redir' && b.regMin === REG_1 && b.flags === 2) {
      out.push({ k: 'redirect', port: x.data.readUInt16BE(0) });
      i += 2;
      continue;
    }
    if (x.e === 'immediate' && x.dreg === REG_1 && (x.data?.length === 4 || x.data?.length === 16) && b?.e === 'immediate' && b.dreg === REG_2 && b.data?.length === 2 && c?.e === 'nat') {
      const family = x.data.length === 4 ? 4 : 6;
      if (c.type === NAT_DNAT && c.family === (family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6) && c.regAddr === REG_1 && c.regProto === REG_2 && c.flags === NAT_RANGE_ADDR_PORT) {
        out.push({ k: 'dnat', family, addr: bytesInt(x.data, true), port: b.data.readUInt16BE(0) });
        i += 3;
        continue;
      }
    }
    if (x.e === 'masq' && x.flags === 0) {
      out.push({ k: 'masquerade' });
      i += 1;
      continue;
    }
    if (x.e === 'immediate' && x.dreg === REG_VERDICT && x.code !== undefined) {
      const simple: Record<number, 'accept' | 'drop' | 'return' | 'continue'> = {
        [NF_ACCEPT]: 'accept',
        [NF_DROP]: 'drop',
        [NFT_RETURN]: 'return',
        [NFT_CONTINUE]: 'continue',
      };
      const v = simple[x.code];
      if (v && x.chain === undefined) {
        out.push({ k: 'verdict', v });
        i += 1;
        continue;
      }
      if ((x.code === NFT_GOTO || x.code === NFT_JUMP) && x.chain !== undefined) {
        out.push({ k: x.code === NFT_GOTO ? 'goto' : 'jump', chain: x.chain });
        i += 1;
        continue;
      }
    }
    out.push({ k: 'unknown', text: describeLExpr(x) });
    i += 1;
  }
  return out;
}

function withNeg(s: Extract<Stmt, { k: 'lookup' }>, flags: number): Stmt {
  return flags & LOOKUP_F_INV ? { ...s, neg: true } : s;
}

/** A short human description of a kernel expression, for `unknown` statements. */
export function describeLExpr(x: LExpr): string {
  const { e, ...rest } = x;
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${Buffer.isBuffer(v) ? v.toString('hex') : typeof v === 'object' && v !== null ? describeLExpr(v as LExpr) : String(v)}`)
    .join(' ');
  return `[${e}${fields ? ` ${fields}` : ''}]`;
}

/** Writes one expression as an NFTA_LIST_ELEM (or as another attribute holding one expression, such as a dynset's). */
export function writeLExpr(w: NlWriter, x: LExpr, attr: number = LIST_ELEM): void {
  w.nest(attr, () => {
    const name = x.e === 'raw' ? x.name : x.e === 'metaset' ? 'meta' : x.e === 'ctset' ? 'ct' : x.e;
    w.str(EXPR.NAME, name);
    w.nest(EXPR.DATA, () => {
      switch (x.e) {
        case 'meta':
          w.u32be(A.meta.DREG, x.dreg).u32be(A.meta.KEY, x.key);
          break;
        case 'metaset':
          w.u32be(A.meta.KEY, x.key).u32be(A.meta.SREG, x.sreg);
          break;
        case 'payload':
          w.u32be(A.payload.DREG, x.dreg).u32be(A.payload.BASE, x.base).u32be(A.payload.OFFSET, x.offset).u32be(A.payload.LEN, x.len);
          break;
        case 'cmp':
          w.u32be(A.cmp.SREG, x.sreg).u32be(A.cmp.OP, x.op).nest(A.cmp.DATA, () => w.bytes(DATA.VALUE, x.data));
          break;
        case 'lookup':
          w.str(A.lookup.SET, x.set).u32be(A.lookup.SREG, x.sreg);
          if (x.setId !== undefined) w.u32be(A.lookup.SET_ID, x.setId);
          if (x.flags) w.u32be(A.lookup.FLAGS, x.flags);
          break;
        case 'ct':
          w.u32be(A.ct.DREG, x.dreg).u32be(A.ct.KEY, x.key);
          break;
        case 'ctset':
          w.u32be(A.ct.KEY, x.key).u32be(A.ct.SREG, x.sreg);
          break;
        case 'fib':
          w.u32be(A.fib.DREG, x.dreg).u32be(A.fib.RESULT, x.result).u32be(A.fib.FLAGS, x.flags);
          break;
        case 'bitwise':
          w.u32be(A.bitwise.SREG, x.sreg).u32be(A.bitwise.DREG, x.dreg).u32be(A.bitwise.LEN, x.len);
          w.nest(A.bitwise.MASK, () => w.bytes(DATA.VALUE, x.mask));
          w.nest(A.bitwise.XOR, () => w.bytes(DATA.VALUE, x.xor));
          break;
        case 'socket':
          w.u32be(A.socket.KEY, x.key).u32be(A.socket.DREG, x.dreg);
          // The level is an attribute of cgroupv2 lookups only; the kernel rejects it on nothing, but does not report it back either.
          if (x.key === SOCKET_CGROUPV2) w.u32be(A.socket.LEVEL, x.level);
          break;
        case 'objref':
          w.u32be(A.objref.IMM_TYPE, x.type).str(A.objref.IMM_NAME, x.name);
          break;
        case 'log':
          w.u16be(A.log.GROUP, x.group).str(A.log.PREFIX, x.prefix);
          break;
        case 'reject':
          w.u32be(A.reject.TYPE, x.type).u8(A.reject.ICMP_CODE, x.code);
          break;
        case 'immediate':
          w.u32be(A.immediate.DREG, x.dreg);
          w.nest(A.immediate.DATA, () => {
            if (x.dreg === REG_VERDICT) {
              w.nest(DATA.VERDICT, () => {
                w.u32be(VERDICT.CODE, x.code ?? NF_ACCEPT);
                if (x.chain !== undefined) w.str(VERDICT.CHAIN, x.chain);
              });
            } else {
              w.bytes(DATA.VALUE, x.data ?? Buffer.alloc(0));
            }
          });
          break;
        case 'redir':
          w.u32be(A.redir.REG_PROTO_MIN, x.regMin).u32be(A.redir.FLAGS, x.flags);
          break;
        case 'nat':
          w.u32be(A.nat.TYPE, x.type).u32be(A.nat.FAMILY, x.family).u32be(A.nat.REG_ADDR_MIN, x.regAddr).u32be(A.nat.REG_PROTO_MIN, x.regProto).u32be(A.nat.FLAGS, x.flags);
          break;
        case 'masq':
          if (x.flags) w.u32be(A.masq.FLAGS, x.flags);
          break;
        case 'limit':
          w.u64be(A.limit.RATE, BigInt(x.rate)).u64be(A.limit.UNIT, BigInt(x.unit)).u32be(A.limit.BURST, x.burst).u32be(A.limit.TYPE, x.type).u32be(A.limit.FLAGS, x.flags);
          break;
        case 'dynset':
          w.str(A.dynset.SET_NAME, x.set);
          if (x.setId !== undefined) w.u32be(A.dynset.SET_ID, x.setId);
          w.u32be(A.dynset.OP, x.op).u32be(A.dynset.SREG_KEY, x.sreg).u64be(A.dynset.TIMEOUT, BigInt(x.timeoutMs));
          writeLExpr(w, x.expr, A.dynset.EXPR);
          break;
        case 'raw':
          throw new Error('cannot encode a raw expression');
      }
    });
  });
}

function dataValue(b: Buffer | undefined): Buffer {
  if (!b) return Buffer.alloc(0);
  return attrMap(b).get(DATA.VALUE) ?? Buffer.alloc(0);
}

/** Reads one NFTA_LIST_ELEM expression from a dump. Unknown expressions become `raw`. */
export function readLExpr(elem: Buffer): LExpr {
  const top = attrMap(elem);
  const name = attrStr(top.get(EXPR.NAME)) ?? '?';
  const data = top.get(EXPR.DATA) ?? Buffer.alloc(0);
  const m = attrMap(data);
  const u = (t: number) => attrU32(m.get(t)) ?? -1;
  switch (name) {
    case 'meta':
      if (m.has(A.meta.SREG)) {
        if (m.has(A.meta.DREG)) break;
        return { e: 'metaset', key: u(A.meta.KEY), sreg: u(A.meta.SREG) };
      }
      return { e: 'meta', key: u(A.meta.KEY), dreg: u(A.meta.DREG) };
    case 'payload':
      if (!m.has(A.payload.DREG)) break;
      return { e: 'payload', base: u(A.payload.BASE), offset: u(A.payload.OFFSET), len: u(A.payload.LEN), dreg: u(A.payload.DREG) };
    case 'cmp':
      return { e: 'cmp', sreg: u(A.cmp.SREG), op: u(A.cmp.OP), data: dataValue(m.get(A.cmp.DATA)) };
    case 'lookup':
      if (m.has(A.lookup.DREG)) break;
      return { e: 'lookup', sreg: u(A.lookup.SREG), set: attrStr(m.get(A.lookup.SET)) ?? '', flags: attrU32(m.get(A.lookup.FLAGS)) ?? 0 };
    case 'ct':
      if (m.has(A.ct.SREG)) {
        if (m.has(A.ct.DREG) || m.has(A.ct.DIRECTION)) break;
        return { e: 'ctset', key: u(A.ct.KEY), sreg: u(A.ct.SREG) };
      }
      if (!m.has(A.ct.DREG) || m.has(A.ct.DIRECTION)) break;
      return { e: 'ct', key: u(A.ct.KEY), dreg: u(A.ct.DREG) };
    case 'bitwise':
      if (m.has(6) && u(6) !== 0) break; // NFTA_BITWISE_OP other than mask-and-xor
      return { e: 'bitwise', sreg: u(A.bitwise.SREG), dreg: u(A.bitwise.DREG), len: u(A.bitwise.LEN), mask: dataValue(m.get(A.bitwise.MASK)), xor: dataValue(m.get(A.bitwise.XOR)) };
    case 'socket':
      return { e: 'socket', key: u(A.socket.KEY), dreg: u(A.socket.DREG), level: attrU32(m.get(A.socket.LEVEL)) ?? 0 };
    case 'fib':
      return { e: 'fib', result: u(A.fib.RESULT), flags: u(A.fib.FLAGS), dreg: u(A.fib.DREG) };
    case 'objref':
      if (!m.has(A.objref.IMM_NAME)) break;
      return { e: 'objref', type: u(A.objref.IMM_TYPE), name: attrStr(m.get(A.objref.IMM_NAME)) ?? '' };
    case 'log':
      if (m.has(A.log.LEVEL) || m.has(A.log.FLAGS) || !m.has(A.log.GROUP)) break;
      return { e: 'log', group: attrU16(m.get(A.log.GROUP)) ?? -1, prefix: attrStr(m.get(A.log.PREFIX)) ?? '' };
    case 'reject':
      return { e: 'reject', type: u(A.reject.TYPE), code: m.get(A.reject.ICMP_CODE)?.[0] ?? 0 };
    case 'immediate': {
      const dreg = u(A.immediate.DREG);
      const d = attrMap(m.get(A.immediate.DATA) ?? Buffer.alloc(0));
      const verdict = d.get(DATA.VERDICT);
      if (verdict) {
        const v = attrMap(verdict);
        const chain = attrStr(v.get(VERDICT.CHAIN));
        const code = attrI32(v.get(VERDICT.CODE)) ?? 0;
        return chain === undefined ? { e: 'immediate', dreg, code } : { e: 'immediate', dreg, code, chain };
      }
      return { e: 'immediate', dreg, data: d.get(DATA.VALUE) ?? Buffer.alloc(0) };
    }
    case 'limit': {
      const rate = attrU64(m.get(A.limit.RATE));
      const unit = attrU64(m.get(A.limit.UNIT));
      if (rate === undefined || unit === undefined || rate > BigInt(Number.MAX_SAFE_INTEGER) || unit > BigInt(Number.MAX_SAFE_INTEGER)) break;
      return { e: 'limit', rate: Number(rate), unit: Number(unit), burst: u(A.limit.BURST), type: u(A.limit.TYPE), flags: attrU32(m.get(A.limit.FLAGS)) ?? 0 };
    }
    case 'dynset': {
      // One expression, no data register (not a map), no flags (NFT_DYNSET_F_INV): anything else is not Sluice's.
      const inner = m.get(A.dynset.EXPR);
      const timeout = attrU64(m.get(A.dynset.TIMEOUT)) ?? 0n;
      if (!inner || m.has(A.dynset.SREG_DATA) || m.has(A.dynset.EXPRESSIONS) || (attrU32(m.get(A.dynset.FLAGS)) ?? 0) !== 0 || timeout > BigInt(Number.MAX_SAFE_INTEGER)) break;
      return { e: 'dynset', op: u(A.dynset.OP), sreg: u(A.dynset.SREG_KEY), set: attrStr(m.get(A.dynset.SET_NAME)) ?? '', timeoutMs: Number(timeout), expr: readLExpr(inner) };
    }
    case 'nat':
      // One address and one port: the kernel reports each max register equal to its min one when only min was given.
      if (m.has(A.nat.REG_ADDR_MAX) && u(A.nat.REG_ADDR_MAX) !== u(A.nat.REG_ADDR_MIN)) break;
      if (m.has(A.nat.REG_PROTO_MAX) && u(A.nat.REG_PROTO_MAX) !== u(A.nat.REG_PROTO_MIN)) break;
      return { e: 'nat', type: u(A.nat.TYPE), family: u(A.nat.FAMILY), regAddr: u(A.nat.REG_ADDR_MIN), regProto: u(A.nat.REG_PROTO_MIN), flags: attrU32(m.get(A.nat.FLAGS)) ?? 0 };
    case 'masq':
      if (m.has(A.masq.REG_PROTO_MIN)) break;
      return { e: 'masq', flags: attrU32(m.get(A.masq.FLAGS)) ?? 0 };
    case 'redir':
      // The kernel reports the max register equal to the min one when only min was given.
      if (m.has(A.redir.REG_PROTO_MAX) && u(A.redir.REG_PROTO_MAX) !== u(A.redir.REG_PROTO_MIN)) break;
      return { e: 'redir', regMin: u(A.redir.REG_PROTO_MIN), flags: u(A.redir.FLAGS) };
  }
  return { e: 'raw', name, hex: data.toString('hex') };
}

/** Reads an NFTA_RULE_EXPRESSIONS list. */
export function readLExprs(list: Buffer): LExpr[] {
  return parseAttrs(list).map((a) => readLExpr(a.data));
}

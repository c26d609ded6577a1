import type { ChainDef, KeyType, Ruleset, SetDef, SetElem } from '../compile/ruleset.js';
import { bytesAddr } from '../net/ip.js';
import { attrMap, attrStr, attrU32, attrU64, parseAttrs, udataDecode, type NlMsg } from './nl-attr.js';
import {
  CHAIN,
  DATA,
  HOOK,
  HOOKNUM,
  LIST_ELEM,
  NF_ACCEPT,
  OBJ,
  OBJECT_COUNTER,
  OBJECT_LIMIT,
  RULE,
  SET,
  SET_DESC,
  SET_ELEM,
  SET_ELEM_F_CATCHALL,
  SET_ELEM_F_INTERVAL_END,
  SET_ELEM_LIST,
  SET_F,
  SET_FIELD_LEN,
  TABLE,
  UDATA_COMMENT,
  A,
} from './nl-constants.js';
import { KEY_INFO } from './nft-encode.js';
import { bytesInt, lexprsToStmts, readLExprs } from './nft-expr.js';

/** A decoded table: the IR, plus anything found that the IR cannot express (always drift). */
export interface LiveTable {
  ruleset: Ruleset;
  anomalies: string[];
  /** The netlink port of the socket that owns the table (flags owner), if one does. */
  owner?: number;
}

export interface CounterValue {
  packets: bigint;
  bytes: bigint;
}

const payloadAttrs = (m: NlMsg) => attrMap(m.payload, 4);

/** NFT_TABLE_F_* (linux/netfilter/nf_tables.h): a dormant table filters nothing; owner and persist tie it to a socket. */
const TABLE_FLAG_NAMES: [number, string][] = [
  [0x1, 'dormant'],
  [0x2, 'owner'],
  [0x4, 'persist'],
];

/** A table's flags in words (`dormant`, `0x8`...). */
export function tableFlagNames(flags: number): string {
  const names = TABLE_FLAG_NAMES.filter(([bit]) => flags & bit).map(([, n]) => n);
  const rest = flags & ~TABLE_FLAG_NAMES.reduce((m, [bit]) => m | bit, 0);
  if (rest) names.push(`0x${rest.toString(16)}`);
  return names.join(', ');
}

export function decodeTable(msg: NlMsg): { name: string; comment: string; flags: number; owner?: number } {
  const a = payloadAttrs(msg);
  const t: { name: string; comment: string; flags: number; owner?: number } = { name: attrStr(a.get(TABLE.NAME)) ?? '', comment: udataDecode(a.get(TABLE.USERDATA), UDATA_COMMENT.table) ?? '', flags: attrU32(a.get(TABLE.FLAGS)) ?? 0 };
  const owner = attrU32(a.get(TABLE.OWNER));
  if (owner !== undefined) t.owner = owner;
  return t;
}

export function decodeChain(msg: NlMsg): { table: string; chain: ChainDef; anomaly?: string } {
  const a = payloadAttrs(msg);
  const name = attrStr(a.get(CHAIN.NAME)) ?? '';
  const chain: ChainDef = { name, rules: [] };
  const comment = udataDecode(a.get(CHAIN.USERDATA), UDATA_COMMENT.chain);
  if (comment !== undefined) chain.comment = comment;
  let anomaly: string | undefined;
  const hook = a.get(CHAIN.HOOK);
  if (hook) {
    const h = attrMap(hook);
    const num = attrU32(h.get(HOOK.HOOKNUM));
    const prio = attrU32(h.get(HOOK.PRIORITY)) ?? 0;
    const hookName = (Object.entries(HOOKNUM) as [keyof typeof HOOKNUM, number][]).find(([, v]) => v === num)?.[0];
    const type = attrStr(a.get(CHAIN.TYPE));
    // A forward chain is a `sluice run` table's; in the host's table it still differs from the compiled one (drift).
    if (!hookName || (type !== 'filter' && type !== 'nat')) {
      anomaly = `chain ${name} has an unexpected hook or type`;
    } else {
      chain.base = {
        type,
        hook: hookName,
        priority: prio | 0,
        policy: attrU32(a.get(CHAIN.POLICY)) === NF_ACCEPT ? 'accept' : 'drop',
      };
    }
  }
  const result: { table: string; chain: ChainDef; anomaly?: string } = { table: attrStr(a.get(CHAIN.TABLE)) ?? '', chain };
  if (anomaly) result.anomaly = anomaly;
  return result;
}

export function decodeRule(msg: NlMsg): { table: string; chain: string; handle: bigint; rule: { stmts: ReturnType<typeof lexprsToStmts>; comment?: string } } {
  const a = payloadAttrs(msg);
  const exprs = a.get(RULE.EXPRESSIONS);
  const stmts = exprs ? lexprsToStmts(readLExprs(exprs)) : [];
  const comment = udataDecode(a.get(RULE.USERDATA), UDATA_COMMENT.rule);
  return {
    table: attrStr(a.get(RULE.TABLE)) ?? '',
    chain: attrStr(a.get(RULE.CHAIN)) ?? '',
    handle: attrU64(a.get(RULE.HANDLE)) ?? 0n,
    rule: comment !== undefined ? { stmts, comment } : { stmts },
  };
}

export function decodeSet(msg: NlMsg): { table: string; set: SetDef; anomaly?: string } {
  const a = payloadAttrs(msg);
  const name = attrStr(a.get(SET.NAME)) ?? '';
  const flags = attrU32(a.get(SET.FLAGS)) ?? 0;
  const dtype = attrU32(a.get(SET.KEY_TYPE));
  const klen = attrU32(a.get(SET.KEY_LEN));
  const key = (Object.entries(KEY_INFO) as [KeyType, (typeof KEY_INFO)[KeyType]][]).find(([, i]) => i.dtype === dtype && i.len === klen)?.[0];
  const set: SetDef = {
    name,
    key: key ?? 'mark',
    interval: (flags & SET_F.INTERVAL) !== 0,
    timeout: (flags & SET_F.TIMEOUT) !== 0,
    dynamic: (flags & SET_F.TIMEOUT) !== 0,
    elements: [],
  };
  if (flags & SET_F.EVAL) set.meter = true;
  const comment = udataDecode(a.get(SET.USERDATA), UDATA_COMMENT.set);
  if (comment !== undefined) set.comment = comment;
  const known = SET_F.INTERVAL | SET_F.TIMEOUT | SET_F.CONCAT | SET_F.EVAL;
  const out: { table: string; set: SetDef; anomaly?: string } = { table: attrStr(a.get(SET.TABLE)) ?? '', set };
  if (!key) out.anomaly = `set ${name} has a key type Sluice does not write (${dtype}/${klen})`;
  else if (flags & ~known) out.anomaly = `set ${name} has unexpected flags 0x${flags.toString(16)}`;
  else {
    // The fields of a concatenated interval set decide which bytes its lookups compare: [1, 1]
    // for proto . port would compare a port's high byte only. Only what the encoder writes passes.
    const fields = concatFields(a.get(SET.DESC));
    const want = set.interval ? KEY_INFO[key].fields : undefined;
    if ((fields ?? []).join(',') !== (want ?? []).join(',')) out.anomaly = `set ${name} has a field layout Sluice does not write (${fields ? `[${fields.join(', ')}]` : 'none'})`;
  }
  return out;
}

/** The field lengths of a set's NFTA_SET_DESC_CONCAT, if it has one. */
function concatFields(desc: Buffer | undefined): number[] | undefined {
  if (!desc) return undefined;
  const concat = attrMap(desc).get(SET_DESC.CONCAT);
  if (!concat) return undefined;
  return parseAttrs(concat)
    .filter((x) => x.type === LIST_ELEM)
    .map((x) => attrU32(attrMap(x.data).get(SET_FIELD_LEN)) ?? -1);
}

interface RawDumpElem {
  /** Empty for a catch-all element (it has no key). */
  key: Buffer;
  /** The element matches every key (NFT_SET_ELEM_CATCHALL), or came without one. */
  catchAll?: boolean;
  keyEnd?: Buffer;
  end: boolean;
  timeoutMs?: number;
  expiresMs?: number;
}

/** Parses the elements of GETSETELEM dump replies. */
export function decodeElemMessages(msgs: NlMsg[]): RawDumpElem[] {
  const out: RawDumpElem[] = [];
  for (const m of msgs) {
    const a = payloadAttrs(m);
    const list = a.get(SET_ELEM_LIST.ELEMENTS);
    if (!list) continue;
    for (const item of parseAttrs(list)) {
      if (item.type !== LIST_ELEM) continue;
      const e = attrMap(item.data);
      const keyNest = e.get(SET_ELEM.KEY);
      const flags = attrU32(e.get(SET_ELEM.FLAGS)) ?? 0;
      // A catch-all (or any element without a key) matches whatever is looked up: never skipped,
      // it is reported (elementsToIR).
      if (!keyNest || flags & SET_ELEM_F_CATCHALL) {
        out.push({ key: Buffer.alloc(0), catchAll: true, end: false });
        continue;
      }
      const key = attrMap(keyNest).get(DATA.VALUE) ?? Buffer.alloc(0);
      const endNest = e.get(SET_ELEM.KEY_END);
      const r: RawDumpElem = { key, end: (flags & SET_ELEM_F_INTERVAL_END) !== 0 };
      if (endNest) r.keyEnd = attrMap(endNest).get(DATA.VALUE) ?? Buffer.alloc(0);
      const t = attrU64(e.get(SET_ELEM.TIMEOUT));
      const x = attrU64(e.get(SET_ELEM.EXPIRATION));
      if (t !== undefined) r.timeoutMs = Number(t);
      if (x !== undefined) r.expiresMs = Number(x);
      out.push(r);
    }
  }
  return out;
}

function decrement(b: Buffer): Buffer {
  const out = Buffer.from(b);
  for (let i = out.length - 1; i >= 0; i--) {
    const v = out[i] ?? 0;
    if (v > 0) {
      out[i] = v - 1;
      return out;
    }
    out[i] = 0xff;
  }
  return out;
}

function ifnameOf(b: Buffer): string | null {
  const nul = b.indexOf(0);
  const name = b.subarray(0, nul >= 0 ? nul : b.length);
  if (nul >= 0 && b.subarray(nul).some((x) => x !== 0)) return null;
  return name.toString('latin1');
}

/** Turns kernel elements back into IR elements; anything irregular is reported, not guessed. */
export function elementsToIR(set: SetDef, dumped: RawDumpElem[], anomalies: string[]): SetElem[] {
  const out: SetElem[] = [];
  const raw = dumped.filter((r) => {
    if (r.catchAll) anomalies.push(`set ${set.name}: a catch-all element (it matches every key)`);
    return !r.catchAll;
  });
  const timing = (r: RawDumpElem) => ({
    ...(r.timeoutMs !== undefined ? { timeoutMs: r.timeoutMs } : {}),
    ...(r.expiresMs !== undefined ? { expiresMs: r.expiresMs } : {}),
  });
  if (set.key === 'inet_proto . inet_service') {
    for (const r of raw) {
      // An interval set's element has an inclusive end; a hash set's is one port.
      const end = set.interval ? r.keyEnd : r.keyEnd === undefined ? r.key : undefined;
      // Each field fills a 32-bit register: the protocol byte 0, the port bytes 4-5. The rest is
      // zero in what Sluice writes, and a hash set compares it too (an element with bytes 6-7 set
      // looks like its port and matches no packet).
      const padded = (b: Buffer) => b[1] !== 0 || b[2] !== 0 || b[3] !== 0 || b[6] !== 0 || b[7] !== 0;
      if (r.key.length !== 8 || !end || end.length !== 8 || padded(r.key) || padded(end)) {
        anomalies.push(`set ${set.name}: malformed element`);
        continue;
      }
      const proto = r.key.readUInt32LE(0);
      if (proto !== end.readUInt32LE(0)) {
        anomalies.push(`set ${set.name}: element spans protocols`);
        continue;
      }
      out.push({ t: 'protoport', proto, from: r.key.readUInt16BE(4), to: end.readUInt16BE(4) });
    }
    return out;
  }
  const width = KEY_INFO[set.key].len;
  const single = (key: Buffer, r: RawDumpElem): SetElem | null => {
    if (key.length !== width) return null;
    if (set.key === 'ipv4_addr' || set.key === 'ipv6_addr') {
      const v = bytesAddr(key);
      return { t: 'addr', family: set.key === 'ipv4_addr' ? 4 : 6, start: v, end: v, ...timing(r) };
    }
    if (set.key === 'ifname') {
      const n = ifnameOf(key);
      return n === null ? null : { t: 'ifname', name: n, wildcard: false };
    }
    if (set.key === 'inet_service') return { t: 'port', from: key.readUInt16BE(0), to: key.readUInt16BE(0) };
    return { t: 'num', value: bytesInt(key, false), ...timing(r) };
  };
  if (!set.interval) {
    for (const r of raw) {
      const e = single(r.key, r);
      if (e) out.push(e);
      else anomalies.push(`set ${set.name}: malformed element`);
    }
    return out;
  }
  // rbtree: pair each start with the next end in key order. Keys of any other
  // width are not something Sluice wrote: reported, never decoded.
  const wrongWidth = raw.filter((r) => r.key.length !== width);
  if (wrongWidth.length > 0) anomalies.push(`set ${set.name}: ${wrongWidth.length} element(s) with a key of the wrong length`);
  const sorted = raw.filter((r) => r.key.length === width).sort((x, y) => Buffer.compare(x.key, y.key) || (x.end ? -1 : 1));
  for (let i = 0; i < sorted.length; i++) {
    const s = sorted[i];
    if (!s || s.end) continue;
    const next = sorted[i + 1];
    const lastIncl = next && next.end ? decrement(next.key) : Buffer.alloc(width, 0xff);
    if (next && next.end) i++;
    if (set.key === 'ipv4_addr' || set.key === 'ipv6_addr') {
      out.push({ t: 'addr', family: set.key === 'ipv4_addr' ? 4 : 6, start: bytesAddr(s.key), end: bytesAddr(lastIncl) });
    } else if (set.key === 'inet_service') {
      out.push({ t: 'port', from: s.key.readUInt16BE(0), to: lastIncl.readUInt16BE(0) });
    } else if (set.key === 'ifname') {
      const name = ifnameOf(s.key);
      if (name !== null && lastIncl.equals(s.key)) {
        out.push({ t: 'ifname', name, wildcard: false });
        continue;
      }
      // A wildcard covers every name with the prefix: [prefix\0..., prefix+1\0...).
      const prefixEnd = next?.key;
      if (name !== null && name.length > 0 && name.length < width && prefixEnd) {
        const inc = Buffer.from(s.key.subarray(0, name.length));
        inc[inc.length - 1] = (inc[inc.length - 1] ?? 0) + 1;
        if (Buffer.concat([inc, Buffer.alloc(width - name.length)]).equals(prefixEnd)) {
          out.push({ t: 'ifname', name, wildcard: true });
          continue;
        }
      }
      anomalies.push(`set ${set.name}: interface range Sluice does not write`);
    } else {
      const a = bytesInt(s.key, false);
      const b = bytesInt(lastIncl, false);
      if (a !== b) anomalies.push(`set ${set.name}: range Sluice does not write`);
      else out.push({ t: 'num', value: a });
    }
  }
  return out;
}

export function decodeObj(msg: NlMsg): { table: string; name: string; type: number; comment?: string; counter?: CounterValue; limit?: { rate: number; burst: number; ok: boolean } } {
  const a = payloadAttrs(msg);
  const type = attrU32(a.get(OBJ.TYPE)) ?? 0;
  const data = attrMap(a.get(OBJ.DATA) ?? Buffer.alloc(0));
  const out: ReturnType<typeof decodeObj> = { table: attrStr(a.get(OBJ.TABLE)) ?? '', name: attrStr(a.get(OBJ.NAME)) ?? '', type };
  const comment = udataDecode(a.get(OBJ.USERDATA), UDATA_COMMENT.obj);
  if (comment !== undefined) out.comment = comment;
  if (type === OBJECT_COUNTER) {
    out.counter = { packets: attrU64(data.get(A.counter.PACKETS)) ?? 0n, bytes: attrU64(data.get(A.counter.BYTES)) ?? 0n };
  } else if (type === OBJECT_LIMIT) {
    const unit = attrU64(data.get(A.limit.UNIT));
    const ltype = attrU32(data.get(A.limit.TYPE));
    const flags = attrU32(data.get(A.limit.FLAGS)) ?? 0;
    out.limit = {
      rate: Number(attrU64(data.get(A.limit.RATE)) ?? 0n),
      burst: attrU32(data.get(A.limit.BURST)) ?? 0,
      ok: unit === 1n && ltype === 0 && flags === 0,
    };
  }
  return out;
}

import { formatAddr, formatRange } from '../net/ip.js';
import { sortElements } from './compile-ruleset.js';
import type { ChainDef, Ruleset, SetDef, SetElem, Stmt } from './ruleset.js';

/**
 * Renders a ruleset in nft's own syntax, for people: `plan`, golden files,
 * documentation. Sluice never feeds this text to nft; the kernel is written
 * through netlink from the same IR.
 */

const PROTO_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'ipv6-icmp' };
const NFPROTO_NAMES: Record<number, string> = { 2: 'ipv4', 10: 'ipv6' };
const ICMPV6_NAMES: Record<number, string> = {
  130: 'mld-listener-query',
  131: 'mld-listener-report',
  132: 'mld-listener-done',
  133: 'nd-router-solicit',
  134: 'nd-router-advert',
  135: 'nd-neighbor-solicit',
  136: 'nd-neighbor-advert',
  137: 'nd-redirect',
  143: 'mld2-listener-report',
};

const quote = (s: string) => JSON.stringify(s);

function ms(n: number): string {
  if (n % 86_400_000 === 0) return `${n / 86_400_000}d`;
  if (n % 3_600_000 === 0) return `${n / 3_600_000}h`;
  if (n % 60_000 === 0) return `${n / 60_000}m`;
  if (n % 1000 === 0) return `${n / 1000}s`;
  return `${n}ms`;
}

/** One set element in nft syntax. */
export function renderElement(set: Pick<SetDef, 'key'>, e: SetElem): string {
  let text: string;
  switch (e.t) {
    case 'addr':
      text = e.start === e.end ? formatAddr(e.family, e.start) : formatRange(e);
      break;
    case 'protoport':
      text = `${PROTO_NAMES[e.proto] ?? String(e.proto)} . ${e.from === e.to ? e.from : `${e.from}-${e.to}`}`;
      break;
    case 'ifname':
      text = quote(e.wildcard ? `${e.name}*` : e.name);
      break;
    case 'port':
      text = e.from === e.to ? String(e.from) : `${e.from}-${e.to}`;
      break;
    case 'num':
      text = set.key === 'icmpv6_type' ? (ICMPV6_NAMES[Number(e.value)] ?? String(e.value)) : String(e.value);
      break;
  }
  if ((e.t === 'addr' || e.t === 'num') && e.timeoutMs !== undefined) text += ` timeout ${ms(e.timeoutMs)}`;
  if ((e.t === 'addr' || e.t === 'num') && e.expiresMs !== undefined) text += ` expires ${ms(e.expiresMs)}`;
  return text;
}

function renderValue(sel: Extract<Stmt, { k: 'cmp' }>['sel'], v: number): string {
  switch (sel) {
    case 'meta l4proto':
      return PROTO_NAMES[v] ?? String(v);
    case 'meta nfproto':
      return NFPROTO_NAMES[v] ?? String(v);
    case 'meta mark':
    case 'ct mark':
    case 'socket mark':
      return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
    case 'ct status':
      return v === 0x20 ? 'dnat' : `0x${(v >>> 0).toString(16)}`;
    case 'icmpv6 type':
      return ICMPV6_NAMES[v] ?? String(v);
    case 'ip daddr':
    case 'ip saddr':
      return formatAddr(4, BigInt(v));
    case 'fib daddr type':
    case 'fib saddr type':
      return ({ 1: 'unicast', 2: 'local', 3: 'broadcast', 4: 'anycast', 5: 'multicast' } as Record<number, string>)[v] ?? String(v);
    case 'ct direction':
      return v === 1 ? 'reply' : v === 0 ? 'original' : String(v);
    default:
      return String(v);
  }
}

/** One statement in nft syntax. */
export function renderStmt(s: Stmt): string {
  switch (s.k) {
    case 'cmp':
      if (s.sel === 'meta oif' && s.value === 1) return s.op === 'eq' ? 'oif "lo"' : 'oif != "lo"';
      if (s.mask !== undefined) {
        const mask = s.sel === 'ct status' ? renderValue(s.sel, s.mask) : `0x${(s.mask >>> 0).toString(16).padStart(8, '0')}`;
        return `${s.sel} & ${mask} ${s.op === 'eq' ? '==' : '!='} ${renderValue(s.sel, s.value)}`;
      }
      // As the encoder writes it (nft-expr.ts): anything but 'eq' is CMP_NEQ. The text never shows what the kernel would not get.
      return `${s.sel} ${s.op === 'eq' ? '' : '!= '}${renderValue(s.sel, s.value)}`;
    case 'lookup': {
      const sel = s.sel === 'socket cgroupv2' ? `socket cgroupv2 level ${s.level ?? 0}` : s.sel;
      return `${sel} ${s.neg ? '!= ' : ''}@${s.set}`;
    }
    case 'ct':
      return `ct state ${s.states.join(',')}`;
    case 'counter':
      return `counter name ${quote(s.name)}`;
    case 'limit':
      return `limit name ${quote(s.name)}`;
    case 'log':
      return `log prefix ${quote(s.prefix)} group ${s.group}`;
    case 'meter':
      return `update @${s.set} { ${s.sel} timeout ${ms(s.timeoutMs)} limit rate ${s.over ? 'over ' : ''}${s.rate}/second burst ${s.burst} packets }`;
    case 'reject':
      return s.how === 'tcp-reset' ? 'reject with tcp reset' : 'reject with icmpx admin-prohibited';
    case 'redirect':
      return `redirect to :${s.port}`;
    case 'dnat':
      return s.family === 4 ? `dnat ip to ${formatAddr(4, s.addr)}:${s.port}` : `dnat ip6 to [${formatAddr(6, s.addr)}]:${s.port}`;
    case 'masquerade':
      return 'masquerade';
    case 'ct-mark-set': {
      const hex = (v: number) => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
      return `ct mark set ct mark & ${hex(~s.mask)} | ${hex(s.value)}`;
    }
    case 'mark-set':
      return `meta mark set 0x${s.value.toString(16).padStart(8, '0')}`;
    case 'mark-set-cgroup':
      return `meta mark set socket cgroupv2 level ${s.level}`;
    case 'mark-set-skuid':
      return 'meta mark set meta skuid';
    case 'ct-zone-set':
      return `ct zone set ${s.zone}`;
    case 'verdict':
      return s.v;
    case 'goto':
    case 'jump':
      return `${s.k} ${s.chain}`;
    case 'unknown':
      return `# not written by Sluice: ${s.text}`;
  }
}

const KEY_TEXT: Record<SetDef['key'], string> = {
  ipv4_addr: 'type ipv4_addr',
  ipv6_addr: 'type ipv6_addr',
  'inet_proto . inet_service': 'type inet_proto . inet_service',
  inet_service: 'type inet_service',
  ifname: 'type ifname',
  uid: 'type uid',
  cgroupv2: 'type cgroupsv2',
  icmpv6_type: 'type icmpv6_type',
  mark: 'type mark',
};

/** Options for rendering: large sets can be abbreviated for terminals. */
export interface RenderOptions {
  /** Print at most this many elements per set (default: all). */
  maxElements?: number;
}

function renderSet(s: SetDef, opts: RenderOptions): string[] {
  const lines = [`\tset ${s.name} {`, `\t\t${KEY_TEXT[s.key]}`];
  const flags = [s.meter ? 'dynamic' : '', s.interval ? 'interval' : '', s.timeout ? 'timeout' : ''].filter(Boolean);
  if (flags.length > 0) lines.push(`\t\tflags ${flags.join(',')}`);
  if (s.comment !== undefined) lines.push(`\t\tcomment ${quote(s.comment)}`);
  if (s.meter) {
    lines.push(`\t\t# kept by the kernel: one element per key, with its own rate limit${s.elements.length ? `: ${s.elements.length} now` : ''}`);
  } else if (s.dynamic) {
    lines.push(`\t\t# filled at run time by the DNS guard${s.elements.length ? `: ${s.elements.length} now` : ''}`);
  }
  const elems = sortElements(s.elements);
  if (elems.length > 0) {
    const max = opts.maxElements ?? Infinity;
    const shown = elems.slice(0, max).map((e) => renderElement(s, e));
    lines.push('\t\telements = {');
    shown.forEach((e, i) => lines.push(`\t\t\t${e}${i < shown.length - 1 || elems.length > shown.length ? ',' : ''}`));
    if (elems.length > shown.length) lines.push(`\t\t\t# ... ${elems.length - shown.length} more`);
    lines.push('\t\t}');
  }
  lines.push('\t}');
  return lines;
}

function renderChain(c: ChainDef): string[] {
  const lines = [`\tchain ${c.name} {`];
  if (c.comment !== undefined) lines.push(`\t\tcomment ${quote(c.comment)}`);
  if (c.base) {
    const prio = c.base.priority === 0 && c.base.type === 'filter' ? 'filter' : c.base.priority === -100 && c.base.type === 'nat' ? 'dstnat' : String(c.base.priority);
    lines.push(`\t\ttype ${c.base.type} hook ${c.base.hook} priority ${prio}; policy ${c.base.policy};`);
  }
  for (const r of c.rules) {
    const body = r.stmts.map(renderStmt).join(' ');
    lines.push(`\t\t${body}${r.comment !== undefined ? ` comment ${quote(r.comment)}` : ''}`);
  }
  lines.push('\t}');
  return lines;
}

/** The whole table in nft syntax. Objects are sorted by name so output is stable. */
export function renderRuleset(rs: Ruleset, opts: RenderOptions = {}): string {
  const byName = <T extends { name: string }>(xs: T[]) => [...xs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const lines = [`table inet ${rs.table} {`];
  if (rs.comment) lines.push(`\tcomment ${quote(rs.comment)}`);
  if (rs.owned) lines.push('\tflags owner, persist');
  for (const c of byName(rs.counters)) {
    lines.push(`\tcounter ${c.name} {${c.comment !== undefined ? ` comment ${quote(c.comment)}` : ''} }`);
  }
  for (const l of byName(rs.limits)) lines.push(`\tlimit ${l.name} { rate ${l.rate}/second burst ${l.burst} packets }`);
  for (const s of byName(rs.sets)) lines.push(...renderSet(s, opts));
  // Base chains first, in the order the packet meets them; then the rest by name.
  const base = rs.chains.filter((c) => c.base);
  const rest = byName(rs.chains.filter((c) => !c.base));
  for (const c of [...base, ...rest]) lines.push(...renderChain(c));
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

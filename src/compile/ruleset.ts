/**
 * The compiled ruleset: a closed, small vocabulary of nftables objects and
 * statements. The compiler produces it; the netlink encoder writes it to the
 * kernel; the netlink decoder reads the kernel back into it (so drift is an
 * IR comparison); the renderer prints it in nft syntax for people.
 *
 * Only constructs listed here can be written. The decoder maps anything else
 * it finds in Sluice's table to `unknown`, which never equals a compiled
 * statement, so tampering always shows as drift.
 */

export const TABLE_NAME = 'sluice';

export type KeyType =
  | 'ipv4_addr'
  | 'ipv6_addr'
  | 'inet_proto . inet_service'
  /** A transport port alone: a rule's port ranges of one protocol (behind `meta l4proto`). */
  | 'inet_service'
  | 'ifname'
  | 'uid'
  | 'cgroupv2'
  | 'icmpv6_type'
  | 'mark';

/** Set elements, by key type. Addresses are inclusive ranges; a host has start === end. */
export type SetElem =
  | { t: 'addr'; family: 4 | 6; start: bigint; end: bigint; timeoutMs?: number; expiresMs?: number }
  | { t: 'protoport'; proto: number; from: number; to: number }
  /** Ports from..to of an inet_service set (its protocol is the rule's `meta l4proto`). */
  | { t: 'port'; from: number; to: number }
  | { t: 'ifname'; name: string; wildcard: boolean }
  | { t: 'num'; value: bigint; timeoutMs?: number; expiresMs?: number };

export interface SetDef {
  name: string;
  key: KeyType;
  /** Interval set (prefixes, ranges, wildcards). */
  interval: boolean;
  /** Elements expire (filled at run time by the DNS guard). */
  timeout: boolean;
  /** Dynamic sets are filled at run time; their elements are not part of the compiled state. */
  dynamic: boolean;
  /**
   * Filled by the kernel from the packet path through a `meter` statement
   * (nft `flags dynamic`): one element per key with its own rate-limit state.
   * Its elements are never compared, read as learned addresses, or carried
   * across a replacement (a copied element would have no limit state).
   */
  meter?: boolean;
  /** For cgroupv2 sets: the ancestry level the rule matches at. Display only. */
  level?: number;
  elements: SetElem[];
  comment?: string;
}

type ProtoPort = Extract<SetElem, { t: 'protoport' }>;

const IPPROTO = { tcp: 6, udp: 17 } as const;

/**
 * A rule's ports as the sets its lookups go through, each one alternative of
 * the rule (one nft rule each): the single ports in a hash set of
 * `proto . port` (`p`), and the ranges of each protocol in a single-field
 * interval set of ports (`pt` for TCP, `pu` for UDP; an rbtree in the
 * kernel), looked up behind `meta l4proto`. Not a concatenated interval set:
 * that is a pipapo set, whose lookup cost 1.1 us more a new connection than
 * either of these (bench/results/README.md, "The datapath's own costs").
 * With each set, the statements that match a packet's port against it.
 */
export function rulePortSets(ports: readonly { proto: 'tcp' | 'udp'; from: number; to: number }[], name: (dim: 'p' | 'pt' | 'pu') => string, comment?: string): { set: SetDef; match: Stmt[] }[] {
  const out: { set: SetDef; match: Stmt[] }[] = [];
  const withComment = comment !== undefined ? { comment } : {};
  const singles = ports.filter((p) => p.from === p.to).map((p): ProtoPort => ({ t: 'protoport', proto: IPPROTO[p.proto], from: p.from, to: p.to }));
  if (singles.length > 0) {
    const set = protoPortSet({ name: name('p'), elements: singles, ...withComment });
    out.push({ set, match: [{ k: 'lookup', sel: 'meta l4proto . th dport', set: set.name }] });
  }
  for (const [proto, dim] of [['tcp', 'pt'], ['udp', 'pu']] as const) {
    const ranges = ports.filter((p) => p.from !== p.to && p.proto === proto);
    if (ranges.length === 0) continue;
    const set: SetDef = { name: name(dim), key: 'inet_service', interval: true, timeout: false, dynamic: false, elements: ranges.map((p) => ({ t: 'port', from: p.from, to: p.to })), ...withComment };
    out.push({ set, match: [{ k: 'cmp', sel: 'meta l4proto', op: 'eq', value: IPPROTO[proto] }, { k: 'lookup', sel: 'th dport', set: set.name }] });
  }
  return out;
}

/**
 * A set of protocol . port pairs (a rule's ports, DNS's, the reply ports).
 * A hash set when every element is a single port; an interval set only when
 * one is a range. A concatenated interval set is a pipapo set in the kernel,
 * whose lookup (vectorised, with the FPU saved and restored around it) cost
 * 0.4 to 1 us more a new connection than a hash set here
 * (bench/results/README.md, "The datapath's own costs").
 */
export function protoPortSet(def: { name: string; elements: ProtoPort[]; comment?: string }): SetDef {
  return {
    name: def.name,
    key: 'inet_proto . inet_service',
    interval: def.elements.some((e) => e.from !== e.to),
    timeout: false,
    dynamic: false,
    elements: def.elements,
    ...(def.comment !== undefined ? { comment: def.comment } : {}),
  };
}

export interface CounterDef {
  name: string;
  comment?: string;
}

export interface LimitDef {
  name: string;
  /** Packets per second. */
  rate: number;
  burst: number;
}

/** What a match reads from the packet or its socket. */
export type Selector =
  | 'ip daddr'
  | 'ip6 daddr'
  | 'ip saddr'
  | 'ip6 saddr'
  | 'meta l4proto'
  | 'meta nfproto'
  | 'meta oif'
  | 'meta oifname'
  /** The interface a packet came in on (forward, input, prerouting): how a `sluice run` table keys on its veth. */
  | 'meta iifname'
  | 'meta skuid'
  | 'meta mark'
  | 'th dport'
  | 'th sport'
  | 'icmpv6 type'
  | 'meta l4proto . th dport'
  /** Replies: the local port a packet of an inbound-initiated flow leaves from. */
  | 'meta l4proto . th sport'
  | 'socket cgroupv2'
  /** The mark of the socket the packet is delivered to (input hook): SO_MARK needs CAP_NET_ADMIN. */
  | 'socket mark'
  /** The flow's conntrack mark (Sluice owns 16 bits of it: src/compile/flow-mark.ts). */
  | 'ct mark'
  /** The flow's conntrack status bits (IPS_*: 0x20 is destination NAT, as by a redirect). */
  | 'ct status'
  /** The route type of the destination after NAT (2 = local). */
  | 'fib daddr type'
  /** The route type of the source address (2 = an address of this host). */
  | 'fib saddr type'
  /** 0: original direction, 1: reply. */
  | 'ct direction';

export type CtState = 'invalid' | 'established' | 'related' | 'new' | 'untracked';

export type Stmt =
  /**
   * Compare a selector to a constant. `value` is a number for integer
   * selectors. With `mask`, the selector's value is ANDed with it first
   * (4-byte host-order selectors only: ct mark, ct status).
   */
  | { k: 'cmp'; sel: Exclude<Selector, 'meta l4proto . th dport' | 'meta l4proto . th sport' | 'socket cgroupv2'>; op: 'eq' | 'neq'; value: number; mask?: number }
  /** Look the selector up in a named set. `level` applies to socket cgroupv2 only. */
  | { k: 'lookup'; sel: Selector; set: string; neg?: boolean; level?: number }
  /** ct state is any of the listed states. */
  | { k: 'ct'; states: CtState[] }
  | { k: 'counter'; name: string }
  | { k: 'limit'; name: string }
  | { k: 'log'; group: number; prefix: string }
  /**
   * A per-key rate limit (an nft meter): `update @set { <sel> timeout T limit
   * rate [over] R/second burst B packets }`. Each key (the sender's uid) gets
   * its own token bucket in the set's element, refreshed while it keeps
   * sending. With `over`, the statement matches while the key is over its
   * rate; otherwise while it is within. If the set is full or the packet has
   * no socket, the statement does not match.
   */
  | { k: 'meter'; sel: 'meta skuid'; set: string; timeoutMs: number; rate: number; burst: number; over: boolean }
  | { k: 'reject'; how: 'tcp-reset' | 'icmpx-admin' }
  | { k: 'redirect'; port: number }
  /** dnat ip|ip6 to ADDR:PORT (nat prerouting): a `sluice run` sends its DNS to its own guard. */
  | { k: 'dnat'; family: 4 | 6; addr: bigint; port: number }
  /** masquerade (nat postrouting): a `sluice run`'s flows leave with the host's address. */
  | { k: 'masquerade' }
  /** ct mark set (ct mark & ~mask) | value: Sluice's bits of the flow's mark, the others kept. */
  | { k: 'ct-mark-set'; mask: number; value: number }
  /** meta mark set <value>. */
  | { k: 'mark-set'; value: number }
  /** meta mark set socket cgroupv2 level N: the low 32 bits of the sender's cgroup id at that depth. */
  | { k: 'mark-set-cgroup'; level: number }
  /** meta mark set meta skuid: the sending socket's owner, for the DNS guard (read back with SO_RCVMARK). */
  | { k: 'mark-set-skuid' }
  /** ct zone set N: the packet's flow is tracked in conntrack zone N (only before conntrack, at raw priority). */
  | { k: 'ct-zone-set'; zone: number }
  | { k: 'verdict'; v: 'accept' | 'drop' | 'return' | 'continue' }
  | { k: 'goto' | 'jump'; chain: string }
  /** Only produced by the decoder: an expression Sluice never writes. */
  | { k: 'unknown'; text: string };

export interface RuleDef {
  stmts: Stmt[];
  comment?: string;
}

export interface ChainDef {
  name: string;
  /** Base chains attach to a hook; regular chains are jump/goto targets. */
  base?: { type: 'filter' | 'nat'; hook: 'output' | 'postrouting' | 'prerouting' | 'input' | 'forward'; priority: number; policy: 'accept' | 'drop' };
  rules: RuleDef[];
  comment?: string;
}

export interface Ruleset {
  table: string;
  /** Stored in the table's comment so `status` can tell what is live without the state directory. */
  comment: string;
  /**
   * Table flags `persist` (and, while the daemon runs, `owner`): only the
   * daemon's netlink socket may change or delete the table, `nft flush
   * ruleset` passes it by, and it stays when the daemon exits (Linux 6.9+;
   * policy `owned_table: true`). Present only when true.
   */
  owned?: boolean;
  sets: SetDef[];
  counters: CounterDef[];
  limits: LimitDef[];
  chains: ChainDef[];
}

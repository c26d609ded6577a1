import type { AddrRange } from '../net/ip.js';
import type { PolicyIssue } from '../errors.js';

/** A validated, normalized policy. Everything here is already checked; the compiler never fails on it. */
export interface Policy {
  /** Path the policy came from (for messages). */
  file: string;
  /**
   * sha256 of the file bytes, hex; with list files (`to_file:`), of the file
   * and every list file's path and content together (policyDigest).
   */
  sha256: string;
  /** The list files the rules read, in first-use order, each with the sha256 of its bytes. Absent when none. */
  lists?: PolicyList[];
  mode: 'audit' | 'enforce';
  /** What happens to traffic no rule allows. `deny` is the point of Sluice; `allow` makes deny rules a blocklist. */
  defaultAction: 'deny' | 'allow';
  /** How blocked packets are refused: reject answers at once (TCP reset, ICMP admin-prohibited), drop is silent. */
  blockWith: 'reject' | 'drop';
  /** Allow what a host needs to stay on the network: IPv6 neighbour discovery and DHCP. */
  essentials: boolean;
  /** What the daemon does when someone else changes its kernel table: put it back (and alert), or only alert. */
  tamper: 'restore' | 'alert';
  /**
   * The daemon owns its table (flags owner, persist; Linux 6.9+): no other
   * process can change or delete it, `nft flush ruleset` passes it by, and it
   * stays, unowned, when the daemon exits.
   */
  ownedTable: boolean;
  log: LogSettings;
  rules: Rule[];
  /**
   * Users and services whose mode differs from `mode` (gradual enforcement,
   * see README "Gradual enforcement"): a block that would happen to their
   * packets is only recorded (audit), or happens for them alone (enforce).
   * Empty when the policy has none.
   */
  scopes: Scope[];
  /** Where alerts go (see README "Alerts"); empty: only the daemon's log. */
  alerts: AlertRoute[];
  /** Alerts not to send, each until a date. */
  suppress: Suppression[];
  dns: DnsSettings;
  flows: FlowSettings;
  /** Where the daemon serves the web dashboard; absent: no dashboard. */
  dashboard?: DashboardSettings;
  /** Warnings found while loading (the policy is still valid). */
  warnings: PolicyIssue[];
}

/** A list file a policy read (`to_file:`): its absolute path, the sha256 of its bytes and how many entries it had. */
export interface PolicyList {
  path: string;
  sha256: string;
  entries: number;
}

export interface LogSettings {
  /** NFLOG group the kernel sends event records to. */
  group: number;
  /** Kernel-side budget for event records, shared by all rules and users (records per second). */
  rate: number;
  burst: number;
  /** Each user's own share of that budget (per socket owner uid), checked first. */
  userRate: number;
  userBurst: number;
  /** Record new allowed flows for every rule, not only those with `log: true`. */
  allowed: boolean;
}

/** The web dashboard (see README "Dashboard"). */
export interface DashboardSettings {
  /** A loopback address (127.0.0.0/8 or ::1) and port. */
  listen: { host: string; port: number };
}

/** The DNS guard (see README "DNS guard"). */
export interface DnsSettings {
  /** Run the guard: DNS is redirected to it (enforce) or observed (audit). Default: on when a rule names domains. */
  guard: boolean;
  /** Resolvers the guard forwards to; null means the non-loopback nameservers of /etc/resolv.conf at apply time. */
  upstreams: AddrRange[] | null;
  /** Where the guard listens on 127.0.0.1 and ::1. Privileged, so no unprivileged process can take it while the daemon is down. */
  port: number;
  /** Learned addresses live max(TTL, floor) + grace seconds, at most max. */
  ttlFloor: number;
  ttlGrace: number;
  ttlMax: number;
  blockedAnswer: 'nxdomain' | 'refused';
  /** Block DNS over TLS (853) and well-known DNS-over-HTTPS endpoints unless a rule explicitly allows them. */
  encryptedDns: 'block' | 'allow';
  /** The list of encrypted-DNS endpoints; null means the list shipped with Sluice. */
  encryptedDnsList: string | null;
  /** Packet mark of the guard's own upstream queries (only marked packets may reach upstream port 53). */
  mark: number;
  /** At most this many addresses of one answer are opened (and passed on); the rest are left out. */
  maxAddressesPerAnswer: number;
  /** One name keeps at most this many addresses open per rule; beyond it its least recently seen ones are closed. */
  maxAddressesPerName: number;
  /** Answers the guard keeps to answer repeated questions from memory (least recently used leave first); 0: no cache. */
  cacheSize: number;
  /** A cached negative answer (NXDOMAIN, NODATA) lives min(SOA TTL, SOA MINIMUM), at most this many seconds (RFC 2308). */
  cacheMaxNegativeTtl: number;
}

/**
 * How admitted flows are tied to the policy that admitted them (see README
 * "Flows outlive nothing"): Sluice keeps, in 16 bits of each flow's conntrack
 * mark, the policy epoch and the rule that admitted it.
 */
export interface FlowSettings {
  /** The 16 contiguous conntrack-mark bits Sluice owns; the other bits are left to other software. */
  ctMarkMask: number;
  /** Packets answering inbound-initiated flows: from any local port, or only from these. */
  replies: 'any' | PortRange[];
}

export const FLOW_DEFAULTS = { ctMarkMask: 0xffff0000 } as const;

export const DNS_DEFAULTS = {
  port: 153,
  ttlFloor: 30,
  ttlGrace: 30,
  ttlMax: 86_400,
  mark: 0x5c1ce,
  maxAddressesPerAnswer: 32,
  maxAddressesPerName: 64,
  cacheSize: 10_000,
  cacheMaxNegativeTtl: 3600,
} as const;

export type Proto = 'tcp' | 'udp';

/** A destination port range for one transport protocol. */
export interface PortRange {
  proto: Proto;
  from: number;
  to: number;
}

/** A domain-name pattern in lower-case ASCII (IDNA) form. */
export interface DomainPattern {
  /** As written after normalization: `api.example.com` or `*.example.com`. */
  text: string;
  /** For a wildcard, the suffix after `*.`; otherwise the name itself. */
  name: string;
  wildcard: boolean;
}

export interface UserRef {
  uid: number;
  /** The name the policy used, when it used one. */
  name?: string;
}

/** A systemd unit (`nginx.service`) or an explicit cgroup v2 path (`/machine.slice/x.scope`). */
export type ServiceRef = { kind: 'unit'; unit: string } | { kind: 'cgroup'; path: string };

export interface InterfaceRef {
  /** The name, or for a wildcard the prefix before `*`. */
  name: string;
  wildcard: boolean;
}

export interface Rule {
  name: string;
  action: 'allow' | 'deny';
  /** Position in the policy (0-based), for stable naming of kernel objects. */
  index: number;
  /** Addresses and prefixes. Empty with no domains means any destination. */
  addrs: AddrRange[];
  domains: DomainPattern[];
  /** Transport ports. Empty with no other protocols means any protocol and port. */
  ports: PortRange[];
  icmp: boolean;
  icmpv6: boolean;
  users: UserRef[];
  services: ServiceRef[];
  interfaces: InterfaceRef[];
  /** Record new flows this rule allows (deny and default-deny records are always made). */
  log: boolean;
  /**
   * Deny rules only: this rule's own mode, whatever the policy's mode and
   * scopes say. `audit`: a packet it matches is recorded as would-block and
   * goes on to be judged by the other rules (the policy as if this rule were
   * not there); `enforce`: it is refused, in every scope. Absent: the
   * policy's mode and scopes decide.
   */
  mode?: 'audit' | 'enforce';
  comment?: string;
  /** Line of the rule in the policy file, for explain. */
  line: number;
}

/**
 * A `scopes:` entry: users or services (never both) with the other mode than
 * the policy's (the loader refuses the same one), so all scopes of a policy
 * have one mode, and a user or service is in at most one scope.
 */
export interface Scope {
  /** Unique among scopes; 1-48 of a-z 0-9 . _ -; in records (`sluice:W:<rule>@<scope>`) and `status`. */
  name: string;
  mode: 'audit' | 'enforce';
  users: UserRef[];
  services: ServiceRef[];
  line: number;
}

/** True when the rule constrains protocols or ports at all. */
export function hasProtoConstraint(rule: Rule): boolean {
  return rule.ports.length > 0 || rule.icmp || rule.icmpv6;
}

/** True when the rule constrains destinations at all. */
export function hasDestConstraint(rule: Rule): boolean {
  return rule.addrs.length > 0 || rule.domains.length > 0;
}

/** What raises an alert. */
export const ALERT_TRIGGERS = ['blocked', 'new-destination', 'unlisted-name', 'encrypted-dns', 'tamper', 'reload-rejected', 'event-loss', 'attribution-low', 'daemon-failed'] as const;
export type AlertTrigger = (typeof ALERT_TRIGGERS)[number];

/** Where one route's alerts go. */
export type AlertSink =
  | { kind: 'webhook'; url: string; secretFile: string | null; template?: string }
  | { kind: 'syslog'; transport: 'udp' | 'tcp'; host: string; port: number }
  | { kind: 'syslog'; transport: 'unix'; path: string }
  | { kind: 'exec'; argv: string[]; timeoutMs: number }
  | { kind: 'journal' };

/** One `alerts:` entry: which triggers, from which rules, to which sink, rolled up over which window. */
export interface AlertRoute {
  name: string;
  sink: AlertSink;
  on: AlertTrigger[];
  /** Only events of these rules (`#default` and the other built-in names included); null: any. */
  rules: string[] | null;
  windowMs: number;
}

/** One `suppress:` entry: events of a rule (or any) to a destination (or any) raise no alert until a date. */
export interface Suppression {
  rule: string | null;
  /** A name pattern (matched against the event's hostname or asked name) or an address range. */
  destination: { kind: 'name'; pattern: DomainPattern } | { kind: 'addr'; range: AddrRange } | null;
  /** The last day it applies (YYYY-MM-DD, UTC), inclusive. */
  until: string;
  reason: string;
  line: number;
}

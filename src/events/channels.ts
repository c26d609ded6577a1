import { channel, type Channel } from 'node:diagnostics_channel';
import type { ContainerRef } from '../system/containers.js';

/**
 * Named events the core publishes; the store, alerts, metrics and dashboard
 * subscribe. Publishers never import subscribers. One channel per event kind,
 * on node:diagnostics_channel, so publishing with no subscriber costs nothing.
 */

/** A DNS query the guard answered (or saw passively in audit mode). */
export interface DnsQueryEvent {
  time: number;
  transport: 'udp' | 'tcp' | 'passive';
  /** Where the answer goes; `uid` is the sender's, from the mark the ruleset put on the query (UDP). */
  client: { address: string; port: number; uid?: number };
  name: string;
  type: number;
  /** allowed: forwarded; blocked: answered without forwarding; would-block: audit mode; error: malformed or failed. */
  verdict: 'allowed' | 'blocked' | 'would-block' | 'error';
  rules: string[];
  rcode: number;
  answers: string[];
  dropped: { address: string; why: string }[];
  latencyMs: number;
  /** The asking process, when it could be found. */
  /** `cgroup` is the v2 path as the kernel reports it; `container` is read off it (containers.ts). */
  process?: { pid: number; exe?: string; comm?: string; uid?: number; unit?: string; cgroup?: string; container?: ContainerRef };
  detail?: string;
}

/** A packet the kernel logged (blocked, would-block or a new allowed flow), after attribution. */
export interface FlowEvent {
  time: number;
  verdict: 'blocked' | 'would-block' | 'allowed';
  rule: string;
  /**
   * Gradual enforcement: the scope whose mode decided a block, when not the
   * policy's: `#rule` (the deny rule's own mode) or a `scopes:` name.
   */
  scope?: string;
  family: 4 | 6;
  proto: number;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmpType?: number;
  iface?: string;
  uid?: number;
  user?: string;
  process?: { pid: number; exe?: string; cmdline?: string; comm?: string; unit?: string; cgroup?: string; container?: ContainerRef };
  hostname?: string;
}

/** Something an operator should hear about (tamper, rollback, failures). */
export interface AlertEvent {
  time: number;
  kind: string;
  severity: 'info' | 'warning' | 'critical';
  message: string;
  detail?: Record<string, unknown>;
}

export const channels = {
  dnsQuery: channel('sluice:dns.query') as Channel,
  flow: channel('sluice:flow') as Channel,
  alert: channel('sluice:alert') as Channel,
  /**
   * Audit mode: a DNS answer the kernel copied, published the moment it is
   * judged (before its asker is looked up and it reaches dnsQuery), for those
   * who must know it at once (the collector's audit reconciler).
   */
  dnsObserved: channel('sluice:dns.observed') as Channel,
};

export function publishDnsQuery(e: DnsQueryEvent): void {
  if (channels.dnsQuery.hasSubscribers) channels.dnsQuery.publish(e);
}

export function publishDnsObserved(e: DnsQueryEvent): void {
  if (channels.dnsObserved.hasSubscribers) channels.dnsObserved.publish(e);
}

export function publishFlow(e: FlowEvent): void {
  if (channels.flow.hasSubscribers) channels.flow.publish(e);
}

export function publishAlert(e: AlertEvent): void {
  if (channels.alert.hasSubscribers) channels.alert.publish(e);
}

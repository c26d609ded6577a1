import type { StoredEvent } from '../events/event-store.js';
import { parseDomain } from '../policy/parse-values.js';
import { serviceOf, type ObservedFlow } from './replay.js';

/** Who sent a flow, as a policy can name it: a systemd service, else a user, else anyone. */
export type Principal = { kind: 'service'; unit: string } | { kind: 'user'; uid: number; name?: string } | { kind: 'any' };

/** One distinct flow (destination, protocol, port, sender) and what was seen of it. */
export interface Observation {
  flow: ObservedFlow;
  principal: Principal;
  /** Events of traffic that flowed (allowed, or would-block in audit mode). */
  flowed: number;
  /** Events the policy in force blocked (enforce mode): they never flowed. */
  blocked: number;
  first: number;
  last: number;
  /** Distinct UTC days (days since the epoch), at most MAX_DAYS kept. */
  days: Set<number>;
  /** Process names (sanitised), at most MAX_PROCESSES kept. */
  processes: Set<string>;
}

const MAX_PROCESSES = 6;
const MAX_DAYS = 400;
const DAY_MS = 86_400_000;
/** systemd unit names as the policy takes them. */
const UNIT = /^[A-Za-z0-9:_.@\\-]{1,200}\.service$/;

/** Printable, harmless text: letters, digits and a few marks; anything else becomes `?`. Never a control character. */
export function safeText(s: string, max = 40): string {
  const clean = s.replace(/[^A-Za-z0-9._+@:/-]/g, '?');
  return clean.length > max ? `${clean.slice(0, max - 1)}~` : clean;
}

/** A hostname from the store, if it is a name a policy can hold (lower case, IDNA); attacker-chosen text is not. */
export function safeHostname(h: string | undefined): string | undefined {
  if (h === undefined || h.length === 0 || h.length > 253 || h.startsWith('*')) return undefined;
  const d = parseDomain(h);
  if (!d.ok || d.value.wildcard) return undefined;
  return d.value.name;
}

function principalOf(e: StoredEvent): Principal {
  const svc = serviceOf(e.process);
  if (svc !== undefined && svc === e.process?.unit && UNIT.test(svc) && !svc.startsWith('user@')) return { kind: 'service', unit: svc };
  if (e.uid !== undefined) {
    const p: Principal = { kind: 'user', uid: e.uid };
    if (e.user && /^[a-z_][a-z0-9_-]{0,31}\$?$/.test(e.user)) p.name = e.user;
    return p;
  }
  return { kind: 'any' };
}

/** A stored event's flow facts, with the hostname kept only when it is a valid name. */
export function flowOf(e: StoredEvent): ObservedFlow {
  const f: ObservedFlow = { dst: e.dst, proto: e.proto };
  if (e.dport !== undefined) f.dport = e.dport;
  if (e.icmpType !== undefined) f.icmpType = e.icmpType;
  if (e.uid !== undefined) f.uid = e.uid;
  const svc = serviceOf(e.process);
  if (svc !== undefined) f.service = svc;
  if (e.iface !== undefined) f.iface = e.iface;
  const h = safeHostname(e.hostname);
  if (h !== undefined) f.hostname = h;
  return f;
}

function processName(e: StoredEvent): string | undefined {
  const p = e.process;
  if (!p) return undefined;
  const base = p.exe ? p.exe.slice(p.exe.lastIndexOf('/') + 1) : p.comm;
  return base ? safeText(base, 32) : undefined;
}

/**
 * Stored events folded into distinct flows, in bounded memory: one entry per
 * destination, protocol, port, user, service, interface and name (never per
 * event), at most `maxFlows` of them; events beyond that are counted in
 * `overflow`, never silently lost.
 */
export class Observations {
  readonly flows = new Map<string, Observation>();
  events = 0;
  overflow = 0;
  first: number | null = null;
  last: number | null = null;
  /** Events of a verdict per rule (allowed events name the rule that admitted them). */
  readonly ruleEvents = new Map<string, number>();

  constructor(private readonly maxFlows = 500_000) {}

  add(e: StoredEvent): void {
    this.events++;
    if (this.first === null || e.time < this.first) this.first = e.time;
    if (this.last === null || e.time > this.last) this.last = e.time;
    if (e.verdict === 'allowed') this.ruleEvents.set(e.rule, (this.ruleEvents.get(e.rule) ?? 0) + 1);
    const f = flowOf(e);
    const key = `${f.dst}|${f.proto}|${f.dport ?? ''}|${f.icmpType ?? ''}|${f.uid ?? ''}|${f.service ?? ''}|${f.iface ?? ''}|${f.hostname ?? ''}`;
    let o = this.flows.get(key);
    if (!o) {
      if (this.flows.size >= this.maxFlows) {
        this.overflow++;
        return;
      }
      o = { flow: f, principal: principalOf(e), flowed: 0, blocked: 0, first: e.time, last: e.time, days: new Set(), processes: new Set() };
      this.flows.set(key, o);
    }
    if (e.verdict === 'blocked') o.blocked++;
    else o.flowed++;
    if (e.time < o.first) o.first = e.time;
    if (e.time > o.last) o.last = e.time;
    if (o.days.size < MAX_DAYS) o.days.add(Math.floor(e.time / DAY_MS));
    const pn = processName(e);
    if (pn !== undefined && o.processes.size < MAX_PROCESSES) o.processes.add(pn);
  }
}

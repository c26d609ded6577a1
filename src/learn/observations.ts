import type { LookupRow, StoredEvent } from '../events/event-store.js';
import type { FlowRow } from '../events/sqlite-store.js';
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

/**
 * A name the workload resolved (stored lookups: answered NOERROR, allowed or
 * would-block), per asker, whether or not anything connected to it.
 */
export interface NameLookup {
  name: string;
  principal: Principal;
  uid?: number;
  lookups: number;
  first: number;
  last: number;
  days: Set<number>;
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

/** What one event contributes: the store's columns, as scanFlows gives them. */
export type EventFacts = FlowRow;

export function principalOf(uid: number | null, user: string | null, unit: string | null, cgroup: string | null): Principal {
  const svc = serviceOf({ ...(unit !== null ? { unit } : {}), ...(cgroup !== null ? { cgroup } : {}) });
  if (svc !== undefined && svc === unit && UNIT.test(svc) && !svc.startsWith('user@')) return { kind: 'service', unit: svc };
  if (uid !== null) {
    const p: Principal = { kind: 'user', uid };
    if (user && /^[a-z_][a-z0-9_-]{0,31}\$?$/.test(user)) p.name = user;
    return p;
  }
  return { kind: 'any' };
}

export function flowFrom(r: FlowRow): ObservedFlow {
  const [, , , dst, proto, dport, icmpType, iface, uid, , , unit, cgroup, hostname] = r;
  const f: ObservedFlow = { dst, proto };
  if (dport !== null) f.dport = dport;
  if (icmpType !== null) f.icmpType = icmpType;
  if (uid !== null) f.uid = uid;
  const svc = serviceOf({ ...(unit !== null ? { unit } : {}), ...(cgroup !== null ? { cgroup } : {}) });
  if (svc !== undefined) f.service = svc;
  if (iface !== null) f.iface = iface;
  const h = safeHostname(hostname ?? undefined);
  if (h !== undefined) f.hostname = h;
  return f;
}

/** A stored event as the row scanFlows would give. */
export function factsOf(e: StoredEvent): FlowRow {
  const p = e.process;
  const base = p?.exe ? p.exe.slice(p.exe.lastIndexOf('/') + 1) : p?.comm;
  return [e.time, e.verdict, e.rule, e.dst, e.proto, e.dport ?? null, e.icmpType ?? null, e.iface ?? null, e.uid ?? null, e.user ?? null, base ?? null, p?.unit ?? null, p?.cgroup ?? null, e.hostname ?? null, e.scope ?? null];
}

/**
 * Stored events folded into distinct flows, in bounded memory: one entry per
 * destination, protocol, port, user, service, interface and name (never per
 * event), at most `maxFlows` of them; events beyond that are counted in
 * `overflow`, never silently lost. Text from events (names, process names)
 * is validated or reduced to harmless characters when an entry is made.
 */
export class Observations {
  readonly flows = new Map<string, Observation>();
  events = 0;
  overflow = 0;
  first: number | null = null;
  last: number | null = null;
  /** Allowed events per rule (they name the rule that admitted them). */
  readonly ruleEvents = new Map<string, number>();

  /** Resolved names, per name and asker (uid, unit, cgroup), at most `maxNames`. */
  readonly names = new Map<string, NameLookup>();
  /** Lookups read, lookups beyond the names table (counted, not kept), and lookups of names no policy can hold (not kept). */
  lookups = 0;
  lookupOverflow = 0;
  unnameable = 0;

  constructor(
    private readonly maxFlows = 500_000,
    private readonly maxNames = 200_000,
  ) {}

  /** One stored lookup row (a day's lookups of a name by one asker). */
  addLookup(r: LookupRow): void {
    this.lookups += r.count;
    const name = safeHostname(r.name);
    if (name === undefined) {
      this.unnameable += r.count;
      return;
    }
    const key = JSON.stringify([name, r.uid, r.unit, r.cgroup]);
    let n = this.names.get(key);
    if (!n) {
      if (this.names.size >= this.maxNames) {
        this.lookupOverflow += r.count;
        return;
      }
      n = { name, principal: principalOf(r.uid, null, r.unit, r.cgroup), lookups: 0, first: r.first, last: r.last, days: new Set(), processes: new Set() };
      if (r.uid !== null) n.uid = r.uid;
      this.names.set(key, n);
    }
    n.lookups += r.count;
    n.first = Math.min(n.first, r.first);
    n.last = Math.max(n.last, r.last);
    if (n.days.size < MAX_DAYS) n.days.add(r.day);
    if (r.process !== null && n.processes.size < MAX_PROCESSES) n.processes.add(safeText(r.process, 32));
  }

  /** One stored event. */
  add(e: StoredEvent): void {
    this.addRow(factsOf(e));
  }

  /** One row of SqliteStore.scanFlows: the fast path (no object per event). */
  addRow(r: FlowRow): void {
    const time = r[0];
    const verdict = r[1];
    this.events++;
    if (this.first === null || time < this.first) this.first = time;
    if (this.last === null || time > this.last) this.last = time;
    if (verdict === 'allowed') this.ruleEvents.set(r[2], (this.ruleEvents.get(r[2]) ?? 0) + 1);
    const key = `${r[3]}|${r[4]}|${r[5]}|${r[6]}|${r[7]}|${r[8]}|${r[11]}|${r[12]}|${r[13]}`;
    let o = this.flows.get(key);
    if (!o) {
      if (this.flows.size >= this.maxFlows) {
        this.overflow++;
        return;
      }
      o = { flow: flowFrom(r), principal: principalOf(r[8], r[9], r[11], r[12]), flowed: 0, blocked: 0, first: time, last: time, days: new Set(), processes: new Set() };
      this.flows.set(key, o);
    }
    if (verdict === 'blocked') o.blocked++;
    else o.flowed++;
    if (time < o.first) o.first = time;
    if (time > o.last) o.last = time;
    if (o.days.size < MAX_DAYS) o.days.add(Math.floor(time / DAY_MS));
    const pn = r[10];
    if (pn !== null && o.processes.size < MAX_PROCESSES) o.processes.add(safeText(pn, 32));
  }
}

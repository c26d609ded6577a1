import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SluiceError } from '../errors.js';
import { dnsUpstreamsFor, encryptedDnsFor, observedResolversFor } from '../system/compile-env.js';
import { dnsLogGroup } from '../compile/compile-ruleset.js';
import { TABLE_NAME } from '../compile/ruleset.js';
import type { Family as MetricFamily } from '../runtime/metrics.js';
import type { Component, Runtime } from '../runtime/component.js';
import { publishDnsObserved, publishDnsQuery, type DnsQueryEvent } from '../events/channels.js';
import { setHostnameSource } from '../events/hostnames.js';
import { NflogListener, type NflogRecord } from '../netfilter/nflog.js';
import type { PacketInfo } from '../net/packet.js';
import type { Message } from './dns-message.js';
import { formatAddr, isLoopback, parseAddr, type AddrRange, type Family } from '../net/ip.js';
import { hostAddresses } from '../net/host-addresses.js';
import type { Policy } from '../policy/policy.js';
import { dnsGuardListens } from '../policy/builtins.js';
import { filterAnswer } from './answer-filter.js';
import { DnsGuard, type Client } from './dns-guard.js';
import { AttributionClient } from './attribution-client.js';
import { FastAnswers } from './fast-answers.js';
import type { FastPath } from './guard-servers.js';
import { loadProbes, ownNetns } from '../monitor/kernel-attribution.js';
import { DenyRefresher } from './deny-refresher.js';
import { DomainMatcher } from './domain-matcher.js';
import { GuardServers } from './guard-servers.js';
import { LearnedState, type LearnedEntry } from './learned-state.js';
import { PassiveObserver } from './passive-observer.js';
import { QueryLog } from './query-log.js';
import { RebindingFilter } from './rebinding.js';
import { SetWriter } from './set-writer.js';
import { UpstreamClient } from './upstream.js';

const RECENT_MAX = 10_000;
/** The window of the answer-time figures in /metrics and the dashboard's health page. */
const LATENCY_WINDOW_MS = 60_000;
const SAVE_EVERY_MS = 300_000;
/** How often the host's own addresses (rebinding targets) are read again. */
const HOST_ADDRESSES_EVERY_MS = 10_000;

/** The first port an unprivileged process may bind in this network namespace (1024 unless lowered). */
function unprivilegedPortStart(): number {
  try {
    const v = Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim());
    return Number.isInteger(v) && v >= 0 ? v : 1024;
  } catch {
    return 1024;
  }
}

/**
 * The guard trusts an upstream's replies because they come from its address
 * and port 53. On this host's own addresses that holds only while port 53 is
 * privileged: otherwise any user could bind it while the resolver is down and
 * answer the guard, opening addresses of their choosing.
 */
export function unsafeLocalUpstreams(upstreams: AddrRange[], firstFree: number, local: { family: Family; value: bigint }[]): AddrRange[] {
  if (firstFree > 53) return [];
  const isLocal = (u: AddrRange) =>
    isLoopback(u.family, u.start) || local.some((a) => a.family === u.family && a.value === u.start);
  return upstreams.filter(isLocal);
}

/**
 * The DNS guard as a daemon component. Enforce mode: listens where the kernel
 * redirects port 53 and decides every query. Audit mode: nothing is
 * redirected; it reads the DNS replies the kernel copies to NFLOG and learns
 * allowed names' addresses from them (UDP, and TCP reassembled per flow), recording would-block
 * lookups. Either way the learned state is restored from the kernel and the
 * state directory before anything is answered, and saved on the way out.
 */
export class GuardComponent implements Component {
  readonly name = 'dns-guard';
  private rt: Runtime | undefined;
  private guard: DnsGuard | undefined;
  private servers: GuardServers | undefined;
  private listener: NflogListener | undefined;
  private upstream: UpstreamClient | undefined;
  private writer: SetWriter | undefined;
  private learned = new LearnedState();
  private recent = new QueryLog(RECENT_MAX);
  private followers = new Set<(e: DnsQueryEvent) => void>();
  private saveTimer: NodeJS.Timeout | undefined;
  private saving: Promise<void> | undefined;
  private running: { mode: string; port: number; mark: number; upstreams: string } | null = null;
  /** Audit mode: replies are learned from only when they answer a query this host sent to its resolvers. */
  private passive = new PassiveObserver([]);
  private refresher: DenyRefresher | undefined;
  private hostTimer: NodeJS.Timeout | undefined;
  /** Servers bound by prepare(), taken over by configure(). */
  private prepared: GuardServers | undefined;
  private attribution = new AttributionClient();
  /** The fast path's table (made when a listener first uses it). */
  private fastAnswers: FastAnswers | undefined;
  /** configure() is under way: the learned record is being rebuilt. */
  private configuring = false;

  /**
   * What the guard opened (expired entries the kernel may still hold
   * included), for the tamper watchdog: null when the guard is not running;
   * `busy` while writes are queued (entries leave the record before the
   * transaction that deletes them from the kernel; ask again after it).
   */
  learnedEntries(): (() => LearnedEntry[]) | null | 'busy' {
    // Rebuilding its record for a new policy (a reload, an adoption): not an answer yet.
    if (this.configuring) return 'busy';
    if (!this.running) return null;
    if (this.writer?.busy) return 'busy';
    // The copy (every entry) only if the watchdog's check compares elements or restores: made in the
    // same turn of the loop as this answer, so it is the same record.
    return () => this.learned.snapshot();
  }

  /**
   * The fast path for the guard's UDP listeners (native/dns_fast.c): cache
   * hits answered on a thread of their own, out of reach of this event
   * loop's pauses. Off without a cache (nothing to answer from) or with
   * SLUICE_DNS_FAST=0 (every query then takes the JS path, as before).
   */
  private fastPathFor(policy: Policy): { fast: FastPath } | Record<string, never> {
    if (process.env.SLUICE_DNS_FAST === '0' || policy.dns.cacheSize <= 0) return {};
    if (!this.fastAnswers) {
      this.fastAnswers = new FastAnswers(1 << 22);
      this.guard?.attachFast(this.fastAnswers);
    }
    return { fast: { table: this.fastAnswers.table, onHit: (id, query, client) => this.guard?.fastHit(id, query, client) } };
  }

  private get learnedFile(): string {
    return join(this.rt?.state.dir ?? '.', 'learned.json');
  }

  /**
   * Binds the guard's sockets before the redirect to them reaches the kernel:
   * if the port is taken, the start (or reload) stops with the kernel unchanged,
   * instead of redirecting every query on the host to whoever holds the port.
   */
  async prepare(policy: Policy): Promise<void> {
    // A reload begins: until the new policy is in place, the fast path hands out nothing decided under the old one.
    this.guard?.freezeFast();
    if (!dnsGuardListens(policy)) return;
    const firstFree = unprivilegedPortStart();
    const unsafe = unsafeLocalUpstreams(dnsUpstreamsFor(policy), firstFree, hostAddresses());
    if (unsafe.length > 0) {
      const list = unsafe.map((u) => formatAddr(u.family, u.start)).join(', ');
      throw new SluiceError('EUPSTREAM', `DNS upstream ${list} is on this host, and port 53 is not privileged here (net.ipv4.ip_unprivileged_port_start = ${firstFree}): any user could answer the guard in its place. Raise the sysctl above 53 or name a resolver on another host in dns.upstreams.`);
    }
    if (this.servers && this.servers.port === policy.dns.port && this.servers.mark === policy.dns.mark) return;
    if (policy.dns.port >= firstFree) {
      throw new SluiceError('EGUARDPORT', `dns.port ${policy.dns.port} is not privileged here (net.ipv4.ip_unprivileged_port_start = ${firstFree}): any user could take it`);
    }
    const servers = new GuardServers(policy.dns.port, (p, c) => (this.guard ? this.guard.handle(p, c) : Promise.resolve(null)), policy.dns.mark, this.fastPathFor(policy));
    try {
      await servers.start();
    } catch (err) {
      await servers.stop();
      throw new SluiceError('EGUARDPORT', `The DNS guard cannot listen on port ${policy.dns.port}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    this.prepared = servers;
  }

  reloadAborted(): void {
    this.guard?.thawFast();
  }

  async start(rt: Runtime): Promise<void> {
    this.rt = rt;
    // Flow events name destinations by the DNS answers that opened them.
    setHostnameSource((family, addr) => this.learned.namesFor(family, addr)[0]);
    this.registerControl(rt);
    this.registerMetrics(rt);
    // Queries are attributed by the kernel's record of their send where the probes are attached
    // (the collector says once, at its start, when they are not).
    const probes = loadProbes();
    if (probes.loaded) {
      await this.attribution.close();
      this.attribution = new AttributionClient({ probes: { maps: probes.maps, netns: ownNetns() } });
    }
    // Probed once, at start, not on the first answer that needs it.
    if (!rt.netfilter.timeoutUpdates()) {
      rt.log('info', 'this kernel keeps the first timeout of a set element added again (before Linux 6.12): the guard extends an address by deleting and adding it in one transaction');
    }
    await this.configure(rt.policy);
    // The kernel keeps learned addresses through a daemon restart or crash (they are read back
    // from it); the file adds their names, and what the kernel lost (a reboot, after the save at
    // shutdown). So every 5 minutes is enough: a save costs ~100 ms of CPU at 60,000 addresses,
    // in slices, and each one shows in the guard's tail latency.
    this.saveTimer = setInterval(() => this.saveInBackground(), SAVE_EVERY_MS);
    this.saveTimer.unref();
    // Addresses come and go (DHCP, VPNs): the rebinding filter follows them.
    this.hostTimer = setInterval(() => {
      // An answer address that became this host's own is no longer handed out: the fast path, which does not check, empties.
      if (this.guard?.deps.rebinding.setLocalAddresses(hostAddresses())) this.guard.dropFast();
    }, HOST_ADDRESSES_EVERY_MS);
    this.hostTimer.unref();
  }

  async reload(rt: Runtime): Promise<void> {
    this.rt = rt;
    await this.configure(rt.policy);
  }

  /** Brings the running parts in line with the policy; restarts listeners only when their settings change. */
  private async configure(policy: Policy): Promise<void> {
    this.configuring = true;
    try {
      await this.configureParts(policy);
    } finally {
      this.configuring = false;
    }
  }

  private async configureParts(policy: Policy): Promise<void> {
    const rt = this.rt as Runtime;
    // The learned record is rebuilt below (elements may go): nothing from the fast path meanwhile.
    this.guard?.dropFast();
    // Only the DNS facts: resolving the services' cgroups is the compiler's business.
    const upstreams = policy.dns.guard ? dnsUpstreamsFor(policy) : [];
    const want = policy.dns.guard ? { mode: policy.mode, port: policy.dns.port, mark: policy.dns.mark, upstreams: upstreams.map((u) => formatAddr(u.family, u.start)).join(',') } : null;
    const same = JSON.stringify(want) === JSON.stringify(this.running);
    if (!same) await this.stopParts();

    // The DNS-filled sets the live ruleset has (a rule covering a whole family has none for it).
    const dynamicSets = new Set(rt.compiled.ruleset.sets.filter((x) => x.dynamic).map((x) => x.name));
    this.restoreLearned(dynamicSets);
    if (!want) {
      this.refresher?.stop();
      this.running = null;
      return;
    }
    this.writer ??= new SetWriter(rt.netfilter, TABLE_NAME);
    if (!same || !this.upstream) {
      this.upstream?.close();
      this.upstream = new UpstreamClient(upstreams, { mark: policy.dns.mark });
    }
    const deps = {
      policy,
      matcher: new DomainMatcher(policy, encryptedDnsFor(policy).names),
      rebinding: new RebindingFilter(policy, hostAddresses()),
      dynamicSets,
      upstream: this.upstream,
      writer: this.writer,
      learned: this.learned,
      onEvent: (e: DnsQueryEvent) => this.attributeThenRecord(e),
      identify: async (c: Client) => (await this.attribution.identify([c]))[0],
    };
    if (this.guard) this.guard.deps = deps;
    else {
      this.guard = new DnsGuard(deps);
      // Once: a reload's new dependencies empty the table themselves (the deps setter).
      if (this.fastAnswers) this.guard.attachFast(this.fastAnswers);
    }
    this.passive.setResolvers(this.trustedResolvers(policy));
    // Deny rules' names are resolved by the guard itself, so the kernel half of each deny is filled.
    this.refresher ??= new DenyRefresher(this.guard);
    this.refresher.reset();
    this.refresher.start();
    if (same) return;

    if (dnsGuardListens(policy)) {
      if (this.prepared && this.prepared.port === policy.dns.port && this.prepared.mark === policy.dns.mark) {
        this.servers = this.prepared;
        this.prepared = undefined;
      } else {
        const guard = this.guard;
        this.servers = new GuardServers(policy.dns.port, (p, c) => guard.handle(p, c), policy.dns.mark, this.fastPathFor(policy));
        await this.servers.start();
      }
      rt.log('info', `DNS guard listening on 127.0.0.1 and ::1 port ${policy.dns.port}${policy.mode === 'audit' ? " (the enforce scopes' queries only)" : ''}`, { upstreams: want.upstreams });
    }
    if (policy.mode === 'audit') {
      this.listener = new NflogListener(dnsLogGroup(policy), (records) => this.observe(records), { copyBytes: 0xffff });
      rt.log('info', `DNS guard observing replies (audit mode, ${dnsGuardListens(policy) ? 'only the enforce scopes redirected' : 'nothing redirected'})`, { group: dnsLogGroup(policy) });
    }
    this.running = want;
  }

  /**
   * Rebuilds the mirror of learned addresses from the kernel's dynamic sets
   * (the truth), naming them from the saved state; saved entries the kernel
   * lost (a reboot, a re-created table) are written back before any answer.
   */
  private restoreLearned(dynamicSets: Set<string>): void {
    const rt = this.rt as Runtime;
    // Rebuilt from scratch each time (the kernel and the saved file are the sources), so
    // nothing learned under an earlier policy or mode lingers in memory.
    const previous = this.learned;
    this.learned = new LearnedState();
    const now = Date.now();
    const policy = rt.policy;
    const saved = LearnedState.load(this.learnedFile, now, { mode: policy.mode, setComments: this.setComments(), maxLifeMs: (policy.dns.ttlMax + policy.dns.ttlGrace) * 1000 });
    const live = rt.netfilter.read(TABLE_NAME, { elements: 'dynamic' });
    const inKernel: LearnedEntry[] = [];
    for (const s of live?.ruleset.sets ?? []) {
      if (!dynamicSets.has(s.name)) continue;
      for (const e of s.elements) {
        if (e.t !== 'addr' || e.expiresMs === undefined) continue;
        inKernel.push({ set: s.name, family: e.family, addr: e.start, expiresAt: now + e.expiresMs });
      }
    }
    const have = new Set(inKernel.map((e) => `${e.set}|${e.family}|${e.addr}`));
    const missing = saved.list(now).filter((e) => dynamicSets.has(e.set) && !have.has(`${e.set}|${e.family}|${e.addr}`));
    if (missing.length > 0 && live) {
      try {
        const bySet = new Map<string, LearnedEntry[]>();
        for (const e of missing) {
          const list = bySet.get(e.set);
          if (list) list.push(e);
          else bySet.set(e.set, [e]);
        }
        rt.netfilter.addElements(
          TABLE_NAME,
          [...bySet.entries()].map(([set, list]) => ({
            set: { name: set, key: list[0]?.family === 6 ? 'ipv6_addr' : 'ipv4_addr', interval: false },
            elems: list.map((e) => ({ t: 'addr' as const, family: e.family, start: e.addr, end: e.addr, timeoutMs: Math.max(1000, e.expiresAt - now) })),
          })),
        );
        inKernel.push(...missing);
        rt.log('info', `restored ${missing.length} learned addresses into the kernel`);
      } catch (err) {
        rt.log('warn', 'could not restore learned addresses', { error: (err as Error).message });
      }
    }
    // Keep names learned before the restart, and on a reload the names learned since the
    // last save (up to 5 minutes' worth) for the addresses the kernel still holds.
    for (const e of saved.list(now)) for (const n of saved.namesFor(e.family, e.addr, now)) this.learned.nameAddress(e.family, e.addr, n, e.expiresAt);
    for (const e of inKernel) for (const n of previous.namesFor(e.family, e.addr, now).reverse()) this.learned.nameAddress(e.family, e.addr, n, e.expiresAt);
    this.learned.adoptKernel(inKernel);
  }

  /**
   * The resolvers audit mode learns from: the policy's or the host's. One on
   * this host only while port 53 is privileged (otherwise any user could
   * answer in its place).
   */
  private trustedResolvers(policy: Policy): AddrRange[] {
    const all = observedResolversFor(policy);
    const unsafe = unsafeLocalUpstreams(all, unprivilegedPortStart(), hostAddresses());
    return all.filter((r) => !unsafe.includes(r));
  }

  /**
   * Audit mode: the kernel copies outgoing queries and the replies conntrack
   * ties to them; a reply teaches only when it answers a query this host
   * sent to one of its resolvers (PassiveObserver). Lookups the guard would
   * refuse are recorded as would-block and teach nothing but their deny
   * rules' sets, as in enforce mode.
   */
  private observe(records: NflogRecord[]): void {
    const guard = this.guard;
    if (!guard) return;
    const { policy } = guard.deps;
    for (const r of records) {
      const p = r.packet;
      if (!p || (p.proto !== 17 && p.proto !== 6)) continue;
      // The guard's own lookups (deny rules' names) carry its mark: they taught it already.
      const own = r.mark === policy.dns.mark;
      if (p.proto === 17) {
        const msg = this.passive.observe(p, r.payload, r.timeMs, own);
        if (msg) this.learnObserved(p, msg, r.timeMs, 'udp');
      } else {
        for (const msg of this.passive.observeTcp(p, r.payload, r.timeMs, own)) this.learnObserved(p, msg, r.timeMs, 'tcp');
      }
    }
  }

  /** One observed reply that answered a query this host sent: judged as the guard would, learned from when allowed. */
  private learnObserved(p: PacketInfo, msg: Message, timeMs: number, via: 'udp' | 'tcp'): void {
    const guard = this.guard;
    if (!guard) return;
    const { policy, rebinding } = guard.deps;
    const q = msg.questions[0];
    if (!q) return;
    // The guard's own decision: what enforce mode would refuse is would-block here, and learns nothing.
    const { name, decision, refused } = guard.classify(q.name);
    const base: DnsQueryEvent = {
      time: timeMs,
      transport: 'passive',
      client: { address: formatAddr(p.family, p.dst), port: p.dport ?? 0 },
      name,
      type: q.type,
      verdict: 'would-block',
      rules: [],
      rcode: msg.flags.rcode,
      answers: [],
      dropped: [],
      latencyMs: 0,
    };
    if (refused !== undefined) {
      // No set is opened, but the name is remembered for its addresses: the would-block events that follow
      // name their destination, and `sluice suggest` can propose the name rather than the address.
      const seen = filterAnswer(q.name, q.type, msg, rebinding, { ttlMax: policy.dns.ttlMax, maxAddresses: policy.dns.maxAddressesPerAnswer });
      for (const a of seen.addresses) this.learned.nameAddress(a.family, a.addr, name, timeMs + (Math.max(a.ttl, policy.dns.ttlFloor) + policy.dns.ttlGrace) * 1000);
      // The answer is recorded (what was seen, nothing opened): the collector names a connect that raced this record by it.
      this.observed({ ...base, detail: refused, answers: seen.addresses.map((a) => formatAddr(a.family, a.addr)) }, via);
      return;
    }
    const f = filterAnswer(q.name, q.type, msg, rebinding, { ttlMax: policy.dns.ttlMax, maxAddresses: policy.dns.maxAddressesPerAnswer });
    const judged = guard.judge(decision, f);
    // Audit mode learns after the fact: a connect racing this write is only logged as would-block.
    guard.open(name, f.addresses, judged).catch((err: unknown) => this.rt?.log('warn', 'audit: set update failed', { error: String(err) }));
    if (judged.refused !== undefined) {
      this.observed({ ...base, rules: [...judged.ruleNames], detail: judged.refused, dropped: f.dropped }, via);
      return;
    }
    this.observed({ ...base, verdict: 'allowed', rules: [...judged.ruleNames], answers: f.addresses.map((a) => formatAddr(a.family, a.addr)), dropped: f.dropped }, via);
  }

  /**
   * Answered queries are attributed right after their answers go out, while
   * the askers' sockets are still open (the worker thread batches them), then
   * recorded.
   */
  /** An observed answer: told at once to who must know it now, then attributed and recorded. */
  private observed(e: DnsQueryEvent, via: 'udp' | 'tcp'): void {
    publishDnsObserved(e);
    this.attributeThenRecord(e, via);
  }

  /** `via`: the asker's socket's transport, for a passive event (whose own transport says only "passive"). */
  private attributeThenRecord(e: DnsQueryEvent, via?: 'udp' | 'tcp'): void {
    // Blocked queries were looked up before their answer (dns-guard.ts): found or not, no second try.
    // Audit mode's observed replies are attributed like answered queries: by the probes' record of
    // the query's send (the asker may be gone by now), else its socket if it is still open.
    if (e.process || e.verdict === 'blocked') {
      this.record(e);
      return;
    }
    const asked = this.attribution.identifyOne({ address: e.client.address, port: e.client.port, transport: via ?? (e.transport === 'tcp' ? 'tcp' : 'udp'), ...(e.client.uid !== undefined ? { uid: e.client.uid } : {}) });
    // Over the budget: recorded now, unattributed.
    if (!asked) {
      this.record(e);
      return;
    }
    void asked.then((p) => {
      if (p) e.process = p;
      this.record(e);
    });
  }

  private record(e: DnsQueryEvent): void {
    this.recent.push(e);
    for (const f of this.followers) f(e);
    publishDnsQuery(e);
  }

  /** Names that resolved to an address, for event attribution. */
  namesFor(family: Family, addr: bigint): string[] {
    return this.learned.namesFor(family, addr);
  }

  private registerControl(rt: Runtime): void {
    rt.control.handle('dns.recent', {
      call: (args) => {
        const limit = typeof args.limit === 'number' && args.limit > 0 ? Math.min(args.limit, RECENT_MAX) : 100;
        return this.recent.last(limit);
      },
    });
    rt.control.handle('dns.follow', {
      stream: (_args, send) => {
        const f = (e: DnsQueryEvent) => send(e);
        this.followers.add(f);
        return () => this.followers.delete(f);
      },
    });
    rt.control.handle('dns.learned', {
      call: () =>
        this.learned.list().map((e) => ({ set: e.set, address: formatAddr(e.family, e.addr), expiresAt: new Date(e.expiresAt).toISOString(), names: this.learned.namesFor(e.family, e.addr) })),
    });
  }

  private registerMetrics(rt: Runtime): void {
    rt.metrics.collect(() => {
      const g = this.guard?.stats;
      const u = this.upstream?.stats;
      const w = this.writer?.stats;
      const c = this.guard?.cache.stats;
      const counter = (name: string, help: string, samples: { labels: Record<string, string>; value: number }[]) => ({ name, help, type: 'counter' as const, samples });
      return [
        counter('sluice_dns_queries_total', 'DNS queries the guard answered, by verdict', [
          { labels: { verdict: 'allowed' }, value: g?.allowed ?? 0 },
          { labels: { verdict: 'blocked' }, value: g?.blocked ?? 0 },
          { labels: { verdict: 'malformed' }, value: g?.malformed ?? 0 },
        ]),
        counter('sluice_dns_upstream_failures_total', 'Queries no upstream answered (answered SERVFAIL)', [{ labels: {}, value: g?.upstreamFailures ?? 0 }]),
        counter('sluice_dns_upstream_timeouts_total', 'Upstream attempts that timed out', [{ labels: {}, value: u?.timeouts ?? 0 }]),
        counter('sluice_dns_upstream_bad_replies_total', 'Upstream packets refused (wrong id, source or question; malformed)', [{ labels: {}, value: u?.badReplies ?? 0 }]),
        counter('sluice_dns_kernel_updates_total', 'Set update transactions, by result', [
          { labels: { result: 'ok' }, value: w?.transactions ?? 0 },
          { labels: { result: 'failed' }, value: w?.failures ?? 0 },
        ]),
        counter('sluice_dns_rebinding_dropped_total', 'Answer addresses dropped as private or special', [{ labels: {}, value: g?.droppedAddresses ?? 0 }]),
        counter('sluice_dns_chain_refused_total', 'Answers refused because their CNAME chain or SVCB target led to a refused name', [{ labels: {}, value: g?.chainRefused ?? 0 }]),
        counter('sluice_dns_address_limit_total', 'Addresses left out or closed by the per-answer and per-name limits, and evicted from full sets', [
          { labels: { limit: 'answer' }, value: g?.overAnswerLimit ?? 0 },
          { labels: { limit: 'name' }, value: g?.overNameLimit ?? 0 },
          { labels: { limit: 'set' }, value: g?.evicted ?? 0 },
        ]),
        counter('sluice_dns_over_share_total', 'Queries dropped because their user held its full share of the queries in flight', [{ labels: {}, value: this.servers?.stats.overShare ?? 0 }]),
        counter('sluice_dns_upstream_sockets_total', 'Upstream sockets opened (one per batch of queries)', [{ labels: {}, value: u?.sockets ?? 0 }]),
        counter('sluice_dns_upstream_case_mismatch_total', 'Upstream replies refused because the question did not echo the randomised case', [{ labels: {}, value: u?.caseMismatches ?? 0 }]),
        counter('sluice_dns_passive_replies_total', 'Audit mode: DNS replies observed, by outcome', [
          { labels: { result: 'matched' }, value: this.passive.stats.matched },
          { labels: { result: 'unmatched' }, value: this.passive.stats.unmatched },
          { labels: { result: 'untrusted' }, value: this.passive.stats.untrusted },
        ]),
        counter('sluice_dns_passive_tcp_flows_total', 'Audit mode: DNS-over-TCP flows followed, and those given up (a gap, a truncated record, a bad length or a full buffer)', [
          { labels: { result: 'followed' }, value: this.passive.tcp.stats.flows },
          { labels: { result: 'given-up' }, value: this.passive.tcp.stats.givenUp },
        ]),
        { name: 'sluice_dns_learned_addresses', help: 'Addresses open through DNS answers now', type: 'gauge' as const, samples: [{ labels: {}, value: this.learned.liveCount() }] },
        counter('sluice_dns_cache_hits_total', 'Queries answered from the answer cache', [{ labels: {}, value: c?.hits ?? 0 }]),
        counter('sluice_dns_cache_misses_total', 'Allowed queries the answer cache could not answer (forwarded upstream)', [{ labels: {}, value: c?.misses ?? 0 }]),
        counter('sluice_dns_cache_evictions_total', 'Cached answers pushed out by newer ones (the cache was full)', [{ labels: {}, value: c?.evictions ?? 0 }]),
        counter('sluice_dns_cache_expired_total', 'Cached answers dropped when their TTL ran out', [{ labels: {}, value: c?.expired ?? 0 }]),
        counter('sluice_dns_cache_invalidated_total', 'Cached answers dropped because a reload or the rebinding filter changed what the guard would hand out', [{ labels: {}, value: c?.invalidated ?? 0 }]),
        counter('sluice_dns_cache_prefetches_total', 'Popular cached answers fetched again ahead of their expiry, by result', [
          { labels: { result: 'kept' }, value: c?.prefetches ?? 0 },
          { labels: { result: 'dropped' }, value: c?.prefetchFailures ?? 0 },
        ]),
        { name: 'sluice_dns_cache_entries', help: 'Answers in the answer cache now', type: 'gauge' as const, samples: [{ labels: {}, value: this.guard?.cache.size ?? 0 }] },
        ...this.fastFamilies(counter),
        ...this.latencyFamilies(),
        { name: 'sluice_dns_cache_hit_ratio', help: 'Hits over lookups of the answer cache since the daemon started (0 before the first lookup)', type: 'gauge' as const, samples: [{ labels: {}, value: c && c.hits + c.misses > 0 ? c.hits / (c.hits + c.misses) : 0 }] },
      ];
    });
  }

  /** The fast path's counters (summed over its threads; a restarted listener's are lost with it). */
  private fastFamilies(counter: (name: string, help: string, samples: { labels: Record<string, string>; value: number }[]) => MetricFamily): MetricFamily[] {
    if (!this.fastAnswers) return [];
    const t = this.servers?.fastStats ?? [];
    const sum = (k: 'answered' | 'forwarded' | 'dropped' | 'sendFailed') => t.reduce((n, x) => n + x[k], 0);
    return [
      counter('sluice_dns_fast_answered_total', "Queries answered from the cache by the guard's fast-path threads (also counted as cache hits)", [{ labels: {}, value: sum('answered') }]),
      counter('sluice_dns_fast_forwarded_total', 'Queries the fast-path threads handed to the guard in JavaScript', [{ labels: {}, value: sum('forwarded') }]),
      counter('sluice_dns_fast_dropped_total', 'Queries the fast-path threads dropped because JavaScript was too far behind', [{ labels: {}, value: sum('dropped') }]),
      counter('sluice_dns_fast_clears_total', "Times the fast path's table was emptied (a reload, an element leaving a set, this host's addresses changing)", [{ labels: {}, value: this.fastAnswers.stats.clears }]),
      { name: 'sluice_dns_fast_entries', help: "Answers in the fast path's table now", type: 'gauge' as const, samples: [{ labels: {}, value: this.fastAnswers.size }] },
    ];
  }

  /** The guard's answer time over the last LATENCY_WINDOW_MS, from the recent-queries log (so at most its newest RECENT_MAX answers). */
  private latencyFamilies(): MetricFamily[] {
    const l = this.recent.answerTimes(Date.now() - LATENCY_WINDOW_MS);
    const window = `the last ${LATENCY_WINDOW_MS / 1000} s (at most the newest ${RECENT_MAX} answers)`;
    return [
      {
        name: 'sluice_dns_answer_seconds',
        help: `How long the guard took to answer, from the query's arrival to the answer's send, over ${window}: median, 99th percentile and maximum`,
        type: 'gauge',
        samples: [
          { labels: { quantile: '0.5' }, value: l.p50 / 1000 },
          { labels: { quantile: '0.99' }, value: l.p99 / 1000 },
          { labels: { quantile: '1' }, value: l.max / 1000 },
        ],
      },
      { name: 'sluice_dns_answers_timed', help: `The answers those figures cover: the guard's answers over ${window}`, type: 'gauge', samples: [{ labels: {}, value: l.count }] },
    ];
  }

  /** Comments of the DNS-filled sets of the ruleset in force: what each set's rule means. */
  private setComments(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const s of this.rt?.compiled.ruleset.sets ?? []) if (s.dynamic) out[s.name] = s.comment ?? '';
    return out;
  }

  /** Periodic save, off the event loop's critical path; one at a time. */
  private saveInBackground(): void {
    if (this.saving || !this.learned.dirty) return;
    this.saving = this.learned
      .saveAsync(this.learnedFile, Date.now(), { mode: this.rt?.policy.mode ?? '', setComments: this.setComments() })
      .catch((err: unknown) => this.rt?.log('warn', 'could not save learned DNS state', { error: (err as Error).message }))
      .finally(() => (this.saving = undefined));
  }

  /** Final save on the way out (after any background save, so an older one cannot land last). */
  private async saveNow(): Promise<void> {
    await this.saving;
    try {
      this.learned.save(this.learnedFile, Date.now(), { mode: this.rt?.policy.mode ?? '', setComments: this.setComments() });
    } catch (err) {
      this.rt?.log('warn', 'could not save learned DNS state', { error: (err as Error).message });
    }
  }

  private async stopParts(): Promise<void> {
    // Servers already bound for the incoming policy (prepare) stay.
    if (this.servers && this.servers !== this.prepared) await this.servers.stop();
    this.servers = undefined;
    this.listener?.close();
    this.listener = undefined;
  }

  async stop(): Promise<void> {
    setHostnameSource(undefined);
    await this.prepared?.stop();
    this.prepared = undefined;
    if (this.saveTimer) clearInterval(this.saveTimer);
    if (this.hostTimer) clearInterval(this.hostTimer);
    this.refresher?.stop();
    await this.stopParts();
    this.upstream?.close();
    this.upstream = undefined;
    await this.attribution.close();
    this.attribution = new AttributionClient();
    await this.saveNow();
  }

  status(): Record<string, unknown> {
    return {
      running: this.running,
      guard: this.guard?.stats ?? null,
      upstream: this.upstream?.stats ?? null,
      kernel: this.writer?.stats ?? null,
      servers: this.servers?.stats ?? null,
      passive: this.listener ? { ...this.passive.stats, waiting: this.passive.waiting, tcp: { ...this.passive.tcp.stats, open: this.passive.tcp.flows, bytes: this.passive.tcp.bytes }, nflog: this.listener.stats } : null,
      denyRefresher: this.refresher ? { ...this.refresher.stats, planned: this.refresher.planned } : null,
      attribution: this.attribution.stats,
      learned: this.learned.liveCount(),
      cache: this.guard ? { ...this.guard.cache.stats, size: this.guard.cache.size, capacity: this.guard.cache.capacity } : null,
      fastPath: this.fastAnswers ? { ...this.fastAnswers.stats, entries: this.fastAnswers.size, threads: this.servers?.fastStats ?? [] } : null,
      /** Milliseconds, over the last minute (what /metrics shows as sluice_dns_answer_seconds). */
      answerTimes: this.recent.answerTimes(Date.now() - LATENCY_WINDOW_MS),
    };
  }
}

import { objectNames } from '../compile/kernel-names.js';
import { DYNAMIC_SET_MAX } from '../netfilter/nft-encode.js';
import type { DnsQueryEvent } from '../events/channels.js';
import { formatAddr } from '../net/ip.js';
import type { Policy, Rule } from '../policy/policy.js';
import { filterAnswer, type FilteredAnswer, type LearnedAddress } from './answer-filter.js';
import { AnswerCache, ageSeconds, cacheKey, countDown, prepareForCache, wantsPrefetch, type CachedAnswer } from './answer-cache.js';
import { canonicalName, decodeMessage, encodeMessage, OPT_EDE, RCODE, type EdnsOption, type Message, type Question, type RR } from './dns-message.js';
import type { DomainMatcher } from './domain-matcher.js';
import type { LearnedEntry, LearnedState } from './learned-state.js';
import type { RebindingFilter } from './rebinding.js';
import type { SetWrite } from './set-writer.js';
import { nameRefusal, nameRules } from './name-refusal.js';
import { fastKey, type FastAnswers } from './fast-answers.js';

/** RFC 8914 Extended DNS Error codes the guard uses. */
export const EDE = { BLOCKED: 15, FILTERED: 17, PROHIBITED: 18, NETWORK_ERROR: 23, NO_REACHABLE_AUTHORITY: 22 } as const;

export interface GuardDeps {
  policy: Policy;
  /** The policy's names, and the encrypted-DNS endpoints (refused unless a rule names them exactly). */
  matcher: DomainMatcher;
  rebinding: RebindingFilter;
  /** The DNS-filled sets the live ruleset has (a rule covering a whole family has none for it). */
  dynamicSets: Set<string>;
  /** Elements a DNS-filled set holds (the kernel's set size); when full, the least recently answered make room. */
  setCapacity?: number;
  upstream: { query(q: Question, flags: { dnssecOk: boolean }): Promise<Message> };
  writer: { write(w: SetWrite[]): Promise<void> };
  learned: LearnedState;
  onEvent: (e: DnsQueryEvent) => void;
  /** Identifies the asking process while its socket surely exists (used for blocked queries). */
  identify?: (client: Client) => Promise<DnsQueryEvent['process'] | undefined>;
  /** The clock (ms since the epoch) the answer cache counts TTLs by; tests move it. Default Date.now. */
  clock?: () => number;
}

export interface GuardStats {
  queries: number;
  allowed: number;
  blocked: number;
  malformed: number;
  upstreamFailures: number;
  kernelFailures: number;
  droppedAddresses: number;
  /** Answers refused because their CNAME chain (or an SVCB/HTTPS target) led to a refused name. */
  chainRefused: number;
  /** Addresses left out of answers over the per-answer limit. */
  overAnswerLimit: number;
  /** Addresses closed because their name held more than the per-name limit. */
  overNameLimit: number;
  /** Least recently answered addresses deleted to make room in a full set. */
  evicted: number;
}

export interface Client {
  address: string;
  port: number;
  transport: 'udp' | 'tcp';
  /** The sender's uid, when the kernel told it (UDP: the ruleset marks each query with it). */
  uid?: number;
  /** Instead of the uid, when the sender is in a service scope in audit: the scope's index in the policy's `scopes:` (the kernel's mark said so). */
  scope?: number;
}

const NO_NAMES: readonly string[] = Object.freeze([]);

export interface Decision {
  allows: Rule[];
  /** A deny rule that refuses the name itself. */
  refusedBy: Rule | undefined;
  /** Names of every matching rule (allow and deny): an allowed answer's addresses go into their sets. */
  ruleNames: readonly string[];
  sets4: SetWrite['set'][];
  sets6: SetWrite['set'][];
  /** The sets of the matching deny rules alone: what a refused chain through this name fills. */
  denyRuleNames: readonly string[];
  denySets4: SetWrite['set'][];
  denySets6: SetWrite['set'][];
  /** The judgement of an answer without a chain (made once: most answers are that). */
  plain: Judgement;
}

/** Where an answer's addresses go: sets per family, and the rules they belong to. */
export interface Targets {
  sets4: readonly SetWrite['set'][];
  sets6: readonly SetWrite['set'][];
  ruleNames: readonly string[];
}

/** What the policy says about an answer: the sets its addresses open, and why it is refused, if it is. */
export interface Judgement extends Targets {
  refused: string | undefined;
}

/** A learned element to record once the kernel committed it; `fresh` ones were not in the set before. */
interface Commit {
  set: string;
  family: 4 | 6;
  addr: bigint;
  expiresAt: number;
  fresh: boolean;
}

const AXFR = 252;
const IXFR = 251;

/**
 * The DNS guard's decision path, transport-free (the servers call it; tests
 * drive it directly). Every allowed answer's addresses are in the kernel sets
 * before the answer leaves: a connect issued the instant the program reads
 * the answer passes.
 */
export class DnsGuard {
  readonly stats: GuardStats = {
    queries: 0,
    allowed: 0,
    blocked: 0,
    malformed: 0,
    upstreamFailures: 0,
    kernelFailures: 0,
    droppedAddresses: 0,
    chainRefused: 0,
    overAnswerLimit: 0,
    overNameLimit: 0,
    evicted: 0,
  };

  /** Decisions per list of matching rules (the matcher returns shared lists): computed once each. */
  private decisions = new WeakMap<readonly Rule[], Decision>();
  private current: GuardDeps;
  /** Answers handed out, to answer repeated questions from memory (see answerFromCache). */
  readonly cache: AnswerCache;
  /** Bumped on every change of dependencies: an answer whose question was decided under older ones is not cached. */
  private generation = 0;
  /** The fast path's table (fast-answers.ts), when the UDP listeners answer cache hits on threads of their own. */
  private fast: FastAnswers | undefined;
  /** A reload is under way: nothing goes into the fast path's table (see freezeFast). */
  private fastFrozen = false;

  constructor(deps: GuardDeps) {
    this.current = deps;
    this.cache = new AnswerCache(deps.policy.dns.cacheSize);
  }

  get deps(): GuardDeps {
    return this.current;
  }

  /**
   * New dependencies (a reload): decisions made under the old ones are
   * forgotten, and so is every cached answer the new policy would not hand
   * out the same way (see revalidateCache).
   */
  set deps(deps: GuardDeps) {
    // Before anything else: the fast path hands out nothing decided under the old dependencies.
    this.fast?.clear();
    this.fastFrozen = false;
    const old = this.current;
    this.current = deps;
    this.decisions = new WeakMap();
    this.generation++;
    this.revalidateCache(old, deps);
  }

  /**
   * Connects the fast path's table: from now on, cached answers are put
   * there as well (see mirror) and leave it with their cache entry.
   */
  attachFast(fast: FastAnswers | undefined): void {
    this.fast?.clear();
    this.fast = fast;
    this.cache.onDrop = fast ? (e) => fast.delete(e) : undefined;
  }

  /** Empties the fast path's table at once (this host's addresses changed, the learned record is rebuilt). */
  dropFast(): void {
    this.fast?.clear();
  }

  /**
   * A reload begins: the table empties, and nothing goes in until the new
   * dependencies are in place (the deps setter) or the reload is given up
   * (thawFast): hits in JS meanwhile are still decided under the old policy.
   */
  freezeFast(): void {
    this.fastFrozen = true;
    this.fast?.clear();
  }

  thawFast(): void {
    this.fastFrozen = false;
  }

  private now(): number {
    return this.current.clock ? this.current.clock() : Date.now();
  }

  /**
   * After a reload, drops exactly the cached answers whose decision changed:
   * a name on the chain now refused or decided by other rules, other sets
   * to fill (a rule added, removed, or now covering a whole family), or an
   * address the new rebinding filter drops. Everything goes when a setting
   * that shaped the stored answers changed (ttl_max, the per-answer limit,
   * the negative TTL cap, the upstreams, the mode) or the cache was turned
   * off. Entries whose rules changed only in other ways (ports, users) stay:
   * a hit writes its addresses into the rules' sets again whenever the
   * kernel record (rebuilt from the new table) lacks them, as a fresh answer
   * would. Every hit is also decided again under the policy in force (see
   * handle), so this is about not keeping what can no longer be used, and
   * about the guarantee not resting on one place.
   */
  private revalidateCache(old: GuardDeps, next: GuardDeps): void {
    const a = old.policy.dns;
    const b = next.policy.dns;
    const shaped = (x: typeof a) => [x.ttlMax, x.maxAddressesPerAnswer, x.cacheMaxNegativeTtl, x.cacheSize > 0].join('|');
    this.cache.capacity = b.cacheSize;
    if (shaped(a) !== shaped(b) || old.upstream !== next.upstream || old.policy.mode !== next.policy.mode) {
      this.cache.clear();
      return;
    }
    this.cache.invalidate((e) => {
      const { decision, refused } = this.classify(e.name);
      if (refused !== undefined) return true;
      const judged = this.judge(decision, e);
      if (judged.refused !== undefined || decidedKey(judged) !== e.decided) return true;
      return e.addresses.some((x) => next.rebinding.check(x.family, x.addr) !== null);
    });
  }

  private decide(matched: readonly Rule[]): Decision {
    let d = this.decisions.get(matched);
    if (d) return d;
    // The allows, and a deny rule refusing the name outright (name-refusal.ts). Narrower deny rules
    // (some ports, users...) let the name resolve when it is otherwise allowed, and get its addresses in their sets.
    const { allows: allowList, refusedBy } = nameRules(matched);
    const allows = [...allowList];
    const denies = matched.filter((r) => r.action === 'deny');
    const rules = [...allows, ...denies];
    // The DNS-filled sets of these rules that the live ruleset has (a rule covering a whole family has none for it).
    const sets = (list: Rule[], family: 4 | 6): SetWrite['set'][] =>
      list.map((r) => objectNames.dnsSet(r.name, family)).filter((name) => this.deps.dynamicSets.has(name)).map((name) => ({ name, key: family === 4 ? 'ipv4_addr' : 'ipv6_addr', interval: false }));
    const ruleNames = Object.freeze(rules.map((r) => r.name));
    const sets4 = sets(rules, 4);
    const sets6 = sets(rules, 6);
    d = {
      allows,
      refusedBy,
      ruleNames,
      sets4,
      sets6,
      denyRuleNames: Object.freeze(denies.map((r) => r.name)),
      denySets4: sets(denies, 4),
      denySets6: sets(denies, 6),
      plain: Object.freeze({ sets4, sets6, ruleNames, refused: undefined }),
    };
    this.decisions.set(matched, d);
    return d;
  }

  /**
   * The policy's word on a queried name (as asked; compared canonically): the
   * decision, and why the name is refused (answered NXDOMAIN or REFUSED in
   * enforce mode, never forwarded), if it is. Audit mode uses the same word.
   */
  classify(qname: string): { name: string; decision: Decision; refused: string | undefined } {
    const name = canonicalName(qname);
    const decision = this.decide(this.deps.matcher.match(name));
    const refused = nameRefusal(name, decision, this.deps.matcher, this.deps.policy.defaultAction);
    return { name, decision, refused };
  }

  /**
   * Gradual enforcement: whether a refusal is only recorded for this client
   * (answered, and recorded would-block, as audit mode does). Only for a
   * sender the guard can name for sure: the uid the kernel marked on a UDP
   * query, in a user scope in audit, or the mark the kernel set on a UDP
   * query from a service scope in audit (it matched the sender's cgroup at
   * the send: the guard never looks the cgroup up after the fact, racing the
   * sender's exit). A TCP query (no mark) or anything else it cannot tell is
   * enforced: fail closed. A deny
   * rule's own mode wins: enforce refuses for everyone; audit records
   * would-block and answers.
   */
  private auditedFor(client: Client, d: Decision, name: string): boolean {
    // An encrypted-DNS endpoint's name is refused as the kernel refuses its addresses (#encrypted-dns), scopes apart.
    if (this.deps.matcher.encryptedEndpoint(name)) return false;
    const own = d.refusedBy?.mode;
    if (own !== undefined) return own === 'audit';
    if (client.transport !== 'udp') return false;
    const scopes = this.deps.policy.scopes ?? [];
    if (client.scope !== undefined) {
      // Marked by this policy's ruleset (or, for the moment of a reload, the one before it): only a
      // service scope in audit at that index counts; anything else is enforced.
      const sc = scopes[client.scope];
      return sc !== undefined && sc.mode === 'audit' && sc.services.length > 0;
    }
    if (client.uid === undefined) return false;
    const uid = client.uid;
    return scopes.some((s) => s.mode === 'audit' && s.users.some((u) => u.uid === uid));
  }

  /**
   * Why a name is refused wherever it appears (asked, or on an answer's
   * chain): a deny rule names it with no other condition, or it is an
   * encrypted-DNS endpoint no rule names exactly. A name no rule lists is
   * refused when asked (default deny), not on a chain: the targets of an
   * allowed name's CNAMEs are its provider's (a CDN's) names, which no
   * policy lists.
   */
  private refusal(name: string, d: Decision): string | undefined {
    // A name on the chain needs no allow rule of its own: only an outright refusal counts ('allow' as the default).
    return nameRefusal(name, d, this.deps.matcher, 'allow');
  }

  /**
   * The policy's word on an answer: every name on its CNAME chain and every
   * SVCB/HTTPS target goes through the matcher. A chain through a refused
   * name is refused whole (its addresses are that name's, whatever the
   * first name was), and its addresses go into the sets of the deny rules
   * on the chain, so the kernel half of the deny knows them. Otherwise the
   * addresses open the asked name's rules, and the sets of deny rules with
   * conditions (ports, users...) that match a name on the chain.
   */
  judge(asked: Decision, f: Pick<FilteredAnswer, 'names' | 'targets'>): Judgement {
    if (f.names.length === 1 && f.targets.length === 0) return asked.plain;
    let refused: string | undefined;
    // By set name: each decision has its own set objects, and a set must be written once.
    const deny4 = new Map(asked.denySets4.map((x) => [x.name, x]));
    const deny6 = new Map(asked.denySets6.map((x) => [x.name, x]));
    const denyRules = new Set(asked.denyRuleNames);
    const more = (list: readonly string[], from: number) => {
      for (let i = from; i < list.length; i++) {
        const n = list[i] as string;
        const d = this.decide(this.deps.matcher.match(n));
        refused ??= this.refusal(n, d);
        for (const x of d.denySets4) deny4.set(x.name, x);
        for (const x of d.denySets6) deny6.set(x.name, x);
        for (const x of d.denyRuleNames) denyRules.add(x);
      }
    };
    more(f.names, 1);
    more(f.targets, 0);
    if (refused !== undefined) {
      return { sets4: [...deny4.values()], sets6: [...deny6.values()], ruleNames: [...denyRules], refused: `the answer for ${f.names[0]} leads to ${refused}` };
    }
    const union = (a: readonly SetWrite['set'][], b: Map<string, SetWrite['set']>) => {
      if (b.size === 0) return a;
      const all = new Map(a.map((x) => [x.name, x]));
      for (const [k, x] of b) all.set(k, x);
      return [...all.values()];
    };
    return { sets4: union(asked.sets4, deny4), sets6: union(asked.sets6, deny6), ruleNames: [...new Set([...asked.ruleNames, ...denyRules])], refused: undefined };
  }

  /**
   * Names the answer's addresses and lists the set writes that open them for
   * the decision's rules (each address stays open max(TTL, floor) + grace:
   * longer than any client may cache the answer); `commits` are marked in the
   * learned state once the writes are done.
   */
  learn(name: string, addresses: readonly LearnedAddress[], t: Pick<Targets, 'sets4' | 'sets6'>, now: number): { writes: SetWrite[]; commits: Commit[]; victims: LearnedEntry[] } {
    const s = this.deps.policy.dns;
    const learned = this.deps.learned;
    const writes: SetWrite[] = [];
    const commits: Commit[] = [];
    const victims: LearnedEntry[] = [];
    if (addresses.length === 0) return { writes, commits, victims };
    let fresh4 = 0;
    let fresh6 = 0;
    // An element that lives this little short of what the answer needs is not written again (no
    // churn), taken out of the grace so it still outlives the TTL handed out (the cache relies on it).
    const slack = Math.min(1000, s.ttlGrace * 1000);
    for (const a of addresses) {
      const lifeMs = (Math.max(a.ttl, s.ttlFloor) + s.ttlGrace) * 1000;
      const expiresAt = now + lifeMs;
      learned.nameAddress(a.family, a.addr, name, expiresAt);
      learned.holdForName(name, a.family, a.addr, expiresAt);
      for (const target of a.family === 4 ? t.sets4 : t.sets6) {
        const set = target.name;
        // Answered now: the least recently answered are the first to make room in a full set.
        const cur = learned.touch(set, a.family, a.addr);
        if (cur && cur.expiresAt + slack >= expiresAt) continue;
        writes.push({ set: target, elem: { t: 'addr', family: a.family, start: a.addr, end: a.addr, timeoutMs: lifeMs }, ...(cur ? { heldUntil: cur.expiresAt } : {}) });
        commits.push({ set, family: a.family, addr: a.addr, expiresAt, fresh: !cur });
        if (!cur && a.family === 4) fresh4++;
        else if (!cur) fresh6++;
      }
    }
    // One name holds at most maxAddressesPerName: the ones it held longest ago close, unless another name holds them too.
    for (const r of learned.releaseOverLimit(name, s.maxAddressesPerName, now)) {
      if (learned.held(r.family, r.addr, now)) continue;
      for (const target of r.family === 4 ? t.sets4 : t.sets6) {
        const e = learned.evict(target.name, r.family, r.addr, now);
        if (!e) continue;
        this.stats.overNameLimit++;
        victims.push(e);
        writes.push({ set: target, elem: { t: 'addr', family: r.family, start: r.addr, end: r.addr }, remove: true });
      }
    }
    // Room in each set for what is new there: the least recently answered elements make way, in the same transaction.
    if (fresh4 + fresh6 > 0) {
      const capacity = this.deps.setCapacity ?? DYNAMIC_SET_MAX;
      for (const [family, list] of [[4, t.sets4], [6, t.sets6]] as const) {
        if ((family === 4 ? fresh4 : fresh6) === 0) continue;
        for (const target of list) {
          const adding = commits.reduce((n, c) => n + (c.fresh && c.set === target.name ? 1 : 0), 0);
          if (adding === 0) continue;
          learned.reserve(target.name, adding);
          for (const e of learned.makeRoom(target.name, family, 0, capacity, now, addresses)) {
            this.stats.evicted++;
            victims.push(e);
            writes.push({ set: target, elem: { t: 'addr', family, start: e.addr, end: e.addr }, remove: true });
          }
        }
      }
    }
    // An element leaves a set: the fast path's deadlines were computed with it there.
    if (victims.length > 0) this.fast?.clear();
    return { writes, commits, victims };
  }

  /**
   * Opens an answer's addresses in the kernel (learn, then one transaction
   * shared with the other answers of this turn) and records them once
   * committed. Rejects when the kernel refused: what was taken out to make
   * room is put back, and nothing was opened.
   */
  async open(name: string, addresses: readonly LearnedAddress[], t: Pick<Targets, 'sets4' | 'sets6'>, now = Date.now()): Promise<void> {
    const learned = this.deps.learned;
    const { writes, commits, victims } = this.learn(name, addresses, t, now);
    try {
      await this.deps.writer.write(writes);
    } catch (err) {
      learned.restore(victims);
      for (const c of commits) if (c.fresh) learned.reserve(c.set, -1);
      throw err;
    }
    for (const c of commits) learned.committed(c.set, c.family, c.addr, c.expiresAt, c.fresh);
  }

  /** Answers one query packet. Null means: send nothing (not a query, or too broken to answer). */
  async handle(packet: Buffer, client: Client): Promise<Buffer | null> {
    const started = performance.now();
    this.stats.queries++;
    let q: Message;
    try {
      q = decodeMessage(packet);
    } catch {
      this.stats.malformed++;
      return formErrFromHeader(packet);
    }
    // A response sent to the guard: never answer it (no reflection loops).
    if (q.flags.qr) {
      this.stats.malformed++;
      return null;
    }
    const fail = (rcode: number, detail: string, ede?: EdnsOption): Buffer => {
      this.emit(q, client, { verdict: 'error', rcode, detail, started });
      return this.encodeReply(q, { rcode, answers: [], authorities: [], ede: ede ? [ede] : [] }, client);
    };
    if (q.flags.opcode !== 0) return fail(RCODE.NOTIMP, `opcode ${q.flags.opcode} is not supported`);
    const question = q.questions[0];
    if (q.questions.length !== 1 || !question) return fail(RCODE.FORMERR, `${q.questions.length} questions (one is required)`);
    if (question.class !== 1) return fail(RCODE.REFUSED, `class ${question.class} is not served`);
    if (question.type === AXFR || question.type === IXFR) return fail(RCODE.REFUSED, 'zone transfers are not served', ede(EDE.PROHIBITED, 'sluice: zone transfers are refused'));

    const { name, decision, refused: why } = this.classify(question.name);
    // Gradual enforcement: a sender in an audit scope gets the answer; the refusal is recorded as would-block.
    const audited = why !== undefined && this.auditedFor(client, decision, name);
    if (why !== undefined && !audited) {
      this.stats.blocked++;
      const rcode = this.deps.policy.dns.blockedAnswer === 'refused' ? RCODE.REFUSED : RCODE.NXDOMAIN;
      // Who asked for a name the policy does not allow is the interesting part: find out before answering.
      const proc = await this.deps.identify?.(client);
      this.emit(q, client, { verdict: 'blocked', rcode, detail: why, started, ...(proc ? { process: proc } : {}) });
      return this.encodeReply(q, { rcode, answers: [], authorities: [], ede: [ede(EDE.BLOCKED, `sluice: ${why}`)] }, client);
    }

    // The cache: only questions the policy lets through reach it, each hit decided again here.
    const caching = this.cache.capacity > 0 && !audited;
    const key = caching ? cacheKey(question.name, question.type, q.edns?.dnssecOk ?? false) : '';
    // One clock reading for the lookup and the countdown: read twice, an entry found alive at its last
    // millisecond could be counted down a second further, to a TTL of 0.
    const lookedUp = this.now();
    const hit = caching ? this.cache.get(key, lookedUp) : undefined;
    if (hit) {
      const out = await this.answerFromCache(packet, q, client, name, decision, hit, lookedUp, started, fail);
      if (out) return out;
    }
    const generation = this.generation;

    let upstream: Message;
    try {
      // The client's CD bit is not passed on: with it the resolver skips DNSSEC validation (RFC 4035
      // section 3.2.2), and what this answer opens, it opens for every process on the host. DO is:
      // a validating client still gets the signatures, and a bogus answer still fails (SERVFAIL).
      upstream = await this.deps.upstream.query({ name: question.name, type: question.type, class: 1 }, { dnssecOk: q.edns?.dnssecOk ?? false });
    } catch (err) {
      this.stats.upstreamFailures++;
      return fail(RCODE.SERVFAIL, `upstream: ${(err as Error).message}`, ede(EDE.NO_REACHABLE_AUTHORITY, 'sluice: no upstream answered'));
    }

    const arrived = this.now();
    const s = this.deps.policy.dns;
    const f = filterAnswer(question.name, question.type, upstream, this.deps.rebinding, { ttlMax: s.ttlMax, maxAddresses: s.maxAddressesPerAnswer });
    this.stats.droppedAddresses += f.dropped.length;
    this.stats.overAnswerLimit += f.overLimit;
    const judged = this.judge(decision, f);
    try {
      // A refused chain still teaches its deny rules' sets (nothing else), before the refusal goes out.
      // An answer given only because the sender is audited teaches nothing but deny rules' sets
      // (more refusing, never more allowing): what an audit scope learns never opens a set for others.
      await this.open(name, f.addresses, audited ? { sets4: decision.denySets4, sets6: decision.denySets6 } : judged, arrived);
    } catch (err) {
      // Fail closed: without the kernel update a connect would be refused anyway.
      this.stats.kernelFailures++;
      return fail(RCODE.SERVFAIL, `kernel set update failed: ${(err as Error).message}`, ede(EDE.NETWORK_ERROR, 'sluice: could not open the answer in the firewall'));
    }
    if (audited || (judged.refused !== undefined && this.auditedFor(client, decision, name))) {
      // Answered as audit mode would: what it opens is only what the policy opens for the name
      // (nothing, for an unlisted one); the kernel then decides each connection by its scope.
      this.stats.blocked++;
      this.emit(q, client, { verdict: 'would-block', rcode: f.rcode, detail: why ?? judged.refused ?? '', rules: judged.ruleNames, answers: f.addresses.map((a) => formatAddr(a.family, a.addr)), dropped: f.dropped, started });
      return this.encodeReply(q, { rcode: f.rcode, answers: f.answers, authorities: f.authorities, ede: [], ad: upstream.flags.ad }, client);
    }
    if (judged.refused !== undefined) {
      this.stats.blocked++;
      this.stats.chainRefused++;
      const rcode = s.blockedAnswer === 'refused' ? RCODE.REFUSED : RCODE.NXDOMAIN;
      this.emit(q, client, { verdict: 'blocked', rcode, detail: judged.refused, rules: judged.ruleNames, dropped: f.dropped, started });
      return this.encodeReply(q, { rcode, answers: [], authorities: [], ede: [ede(EDE.BLOCKED, `sluice: ${judged.refused}`)] }, client);
    }

    this.stats.allowed++;
    const edes: EdnsOption[] = [];
    if (f.dropped.length > 0) edes.push(ede(EDE.FILTERED, `sluice: dropped ${f.dropped.length} address(es) in private or special ranges`));
    if (f.overLimit > 0) edes.push(ede(EDE.FILTERED, `sluice: left out ${f.overLimit} address(es) over the limit of ${s.maxAddressesPerAnswer} per answer`));
    this.emit(q, client, {
      verdict: 'allowed',
      rcode: f.rcode,
      rules: judged.ruleNames,
      answers: f.addresses.map((a) => formatAddr(a.family, a.addr)),
      dropped: f.dropped,
      started,
    });
    // Cached only what was handed out whole, under the policy it was decided by: not a truncated
    // answer, nor one the rebinding filter cut (each of those goes upstream again), nor one decided
    // before a reload that landed while it was upstream.
    if (caching && generation === this.generation && !upstream.flags.tc && f.dropped.length === 0) {
      const stored = this.store(key, name, question.type, arrived, f, judged, edes, upstream.flags.ad);
      if (stored && this.fast) this.mirror(stored, packet, q, judged, this.now());
    }
    return this.encodeReply(q, { rcode: f.rcode, answers: f.answers, authorities: f.authorities, ede: edes, ad: upstream.flags.ad }, client);
  }

  /**
   * Keeps an answer just handed out for repeated questions: NOERROR with
   * records, or negative (NXDOMAIN, NODATA) with an SOA, for as long as its
   * records' TTLs (a negative one per RFC 2308 section 5, with the SOA handed
   * out at that TTL), while every record still has a second to give.
   */
  private store(key: string, name: string, type: number, arrived: number, f: FilteredAnswer, judged: Judgement, ede: EdnsOption[], ad: boolean): CachedAnswer | undefined {
    const prepared = prepareForCache(type, f.rcode, f.answers, f.authorities, this.deps.policy.dns.cacheMaxNegativeTtl);
    // A record with 1 s left would be handed out with TTL 0, which forbids caching (RFC 1035 section 3.2.1).
    if (!prepared || prepared.seconds < 2) return undefined;
    return this.cache.set({
      key,
      name,
      type,
      storedAt: arrived,
      expiresAt: arrived + (prepared.seconds - 1) * 1000,
      rcode: f.rcode,
      answers: f.answers,
      authorities: prepared.authorities,
      addresses: f.addresses,
      names: f.names,
      targets: f.targets,
      ede,
      ad,
      decided: decidedKey(judged),
    });
  }

  /**
   * Fetches a popular entry's answer again ahead of its expiry, in the
   * background, as a query for it would: through the answer filter and the
   * policy, its addresses opened in the kernel before the new answer
   * replaces the entry. Anything the cache would not keep (an error, a
   * truncated or cut answer, a refused chain, a reload meanwhile) leaves the
   * old entry to expire; its next asker then goes upstream as usual.
   */
  private async prefetch(e: CachedAnswer, dnssecOk: boolean, decision: Decision): Promise<void> {
    e.prefetching = true;
    const generation = this.generation;
    const stats = this.cache.stats;
    try {
      const upstream = await this.deps.upstream.query({ name: e.name, type: e.type, class: 1 }, { dnssecOk });
      if (generation !== this.generation || upstream.flags.tc) throw new Error('not kept');
      const arrived = this.now();
      const s = this.deps.policy.dns;
      const f = filterAnswer(e.name, e.type, upstream, this.deps.rebinding, { ttlMax: s.ttlMax, maxAddresses: s.maxAddressesPerAnswer });
      const judged = this.judge(decision, f);
      if (judged.refused !== undefined || f.dropped.length > 0) throw new Error('not kept');
      await this.open(e.name, f.addresses, judged, arrived);
      if (generation !== this.generation) throw new Error('not kept');
      const edes: EdnsOption[] = [];
      if (f.overLimit > 0) edes.push(ede(EDE.FILTERED, `sluice: left out ${f.overLimit} address(es) over the limit of ${s.maxAddressesPerAnswer} per answer`));
      // The fresh answer takes the old one's place in the fast path too (the old one leaves it as it leaves the cache).
      const fastKeyOf = e.fastKey;
      const fastQuestion = e.fastQuestion;
      const stored = this.store(e.key, e.name, e.type, arrived, f, judged, edes, upstream.flags.ad);
      if (stored && fastKeyOf && fastQuestion) this.mirrorWith(stored, fastKeyOf, fastQuestion, judged, this.now());
      stats.prefetches++;
    } catch {
      stats.prefetchFailures++;
    } finally {
      e.prefetching = false;
    }
  }

  /**
   * An answer from the cache, or null when the entry may no longer be used
   * (it is dropped, and the question goes upstream).
   *
   * The kernel question: a cached answer is handed out only once every
   * address in it is open in its rules' sets for at least the TTL it carries
   * (plus ttl_grace), and this is done by refreshing, not by shortening the
   * TTL: the hit goes through open(), the very path of a fresh answer, with
   * the TTLs counted down. open() consults the record of what the kernel
   * holds (LearnedState, rebuilt from the kernel on every reload) and writes
   * only the elements that would not live long enough: normally none (the
   * answer opened them for max(TTL, ttl_floor) + ttl_grace when it arrived,
   * and the countdown only shortens what is needed), so a hit costs no
   * netlink round trip. When an element did go (pushed out of a full set,
   * closed by the per-name limit when the name's other answers brought new
   * addresses, or gone with a set a reload re-created), it is added again,
   * batched with the turn's other writes through the set writer, and the
   * answer leaves only after the kernel committed; on a kernel that ignores
   * a new timeout on an element it holds (before 6.12; probed at start),
   * the writer deletes and re-adds it in the same transaction, the path
   * every kernel supports. Handing out the smaller of the element's
   * remaining life and the TTL instead was rejected: an element already
   * gone has no life left to hand out, so that path needs the write anyway,
   * and TTLs cut short make clients come back before the answer expires.
   * The refresh also marks the addresses as just answered, so a full set
   * pushes out cold addresses before the ones a hot name keeps handing out.
   */
  private async answerFromCache(packet: Buffer, q: Message, client: Client, name: string, decision: Decision, e: CachedAnswer, now: number, started: number, fail: (rcode: number, detail: string, ede?: EdnsOption) => Buffer): Promise<Buffer | null> {
    // Decided again under the policy in force: a chain through a name refused since, or an
    // address this host now owns, is not handed out from memory.
    const judged = this.judge(decision, e);
    if (judged.refused !== undefined || e.addresses.some((a) => this.deps.rebinding.check(a.family, a.addr) !== null)) {
      this.cache.reject(e.key);
      return null;
    }
    const age = ageSeconds(e.storedAt, now);
    const generation = this.generation;
    try {
      await this.open(name, age === 0 ? e.addresses : e.addresses.map((a) => ({ ...a, ttl: a.ttl - age })), judged, now);
    } catch (err) {
      this.stats.kernelFailures++;
      return fail(RCODE.SERVFAIL, `kernel set update failed: ${(err as Error).message}`, ede(EDE.NETWORK_ERROR, 'sluice: could not open the answer in the firewall'));
    }
    this.stats.allowed++;
    if (wantsPrefetch(e, now)) void this.prefetch(e, q.edns?.dnssecOk ?? false, decision);
    e.uses++;
    // Into the fast path only what was decided under the dependencies in force and is still the
    // cache's entry: a reload, or a newer answer, while the kernel write was awaited leaves it out.
    if (this.fast && generation === this.generation && this.cache.peek(e.key) === e) this.mirror(e, packet, q, judged, now);
    // The question is the client's own (id, spelling); records owned by the name asked take that
    // spelling too on the wire, where the encoder compresses them against the question (0x20).
    const answers = countDown(e.answers, age);
    const authorities = countDown(e.authorities, age);
    this.emit(q, client, { verdict: 'allowed', rcode: e.rcode, rules: judged.ruleNames, answers: e.addresses.map((a) => formatAddr(a.family, a.addr)), started });
    return this.encodeReply(q, { rcode: e.rcode, answers, authorities, ede: e.ede, ad: e.ad }, client);
  }

  /**
   * Puts a cached answer in the fast path's table (or moves its deadline
   * on), to be handed out by the listeners' threads until the last moment
   * at which every address it opens is sure to outlive what a hit there
   * hands out (see fastDeadline). The key is the asker's question (its
   * name's wire length is every matching question's: the records'
   * compression pointers into it stay right).
   */
  private mirror(e: CachedAnswer, packet: Buffer, q: Message, t: Pick<Targets, 'sets4' | 'sets6' | 'ruleNames'>, now: number): void {
    const question = q.questions[0];
    if (!this.fast || !question) return;
    // Already there, with a deadline as good: nothing to do (the usual case for a hit in JS).
    if (e.fastKey && e.fastUntil !== undefined && this.fastDeadline(e, t) <= e.fastUntil + 1000) return;
    const key = fastKey(packet, question.type, q.edns?.dnssecOk ?? false);
    if (key) this.mirrorWith(e, key, question, t, now);
  }

  private mirrorWith(e: CachedAnswer, key: Buffer, question: Question, t: Pick<Targets, 'sets4' | 'sets6' | 'ruleNames'>, now: number): void {
    const fast = this.fast;
    if (!fast || this.fastFrozen) return;
    const deadline = this.fastDeadline(e, t);
    if (deadline <= now + 1000) {
      fast.delete(e);
      return;
    }
    e.fastRules = t.ruleNames;
    fast.put(e, key, question, deadline);
  }

  /**
   * Until when the fast path may hand `e` out: a hit at time t gives each
   * address the TTL r = ttl - age(t), and a hit in JS would keep its
   * elements until t + (max(r, ttl_floor) + ttl_grace) s less the slack
   * open() allows itself (up to 1 s, taken out of the grace). Per
   * element, as the learned state records what the kernel committed: if it
   * outlives storedAt + (ttl + ttl_grace) s, every hit with r >= ttl_floor
   * is covered whenever it comes (t + r <= storedAt + ttl), and hits with
   * r < ttl_floor are covered until expiresAt - (ttl_floor + ttl_grace) s.
   * An element missing, or living less, means no fast path for the entry.
   * Never past the entry's own expiry (every record keeps a TTL of 1 s).
   */
  private fastDeadline(e: CachedAnswer, t: Pick<Targets, 'sets4' | 'sets6'>): number {
    const s = this.deps.policy.dns;
    const learned = this.deps.learned;
    // What open() itself tolerates (see learn): an element this little short is not written again.
    const slack = Math.min(1000, s.ttlGrace * 1000);
    let deadline = e.expiresAt;
    for (const a of e.addresses) {
      for (const target of a.family === 4 ? t.sets4 : t.sets6) {
        const until = learned.expiryOf(target.name, a.family, a.addr);
        if (until === undefined || e.storedAt + (a.ttl + s.ttlGrace) * 1000 - slack > until) return -Infinity;
        deadline = Math.min(deadline, until - (s.ttlFloor + s.ttlGrace) * 1000 + slack);
      }
    }
    return deadline;
  }

  /**
   * A query the fast path answered from the entry numbered `id` (`query`:
   * its bytes; `client`: its sender): counted and recorded as every answer
   * is. Once a second per entry, its addresses are marked as just answered
   * and their elements extended, as a hit in JS does (open()), and the
   * entry's deadline moves on; a popular entry is fetched again ahead of
   * its expiry (prefetch).
   */
  fastHit(id: number, query: Buffer, client: Client): void {
    const started = performance.now();
    this.stats.queries++;
    this.stats.allowed++;
    const e = this.fast?.entry(id);
    if (!e) {
      // It left the table after the thread answered from it: recorded from the query itself.
      let q: Message;
      try {
        q = decodeMessage(query);
      } catch {
        return;
      }
      const question = q.questions[0];
      if (question) this.emitFor(canonicalName(question.name), question.type, client, { verdict: 'allowed', rcode: RCODE.NOERROR, started });
      return;
    }
    this.cache.touch(e);
    e.uses++;
    e.addressTexts ??= e.addresses.map((a) => formatAddr(a.family, a.addr));
    this.emitFor(e.name, e.type, client, { verdict: 'allowed', rcode: e.rcode, rules: e.fastRules ?? NO_NAMES, answers: e.addressTexts, started });
    const now = this.now();
    if (now - (e.refreshedAt ?? e.storedAt) >= 1000) {
      e.refreshedAt = now;
      this.refreshFast(e, now).catch(() => {
        this.stats.kernelFailures++;
      });
    }
  }

  /** What a hit in JS does besides answering, for an entry the fast path hands out (see fastHit). */
  private async refreshFast(e: CachedAnswer, now: number): Promise<void> {
    const generation = this.generation;
    const { decision, refused } = this.classify(e.name);
    const judged = this.judge(decision, e);
    if (refused !== undefined || judged.refused !== undefined || e.addresses.some((a) => this.deps.rebinding.check(a.family, a.addr) !== null)) {
      this.cache.reject(e.key);
      return;
    }
    const age = ageSeconds(e.storedAt, now);
    try {
      await this.open(e.name, age === 0 ? e.addresses : e.addresses.map((a) => ({ ...a, ttl: a.ttl - age })), judged, now);
    } catch {
      this.stats.kernelFailures++;
      return;
    }
    const key = e.fastKey;
    const question = e.fastQuestion;
    if (generation !== this.generation || !key || !question || this.cache.peek(e.key) !== e) return;
    if (this.fastDeadline(e, judged) > (e.fastUntil ?? 0) + 1000) this.mirrorWith(e, key, question, judged, now);
    if (wantsPrefetch(e, now)) void this.prefetch(e, key[2] === 1, decision);
  }

  /** The reply to `q`, sized for the client: over UDP it is truncated (TC) when it does not fit (RFC 1035 4.2.1, RFC 6891 7). */
  private encodeReply(q: Message, r: { rcode: number; answers: RR[]; authorities: RR[]; ede: EdnsOption[]; ad?: boolean }, client: Client): Buffer {
    const msg: Message = {
      id: q.id,
      flags: { qr: true, opcode: q.flags.opcode, aa: false, tc: false, rd: q.flags.rd, ra: true, ad: !!r.ad && (q.flags.ad || !!q.edns?.dnssecOk), cd: q.flags.cd, rcode: r.rcode & 0xf },
      questions: q.questions.slice(0, 1),
      answers: r.answers,
      authorities: r.authorities,
      additionals: [],
    };
    if (q.edns) msg.edns = { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: q.edns.dnssecOk, options: r.ede };
    const limit = client.transport === 'tcp' ? 65535 : q.edns ? Math.min(Math.max(q.edns.udpSize, 512), 1232) : 512;
    let out = encodeMessage(msg);
    if (out.length > limit) {
      msg.flags.tc = true;
      msg.answers = [];
      msg.authorities = [];
      out = encodeMessage(msg);
    }
    return out;
  }

  private emit(
    q: Message,
    client: Client,
    e: EmitFields,
  ): void {
    const question = q.questions[0];
    this.emitFor(question ? canonicalName(question.name) : '', question?.type ?? 0, client, e);
  }

  private emitFor(
    name: string,
    type: number,
    client: Client,
    e: EmitFields,
  ): void {
    const event: DnsQueryEvent = {
      time: Date.now(),
      transport: client.transport,
      client: client.uid !== undefined ? { address: client.address, port: client.port, uid: client.uid } : { address: client.address, port: client.port },
      name,
      type,
      verdict: e.verdict,
      rules: (e.rules ?? NO_NAMES) as string[],
      rcode: e.rcode,
      answers: e.answers ?? [],
      dropped: e.dropped ?? [],
      latencyMs: Math.round((performance.now() - e.started) * 1000) / 1000,
    };
    if (e.detail !== undefined) event.detail = e.detail;
    if (e.process) event.process = e.process;
    this.deps.onEvent(event);
  }
}

/** What the guard says about an answered query, besides its question and client (see DnsGuard.emitFor). */
interface EmitFields {
  verdict: DnsQueryEvent['verdict'];
  rcode: number;
  detail?: string;
  rules?: readonly string[];
  answers?: string[];
  dropped?: { address: string; why: string }[];
  started: number;
  process?: DnsQueryEvent['process'];
}

/** What a decision opens, as text: a cached answer is dropped at a reload when this changes. */
function decidedKey(t: Targets): string {
  return `${t.sets4.map((x) => x.name).join(',')}|${t.sets6.map((x) => x.name).join(',')}|${t.ruleNames.join(',')}`;
}

function ede(code: number, text: string): EdnsOption {
  const t = Buffer.from(text, 'utf8');
  const data = Buffer.alloc(2 + t.length);
  data.writeUInt16BE(code, 0);
  t.copy(data, 2);
  return { code: OPT_EDE, data };
}

/**
 * FORMERR for a packet that does not parse, when its header at least says it
 * is a query: the client learns why instead of timing out. Nothing of the
 * broken body is echoed.
 */
function formErrFromHeader(packet: Buffer): Buffer | null {
  if (packet.length < 12 || (packet[2] ?? 0) & 0x80) return null;
  const out = Buffer.alloc(12);
  packet.copy(out, 0, 0, 2);
  out[2] = 0x80 | ((packet[2] ?? 0) & 0x79);
  out[3] = RCODE.FORMERR;
  return out;
}

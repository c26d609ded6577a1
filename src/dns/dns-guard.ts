import { objectNames } from '../compile/kernel-names.js';
import type { DnsQueryEvent } from '../daemon/events.js';
import { formatAddr } from '../net/ip.js';
import type { Policy, Rule } from '../policy/policy.js';
import { filterAnswer, type FilteredAnswer } from './answer-filter.js';
import { canonicalName, decodeMessage, encodeMessage, OPT_EDE, RCODE, type EdnsOption, type Message, type Question, type RR } from './dns-message.js';
import type { DomainMatcher } from './domain-matcher.js';
import type { LearnedEntry, LearnedState } from './learned-state.js';
import type { RebindingFilter } from './rebinding.js';
import type { SetWrite } from './set-writer.js';

/** RFC 8914 Extended DNS Error codes the guard uses. */
export const EDE = { BLOCKED: 15, FILTERED: 17, PROHIBITED: 18, NETWORK_ERROR: 23, NO_REACHABLE_AUTHORITY: 22 } as const;

export interface GuardDeps {
  policy: Policy;
  matcher: DomainMatcher;
  rebinding: RebindingFilter;
  /** Encrypted-DNS endpoint names: refused unless a rule names them exactly. */
  encryptedNames: Set<string>;
  /** The DNS-filled sets the live ruleset has (a rule covering a whole family has none for it). */
  dynamicSets: Set<string>;
  upstream: { query(q: Question, flags: { dnssecOk: boolean; cd: boolean }): Promise<Message> };
  writer: { write(w: SetWrite[]): Promise<void> };
  learned: LearnedState;
  onEvent: (e: DnsQueryEvent) => void;
  /** Identifies the asking process while its socket surely exists (used for blocked queries). */
  identify?: (client: Client) => Promise<DnsQueryEvent['process'] | undefined>;
}

export interface GuardStats {
  queries: number;
  allowed: number;
  blocked: number;
  malformed: number;
  upstreamFailures: number;
  kernelFailures: number;
  droppedAddresses: number;
}

export interface Client {
  address: string;
  port: number;
  transport: 'udp' | 'tcp';
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
  readonly stats: GuardStats = { queries: 0, allowed: 0, blocked: 0, malformed: 0, upstreamFailures: 0, kernelFailures: 0, droppedAddresses: 0 };

  /** Decisions per list of matching rules (the matcher returns shared lists): computed once each. */
  private decisions = new WeakMap<readonly Rule[], Decision>();
  private current: GuardDeps;

  constructor(deps: GuardDeps) {
    this.current = deps;
  }

  get deps(): GuardDeps {
    return this.current;
  }

  /** New dependencies (a reload): decisions made under the old ones are forgotten. */
  set deps(deps: GuardDeps) {
    this.current = deps;
    this.decisions = new WeakMap();
  }

  private decide(matched: readonly Rule[]): Decision {
    let d = this.decisions.get(matched);
    if (d) return d;
    const allows = matched.filter((r) => r.action === 'allow');
    const denies = matched.filter((r) => r.action === 'deny');
    // A deny rule that names the domain with no other condition refuses the name itself: forwarding
    // it would carry data to exactly the domain the policy denies. Narrower deny rules (some ports,
    // users...) let the name resolve when it is otherwise allowed, and get its addresses in their sets.
    const refusedBy = denies.find((r) => r.ports.length === 0 && !r.icmp && !r.icmpv6 && r.users.length === 0 && r.services.length === 0 && r.interfaces.length === 0);
    const rules = [...allows, ...denies];
    // The DNS-filled sets of these rules that the live ruleset has (a rule covering a whole family has none for it).
    const sets = (family: 4 | 6): SetWrite['set'][] =>
      rules.map((r) => objectNames.dnsSet(r.name, family)).filter((name) => this.deps.dynamicSets.has(name)).map((name) => ({ name, key: family === 4 ? 'ipv4_addr' : 'ipv6_addr', interval: false }));
    d = { allows, refusedBy, ruleNames: Object.freeze(rules.map((r) => r.name)), sets4: sets(4), sets6: sets(6) };
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
    const decision = this.decide(this.deps.matcher.match(qname));
    const { allows, refusedBy } = decision;
    const forward = !refusedBy && (allows.length > 0 || this.deps.policy.defaultAction === 'allow');
    const encrypted = this.deps.encryptedNames.has(name) && !allows.some((r) => r.domains.some((d) => !d.wildcard && d.name === name));
    const refused = encrypted
      ? `${name} is an encrypted DNS endpoint; a rule must name it exactly`
      : refusedBy
        ? `${name} is denied by rule ${refusedBy.name}`
        : !forward
          ? `${name} is not allowed by the policy`
          : undefined;
    return { name, decision, refused };
  }

  /**
   * Names the answer's addresses and lists the set writes that open them for
   * the decision's rules (each address stays open max(TTL, floor) + grace:
   * longer than any client may cache the answer); `commits` are marked in the
   * learned state once the writes are done.
   */
  learn(name: string, addresses: FilteredAnswer['addresses'], d: Decision, now: number): { writes: SetWrite[]; commits: LearnedEntry[] } {
    const s = this.deps.policy.dns;
    const writes: SetWrite[] = [];
    const commits: LearnedEntry[] = [];
    for (const a of addresses) {
      const lifeMs = (Math.max(a.ttl, s.ttlFloor) + s.ttlGrace) * 1000;
      const expiresAt = now + lifeMs;
      this.deps.learned.nameAddress(a.family, a.addr, name, expiresAt);
      for (const target of a.family === 4 ? d.sets4 : d.sets6) {
        const set = target.name;
        if (!this.deps.learned.needsWrite(set, a.family, a.addr, expiresAt)) continue;
        writes.push({ set: target, elem: { t: 'addr', family: a.family, start: a.addr, end: a.addr, timeoutMs: lifeMs } });
        commits.push({ set, family: a.family, addr: a.addr, expiresAt });
      }
    }
    return { writes, commits };
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
    if (why !== undefined) {
      this.stats.blocked++;
      const rcode = this.deps.policy.dns.blockedAnswer === 'refused' ? RCODE.REFUSED : RCODE.NXDOMAIN;
      // Who asked for a name the policy does not allow is the interesting part: find out before answering.
      const proc = await this.deps.identify?.(client);
      this.emit(q, client, { verdict: 'blocked', rcode, detail: why, started, ...(proc ? { process: proc } : {}) });
      return this.encodeReply(q, { rcode, answers: [], authorities: [], ede: [ede(EDE.BLOCKED, `sluice: ${why}`)] }, client);
    }

    let upstream: Message;
    try {
      upstream = await this.deps.upstream.query({ name: question.name, type: question.type, class: 1 }, { dnssecOk: q.edns?.dnssecOk ?? false, cd: q.flags.cd });
    } catch (err) {
      this.stats.upstreamFailures++;
      return fail(RCODE.SERVFAIL, `upstream: ${(err as Error).message}`, ede(EDE.NO_REACHABLE_AUTHORITY, 'sluice: no upstream answered'));
    }

    const s = this.deps.policy.dns;
    const f = filterAnswer(question.name, question.type, upstream, this.deps.rebinding, s.ttlMax);
    this.stats.droppedAddresses += f.dropped.length;
    const { writes, commits } = this.learn(name, f.addresses, decision, Date.now());
    try {
      await this.deps.writer.write(writes);
    } catch (err) {
      // Fail closed: without the kernel update a connect would be refused anyway.
      this.stats.kernelFailures++;
      return fail(RCODE.SERVFAIL, `kernel set update failed: ${(err as Error).message}`, ede(EDE.NETWORK_ERROR, 'sluice: could not open the answer in the firewall'));
    }
    for (const c of commits) this.deps.learned.committed(c.set, c.family, c.addr, c.expiresAt);

    this.stats.allowed++;
    const edes = f.dropped.length > 0 ? [ede(EDE.FILTERED, `sluice: dropped ${f.dropped.length} address(es) in private or special ranges`)] : [];
    this.emit(q, client, {
      verdict: 'allowed',
      rcode: f.rcode,
      rules: decision.ruleNames,
      answers: f.addresses.map((a) => formatAddr(a.family, a.addr)),
      dropped: f.dropped,
      started,
      ad: upstream.flags.ad,
    });
    return this.encodeReply(q, { rcode: f.rcode, answers: f.answers, authorities: f.authorities, ede: edes, ad: upstream.flags.ad }, client);
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
    e: {
      verdict: DnsQueryEvent['verdict'];
      rcode: number;
      detail?: string;
      rules?: readonly string[];
      answers?: string[];
      dropped?: { address: string; why: string }[];
      started: number;
      ad?: boolean;
      process?: DnsQueryEvent['process'];
    },
  ): void {
    const question = q.questions[0];
    const event: DnsQueryEvent = {
      time: Date.now(),
      transport: client.transport,
      client: { address: client.address, port: client.port },
      name: question ? canonicalName(question.name) : '',
      type: question?.type ?? 0,
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
